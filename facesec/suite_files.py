"""Writing a suite's folder safely: one writer at a time, files replaced whole, never half-written."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from facesec import safe_json
from facesec.errors import ConfigError

LOCK = ".facesec.lock"
RUN_MARKER = ".facesec-run"
"""The file facesec writes into each run folder it makes: only a folder holding it is ever replaced."""
PREVIOUS = "previous"
"""The sub-folder of a suite folder holding the report a rerun replaced."""
REPORT_FILES = ("results.json", "index.html")


def _umask() -> int:
    """The process's umask (read by setting it and putting it back; Python has no getter before 3.13)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def as_umask_allows(path: Path) -> None:
    """Give `path` the mode a plain open() or mkdir() would have: tempfile makes files 0600 and folders 0700
    whatever the umask, and a report is meant to be read by a web server or a colleague."""
    full = 0o777 if path.is_dir() else 0o666
    os.chmod(path, full & ~_umask())


def write_atomic(path: Path, text: str) -> None:
    """Write `text` (UTF-8) to a temporary file beside `path`, then rename it over `path`: a reader, or a
    process killed meanwhile, sees the old file or the new one, never part of one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        as_umask_allows(Path(tmp))
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def refuse_links(root: Path, folder: Path) -> None:
    """ConfigError when `folder`, or a folder between `root` and it, is a symbolic link: facesec writes and deletes
    only inside the output folder it was given, and a link (one committed to a repository, say) leads elsewhere."""
    current = root
    for part in folder.relative_to(root).parts:
        current = current / part
        if current.is_symlink():
            raise ConfigError(f"{current}: is a symbolic link; facesec writes only into real folders under {root}: "
                              "remove the link, or choose another --out or --suite")


def made_by_facesec(run_dir: Path) -> bool:
    """Whether `run_dir` is a real folder holding facesec's marker file (itself a real file, not a link)."""
    try:
        return stat.S_ISDIR(os.lstat(run_dir).st_mode) and stat.S_ISREG(os.lstat(run_dir / RUN_MARKER).st_mode)
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def suite_lock(folder: Path) -> Iterator[None]:
    """Hold `folder` for one `facesec run`; a second writer gets a one-line error, a stale lock (its process
    gone) is taken over."""
    path = folder / LOCK
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = int(path.read_text().strip() or "0")
            except (OSError, ValueError):
                holder = 0
            if holder and holder != os.getpid() and _alive(holder):
                raise ConfigError(f"{folder}: another facesec run (pid {holder}) is writing this suite; wait for "
                                  f"it, or choose another --out or --suite") from None
            path.unlink(missing_ok=True)  # stale: its process is gone
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(str(os.getpid()))
        break
    else:
        raise ConfigError(f"{folder}: cannot take the suite lock {path}")
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def keep_previous(out_dir: Path) -> Path | None:
    """Move the suite's last report (results.json, index.html and the run folders facesec made) into
    out_dir/previous, in place of the one kept there before, so a rerun never destroys a finished report;
    its links still work there. An unfinished report (an interrupted suite) does not replace a finished one.
    Returns that folder, or None when nothing was moved."""
    if not any(made_file(out_dir / name) for name in REPORT_FILES):
        return None
    previous = out_dir / PREVIOUS
    refuse_links(out_dir, previous / "runs")
    if not _finished(out_dir) and _finished(previous):
        return None  # an interrupted suite's report never replaces a finished one kept there (it is rerun over)
    if os.path.lexists(previous) and not made_by_facesec(previous):
        raise ConfigError(f"{previous}: not a folder facesec made, and a rerun keeps the previous report there: "
                          "move it away, or choose another --out or --suite")
    staging = Path(tempfile.mkdtemp(prefix=f".{PREVIOUS}.", dir=out_dir))
    as_umask_allows(staging)
    (staging / RUN_MARKER).write_text("the report this suite had before its last rerun, kept by facesec\n")
    for name in REPORT_FILES:
        if made_file(out_dir / name):
            os.replace(out_dir / name, staging / name)
    runs = out_dir / "runs"
    if runs.is_dir():
        (staging / "runs").mkdir()
        for run_dir in sorted(runs.iterdir()):
            if made_by_facesec(run_dir):
                run_dir.rename(staging / "runs" / run_dir.name)
    if made_by_facesec(previous):
        old = previous.rename(staging.with_name(staging.name + ".old"))
        shutil.rmtree(old, ignore_errors=True)
    staging.rename(previous)
    return previous


def _finished(folder: Path) -> bool:
    """Whether `folder` holds the results.json of a suite that finished (it records the command's exit code)."""
    if not made_file(folder / "results.json"):
        return False
    try:
        doc = safe_json.load(folder / "results.json")
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("exit_code") in (0, 1, 2, 3)


def made_file(path: Path) -> bool:
    """Whether `path` is a regular file (not a link, which could lead out of the folder)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False
