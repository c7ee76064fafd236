"""A dataset's attribute table: predicted by `data annotate` (hse-faceres's own heads, ITA of the cheeks), given by
someone (`data import --attributes`, or an attributes.csv), merged cell by cell, shown by `data info`; a table
facesec cannot use safely (an identity not in the dataset, a row twice, bytes that are not UTF-8, a control
character) is one line, exit 2, nothing written; a formula-like cell is kept and written defused."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from facesec.cli import main
from facesec.data.attributes import OWN, Table, load, merged, predicted_path, read_table, write_table
from facesec.data.dataset import load_dataset
from facesec.errors import DataError
from facesec.groups.annotate import Heads, band, tone


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty per-user data folder (where imports and predicted tables go)."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "facesec"


@pytest.fixture
def people(celeba: Path, tmp_path: Path) -> Path:
    """Three celeba-mini identities with three photos each, as identity folders (copied, read-only shared data)."""
    src = tmp_path / "people"
    for person in sorted(p for p in celeba.resolve().iterdir() if p.is_dir())[:3]:
        (src / person.name).mkdir(parents=True)
        for photo in sorted(person.glob("*.jpg"))[:3]:
            shutil.copy(photo, src / person.name / photo.name)
    return src


def _ids(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir())


def test_own_cells_win_over_predicted_ones_and_add_columns(tmp_path: Path) -> None:
    predicted = Table({"a": {"sex": "female", "age_band": "30-44"}, "b": {"sex": "male"}}, ["sex", "age_band"],
                      "predicted.csv", ["predicted by facesec"])
    own_file = tmp_path / OWN
    own_file.write_text("identity,sex,site\na,male,=HYPERLINK(\"x\")\nc,,north\n")
    own = read_table(own_file, {"a", "b", "c"})
    both = merged(predicted, own)
    assert both is not None and both.columns == ["sex", "age_band", "site"]
    assert both.values == {"a": {"sex": "male", "age_band": "30-44", "site": '=HYPERLINK("x")'},
                           "b": {"sex": "male"}, "c": {"site": "north"}}
    assert both.groups("sex", ["a", "b", "c", "d"]) == {"a": "male", "b": "male", "c": "unknown", "d": "unknown"}
    assert both.categorical() == ["sex", "age_band", "site"]
    write_table(tmp_path / "out.csv", both)
    text = (tmp_path / "out.csv").read_text()
    assert text.startswith("# predicted by facesec\nidentity,sex,age_band,site\n")
    assert "'=HYPERLINK" in text  # defused for spreadsheets
    again = read_table(tmp_path / "out.csv")
    assert again.provenance == ["predicted by facesec"] and again.values["b"] == {"sex": "male"}


@pytest.mark.parametrize("body, says", [
    ("identity,sex\n7201,female\nnobody,male\n", r"line 3: identity 'nobody' is not in the dataset"),
    ("identity,sex\n7201,female\n7202,male\n7201,male\n",
     r"line 4: identity '7201' is listed again \(first on line 2\)"),
    ("identity,sex\n7201,f\xe9minin\n", r"line 2: not UTF-8 text"),
    ("identity,sex\n7201,\"fe\x1b[31mmale\"\n", "line 2: a cell holds a control character"),
    ("identity,sex\n7201,female,extra\n", "line 2: 3 cells, the header has 2"),
    ("name,sex\n7201,female\n", "line 1: the first column must be 'identity'"),
    ("identity,s-x\n7201,female\n", "line 1: column 's-x': name attributes with a letter")])
def test_a_table_facesec_cannot_use_is_one_line_and_nothing_is_imported(
        people: Path, home: Path, tmp_path: Path, body: str, says: str, capsys: pytest.CaptureFixture[str]) -> None:
    ids = _ids(people)
    table = tmp_path / "mine.csv"
    table.write_bytes(body.replace("7201", ids[0]).replace("7202", ids[1]).encode("latin-1"))
    code = main(["data", "import", str(people), "--name", "mine", "--attributes", str(table), "--no-detect"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert str(table) in err

    assert re.search(says.replace("7201", ids[0]), err), err
    assert not (home / "datasets").exists() or not list((home / "datasets").iterdir())


def test_an_imported_table_is_kept_and_info_shows_the_groups(people: Path, home: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    ids = _ids(people)
    table = tmp_path / "mine.csv"
    table.write_text(f"identity,sex,age_band\n{ids[0]},female,30-44\n{ids[1]},male,\n")
    assert main(["data", "import", str(people), "--name", "mine", "--attributes", str(table), "--no-detect"]) == 0
    kept = load("mine")
    assert kept is not None and kept.values[ids[1]] == {"sex": "male"}
    capsys.readouterr()
    assert main(["data", "info", "mine"]) == 0
    out = capsys.readouterr().out
    assert f"attributes: {home / 'datasets' / 'mine' / OWN}" in out
    assert "    sex: female 1, male 1, unknown 1" in out and "    age_band: unknown 2, 30-44 1" in out


def test_annotate_predicts_with_the_graphs_own_heads(people: Path, home: Path, hse_installed: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from facesec.data.align import TEMPLATES
    from facesec.data.pipeline import align_faces
    from facesec.recognizers import packaged
    from facesec.recognizers.tfjs import build

    assert main(["data", "annotate", str(people), "--photos", "2"]) == 0
    out = capsys.readouterr().out
    table = read_table(predicted_path(str(people)), set(_ids(people)))
    assert str(predicted_path(str(people))) in out and "  sex: " in out
    assert table.provenance[0].startswith("predicted by facesec") and "hse-faceres" in table.provenance[1]
    for identity in _ids(people):
        row = table.values[identity]
        assert row["sex"] in ("female", "male") and row["sex_photos"] == "2"
        assert row["age_band"] == band(float(row["age"])) and row["skin_tone"] == tone(float(row["ita"]))
    # the fast path (features once, the heads' own dense layers) gives what the graph's head nodes give
    faces = align_faces(sorted((people / _ids(people)[0]).glob("*.jpg")), TEMPLATES["arcface-224"], progress=False)
    male, age = Heads()(faces.crops)
    root = packaged.installed("hse-faceres")
    x = torch.from_numpy(faces.crops).permute(0, 3, 1, 2).float().div(255.0)
    with torch.no_grad():
        gender = build(root / "faceres.json", "gender_pred/Sigmoid", "g", "arcface-224").net(x)[:, 0].numpy()
        ages = build(root / "faceres.json", "age_pred/Softmax", "a", "arcface-224").net(x).numpy()
    assert np.allclose(male, gender, atol=1e-5) and np.allclose(age, ages @ np.arange(100), atol=1e-3)


def test_a_table_naming_people_the_dataset_lost_is_refused_when_read(people: Path, home: Path) -> None:
    ids = _ids(people)
    (people / OWN).write_text(f"identity,sex\n{ids[0]},female\n")
    assert load(str(people)) is not None
    shutil.rmtree(people / ids[0])
    assert ids[0] not in load_dataset(people).identities
    with pytest.raises(DataError, match=rf"{OWN}, line 2: identity '{ids[0]}' is not in the dataset"):
        load(str(people))


def test_a_table_is_read_where_it_was_given_within_limits(people: Path, home: Path, tmp_path: Path) -> None:
    """A link is not followed (the dataset's attributes.csv pointing elsewhere is refused), comment lines are
    bounded and plain, 'mixed' is facesec's own group, and a cell saying 'unknown' reads as empty."""
    ids = _ids(people)
    outside = tmp_path / "outside.csv"
    outside.write_text(f"identity,sex\n{ids[0]},female\n")
    (people / OWN).symlink_to(outside)
    with pytest.raises(DataError, match="a link is not followed"):
        load(str(people))
    (people / OWN).unlink()
    for body, says in (("# x\n" * 21 + "identity,sex\n", "comment lines"),
                       ("# \x1b[2J\nidentity,sex\n", "comment lines"),
                       (f"identity,group\n{ids[0]},Mixed\n", "'mixed' is facesec's name")):
        (people / OWN).write_text(body)
        with pytest.raises(DataError, match=says):
            load(str(people))
    (people / OWN).write_text(f"identity,sex\n{ids[0]},unknown\n{ids[1]},male\n")
    table = load(str(people))
    assert table is not None and table.values[ids[0]] == {} and table.groups("sex", ids[:2]) == {
        ids[0]: "unknown", ids[1]: "male"}


def test_an_identity_named_like_a_formula_keeps_its_attributes_after_import(photos_like: Path, home: Path,
                                                                             tmp_path: Path) -> None:
    """The manifest defuses an identity such as '=bob'; the imported table names it the same way, so it loads."""
    table = tmp_path / "mine.csv"
    table.write_text("identity,sex\n=bob,male\n")
    assert main(["data", "import", str(photos_like), "--name", "odd", "--attributes", str(table),
                 "--no-detect"]) == 0
    kept = load("odd")
    assert kept is not None and list(kept.values) == ["'=bob"] and kept.values["'=bob"] == {"sex": "male"}


@pytest.fixture
def photos_like(people: Path, tmp_path: Path) -> Path:
    """One identity folder named '=bob' holding another identity's photos."""
    src = tmp_path / "odd"
    shutil.copytree(people / _ids(people)[0], src / "=bob")
    return src
