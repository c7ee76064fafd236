"""HTML report: self-contained, escaped, matrix and eps plot, redaction, robust to missing fields, accessory runs,
transfer and query runs."""

from __future__ import annotations

import base64
import io
import json
import re
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from facesec.errors import ConfigError
from facesec.record import RunRecord
from facesec.redaction import REDACTED_SIDE
from facesec.report import figures
from facesec.report.render import render_report

XSS = "<script>alert(1)</script>"

BROKEN = "gradient masking suspected (or a broken attack): the unbounded run reached 0.40 < 0.95"


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
    imp["metrics"]["threshold"] = -0.5921
    imp["validity"]["flags"] = [BROKEN]
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
    checks = html[html.index('id="release-checks"'):]
    assert checks.startswith('id="release-checks"><b>Release checks (CI gates):</b> 3 of 4 held; they test only: ')
    assert "The suite has not finished" in checks[:checks.index("</p>")]  # no exit code recorded in this file
    assert '<div class="count">not robust</div>' in html  # the verdict: robustness first, from the worst run
    assert "gradient masking suspected" in html
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
    assert "1 of 1 held" in html and '<div class="count">weak</div>' in html  # 0.2 [0.1, 0.3]: rated at 0.3


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
    assert "none set" in html and "bare" in html and ">0.50<" in html.replace("\n", "")
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
    assert "failed gates</b> 1" in html


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
    assert "0 of 1 held" in html and 'class="badge none">?<' in html


def _redacted_size(shape: tuple[int, ...]) -> tuple[int, ...]:
    """A redacted face's size: a quarter of each side, unless it is no larger than a redacted face already."""
    return tuple(shape) if max(shape) <= REDACTED_SIDE else tuple(max(1, round(n / 4)) for n in shape)


def _without_ideas(html: str) -> str:
    """The page without its glossary of ideas, which names every kind of attack whatever the suite holds."""
    start = html.index('<table class="grid" id="ideas">')
    return html[:start] + html[html.index("</table>", start):]


def _decode(uri: str) -> np.ndarray:
    """The pixels of a `data:image/png;base64,...` URI, in the PNG's own mode."""
    with Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as im:
        return np.asarray(im.copy())


def _part(html: str, anchor: str) -> str:
    """The HTML of one top-level section: from its heading to the next one."""
    start = html.index(f'<h2 id="{anchor}"')
    end = html.find("<h2", start + 1)
    return html[start:end if end >= 0 else html.index("<footer>")]


def _section(html: str, anchor: str) -> str:
    """The HTML of one run's <details> section."""
    start = html.index(f'<details class="run" id="{anchor}"')
    end = html.find('<details class="run"', start + 1)
    return html[start:end if end >= 0 else html.index('<h2 id="skipped"')].rstrip()


def _matrix_html(html: str) -> str:
    matrix = html[html.index('<table class="matrix">'):]
    return matrix[:matrix.index("</table>")]


