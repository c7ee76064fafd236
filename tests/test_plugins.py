"""What other packages add through entry points, with no edit to facesec: an attack family with its own
expandable field, metric, gate and report partial, and an attack; and `facesec validate` that imports no torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from facesec.api import run

FAMILY = '''
from pathlib import Path
from typing import Any, ClassVar

from facesec.families import Family, MetricInfo, RunContext, RunOutput, Supports
from facesec.fields import PerturbationSpec, Whole
from facesec.record import Dimensions, Measured, RunRecord, Validity


class Spec(PerturbationSpec):
    kind: str = "echo"
    level: Whole = 1


class Echo(Family):
    """Records the level it was given."""

    name: ClassVar[str] = "echo"
    expandable: ClassVar[tuple[str, ...]] = ("level",)
    Spec = Spec
    supports: ClassVar[Supports] = Supports(goals=("dodging",))
    metrics: ClassVar[dict[str, MetricInfo]] = {"level_seen": MetricInfo("the level it was given", better="lower")}
    headline: ClassVar[str] = "level_seen"
    report_partial: ClassVar[str | None] = "echo.html.j2"
    template_dir: ClassVar[Path | None] = Path(__file__).parent

    def run(self, tm: Any, ctx: RunContext) -> RunOutput:
        level = tm.perturbation.level
        return RunOutput(Measured(Dimensions(goal="dodging"), {"level_seen": level}, Validity(), {"i": [0]}))

    def report_view(self, run: RunRecord, results_dir: Path, out_dir: Path, redact: bool) -> dict[str, Any]:
        return {"said": f"echo heard level {run.metrics['level_seen']}"}
'''

ATTACK = '''
from facesec.attacks import create


def make(**kw):
    """Another package's attack: here, the native PGD under a name of its own."""
    return create("native", "pgd", **kw)
'''


def _install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str, source: str, group: str,
             entry: str) -> None:
    """A package on sys.path whose distribution declares one entry point."""
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
    dist = tmp_path / f"{module}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[{group}]\n{entry}\n")
    monkeypatch.syspath_prepend(str(tmp_path))


def test_a_family_from_an_entry_point_expands_gates_and_reports(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from facesec import families

    monkeypatch.setattr(families, "_INSTANCES", {})  # no family of that name from another test
    _install(tmp_path, monkeypatch, "echo_family", FAMILY, "facesec.families", "echo = echo_family:Echo")
    (tmp_path / "echo.html.j2").write_text("<h3>Echo</h3><p class=echo>{{ run.view.said }}</p>\n")
    spec = tmp_path / "echo.yaml"
    spec.write_text("name: e\nperturbation: {kind: echo, level: [1, 3]}\n"
                    "setting: {kind: open-set, calibration: in-sample}\n"
                    "gates: [{metric: level_seen, op: '<=', value: 2}]\n")
    results, out = run([spec], out_root=tmp_path / "out", progress=False)
    results = results.to_json()
    by_name = {r["name"]: r for r in results["runs"]}
    assert sorted(by_name) == ["e[level=1]", "e[level=3]"]
    assert [g["passed"] for g in by_name["e[level=1]"]["gates"]] == [True]
    assert [g["passed"] for g in by_name["e[level=3]"]["gates"]] == [False]
    assert by_name["e[level=3]"]["family"] == "echo" and by_name["e[level=3]"]["headline"]["metric"] == "level_seen"
    html = (out / "index.html").read_text()
    assert "echo heard level 1" in html and "echo heard level 3" in html


def test_an_attack_from_an_entry_point_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, celeba: Path) -> None:
    _install(tmp_path, monkeypatch, "my_attacks", ATTACK, "facesec.attacks", "mine/pgd = my_attacks:make")
    spec = tmp_path / "mine.yaml"
    spec.write_text("name: m\ndata: {identities: 4, images_per_identity: 2}\nattack: {library: mine, method: pgd, "
                    "steps: 2, sanity_samples: 2}\nsetting: {kind: open-set, fmr: 0.1, calibration: in-sample}\n")
    results, _ = run([spec], out_root=tmp_path / "out", progress=False)
    results = results.to_json()
    record = results["runs"][0]
    assert not record.get("error") and record["threat_model"]["attack"]["library"] == "mine"
    assert 0 <= record["metrics"]["attack_success_rate"] <= 1


DEFENCE = '''
import torch.nn.functional as F
from facesec.defences.base import InputDefence


class Blur(InputDefence):
    def __init__(self, generator, size=3):
        super().__init__(generator)
        self.size = int(size)

    def transform(self, x):
        return F.avg_pool2d(x, self.size, stride=1, padding=self.size // 2, count_include_pad=False)
'''


def test_a_defence_from_an_entry_point_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, celeba: Path) -> None:
    """A vendor's defence, installed as a package with an entry point: a run puts it in front of the recognizer,
    names it, and attacks it both ways, with no edit to facesec."""
    _install(tmp_path, monkeypatch, "my_defences", DEFENCE, "facesec.defences", "blur = my_defences:Blur")
    spec = tmp_path / "blur.yaml"
    spec.write_text("name: b\ndata: {identities: 4, images_per_identity: 2}\ndefence: {name: blur, size: 5}\n"
                    "attack: {steps: 2, sanity_samples: 2}\n"
                    "setting: {kind: open-set, fmr: 0.1, calibration: in-sample}\n")
    results, _ = run([spec], out_root=tmp_path / "out", progress=False)
    record = results.to_json()["runs"][0]
    assert not record.get("error")
    assert record["dimensions"]["defence"] == "blur(size=5)"
    assert record["dimensions"]["recognizer"] == "dlib-resnet behind blur(size=5)"
    assert 0 <= record["metrics"]["non_adaptive_success_rate"] <= 1


def test_validate_of_every_example_imports_no_torch(celeba: Path) -> None:
    """`facesec validate` is fast enough for editors and pre-commit hooks: it loads no model and no torch."""
    root = Path(__file__).parents[1]
    script = ("import glob, sys\nfrom facesec.cli import main\n"
              f"rc = main(['validate', *sorted(glob.glob({str(root / 'threat_models' / '*.yaml')!r}))])\n"
              "print(json.dumps({'rc': rc, 'torch': 'torch' in sys.modules}))\n")
    done = subprocess.run([sys.executable, "-c", "import json\n" + script], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "FACESEC_DATA": str(celeba.parent.resolve())})
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {"rc": 0, "torch": False}, done.stderr[-2000:]
