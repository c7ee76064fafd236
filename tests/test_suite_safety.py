"""A suite survives its own failures: a run that fails at run time is recorded, the finished ones are kept
and reported; files are replaced whole; one writer per suite folder."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from facesec import resume
from facesec.api import run
from facesec.cli import main
from facesec.errors import ConfigError, DataError
from facesec.suite_files import LOCK, RUN_MARKER, suite_lock, write_atomic

SMALL = ("name: {name}\ndata: {{identities: {ids}, images_per_identity: 2}}\ngoal: dodging\n"
         "attack: {{steps: 1}}\nsetting: {{kind: open-set, calibration: in-sample}}\n")


def _bad(folder: Path) -> str:
    """A threat model `validate` passes and its run fails: its dataset's photos (noise) hold no face, which only
    face detection finds."""
    for person in ("a", "b"):
        (folder / "faceless" / person).mkdir(parents=True)
        for k in range(2):
            Image.effect_noise((64, 64), 40 + k).convert("RGB").save(folder / "faceless" / person / f"{k}.png")
    return SMALL.format(name="bad", ids=2).replace("data: {", f"data: {{dataset: {folder / 'faceless'}, ")


def test_a_failing_run_keeps_the_finished_ones(tmp_path: Path, celeba: Path) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(SMALL.format(name="good", ids=2))
    bad.write_text(_bad(tmp_path))
    with pytest.raises(DataError, match=r"bad.yaml: bad: .*; the other runs are written to"):
        run([good, bad], out_root=tmp_path / "reports", suite="both", progress=False)
    folder = tmp_path / "reports" / "both"
    results = json.loads((folder / "results.json").read_text())
    first, second = results["runs"]
    assert first["metrics"]["n_samples"] > 0 and (folder / first["samples_csv"]).is_file()
    assert second["error"].startswith(f"{bad}: bad: dataset") and second["gates"][0]["passed"] is False
    html = (folder / "index.html").read_text()
    assert "run did not finish" in html and not (folder / LOCK).exists()
    assert not [p for p in (folder / "runs").iterdir() if p.name.startswith(".")]  # no half-written run folders


def test_one_writer_per_suite(tmp_path: Path) -> None:
    (tmp_path / LOCK).write_text(str(os.getppid()))  # a live process holds it
    with pytest.raises(ConfigError, match=r"another facesec run \(pid \d+\) is writing this suite"):
        with suite_lock(tmp_path):
            pass
    (tmp_path / LOCK).write_text("4194000")  # a process that is gone: a stale lock is taken over
    with suite_lock(tmp_path):
        assert (tmp_path / LOCK).read_text() == str(os.getpid())
    assert not (tmp_path / LOCK).exists()


def test_atomic_write_leaves_no_temporary_files(tmp_path: Path) -> None:
    target = tmp_path / "results.json"
    target.write_text("old")
    write_atomic(target, "new \udce9")
    assert target.read_text() == "new \\udce9" and [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_resume_keeps_matching_runs_and_reruns_changed_ones(tmp_path: Path, celeba: Path) -> None:
    one, two = tmp_path / "one.yaml", tmp_path / "two.yaml"
    one.write_text(SMALL.format(name="one", ids=2))
    two.write_text(SMALL.format(name="two", ids=2))
    first, folder = run([one, two], out_root=tmp_path / "reports", suite="s", progress=False)
    first = first.to_json()
    again, _ = run([one, two], out_root=tmp_path / "reports", suite="s", progress=False, resume_runs=True)
    again = again.to_json()
    assert again["runs"] == first["runs"]  # both kept as they were: same spec, code and data
    two.write_text(SMALL.format(name="two", ids=2).replace("steps: 1", "steps: 2"))
    third, _ = run([one, two], out_root=tmp_path / "reports", suite="s", progress=False, resume_runs=True)
    third = third.to_json()
    assert third["runs"][0] == first["runs"][0]
    assert third["runs"][1]["threat_model"]["attack"]["steps"] == 2
    assert third["runs"][1]["resume_key"] != first["runs"][1]["resume_key"]
    fresh, _ = run([one], out_root=tmp_path / "reports", suite="s", progress=False)  # without --resume: run again
    fresh = fresh.to_json()
    assert fresh["runs"][0]["provenance"]["started"] >= first["runs"][0]["provenance"]["started"]
    assert len(fresh["runs"]) == 1 and json.loads((folder / "results.json").read_text())["runs"][0]["name"] == "one"


def test_a_resumed_dataset_is_known_by_its_content_not_its_file_times(tmp_path: Path) -> None:
    """A dataset copied, restored or synced again (same files, new times) keeps its finished runs resumable; one
    changed photo of the same size makes every run over it run again."""
    first = tmp_path / "first"
    for person in ("a", "b"):
        (first / person).mkdir(parents=True)
        for k in range(2):
            Image.effect_noise((32, 32), 10 + k).convert("RGB").save(first / person / f"{k}.png")
    second = tmp_path / "second"
    shutil.copytree(first, second)  # new modification times
    os.utime(second / "a" / "0.png", ns=(1, 1))
    assert resume.dataset_fingerprint(str(second)) == resume.dataset_fingerprint(str(first))
    photo = second / "b" / "1.png"
    data = bytearray(photo.read_bytes())
    data[-20] ^= 1
    times = photo.stat()
    photo.write_bytes(bytes(data))
    os.utime(photo, ns=(times.st_atime_ns, times.st_mtime_ns))  # same size, same time, other bytes
    assert resume.dataset_fingerprint(str(second)) != resume.dataset_fingerprint(str(first))


def test_a_link_in_the_output_folder_is_refused(tmp_path: Path) -> None:
    """A `runs/` (or suite folder) that is a symbolic link, committed to a repository say, would have facesec
    delete and write outside --out: refused in one line before anything runs, the other folder untouched."""
    spec = tmp_path / "x.yaml"
    spec.write_text(SMALL.format(name="x", ids=2))
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "runs" / "x").mkdir(parents=True)
    (elsewhere / "runs" / "x" / "keep.txt").write_text("someone else's")
    (tmp_path / "reports" / "s").mkdir(parents=True)
    (tmp_path / "reports" / "s" / "runs").symlink_to(elsewhere / "runs")
    (tmp_path / "reports" / "t").symlink_to(elsewhere)
    for suite in ("s", "t"):
        with pytest.raises(ConfigError, match=rf"reports/{suite}(/runs)?: is a symbolic link; facesec writes only"):
            run([spec], out_root=tmp_path / "reports", suite=suite, progress=False)
    assert [p.name for p in (elsewhere / "runs" / "x").iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in elsewhere.iterdir()) == ["runs"]


def test_only_run_folders_facesec_made_are_replaced(tmp_path: Path, celeba: Path) -> None:
    """A run folder is replaced on a rerun only when it holds facesec's marker; a folder of the same name that
    someone else put there (or a link) is left as it was and the run takes another name."""
    spec = tmp_path / "x.yaml"
    spec.write_text(SMALL.format(name="x", ids=2))
    runs = tmp_path / "reports" / "s" / "runs"
    (runs / "x").mkdir(parents=True)
    (runs / "x" / "keep.txt").write_text("not facesec's")
    outside = tmp_path / "outside"
    outside.mkdir()
    (runs / "x_").symlink_to(outside)
    results, folder = run([spec], out_root=tmp_path / "reports", suite="s", progress=False)
    results = results.to_json()
    assert results["runs"][0]["samples_csv"] == "runs/x__/samples.csv" and (runs / "x__" / RUN_MARKER).is_file()
    assert [p.name for p in (runs / "x").iterdir()] == ["keep.txt"] and list(outside.iterdir()) == []
    again, _ = run([spec], out_root=tmp_path / "reports", suite="s", progress=False)  # its own folder: replaced
    again = again.to_json()
    assert again["runs"][0]["samples_csv"] == "runs/x__/samples.csv"
    assert sorted(p.name for p in runs.iterdir()) == ["x", "x_", "x__"]


def test_resume_trusts_nothing_it_finds(tmp_path: Path, celeba: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A reused record has its gates judged again from its metrics (a gate set to passed by hand fails again);
    a record facesec would not have written (fields missing or of the wrong shape, samples outside its run
    folder) is run again with a warning, never a crash."""
    spec = tmp_path / "x.yaml"
    spec.write_text(SMALL.format(name="x", ids=2) + "gates: [{metric: attack_success_rate, op: '<', value: -1}]\n")
    args = ["run", str(spec), "--out", str(tmp_path / "reports"), "--suite", "s", "--resume"]
    assert main(args) == 1
    path = tmp_path / "reports" / "s" / "results.json"
    first = json.loads(path.read_text())["runs"][0]
    forged = {**first, "gates": [{**first["gates"][0], "passed": True}]}
    path.write_text(json.dumps({**json.loads(path.read_text()), "runs": [forged]}))
    assert main(args) == 1  # reused (same record), judged again
    again = json.loads(path.read_text())["runs"][0]
    assert again["provenance"] == first["provenance"] and again["gates"][0]["passed"] is False
    capsys.readouterr()
    for broken in ({"metrics": "x"}, {"validity": None}, {"resume_key": [1]},
                   {"metrics": {**first["metrics"], "attack_success_ci95": [1]}},
                   {"samples_csv": "../../../../../etc/passwd"}, {"samples_csv": "runs/x/../../../x.csv"}):
        path.write_text(json.dumps({"runs": [{**first, **broken}]}))
        assert main(args) == 1
        rerun = json.loads(path.read_text())["runs"][0]
        assert rerun["samples_csv"] == "runs/x/samples.csv" and isinstance(rerun["metrics"], dict), broken
        assert len(rerun["metrics"]["attack_success_ci95"]) == 2 and rerun["resume_key"] == first["resume_key"]
        assert "--resume: " in capsys.readouterr().err, broken


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_report_files_follow_the_umask(tmp_path: Path, celeba: Path, mask: int) -> None:
    """Written through temporary files (0600, folders 0700), the report still gets the modes the umask asks for,
    so a web server or a colleague can read it where the umask lets them."""
    spec = tmp_path / "x.yaml"
    spec.write_text(SMALL.format(name="x", ids=2))
    before = os.umask(mask)
    try:
        _, folder = run([spec], out_root=tmp_path / "reports", suite="s", progress=False)
    finally:
        os.umask(before)
    files = [folder / "results.json", folder / "index.html", folder / "runs" / "x" / "samples.csv"]
    assert {p.name: p.stat().st_mode & 0o777 for p in files} == {p.name: 0o666 & ~mask for p in files}
    assert (folder / "runs" / "x").stat().st_mode & 0o777 == 0o777 & ~mask


