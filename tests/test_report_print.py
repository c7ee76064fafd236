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
    """(page number, heading) for every heading a printed page ends with, alone or with only its paragraph."""
    headings = _headings(page)
    found = []
    for number, sheet in enumerate(pypdf.PdfReader(pdf).pages, 1):
        lines = [" ".join(line.split()) for line in sheet.extract_text().splitlines() if line.strip()]
        for k, line in enumerate(lines):
            rest = " ".join(lines[k + 1:])
            if line in headings and (not rest or (headings[line] and headings[line].startswith(rest))):
                found.append((number, line))
    return found


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
