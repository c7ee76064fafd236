"""`facesec run` end to end on real faces: results.json, report, JUnit and exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from facesec.data.dataset import load_dataset

EVIL = "<script>alert(1)"


@pytest.fixture(scope="module")
def small_dataset(celeba: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three identities of three real faces; one identity folder is named like an XSS payload."""
    root = tmp_path_factory.mktemp("data") / "tiny"
    ds = load_dataset(celeba)
    for n, ident in enumerate(ds.identities[:3]):
        files = [p for p, i in ds.items if i == ident][:3]
        dest = root / (EVIL if n == 0 else ident)
        dest.mkdir(parents=True)
        for f in files:
            shutil.copy(f, dest / f.name)
    return root


def write_model(tmp_path: Path, data: Path, gate: str) -> Path:
    path = tmp_path / "tm.yaml"
    path.write_text(f"""\
name: tiny
target: dlib-resnet
data: {{dataset: "{data}", identities: 3, images_per_identity: 3}}
perturbation: {{kind: pixel, norm: linf, eps: 8/255}}
goal: impersonation
setting: {{kind: closed-set}}
attack: {{method: pgd, steps: 5, sanity_samples: 2}}
gates:
  - {gate}
""")
    return path


def facesec(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "facesec.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_failing_gate_exits_1_and_is_in_junit(small_dataset: Path, tmp_path: Path) -> None:
    tm = write_model(tmp_path, small_dataset, "{metric: attack_success_rate, op: '<=', value: 0.1}")
    out = facesec("run", str(tm), "--out", str(tmp_path / "reports"), "--junit", str(tmp_path / "junit.xml"),
                  cwd=tmp_path)
    assert out.returncode == 1, out.stderr
    suite = ET.parse(tmp_path / "junit.xml").getroot()
    assert suite.get("failures") == "1"
    failure = suite.find("testcase/failure")
    assert failure is not None and "attack_success_rate" in (failure.get("message") or "")

    results = json.loads((tmp_path / "reports" / "tm" / "results.json").read_text())
    assert results["schema_version"] == 1
    run = results["runs"][0]
    for key in ("attack_success_rate", "attack_success_ci95", "n_attempts", "clean_success_rate"):
        assert key in run["metrics"]
    assert run["gates"][0]["passed"] is False
    for key in ("versions", "spec_sha256", "weights_sha256", "data_manifest_sha256", "seed", "device"):
        assert run["provenance"][key] is not None
    assert (tmp_path / "reports" / "tm" / run["samples_csv"]).is_file()

    html = (tmp_path / "reports" / "tm" / "index.html").read_text()
    assert EVIL not in html and "&lt;script&gt;alert(1)" in html
    assert "http://" not in html and "https://" not in html.replace("https://www.w3.org", "")


def test_passing_gate_exits_0_and_report_rerenders(small_dataset: Path, tmp_path: Path) -> None:
    tm = write_model(tmp_path, small_dataset, "{metric: noise_success_rate, op: '<=', value: 1.0}")
    out = facesec("run", str(tm), "--out", str(tmp_path / "reports"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    results = tmp_path / "reports" / "tm" / "results.json"
    (results.parent / "index.html").unlink()
    out = facesec("report", str(results), "--redact", cwd=tmp_path)
    assert out.returncode == 0 and (results.parent / "index.html").is_file()
    baseline = facesec("run", str(tm), "--out", str(tmp_path / "again"), "--baseline", str(results), cwd=tmp_path)
    assert baseline.returncode == 0, baseline.stdout + baseline.stderr
    again = json.loads((tmp_path / "again" / "tm" / "results.json").read_text())
    assert again["baseline"]["rules"][0]["passed"] is True


@pytest.mark.slow
def test_issue_acceptance_on_50_identities(celeba: Path) -> None:
    """dlib-resnet, 50 identities, open-set FMR 1e-3, PGD L-inf 8/255, 20 steps: dodging >= 0.95,
    impersonation >= 0.90; the epsilon sweep is monotone."""
    import torch

    from facesec.engine import run_threat_model
    from facesec.loading import load_threat_models

    cpu = torch.device("cpu")
    for tm in load_threat_models("threat_models/whitebox-open-set.yaml", ["capability=individual"]):
        asr = run_threat_model(tm, cpu).record.to_json()["metrics"]["attack_success_rate"]
        assert asr >= (0.95 if tm.goal == "dodging" else 0.90), (tm.name, asr)
    sweep = [run_threat_model(tm, cpu).record.to_json()["metrics"]["attack_success_rate"]
             for tm in load_threat_models("threat_models/eps-sweep.yaml", ["data.identities=10"])]
    assert sweep == sorted(sweep) and sweep[-1] > sweep[0]
