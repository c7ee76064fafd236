"""HTML report: self-contained, escaped, matrix and eps plot, redaction, robust to missing fields."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from facesec.errors import ConfigError
from facesec.report import render_report

XSS = "<script>alert(1)</script>"


class _Links(HTMLParser):
    """Collects every src and href of a page, and the src of each <img> by its class."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.images: dict[str, list[str]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.urls += [v for k, v in attrs if k in ("src", "href") and v is not None]
        if tag == "img":
            for cls in (values.get("class") or "").split():
                self.images.setdefault(cls, []).append(values.get("src") or "")


def _links(html: str) -> _Links:
    parser = _Links()
    parser.feed(html)
    return parser


def _noise_png(path: Path, rng: np.random.Generator, base: np.ndarray | None = None) -> np.ndarray:
    """A tiny random-noise RGB image (never a real face); `base` plus small noise when given."""
    if base is None:
        pixels = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
    else:
        pixels = np.clip(base.astype(int) + rng.integers(-8, 9, base.shape), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, "RGB").save(path)
    return pixels


def _run(name: str, eps: float, asr: float, ci: list[float], goal: str = "dodging", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "source": "threat_models/quickstart.yaml",
        "threat_model": {"name": name, "perturbation": {"kind": "pixel", "norm": "linf", "eps": eps}},
        "dimensions": {"recognizer": "dlib-resnet", "perturbation": f"pixel linf {round(eps * 255)}/255",
                       "knowledge": "white-box", "goal": goal, "capability": "individual",
                       "setting": "open-set FMR 0.001"},
        "eps": eps,
        "metrics": {"attack_success_rate": asr, "attack_success_ci95": ci, "n_attempts": 38,
                    "noise_success_rate": 0.0, "similarity_shift_mean": -0.34},
        "validity": {"noise_baseline_asr": 0.0, "unbounded_asr": 1.0, "unbounded_n": 8, "flags": []},
        "gates": [{"metric": "attack_success_rate", "op": "<=", "value": 0.99, "actual": asr, "passed": True}],
        "provenance": {"versions": {"facesec": "0.1.0", "torch": "2.5.0"}, "git_sha": None, "seed": 0,
                       "device": "cpu", "started": "2026-11-28T08:00:00+00:00",
                       "finished": "2026-11-28T08:00:12+00:00"},
        **extra,
    }


