"""One small threat model per family (tests/fixtures/small) run as a suite, its records stripped of what a
clock, the cache, a path or the code's own digest decides: what a change that moves code must leave as it was."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

SMALL = Path(__file__).parent / "fixtures" / "small"
FIXTURE = Path(__file__).parent / "fixtures" / "small_results.json"
_CLOCK = ("time_s", "seconds")
_CACHE = {"resumed_from_epoch"}
"""Entries a warm cache decides (a fine-tune resumed from its checkpoint gives the same weights)."""
_DROPPED = {"resume_key", "source"}
_PROVENANCE_KEPT = {"spec_sha256", "weights_sha256", "data_manifest_sha256", "seed", "device", "trusted_code",
                    "processes"}


def records(out: Path) -> dict[str, Any]:
    """Each small run's record by name, without clock fields, paths of its source, resume keys or versions."""
    from facesec.api import run

    results, _ = run(sorted(SMALL.glob("*.yaml")), out_root=out, suite="small", progress=False)
    results = results.to_json()
    return {r["name"]: _stable(_strip(r)) for r in results["runs"]}


def _strip(record: dict[str, Any]) -> dict[str, Any]:
    kept = {k: v for k, v in record.items() if k not in _DROPPED}
    kept["provenance"] = {k: v for k, v in record["provenance"].items() if k in _PROVENANCE_KEPT}
    return kept


def _stable(value: Any) -> Any:
    """The value with every entry a clock or the cache decides removed, at any depth."""
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if not k.endswith(_CLOCK) and k not in _CACHE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


if __name__ == "__main__":  # python -m tests.small_examples OUT.json: record this code's numbers
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        Path(sys.argv[1]).write_text(json.dumps(records(Path(tmp)), indent=1, sort_keys=True) + "\n")
