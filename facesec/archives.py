"""Reading tar archives someone else made (npm package tarballs): bounded in header size, decompressed bytes
and time, so a bomb is a one-line error rather than gigabytes of memory or an hour of decompression."""

from __future__ import annotations

import bz2
import contextlib
import gzip
import lzma
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

MAX_HEADER_BYTES = 1 << 20
"""A long-name or pax header larger than this is refused before it is read (tarfile holds it in memory whole)."""
_HEADER_TYPES = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE,
                 tarfile.SOLARIS_XHDTYPE)


class TooLarge(tarfile.TarError):
    """The archive goes past one of the limits; the message says which."""


class _BoundedHeaders(tarfile.TarInfo):
    """Entries whose extended header is larger than MAX_HEADER_BYTES are refused before tarfile reads it."""

    def _proc_member(self, tarfile: tarfile.TarFile) -> tarfile.TarInfo:  # noqa: A002 - tarfile's own name
        if self.type in _HEADER_TYPES and self.size > MAX_HEADER_BYTES:
            raise TooLarge(f"an extended header of {self.size:,} bytes (at most {MAX_HEADER_BYTES:,})")
        return super()._proc_member(tarfile)  # type: ignore[misc]


class _Bounded:
    """A decompressed stream that stops past `limit` bytes or past `deadline` (time.monotonic)."""

    def __init__(self, raw: IO[bytes], limit: int, deadline: float) -> None:
        self.raw, self.limit, self.deadline, self.read_so_far = raw, limit, deadline, 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size if 0 <= size <= 1 << 20 else 1 << 20)
        self.read_so_far += len(data)
        if self.read_so_far > self.limit:
            raise TooLarge(f"it decompresses to more than {self.limit:,} bytes")
        if time.monotonic() > self.deadline:
            raise TooLarge("reading it took longer than the time allowed")
        return data


@contextlib.contextmanager
def open_stream(path: Path, limit: int, seconds: float) -> Iterator[tarfile.TarFile]:
    """The tar archive at `path` (plain, gzip, bzip2 or xz) as a stream of members, read within `limit`
    decompressed bytes and `seconds`; TarError (TooLarge for a limit), OSError, EOFError or LZMAError when it is
    not a readable archive."""
    with path.open("rb") as fh:
        magic = fh.read(6)
    opener: Any = gzip.open if magic[:2] == b"\x1f\x8b" else bz2.open if magic[:3] == b"BZh" else \
        lzma.open if magic == b"\xfd7zXZ\x00" else open
    with opener(path, "rb") as raw:
        stream = _Bounded(raw, limit, time.monotonic() + seconds)
        with tarfile.open(fileobj=stream, mode="r|", tarinfo=_BoundedHeaders) as tar:  # type: ignore[call-overload]
            yield tar