def test_a_rerun_never_destroys_the_previous_report(tmp_path: Path, celeba: Path) -> None:
    """A bad --set is refused before the output is touched (the report stays byte for byte); a rerun moves the
    finished report into previous/ (links intact), replacing only what facesec kept there."""
    spec = tmp_path / "x.yaml"
    spec.write_text(SMALL.format(name="x", ids=2))
    reports = tmp_path / "reports"
    _, folder = run([spec], out_root=reports, suite="s", progress=False)
    first = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    with pytest.raises(DataError, match=r"^--set data.dataset \(on .*\): x: dataset 'elsewhere' not found"):
        run([spec], ["data.dataset=elsewhere"], out_root=reports, suite="s", progress=False)
    assert {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()} == first
    run([spec], ["data.seed=1"], out_root=reports, suite="s", progress=False)
    kept = {p.relative_to(folder / "previous"): p.read_bytes() for p in (folder / "previous").rglob("*")
            if p.is_file() and p != folder / "previous" / RUN_MARKER}
    assert kept == first
    assert json.loads((folder / "results.json").read_text())["runs"][0]["threat_model"]["data"]["seed"] == 1
    second = (folder / "results.json").read_bytes()
    run([spec], out_root=reports, suite="s", progress=False)  # the next rerun keeps the one before it
    assert (folder / "previous" / "results.json").read_bytes() == second
    shutil.rmtree(folder / "previous")
    (folder / "previous").mkdir()
    (folder / "previous" / "mine.txt").write_text("not facesec's")
    with pytest.raises(ConfigError, match="previous: not a folder facesec made"):
        run([spec], out_root=reports, suite="s", progress=False)
    assert (folder / "previous" / "mine.txt").read_text() == "not facesec's"