def _accessory_files(folder: Path, stem: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A noise face, the same face wearing a band-shaped accessory, the accessory alone (RGBA), its mask and print."""
    folder.mkdir(parents=True, exist_ok=True)
    face = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
    mask = np.zeros((24, 24), dtype=bool)
    mask[6:11, 3:21] = True
    pattern = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
    worn = np.where(mask[..., None], pattern, face)
    accessory = np.dstack([np.where(mask[..., None], pattern, 0), np.where(mask, 255, 0)]).astype(np.uint8)
    Image.fromarray(face, "RGB").save(folder / f"{stem}_clean.png")
    Image.fromarray(worn, "RGB").save(folder / f"{stem}_worn.png")
    Image.fromarray(accessory, "RGBA").save(folder / f"{stem}_accessory.png")
    Image.fromarray(accessory, "RGBA").resize((96, 96), Image.Resampling.NEAREST).save(folder / f"{stem}_print.png")
    Image.fromarray(mask.astype(np.uint8) * 255, "L").save(folder / f"{stem}_mask.png")
    return {"clean": face, "adversarial": worn, "accessory": accessory}


def _accessory_run(name: str, capability: str, asr: float, plain: float, eot: float | None,
                   **extra: Any) -> dict[str, Any]:
    run = _run(name, 0.0, asr, [asr - 0.1, asr + 0.05], **extra)
    run["threat_model"]["perturbation"] = {"kind": "accessory", "shape": "eyeglasses"}
    run["dimensions"].update(perturbation="accessory eyeglasses", capability=capability)
    run["eps"] = None
    run["metrics"].update(plain_accessory_success_rate=plain, eot_success_rate=eot,
                          eot_draws=None if eot is None else 8, linf_mean=0.9, l2_mean=7.5, ssim_mean=0.7)
    return run


@pytest.fixture
def accessory_suite(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """A pixel run (run-1), an individual eyeglasses run with gallery and print files (run-2), a universal one
    without EOT whose mask file is missing (run-3); and the pixels of run-2's first gallery row."""
    rng = np.random.default_rng(3)
    pix_dir = tmp_path / "runs" / "pix"
    clean = _noise_png(pix_dir / "0_clean.png", rng)
    _noise_png(pix_dir / "0_adv.png", rng, base=clean)
    pixel = _run("pixel", 8 / 255, 0.6, [0.5, 0.7], samples_csv="runs/pix/samples.csv",
                 gallery=[{"identity": "7201", "target": None, "clean": "runs/pix/0_clean.png",
                           "adversarial": "runs/pix/0_adv.png", "similarity_before": 0.7,
                           "similarity_after": 0.1, "success": True}])
    acc_dir = tmp_path / "runs" / "acc"
    pixels = [_accessory_files(acc_dir, str(i), rng) for i in range(2)]
    gallery = [{"identity": f"id{i}", "target": None, "clean": f"runs/acc/{i}_clean.png",
                "adversarial": f"runs/acc/{i}_worn.png", "accessory": f"runs/acc/{i}_accessory.png",
                "similarity_before": 0.7, "similarity_after": 0.2, "success": True, "clean_success": False}
               for i in range(2)]
    prints = [{"label": XSS if i == 0 else f"sample {i}: id{i}", "png": f"runs/acc/{i}_accessory.png",
               "print_png": f"runs/acc/{i}_print.png", "mask_png": f"runs/acc/{i}_mask.png"} for i in range(2)]
    individual = _accessory_run("glasses", "individual", 0.83, 0.3, 0.97, gallery=gallery, print_files=prints)
    universal = _accessory_run("glasses-universal", "universal", 0.5, 0.25, None, print_files=[
        {"label": "universal", "png": "runs/acc/0_accessory.png", "print_png": "runs/acc/0_print.png",
         "mask_png": "runs/acc/universal_mask.png"}])
    return _write(tmp_path, [pixel, individual, universal]), pixels[0]


def test_accessory_gallery_columns(accessory_suite: tuple[Path, dict[str, np.ndarray]]) -> None:
    path, pixels = accessory_suite
    html = render_report(path).read_text(encoding="utf-8")
    links = _links(html)
    assert all(u.startswith("data:image/png;base64,") for srcs in links.images.values() for u in srcs)
    assert not [u for u in links.urls if re.match(r"\s*(https?:)?//", u, re.IGNORECASE)]
    section = _section(html, "run-2")
    assert "<th>clean</th><th>with accessory</th><th>accessory alone</th>" in section
    assert "perturbation (amplified)" not in section and "factor" not in section
    images = _links(section).images
    assert len(images["clean"]) == len(images["adversarial"]) == len(images["accessory"]) == 2
    assert "perturbation" not in images
    accessory = _decode(images["accessory"][0])
    assert accessory.shape == (24, 24, 4) and (accessory[..., 3] == 0).any()  # transparency kept
    assert np.array_equal(accessory, pixels["accessory"])
    assert np.array_equal(_decode(images["adversarial"][0]), pixels["adversarial"])
    pixel_section = _section(html, "run-1")
    assert "perturbation (amplified)" in pixel_section and "accessory" not in pixel_section


def test_redaction_blurs_faces_not_accessories(accessory_suite: tuple[Path, dict[str, np.ndarray]],
                                               tmp_path: Path) -> None:
    path, pixels = accessory_suite
    plain = _links(_section(render_report(path, tmp_path / "plain.html").read_text(), "run-2")).images
    redacted_html = render_report(path, tmp_path / "redacted.html", redact=True).read_text(encoding="utf-8")
    redacted = _links(_section(redacted_html, "run-2")).images
    assert "accessories alone are shown as they are" in redacted_html
    for kind in ("clean", "adversarial"):
        assert np.array_equal(_decode(plain[kind][0]), pixels[kind])
        small = _decode(redacted[kind][0])
        assert small.shape[:2] == _redacted_size(pixels[kind].shape[:2])
        size = pixels[kind].shape[1::-1]
        blurred = np.asarray(Image.fromarray(small).resize(size, Image.Resampling.BILINEAR)).astype(int)
        assert np.abs(blurred - pixels[kind]).mean() > 20  # noise faces lose their detail
    assert plain["accessory"] == redacted["accessory"]
    assert np.array_equal(_decode(redacted["accessory"][0]), pixels["accessory"])


def test_print_file_links_resolve(accessory_suite: tuple[Path, dict[str, np.ndarray]], tmp_path: Path) -> None:
    path, _ = accessory_suite
    out = render_report(path, tmp_path / "site" / "report.html")
    html = out.read_text(encoding="utf-8")
    section = _section(html, "run-2")
    assert "<h3>Print files</h3>" in section and "&lt;script&gt;alert(1)&lt;/script&gt;" in section
    hrefs = [u for u in _links(section).urls if not u.startswith(("data:", "#"))]
    assert all(h.startswith("../runs/acc/") for h in hrefs)
    resolved = {(out.parent / h).resolve() for h in hrefs}
    expected = {(tmp_path / "runs" / "acc" / f"{i}_{k}.png").resolve()
                for i in range(2) for k in ("accessory", "print", "mask")}
    assert resolved == expected and all(p.is_file() for p in resolved)
    assert "file not found" not in section
    universal = _section(html, "run-3")
    assert '<a href="../runs/acc/universal_mask.png" title="runs/acc/universal_mask.png">universal_mask.png</a> ' \
           '<span class="muted">(file not found)</span>' in universal
    assert "Print files" not in _section(html, "run-1")


def test_matrix_shows_plain_and_eot(accessory_suite: tuple[Path, dict[str, np.ndarray]]) -> None:
    path, _ = accessory_suite
    html = render_report(path).read_text(encoding="utf-8")
    matrix = _matrix_html(html)
    rows = matrix.split("<tr>")[1:]
    assert len(rows) == 1 + 2  # header, pixel row, accessory row
    assert "dodging · individual" in rows[0] and "dodging · universal" in rows[0]
    accessory_row = next(row for row in rows if "accessory eyeglasses" in row)
    assert "0.83 [0.73–0.88]" in accessory_row and '<span class="detail">plain 0.30 · EOT 0.97</span>' in accessory_row
    assert '<span class="detail">plain 0.25 · EOT —</span>' in accessory_row  # EOT disabled
    pixel_row = next(row for row in rows if "pixel linf" in row)
    assert "detail" not in pixel_row and "EOT" not in pixel_row
    assert 'id="accessory-legend"' in html and "plain, non-optimised accessory" in html


def test_accessory_metric_labels(accessory_suite: tuple[Path, dict[str, np.ndarray]]) -> None:
    path, _ = accessory_suite
    html = render_report(path).read_text(encoding="utf-8")
    section = _section(html, "run-2")
    for label, key, value in [("plain accessory (baseline) success", "plain_accessory_success_rate", "0.3"),
                              ("success under fresh transforms (EOT)", "eot_success_rate", "0.97"),
                              ("fresh transforms per attempt (EOT draws)", "eot_draws", "8")]:
        assert f'<th>{label}<br><code class="muted key">{key}</code></th><td>{value}</td>' in section
    universal = _section(html, "run-3")
    assert '<code class="muted key">eot_success_rate</code></th><td>—</td>' in universal
    assert "<th>eps</th>" not in section
    assert "<th>noise_success_rate</th>" in _section(html, "run-1")  # pixel runs keep their plain keys


def test_null_eps_runs_stay_out_of_sweeps(accessory_suite: tuple[Path, dict[str, np.ndarray]]) -> None:
    path, _ = accessory_suite
    assert "eps-asr-plot" not in render_report(path).read_text(encoding="utf-8")
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc["runs"].append(_run("pixel-4", 4 / 255, 0.4, [0.3, 0.5]))
    html = render_report(_write(path.parent, doc["runs"])).read_text(encoding="utf-8")
    assert html.count('class="plot eps-asr-plot"') == 1
    assert 'class="plot eps-asr-plot" src="data:image/png;base64,' in html and 'alt="pixel linf"' in html


def test_pixel_runs_unchanged_beside_accessory_runs(accessory_suite: tuple[Path, dict[str, np.ndarray]],
                                                    tmp_path: Path) -> None:
    path, _ = accessory_suite
    doc = json.loads(path.read_text(encoding="utf-8"))
    mixed = render_report(path, tmp_path / "mixed.html", redact=True).read_text(encoding="utf-8")
    alone_path = path.parent / "pixel-only.json"
    alone_path.write_text(json.dumps({**doc, "runs": doc["runs"][:1]}), encoding="utf-8")
    alone = render_report(alone_path, tmp_path / "alone.html", redact=True).read_text(encoding="utf-8")
    assert _section(mixed, "run-1") == _section(alone, "run-1")
    note = "perturbations and accessories alone are shown as they are."  # the redaction note, the same in any suite
    assert note in alone
    body = _without_ideas(alone[alone.index("<body>"):].replace(note, ""))
    for accessory_only in ("accessory-legend", "Print files", 'class="detail"', "accessor", "EOT"):
        assert accessory_only not in body


QUERY_ASR = {"1": 0.0, "10": 0.05, "30": 0.1, "100": 0.2, "300": 0.3, "1000": 0.4}


def _transfer_run(name: str, asr: float, on_surrogate: float, surrogates: list[str], **extra: Any) -> dict[str, Any]:
    run = _run(name, 8 / 255, asr, [asr - 0.1, asr + 0.1], **extra)
    run["threat_model"]["knowledge"] = {"kind": "transfer", "surrogates": surrogates}
    run["dimensions"]["knowledge"] = "transfer from " + " + ".join(surrogates)
    run["metrics"]["surrogate_success_rate"] = on_surrogate
    return run


def _query_run(name: str, reached: dict[str, float], budget: int, **extra: Any) -> dict[str, Any]:
    asr = reached[str(budget)]
    run = _run(name, 8 / 255, asr, [max(asr - 0.1, 0.0), asr + 0.1], **extra)
    run["threat_model"]["knowledge"] = {"kind": "query", "output": "scores", "budget": budget}
    run["dimensions"].update(knowledge=f"query (scores, {budget} queries)", attack=f"native/square {budget} steps")
    run["metrics"].update(asr_at_queries=reached, queries_per_sample=412.5)
    return run


@pytest.fixture
def knowledge_suite(tmp_path: Path) -> Path:
    """A white-box run (run-1), a transfer run (run-2) and a query run (run-3), same target and budget."""
    return _write(tmp_path, [_run("white-box", 8 / 255, 0.97, [0.9, 0.99]),
                             _transfer_run("transfer", 0.35, 0.97, ["surrogate:dlib-arch"]),
                             _query_run("query", QUERY_ASR, 1000)])


def _between(html: str, start: str, end: str) -> str:
    return html[html.index(start):html.index(end)]


def _legend(html: str, kind: str) -> str:
    """The text of the `kind` legend under the matrix, unescaped."""
    start = html.index(f'<p class="legend-note" id="{kind}-legend">')
    return unescape(html[html.index(">", start) + 1:html.index("</p>", start)])


def test_matrix_knowledge_rows_and_details(knowledge_suite: Path) -> None:
    html = render_report(knowledge_suite).read_text(encoding="utf-8")
    rows = _matrix_html(html).split("<tr>")[1:]
    assert len(rows) == 1 + 3  # header, one row per knowledge
    knowledge = ("white-box", "transfer from surrogate:dlib-arch", "query (scores, 1000 queries)")
    white, transfer, query = (next(r for r in rows if f"<th>{k}</th>" in r) for k in knowledge)
    assert "0.97 [0.90–0.99]" in white and "detail" not in white
    assert "0.35 [0.25–0.45]" in transfer and '<span class="detail">on surrogate 0.97</span>' in transfer
    assert "0.40 [0.30–0.50]" in query and '<span class="detail">after 100 q 0.20 · 1000 q 0.40</span>' in query
    transfer_legend, query_legend = _legend(html, "transfer"), _legend(html, "query")
    assert "'on surrogate' = success" in transfer_legend and "did not transfer" in transfer_legend
    assert "'after n q' = the ASR reached" in query_legend
    assert "<b>" not in transfer_legend + query_legend  # plain text, escaped like any other
    assert 'id="accessory-legend"' not in html


def test_query_detail_without_early_mark_and_ensemble(tmp_path: Path) -> None:
    runs = [_query_run("small-budget", {"1": 0.0, "10": 0.1, "50": 0.3}, 50),
            _query_run("no-early-mark", {"300": 0.25, "1000": 0.5}, 1000, goal="impersonation"),
            _transfer_run("ensemble", 0.2, 0.9, ["dlib-resnet", "surrogate:dlib-arch"])]
    html = render_report(_write(tmp_path, runs)).read_text(encoding="utf-8")
    matrix = _matrix_html(html)
    assert '<span class="detail">after 50 q 0.30</span>' in matrix  # the final count is the one <= 100
    assert '<span class="detail">after 1000 q 0.50</span>' in matrix
    assert "<th>transfer from dlib-resnet + surrogate:dlib-arch</th>" in matrix
    assert '<span class="detail">on surrogate 0.90</span>' in matrix


def test_accessory_transfer_cell_joins_details(tmp_path: Path) -> None:
    run = _accessory_run("glasses-transfer", "individual", 0.4, 0.3, 0.35)
    run["threat_model"]["knowledge"] = {"kind": "transfer", "surrogates": ["surrogate:dlib-arch"]}
    run["dimensions"]["knowledge"] = "transfer from surrogate:dlib-arch"
    run["metrics"]["surrogate_success_rate"] = 0.99
    html = render_report(_write(tmp_path, [run])).read_text(encoding="utf-8")
    assert '<span class="detail">plain 0.30 · EOT 0.35 · on surrogate 0.99</span>' in _matrix_html(html)
    assert 'id="accessory-legend"' in html and 'id="transfer-legend"' in html and 'id="query-legend"' not in html


def test_queries_plot_exactly_with_query_runs(knowledge_suite: Path) -> None:
    html = render_report(knowledge_suite).read_text(encoding="utf-8")
    section = _between(html, '<h2 id="attack-success-against-queries">', '<h2 id="runs">')
    images = _links(section).images["queries-asr-plot"]
    assert len(images) == 1 and images[0].startswith("data:image/png;base64,")
    assert _decode(images[0]).shape[0] > 100  # a drawn figure, not a stub
    assert "eps-asr-plot" not in html  # no run differs from another only in eps
    doc = json.loads(knowledge_suite.read_text(encoding="utf-8"))
    without = render_report(_write(knowledge_suite.parent, doc["runs"][:2])).read_text(encoding="utf-8")
    assert 'id="attack-success-against-queries"' not in without and "queries-asr-plot" not in without
    assert 'id="query-legend"' not in without and 'id="transfer-legend"' in without


def test_queries_plot_lines_and_labels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: list[list[figures.QueryLine]] = []

    def record(title: str, lines: list[figures.QueryLine]) -> str:
        drawn.append(lines)
        return "data:image/png;base64,"

    monkeypatch.setattr(figures, "queries_asr_plot", record)
    sweep = [_run("eps-2", 2 / 255, 0.3, [0.2, 0.4]), _run("eps-8", 8 / 255, 0.9, [0.8, 0.95])]
    render_report(_write(tmp_path, [*sweep, _query_run("q", QUERY_ASR, 1000)]))
    [(line,)] = drawn
    assert line.queries == [1, 10, 30, 100, 300, 1000] and line.asr == [0.0, 0.05, 0.1, 0.2, 0.3, 0.4]
    assert line.label == ("dlib-resnet · pixel linf 8/255 · dodging · individual · open-set FMR 0.001 · "
                          "native/square 1000 steps")
    budgets = [_query_run("q1000", QUERY_ASR, 1000), _query_run("q100", {"1": 0.0, "10": 0.1, "100": 0.3}, 100)]
    render_report(_write(tmp_path, budgets))
    assert [line.queries for line in drawn[1]] == [[1, 10, 30, 100, 300, 1000], [1, 10, 100]]
    assert all("query (scores, " in line.label for line in drawn[1])  # knowledge tells these lines apart


def test_knowledge_metric_labels(knowledge_suite: Path) -> None:
    html = render_report(knowledge_suite).read_text(encoding="utf-8")
    transfer = _section(html, "run-2")
    assert ('<th>success on the surrogate(s) it was crafted on<br><code class="muted key">surrogate_success_rate'
            '</code></th><td>0.97</td>') in transfer
    query = _section(html, "run-3")
    reached = " · ".join(f"{n}:\u00a0{asr}" for n, asr in [(1, "0.00"), (10, "0.05"), (30, "0.10"), (100, "0.20"),
                                                             (300, "0.30"), (1000, "0.40")])
    assert ('<th>ASR after n queries per face<br><code class="muted key">asr_at_queries</code></th>'
            f"<td>{reached}</td>") in query
    assert "&#34;1000&#34;" not in query and '{"1' not in query  # no raw JSON dict
    assert "<th>attack_success_rate</th>" in transfer  # the target's ASR keeps its plain key


def test_white_box_runs_unchanged_beside_knowledge_runs(knowledge_suite: Path, tmp_path: Path) -> None:
    doc = json.loads(knowledge_suite.read_text(encoding="utf-8"))
    mixed = render_report(knowledge_suite, tmp_path / "mixed.html").read_text(encoding="utf-8")
    alone_path = knowledge_suite.parent / "white-box-only.json"
    alone_path.write_text(json.dumps({**doc, "runs": doc["runs"][:1]}), encoding="utf-8")
    alone = render_report(alone_path, tmp_path / "alone.html").read_text(encoding="utf-8")
    assert _section(mixed, "run-1") == _section(alone, "run-1")
    body = _without_ideas(alone[alone.index("<body>"):])
    for knowledge_only in ("transfer-legend", "query-legend", "attack-success-against-queries", "surrogate",
                           "queries-asr-plot",
                           'class="detail"'):
        assert knowledge_only not in body


def test_malformed_asr_at_queries(tmp_path: Path) -> None:
    odd = _query_run("odd", {"1000": 0.4}, 1000)
    odd["metrics"]["asr_at_queries"] = {"0": 0.0, "x": 1.0, "²": 0.5, "10": None, "100": 0.2, "1000": 0.4}
    flat = _query_run("not-a-mapping", {"1000": 0.1}, 1000, goal="impersonation")
    flat["metrics"]["asr_at_queries"] = [0.1]
    html = render_report(_write(tmp_path, [odd, flat])).read_text(encoding="utf-8")
    assert '<span class="detail">after 100 q 0.20 · 1000 q 0.40</span>' in _matrix_html(html)
    assert "<td>10:\u00a0— · 100:\u00a00.20 · 1000:\u00a00.40</td>" in _section(html, "run-1")
    assert "<td>[0.1]</td>" in _section(html, "run-2")
    assert len(_links(html).images["queries-asr-plot"]) == 1  # one line: the run with counts


def test_distortion_against_queries_is_labelled(tmp_path: Path) -> None:
    from facesec.families.evasion.words import metric_text

    distances = {"100": 0.3268, "10": None, "x": 1}
    assert metric_text("linf_at_queries", distances) == "10:\u00a0— · 100:\u00a00.3268"
    run = _query_run("q", QUERY_ASR, 1000)
    run["metrics"]["linf_at_queries"] = distances
    row = re.search(r"<tr><th>([^<]*)<br><code class=\"muted key\">linf_at_queries</code></th><td>([^<]*)</td></tr>",
                    _section(render_report(_write(tmp_path, [run])).read_text(encoding="utf-8"), "run-1"))
    assert row is not None and row[1].startswith("median L-inf distance")
    assert row[2] == "10:\u00a0— · 100:\u00a00.3268"


def test_auditor_summary_rating_glossary_and_print(suite: Path) -> None:
    """The first page says in sentences what was attacked and what it achieved (with intervals), rates the family
    by its worst run with the cut-offs stated, keeps gates apart; every metric shown is in the glossary; skipped
    images are listed; printing opens every collapsed section."""
    doc = json.loads(suite.read_text())
    doc["runs"][0]["skipped_images"] = [{"path": "celeba-mini/7/x.jpg", "reason": "no face detected"}]
    doc["runs"][1]["skipped_images"] = [{"path": "celeba-mini/7/x.jpg", "reason": "no face detected"}]
    suite.write_text(json.dumps(doc))
    html = render_report(suite).read_text(encoding="utf-8")
    summary = _part(html, "summary")
    assert ("pixel linf 8/255 (white-box, dodging, individual) against dlib-resnet, open-set FMR 0.001: attack "
            "success rate 97% [90%, 99%] of 38 attempts") in summary
    assert "pixel linf 2/255 (white-box, dodging, individual)" in summary and "31% [18%, 47%]" in summary
    ratings = html[html.index('id="ratings"'):html.index("</table>", html.index('id="ratings"'))]
    assert "not robust" in ratings and "97%" in ratings  # the worst run (0.97 > 0.75)
    assert "robust ≤ 5%, partly robust ≤ 25%, weak ≤ 75%" in summary
    glossary = _part(html, "glossary")
    for key in ("attack_success_rate", "noise_success_rate", "similarity_shift_mean", "n_attempts"):
        assert f"<td><code>{key}</code></td>" in glossary
    assert "share of attack attempts that fooled the recognizer" in glossary
    skipped = _part(html, "skipped")
    assert skipped.count("celeba-mini/7/x.jpg") == 1 and "no face detected" in skipped  # once, with both runs
    assert 'href="#skipped">1</a>' in html
    assert "details::details-content { content-visibility: visible" in html and "@media print" in html
    gallery = _section(html, "run-4")
    assert "match above -0.592" in gallery and "minus the Euclidean distance" in gallery


def test_rating_cutoffs() -> None:
    from facesec.report import summary

    runs = [RunRecord.model_validate({"family": "pixel", "name": f"r{i}", "metrics": {"attack_success_rate": rate},
                                      "headline": {"metric": "attack_success_rate", "label": "attack_success_rate",
                                                   "better": "lower"}})
            for i, rate in enumerate([0.0, 0.05])]
    assert [r.rating for r in summary.ratings(runs)] == ["robust"]
    runs[1].metrics["attack_success_rate"] = 0.06
    assert [r.rating for r in summary.ratings(runs)] == ["partly robust"]
    runs[0].metrics["attack_success_rate"] = 0.76
    assert summary.ratings(runs)[0].rating == "not robust" and "r0" in summary.ratings(runs)[0].worst
    runs[0].metrics["attack_success_rate"] = 1.5  # a hand-edited file: still a rating, never a crash
    runs[1].metrics["attack_success_rate"] = float("nan")
    assert summary.ratings(runs)[0].rating == "not robust"
    assert "—" in summary.findings(runs)[1].text


def test_hostile_results_are_one_line_errors_or_left_out(tmp_path: Path) -> None:
    """Numbers beyond float range and nesting beyond any results.json facesec writes are one-line errors (exit 2);
    a gallery name too long for the file system is an image left out; a file named outside the folder is no link."""
    folder = tmp_path / "suite"
    folder.mkdir()
    morph = {"name": "m", "family": "morph", "metrics": {"mmpmr": 10**400}}
    for huge in (_run("r", 8 / 255, 10**400, [0.4, 0.6]), morph):
        with pytest.raises(ConfigError, match=r"not a readable results.json \(a number of 401 digits"):
            render_report(_write(folder, [huge]))
    (folder / "results.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ConfigError, match=r"not a readable results.json \(nested deeper than 64 levels\)"):
        render_report(folder / "results.json")
    (tmp_path / "outside.csv").write_text("secret\n")
    run = _run("r", 8 / 255, 0.5, [0.4, 0.6], samples_csv="../outside.csv",
               gallery=[{"identity": "x", "clean": "x" * 300 + ".png", "adversarial": "a\0b.png"}])
    html = render_report(_write(folder, [run])).read_text(encoding="utf-8")
    assert "outside.csv" in html and not [u for u in _links(html).urls if "outside" in u]


def test_a_record_that_is_not_one_is_named_on_one_line(tmp_path: Path) -> None:
    """A results.json from someone else whose run breaks the record's types: one line naming the file, the entry
    (its keys escaped, a newline in a key included) and what is wrong."""
    path = _write(tmp_path, [{"name": "a", "dimensions": {"evil\nkey": 1}}])
    with pytest.raises(ConfigError) as caught:
        render_report(path)
    message = str(caught.value)
    assert "\n" not in message and "runs.0.dimensions.evil\\nkey: Input should be a valid string" in message
    assert message.startswith(f"{path}: not a facesec results.json")


def test_a_query_count_too_long_for_a_number_is_left_out() -> None:
    from facesec.families.evasion.words import metric_text

    assert metric_text("asr_at_queries", {"9" * 5000: 0.5, "10": 0.25}) == "10:\u00a00.25"
