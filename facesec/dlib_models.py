"""Where the model files of the `face_recognition_models` package are.

Importing that package fails on current setuptools (it needs `pkg_resources`), so find it by spec.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from facesec.errors import WeightsError


def models_dir() -> Path:
    """Folder holding dlib's detector, landmark predictors and ResNet weights."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError("the package face_recognition_models is not installed: "
                           "pip install face_recognition_models")
    return Path(spec.submodule_search_locations[0]) / "models"