@pytest.mark.parametrize(("gate", "bad", "code"), [("1.0", False, 0), ("-1", False, 1), ("1.0", True, 2)])
def test_the_report_states_the_exit_code_the_command_returns(tmp_path: Path, celeba: Path, gate: str, bad: bool,
                                                             code: int) -> None:
    """The verdict's exit code is the process's own: 0 gates held, 1 a gate failed, 2 a run failed on its input."""
    spec = tmp_path / "x.yaml"
    gates = f"gates: [{{metric: attack_success_rate, op: '<=', value: {gate}}}]\n"
    spec.write_text(SMALL.format(name="x", ids=2) + gates)
    files = [str(spec)]
    if bad:
        files.append(str(tmp_path / "bad.yaml"))
        (tmp_path / "bad.yaml").write_text(_bad(tmp_path))
    assert main(["run", *files, "--out", str(tmp_path / "reports"), "--suite", "s"]) == code
    folder = tmp_path / "reports" / "s"
    assert json.loads((folder / "results.json").read_text())["exit_code"] == code
    assert f"<b>Exit code {code}</b>" in (folder / "index.html").read_text()


def test_the_report_names_the_data_and_the_set_that_changed_the_run(tmp_path: Path, celeba: Path) -> None:
    """The dataset with its files' fingerprint and every --set are on the page; a description the --set may have
    made wrong is marked, not shown as if it still held."""
    spec = tmp_path / "x.yaml"
    spec.write_text(SMALL.format(name="x", ids=2) + "description: two people of celeba-mini, seed 0\n")
    results, folder = run([spec], ["data.seed=3"], out_root=tmp_path / "reports", suite="s", progress=False)
    record = results.runs[0]
    assert record.provenance is not None and record.provenance.overrides == ["data.seed=3"]
    html = (folder / "index.html").read_text()
    fingerprint = (record.provenance.model_extra or {})["data_manifest_sha256"]
    assert f"celeba-mini (files {fingerprint[:12]}…)" in html and "<code>data.seed=3</code>" in html
    assert ("two people of celeba-mini, seed 0 ⚠ written for the file as it stands; --set data.seed changed this "
            "run, so it may no longer match") in html
    plain, _ = run([spec], out_root=tmp_path / "reports", suite="t", progress=False)
    assert plain.runs[0].provenance is not None and plain.runs[0].provenance.overrides == []
    assert "⚠ written for the file" not in (tmp_path / "reports" / "t" / "index.html").read_text()


