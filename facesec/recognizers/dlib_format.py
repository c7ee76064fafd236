"""Reader for dlib's binary serialisation format (the `.dat` files dlib's DNN tools write).

Only what dlib's DNN model files use: packed integers, mantissa/exponent floats, bools,
strings and float32 tensors. The structure of a network is walked by `dlib_resnet`.
"""

from __future__ import annotations

import numpy as np

from facesec.errors import WeightsError


class DlibReader:
    """Sequential reader over the bytes of a dlib-serialised object."""

    def __init__(self, data: bytes, source: str = "<bytes>") -> None:
        self.data = data
        self.pos = 0
        self.source = source

    def _fail(self, what: str) -> WeightsError:
        return WeightsError(f"{self.source}: cannot read {what} at byte {self.pos}: not a dlib model file "
                            "of the expected layout (re-install face_recognition_models?)")

    def _take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise self._fail(what)
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def read_int(self) -> int:
        """A packed integer: control byte (bit 7 = sign, low nibble = byte count), then LSB first."""
        control = self._take(1, "an integer")[0]
        size = control & 0x0F
        if size == 0 or size > 8 or control & 0x70:
            self.pos -= 1
            raise self._fail("an integer")
        value = int.from_bytes(self._take(size, "an integer"), "little")
        return -value if control & 0x80 else value

    def read_float(self) -> float:
        """A scalar float: packed int64 mantissa and packed int16 exponent (value = m * 2**e)."""
        mantissa = self.read_int()
        exponent = self.read_int()
        return float(np.ldexp(float(mantissa), exponent))

    def read_bool(self) -> bool:
        ch = self._take(1, "a bool")
        if ch not in (b"0", b"1"):
            self.pos -= 1
            raise self._fail("a bool")
        return ch == b"1"

    def read_string(self) -> str:
        size = self.read_int()
        return self._take(size, "a string").decode("latin-1")

    def expect_string(self, *allowed: str) -> str:
        """Read a version tag and check it is one of `allowed`."""
        start = self.pos
        try:
            tag = self.read_string()
        except WeightsError:
            tag = None
        if tag not in allowed:
            self.pos = start
            raise self._fail(f"one of the tags {allowed} (found {tag!r})")
        return tag

    def expect_int(self, *allowed: int) -> int:
        start = self.pos
        value = self.read_int()
        if value not in allowed:
            self.pos = start
            raise self._fail(f"version {allowed} (found {value})")
        return value

    def read_tensor(self) -> np.ndarray:
        """A resizable_tensor: version 2, shape (n, k, nr, nc), then float32 little-endian data."""
        self.expect_int(2)
        shape = tuple(self.read_int() for _ in range(4))
        count = int(np.prod(shape))
        raw = self._take(4 * count, "tensor data")
        return np.frombuffer(raw, dtype="<f4").reshape(shape).astype(np.float32)

    def alias_tensor(self) -> tuple[int, int, int, int]:
        """An alias_tensor: version 1 and a shape; it views part of a layer's params tensor."""
        self.expect_int(1)
        n, k, nr, nc = (self.read_int() for _ in range(4))
        return (n, k, nr, nc)

    @property
    def at_end(self) -> bool:
        return self.pos == len(self.data)

