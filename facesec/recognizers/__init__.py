"""Pluggable face recognizers: `load(name_or_spec)` returns a `Recognizer` module."""

from facesec.recognizers import builtin as _builtin  # noqa: F401  (registers the built-ins)
from facesec.recognizers import tfjs as _tfjs  # noqa: F401  (registers tfjs and hse-faceres)
from facesec.recognizers.base import Recognizer, RecognizerInfo, available, code_trusted, load, register, trusting_code

__all__ = ["Recognizer", "RecognizerInfo", "available", "code_trusted", "load", "register", "trusting_code"]
