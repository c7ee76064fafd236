"""Whether code may run: a `package.module:factory` recognizer imports and runs that module, and some model
files are programs (TorchScript); both are refused unless the person running facesec trusted code. Torch-free,
so `validate` checks it without loading any model."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from facesec.errors import ConfigError
from facesec.plugins import RECOGNIZERS

_TRUST_CODE: ContextVar[bool] = ContextVar("facesec_trust_code", default=False)


def code_trusted() -> bool:
    """Whether `package.module:factory` recognizers and program-like files (TorchScript) may be loaded
    (off unless the user opted in)."""
    return _TRUST_CODE.get()


@contextmanager
def trusting_code(enabled: bool = True) -> Iterator[None]:
    """Allow (or not) arbitrary `package.module:factory` code and TorchScript files while the block runs: a
    threat model from someone else must not run code unless the person running it said so."""
    token = _TRUST_CODE.set(enabled)
    try:
        yield
    finally:
        _TRUST_CODE.reset(token)


def query_only(name: str) -> bool:
    """Whether the recognizer `name` is a black box (no gradients), as its registry entry says."""
    return bool(RECOGNIZERS.meta(name).get("query_only"))


def check_trust(where: str, name: str) -> None:
    """ConfigError unless `name` is safe to load from someone else's file, or code is trusted."""
    if code_trusted():
        return
    why = RECOGNIZERS.meta(name).get("runs_file_code")
    if why:
        raise ConfigError(f"{where}: {why}; pass --trust-code (Python: trust_code=True) if you trust the file, or "
                          "export the model to ONNX")
    if name not in RECOGNIZERS and ":" in name:
        raise ConfigError(f"{where}: {name!r} is a package.module:factory, which runs that module's code; pass "
                          "--trust-code (Python: trust_code=True) if you trust it, or install it as a plug-in "
                          "(entry-point group facesec.recognizers)")
