"""facesec: robustness and security evaluation for face recognition."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("facesec")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