def _write(folder: Path, runs: list[dict[str, Any]], **extra: Any) -> Path:
    doc = {"schema_version": 1, "suite": "quickstart", "created": "2026-11-28T08:00:00+00:00",
           "facesec_version": "0.1.0", "runs": runs, "baseline": None, **extra}
    path = folder / "results.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    """An eps sweep of three runs and an impersonation run with a failed gate, a flag and a gallery."""
    rng = np.random.default_rng(0)
    run_dir = tmp_path / "runs" / "imp"
    gallery = []
    for i in range(2):
        clean = _noise_png(run_dir / f"{i}_clean.png", rng)
        _noise_png(run_dir / f"{i}_adv.png", rng, base=clean)
        _noise_png(run_dir / f"{i}_delta.png", rng, base=np.full_like(clean, 128))
        gallery.append({"identity": XSS if i == 0 else "7201", "target": "9001",
                        "clean": f"runs/imp/{i}_clean.png", "adversarial": f"runs/imp/{i}_adv.png",
                        "perturbation": f"runs/imp/{i}_delta.png",
                        "similarity_before": -0.40, "similarity_after": -0.71, "success": i == 0})
    (run_dir / "samples.csv").write_text("index,identity\n0,x\n", encoding="utf-8")
    sweep = [_run(f"quickstart[eps={k}/255]", k / 255, asr, ci)
             for k, asr, ci in [(2, 0.31, [0.18, 0.47]), (4, 0.62, [0.46, 0.76]), (8, 0.97, [0.90, 0.99])]]
    imp = _run("quickstart[goal=impersonation]", 8 / 255, 0.83, [0.71, 0.91], goal="impersonation",
               gallery=gallery, samples_csv="runs/imp/samples.csv")
    imp["gates"] = [{"metric": "attack_success_rate", "op": "<=", "value": 0.5, "actual": 0.83, "passed": False}]
    imp["validity"]["flags"] = ["attack or gradients broken: unbounded run reached 0.40 < 0.95"]
    return _write(tmp_path, sweep + [imp])


def test_self_contained_and_escaped(suite: Path) -> None:
    out = render_report(suite)
    assert out == suite.parent / "index.html"
    html = out.read_text(encoding="utf-8")
    links = _links(html)
    assert not [u for u in links.urls if re.match(r"\s*(https?:)?//", u, re.IGNORECASE)]
    assert not re.search(r"url\(|@import", html, re.IGNORECASE)
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    images = [u for u in links.urls if u.startswith("data:")]
    assert images and all(u.startswith("data:image/png;base64,") for u in images)
    assert all(src.startswith("data:image/png;base64,") for srcs in links.images.values() for src in srcs)
    assert len(links.images["clean"]) == len(links.images["adversarial"]) == len(links.images["perturbation"]) == 2
    assert "runs/imp/samples.csv" in links.urls


def test_summary_matrix_and_sweep(suite: Path) -> None:
    html = render_report(suite).read_text(encoding="utf-8")
    assert re.search(r'class="verdict v-fail">FAIL<', html)
    assert "attack or gradients broken" in html
    matrix = html[html.index('<table class="matrix">'):]
    matrix = matrix[:matrix.index("</table>")]
    for cell in ("0.31 [0.18–0.47]", "0.62 [0.46–0.76]", "0.97 [0.90–0.99]", "0.83 [0.71–0.91]"):
        assert cell in matrix
    assert matrix.count("<tr>") == 1 + 3  # header + one row per eps (perturbation differs)
    assert "impersonation · individual" in matrix and "dodging · individual" in matrix
    assert "—" in matrix  # impersonation was run at 8/255 only
    assert html.count('class="plot eps-asr-plot"') == 1


def test_no_sweep_no_plot_and_pass(tmp_path: Path) -> None:
    path = _write(tmp_path, [_run("single", 8 / 255, 0.2, [0.1, 0.3])])
    html = render_report(path).read_text(encoding="utf-8")
    assert "eps-asr-plot" not in html
    assert 'class="verdict v-pass">PASS<' in html


def test_redaction_changes_faces_not_perturbations(suite: Path, tmp_path: Path) -> None:
    plain = _links(render_report(suite, tmp_path / "plain.html").read_text(encoding="utf-8")).images
    redacted_html = render_report(suite, tmp_path / "redacted.html", redact=True).read_text(encoding="utf-8")
    redacted = _links(redacted_html).images
    assert "faces redacted" in redacted_html.lower()
    for kind in ("clean", "adversarial"):
        assert all(a != b for a, b in zip(plain[kind], redacted[kind], strict=True))
    assert plain["perturbation"] == redacted["perturbation"]


def test_missing_optional_fields(tmp_path: Path) -> None:
    path = _write(tmp_path, [{"name": "bare"}, {"name": "no-ci", "metrics": {"attack_success_rate": 0.5},
                                               "gallery": [{"identity": "x", "clean": "nope.png"}]}])
    html = render_report(path).read_text(encoding="utf-8")
    assert "NO GATES" in html and "bare" in html and ">0.50<" in html.replace("\n", "")
    assert "No validity checks recorded for 2 run(s)" in html
    empty = render_report(_write(tmp_path, [])).read_text(encoding="utf-8")
    assert "no runs" in empty


def test_untrusted_paths_are_not_followed(tmp_path: Path) -> None:
    folder = tmp_path / "suite"
    folder.mkdir()
    _noise_png(tmp_path / "outside.png", np.random.default_rng(1))
    run = _run("r", 8 / 255, 0.5, [0.4, 0.6], samples_csv="javascript:alert(1)",
               gallery=[{"identity": "x", "clean": "../outside.png", "adversarial": str(tmp_path / "outside.png")}])
    links = _links(render_report(_write(folder, [run])).read_text(encoding="utf-8"))
    assert not links.images.get("clean") and not links.images.get("adversarial")
    assert not [u for u in links.urls if "javascript" in u]


def test_baseline_rules(tmp_path: Path) -> None:
    baseline = {"path": "old/results.json", "rules": [
        {"run": "r", "metric": "attack_success_rate", "old": 0.3, "new": 0.5, "max_increase": 0.05, "passed": False},
        {"run": "r", "metric": "ssim_mean", "old": 0.9, "new": 0.9, "max_increase": 0.0, "passed": True}]}
    html = render_report(_write(tmp_path, [_run("r", 8 / 255, 0.5, [0.4, 0.6])], baseline=baseline)).read_text()
    section = html[html.index('id="baseline"'):html.index('id="runs"')]
    assert "old/results.json" in section and section.count("badge fail") == 1 and section.count("badge pass") == 1
    assert 'class="verdict v-fail">FAIL<' in html


def test_bad_results_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        render_report(tmp_path / "results.json")
    (tmp_path / "results.json").write_text('{"schema_version": 99, "runs": []}')
    with pytest.raises(ConfigError, match="schema_version"):
        render_report(tmp_path / "results.json")


def test_gate_without_verdict_is_not_a_pass(tmp_path: Path) -> None:
    run = _run("r", 8 / 255, 0.5, [0.4, 0.6])
    run["gates"] = [{"metric": "attack_success_rate", "op": "<=", "value": 0.9}]
    html = render_report(_write(tmp_path, [run])).read_text(encoding="utf-8")
    assert 'class="verdict v-fail">FAIL<' in html and 'class="badge none">?<' in html
