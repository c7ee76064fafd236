"""dlib's serialisation primitives and the strict reading of the ResNet model file."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from facesec.dlib_models import models_dir
from facesec.errors import WeightsError
from facesec.recognizers.dlib_format import DlibReader
from facesec.recognizers.dlib_resnet import MODEL_FILE, read_dlib_resnet


def test_packed_ints() -> None:
    r = DlibReader(bytes([0x01, 0x00, 0x81, 0x05, 0x02, 0x2C, 0x01, 0x82, 0x00, 0x01]))
    assert [r.read_int(), r.read_int(), r.read_int(), r.read_int()] == [0, -5, 300, -256]
    assert r.at_end


def test_float_bool_string_tensor() -> None:
    # 0.75 = 3 * 2**-2 ; "ab" ; bool '1' ; tensor version 2 of shape 1x1x1x2
    data = bytes([0x01, 0x03, 0x81, 0x02, 0x01, 0x02]) + b"ab" + b"1"
    data += bytes([0x01, 0x02, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x02]) + struct.pack("<2f", 1.5, -2.0)
    r = DlibReader(data)
    assert r.read_float() == 0.75
    assert r.read_string() == "ab"
    assert r.read_bool() is True
    assert r.read_tensor().ravel().tolist() == [1.5, -2.0]
    assert r.at_end


def test_bad_bytes_raise_weights_error() -> None:
    with pytest.raises(WeightsError, match="cannot read an integer"):
        DlibReader(bytes([0x00])).read_int()
    with pytest.raises(WeightsError, match="a bool"):
        DlibReader(b"x").read_bool()


def test_model_file_is_consumed_exactly() -> None:
    path = models_dir() / MODEL_FILE
    params = read_dlib_resnet(path)
    assert path.stat().st_size == 22_466_066
    assert params.n_params == 5_614_592
    assert len(params.convs) == 29 and len(params.affines) == 29
    assert params.fc is not None and params.fc.shape == (256, 128)
    assert params.input_mean == pytest.approx((122.782, 117.001, 104.298), abs=1e-3)
    assert params.distance_threshold == pytest.approx(0.6)


def test_trailing_or_missing_bytes_are_rejected(tmp_path: Path) -> None:
    data = (models_dir() / MODEL_FILE).read_bytes()
    longer, shorter = tmp_path / "longer.dat", tmp_path / "shorter.dat"
    longer.write_bytes(data + b"\x00")
    shorter.write_bytes(data[:-100])
    with pytest.raises(WeightsError, match="unread bytes"):
        read_dlib_resnet(longer)
    with pytest.raises(WeightsError):
        read_dlib_resnet(shorter)
