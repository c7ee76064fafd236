"""notebooks/tour.ipynb: it runs top to bottom on real faces, and the committed file carries no outputs.

The notebook is executed into a copy under tmp_path; notebooks/tour.ipynb itself is never written,
so no face image can end up in the repository through this test.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "tour.ipynb"


def test_committed_notebook_has_no_outputs() -> None:
    """Outputs would embed faces from a research-only dataset; clear them before committing."""
    doc = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    code_cells = [c for c in doc["cells"] if c["cell_type"] == "code"]
    assert code_cells, "the tour has no code cells"
    dirty = [i for i, c in enumerate(doc["cells"])
             if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, (f"cells {dirty} of {NOTEBOOK.name} have outputs; run "
                       "`jupyter nbconvert --clear-output --inplace notebooks/tour.ipynb`")
    attached = [i for i, c in enumerate(doc["cells"]) if c.get("attachments") or "data:image" in "".join(c["source"])]
    assert not attached, f"cells {attached} of {NOTEBOOK.name} embed images"


def test_notebook_runs_without_errors(celeba: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Executes a copy with the python3 kernel, cwd = repo root, FACESEC_DATA (and the private cache) inherited."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    original = NOTEBOOK.read_bytes()
    copy = tmp_path / "tour.ipynb"
    shutil.copy(NOTEBOOK, copy)
    # The notebook writes its suite under tempfile.mkdtemp(): keep that inside tmp_path too.
    kernel_tmp = tmp_path / "kernel-tmp"
    kernel_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(kernel_tmp))

    nb = nbformat.read(copy, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=900, kernel_name="python3", allow_errors=True,
                                     resources={"metadata": {"path": str(ROOT)}})
    client.execute()
    nbformat.write(nb, copy)

    errors = [(i, out.get("ename"), out.get("evalue"), "".join(cell.source)[:200])
              for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
              for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    assert not errors, f"cells raised errors (executed copy: {copy}): {errors}"
    unexecuted = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code" and cell.execution_count is None]
    assert not unexecuted, f"cells {unexecuted} did not run"
    assert list(kernel_tmp.glob("facesec-tour-*/quickstart/index.html")), "the suite's report was not written"
    assert NOTEBOOK.read_bytes() == original, "executing the tour must not touch notebooks/tour.ipynb"
