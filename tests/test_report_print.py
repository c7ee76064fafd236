"""The report on paper, as headless Chromium prints it (Letter and A4): no heading left alone at a page's foot.
Needs Chromium (`apt-get install chromium`); skipped, saying so, where it is not installed."""

from __future__ import annotations

import html as entities
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from facesec.report.render import render_report
from tests.test_report_view import _golden_suite

pypdf = pytest.importorskip("pypdf")
CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)
PAPER_WIDTH_PT = {"Letter": 612, "A4": 595}


def _plain(fragment: str) -> str:
    return " ".join(entities.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def _headings(page: str) -> dict[str, str]:
    """Each h2/h3 heading's text, and the text of the paragraph right after it ('' when none)."""
    return {_plain(m.group(1)): _plain(m.group(2) or "")
            for m in re.finditer(r"<h[23][^>]*>(.*?)</h[23]>\s*(?:<p[^>]*>(.*?)</p>)?", page, re.S)}


def orphans(page: str, pdf: Path) -> list[tuple[int, str]]:
    """(page number, heading) for every heading a printed page ends with, alone or with only its paragraph: no
    text and no picture (a plot) drawn below it on that page."""
    headings = _headings(page)
    found = []
    for number, sheet in enumerate(pypdf.PdfReader(pdf).pages, 1):
        lines = [" ".join(line.split()) for line in sheet.extract_text().splitlines() if line.strip()]
        for k, line in enumerate(lines):
            rest = " ".join(lines[k + 1:])
            if line in headings and (not rest or (headings[line] and headings[line].startswith(rest))) \
                    and not _picture_below(sheet, line):
                found.append((number, line))
    return found


def _picture_below(sheet: pypdf.PageObject, heading: str) -> bool:
    """Whether the sheet draws an image (a plot) below the line that starts `heading` (PDF y grows upwards)."""
    texts: list[tuple[float, str]] = []
    pictures: list[float] = []

    def operator(op: bytes, args: list[object], cm: list[float], tm: list[float]) -> None:
        if op == b"Do":
            pictures.append(cm[5] + max(cm[3], 0))  # the image's top edge

    def text(fragment: str, cm: list[float], tm: list[float], font: object, size: float) -> None:
        texts.append((tm[5] * cm[3] + cm[5], " ".join(fragment.split())))

    sheet.extract_text(visitor_operand_before=operator, visitor_text=text)
    heights = [y for y, fragment in texts if fragment and heading.startswith(fragment)]
    return bool(heights) and any(top < min(heights) for top in pictures)


def print_pdf(page: str, paper: str, folder: Path) -> Path:
    """`page` printed by headless Chromium on `paper`, without the browser's header and footer."""
    printable = folder / f"{paper}.html"
    printable.write_text(page.replace("<style>", f"<style>@page {{ size: {paper}; }}", 1), encoding="utf-8")
    pdf = folder / f"{paper}.pdf"
    assert CHROMIUM is not None
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer",
                    f"--print-to-pdf={pdf}", printable.as_uri()], check=True, capture_output=True, timeout=180)
    return pdf


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)")
@pytest.mark.parametrize("paper", sorted(PAPER_WIDTH_PT))
def test_the_printed_report_leaves_no_heading_alone(tmp_path: Path, paper: str) -> None:
    page = render_report(_golden_suite(tmp_path)).read_text(encoding="utf-8")
    pdf = print_pdf(page, paper, tmp_path)
    sheets = pypdf.PdfReader(pdf).pages
    assert round(float(sheets[0].mediabox.width)) == PAPER_WIDTH_PT[paper]
    assert orphans(page, pdf) == []
    text = " ".join(sheet.extract_text() for sheet in sheets)
    assert text.index("Appendix: resolved threat models") > text.index("Glossary")  # raw JSON only at the end


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)")
def test_the_orphan_check_tells_a_heading_over_its_plot_from_one_left_alone(tmp_path: Path) -> None:
    """A plot under its heading on the same sheet is no orphan; the same plot pushed to the next sheet leaves
    the heading alone (the check must see pictures, which carry no text)."""
    import base64

    png = base64.b64encode(_plot_png()).decode()
    for pushed in (False, True):
        page = ("<html><head><style></style></head><body><h2>Plots</h2>"
                f"<img src='data:image/png;base64,{png}' style='width:300px;"
                f"display: block;{'break-before: page;' if pushed else ''}'></body></html>")
        folder = tmp_path / str(pushed)
        folder.mkdir()
        assert orphans(page, print_pdf(page, "A4", folder)) == ([(1, "Plots")] if pushed else [])


def _plot_png() -> bytes:
    """A small plot as PNG bytes."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, 1])
    out = io.BytesIO()
    fig.savefig(out, format="png")
    plt.close(fig)
    return out.getvalue()