def test_redact_writes_no_name_and_no_clear_face(tmp_path: Path, celeba: Path) -> None:
    """With --redact, people's names (folder and file names, LFW style) appear nowhere in what the suite writes,
    each as one stable pseudonym, and every face image on disk is blurred; perturbations stay as they are."""
    people = ["Alice_Example", "Bob_Sample", "Carol_Test"]
    source = sorted(p for p in celeba.iterdir() if p.is_dir())[:3]
    for name, folder in zip(people, source, strict=True):
        (tmp_path / "named" / name).mkdir(parents=True)
        for k, photo in enumerate(sorted(folder.glob("*.jpg"))[:3]):
            shutil.copy(photo, tmp_path / "named" / name / f"{name}_{k:04d}.jpg")
    spec = tmp_path / "x.yaml"
    spec.write_text(SMALL.format(name="x", ids=3).replace("images_per_identity: 2", "images_per_identity: 3"))
    assert main(["run", str(spec), "--set", f"data.dataset={tmp_path / 'named'}", "--redact",
                 "--out", str(tmp_path / "reports"), "--suite", "s"]) in (0, 1)
    folder = tmp_path / "reports" / "s"
    written = [p for p in folder.rglob("*") if p.is_file()]
    texts = {p: p.read_text(errors="replace") for p in written if p.suffix in (".json", ".csv", ".html")}
    assert {p.name for p in texts} >= {"results.json", "samples.csv", "index.html"}
    for name in people:
        assert not [p for p, t in texts.items() if name in t], name
    record = json.loads((folder / "results.json").read_text())["runs"][0]
    assert record["redacted"] is True and all(g["identity"].startswith("person-") for g in record["gallery"])
    images = {p.name: Image.open(p).size for p in written if p.suffix == ".png"}  # perturbations show outlines too
    assert images and all(max(s) <= 150 // 4 + 1 for s in images.values()), images
    again = main(["run", str(spec), "--set", f"data.dataset={tmp_path / 'named'}", "--resume",
                  "--out", str(tmp_path / "reports"), "--suite", "s"])  # a clear rerun reuses no redacted record
    assert again in (0, 1) and json.loads((folder / "results.json").read_text())["runs"][0].get("redacted") is None
    back = main(["run", str(spec), "--set", f"data.dataset={tmp_path / 'named'}", "--resume", "--redact",
                 "--out", str(tmp_path / "reports"), "--suite", "s"])  # ... nor a redacted one a clear record
    assert back in (0, 1) and json.loads((folder / "results.json").read_text())["runs"][0]["redacted"] is True
    assert not [p for p in folder.rglob("*.csv") if "Alice_Example" in p.read_text() and "previous" not in p.parts]


def test_results_json_records_the_code_a_late_failure_gives(tmp_path: Path, celeba: Path) -> None:
    """A JUnit file that cannot be written fails the command (exit 2) after the runs: results.json says 2 too."""
    spec = tmp_path / "x.yaml"
    spec.write_text(SMALL.format(name="x", ids=2))
    assert main(["run", str(spec), "--out", str(tmp_path / "reports"), "--suite", "s", "--junit", str(tmp_path)]) == 2
    assert json.loads((tmp_path / "reports" / "s" / "results.json").read_text())["exit_code"] == 2


def _report(folder: Path, exit_code: int | None) -> None:
    """A report facesec could have written: results.json (finished when it records an exit code), a page, a run."""
    (folder / "runs" / "r").mkdir(parents=True)
    (folder / "runs" / "r" / RUN_MARKER).write_text("")
    doc = {"schema_version": 1, "runs": []} | ({} if exit_code is None else {"exit_code": exit_code})
    (folder / "results.json").write_text(json.dumps(doc))
    (folder / "index.html").write_text(f"report {exit_code}")


def test_an_interrupted_report_never_replaces_a_finished_one(tmp_path: Path) -> None:
    from facesec.suite_files import keep_previous

    suite = tmp_path / "s"
    _report(suite, 0)
    assert keep_previous(suite) == suite / "previous" and not (suite / "results.json").exists()
    _report(suite, None)  # a rerun interrupted: no exit code
    assert keep_previous(suite) is None and (suite / "previous" / "index.html").read_text() == "report 0"
    shutil.rmtree(suite / "runs")
    (suite / "results.json").unlink()
    _report(suite, 1)  # a finished rerun replaces it
    assert keep_previous(suite) == suite / "previous" and (suite / "previous" / "index.html").read_text() == "report 1"
