"""Progress of long work: a bar on a terminal; elsewhere (CI logs, files) a plain line every LOG_EVERY
seconds, so a long job never looks hung and a log never fills with carriage returns."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from typing import Any, TextIO, TypeVar

from tqdm import tqdm

T = TypeVar("T")
LOG_EVERY = 30.0
"""Seconds between log lines when the output is not a terminal."""
_CONTROL = re.compile(r"\x1b\[[0-9;]*[A-Za-z]|\r")
"""Cursor movements (nested bars) and carriage returns: a terminal's business, not a log's."""


class _Lines:
    """A stream for tqdm that turns its redraws into whole lines."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        line = _CONTROL.sub("", text).strip()
        if line:
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


class _LogBar(tqdm):
    """A bar written as log lines: a new postfix waits for the next line instead of forcing one."""

    def set_postfix(self, ordered_dict: Any = None, refresh: bool | None = True, **kwargs: Any) -> None:
        super().set_postfix(ordered_dict, refresh=False, **kwargs)


def bar(iterable: Iterable[T] | None = None, *, desc: str, enabled: bool = True, **kwargs: Any) -> tqdm[T]:
    """tqdm over `iterable` (or a manual bar when None): silent when not `enabled`, a bar on a terminal,
    a log line every LOG_EVERY seconds otherwise."""
    if not enabled:
        return tqdm(iterable, desc=desc, disable=True, **kwargs)
    if sys.stderr.isatty():
        return tqdm(iterable, desc=desc, **kwargs)
    return _LogBar(iterable, desc=desc, file=_Lines(sys.stderr), mininterval=LOG_EVERY, ascii=True, **kwargs)


def note(text: str, enabled: bool = True) -> None:
    """One line on stderr (a stage started or finished), written around any progress bar on a terminal."""
    if enabled:
        tqdm.write(text, file=sys.stderr)
