"""What a result was measured with: versions, git SHA, hashes of spec, weights and data, device, times."""

from __future__ import annotations

import hashlib
import json
import subprocess
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import torch

from facesec.recognizers.base import Recognizer
from facesec.threat_model import ThreatModel

PACKAGES = ("facesec", "torch", "numpy", "dlib-bin", "torchattacks", "adversarial-robustness-toolbox", "onnx2torch")


def package_versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def git_sha() -> str | None:
    """HEAD of the git repository around the working directory, if there is one."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def spec_sha256(tm: ThreatModel) -> str:
    return hashlib.sha256(json.dumps(tm.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


def measured_on(model: Recognizer, manifest_sha256: str) -> dict[str, Any]:
    """What a family adds to the envelope: the target's weights and the manifest of the faces it used."""
    return {"weights_sha256": model.info.weights_sha256, "data_manifest_sha256": manifest_sha256}


def envelope(tm: ThreatModel, device: torch.device, started: datetime) -> dict[str, Any]:
    """What any run was measured with, whatever its family: versions, git SHA, spec hash, seed, device, times."""
    return {
        "versions": package_versions(),
        "git_sha": git_sha(),
        "spec_sha256": spec_sha256(tm),
        "seed": tm.data.seed,
        "device": str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
    }
