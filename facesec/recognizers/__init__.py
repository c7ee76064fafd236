"""Pluggable face recognizers: `load(name_or_spec)` returns a `Recognizer` module.

The package itself imports nothing heavy, so torch-free parts (trust, packaged models, the TF.js format,
preflight checks) load without torch; the public names below are imported from `base` on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["Recognizer", "RecognizerInfo", "available", "code_trusted", "load", "register", "trusting_code"]
_HOME = {"Recognizer": "base", "RecognizerInfo": "base", "available": "base", "load": "base", "register": "base",
         "code_trusted": "trust", "trusting_code": "trust"}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'facesec.recognizers' has no attribute {name!r}")
    return getattr(importlib.import_module(f"facesec.recognizers.{_HOME[name]}"), name)
