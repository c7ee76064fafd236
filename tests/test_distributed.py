"""Suites spread over torchrun's processes: the same results.json as one process, shards that fail together."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from facesec import distributed
from facesec.errors import ConfigError
from facesec.results import comparable


def _torchrun(n: int, *args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


def test_shards_cover_every_attempt_in_order() -> None:
    parts = distributed.map_shards(10, 4, 0, lambda part, g: list(range(part.start, part.stop)), "test")
    assert parts == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert distributed.map_shards(0, 4, 0, lambda part, g: part.stop - part.start, "test") == [0]


def test_each_shard_draws_its_own_numbers() -> None:
    first = torch.rand(3, generator=distributed.shard_generator(7, 0))
    assert torch.equal(first, torch.rand(3, generator=distributed.shard_generator(7, 0)))
    assert not torch.equal(first, torch.rand(3, generator=distributed.shard_generator(7, 1)))
    assert not torch.equal(first, torch.rand(3, generator=distributed.shard_generator(8, 0)))


SUITE = """
name: shards
target: dlib-resnet
data: {{dataset: {data}, identities: 6, images_per_identity: 3, seed: 0}}
perturbation: {{kind: pixel, norm: linf, eps: 2/255}}
knowledge: white-box
goal: [dodging, impersonation]
setting: {{kind: open-set, fmr: 0.05, calibration: in-sample}}
attack: {{method: pgd, steps: 2, shard_size: 4, sanity_samples: 2}}
"""


def test_two_processes_write_the_results_one_process_writes(celeba: Path, tmp_path: Path) -> None:
    """torchrun gives each process one thread; the single process gets one too, since CPU matrix products
    summed by another number of threads differ in the last bits (docs/scale.md)."""
    (tmp_path / "suite.yaml").write_text(SUITE.format(data=celeba.resolve()))
    one = subprocess.run([sys.executable, "-m", "facesec", "run", "suite.yaml", "--out", "one"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert one.returncode == 0, one.stderr[-2000:]
    two = _torchrun(2, "-m", "facesec", "run", "suite.yaml", "--out", "two", cwd=tmp_path)
    assert two.returncode == 0, two.stderr[-12000:]  # a worker's own abort message comes before torchrun's summary
    a, b = (json.loads((tmp_path / out / "suite" / "results.json").read_text()) for out in ("one", "two"))
    assert [r["provenance"]["processes"] for r in b["runs"]] == [2, 2]
    assert a["runs"][0]["metrics"]["n_attempts"] > 4  # more than one shard, so the second process had work
    assert comparable(a) == comparable(b)
    for run in a["runs"]:
        csv = run["samples_csv"]
        assert (tmp_path / "one" / "suite" / csv).read_bytes() == (tmp_path / "two" / "suite" / csv).read_bytes()
    assert two.stdout.count("shards[goal=dodging]: ASR") == 1  # process 0 alone prints


WORKER = """
import sys
from facesec import distributed
from facesec.errors import ConfigError
from facesec.results import comparable
distributed.start()
case = sys.argv[1]
try:
    if case == "out-of-step":
        distributed.exchange(f"tag {distributed.rank()}", 1)
    else:
        def work(part, g):
            if part.start == 2:
                raise ValueError("shard two is broken")
            return part.start
        distributed.map_shards(4, 1, 0, work, "test")
except Exception as exc:  # each process writes its own file: lines printed together can interleave
    with open(f"rank{distributed.rank()}.txt", "w") as fh:
        fh.write(f"rank {distributed.rank()}: {type(exc).__name__}: {exc}")
"""


@pytest.mark.parametrize(("case", "expected"), [
    ("out-of-step", ["OutOfStep: torchrun processes out of step", "OutOfStep: torchrun processes out of step"]),
    ("failing-shard", ["ValueError: shard two is broken", "ShardFailed: process 0 failed on its shards: ValueError"]),
])
def test_processes_fail_together(tmp_path: Path, case: str, expected: list[str]) -> None:
    (tmp_path / "worker.py").write_text(WORKER)
    done = _torchrun(2, "worker.py", case, cwd=tmp_path)
    lines = [(tmp_path / f"rank{r}.txt").read_text() if (tmp_path / f"rank{r}.txt").is_file() else "" for r in (0, 1)]
    assert all(lines), done.stdout + done.stderr[-2000:]
    for line, rank, text in zip(lines, (0, 1), expected, strict=True):
        assert line.startswith(f"rank {rank}: {text}"), line


@pytest.mark.parametrize("text", ["soon", "nan", "0", "-3", "inf"])
def test_a_bad_wait_limit_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setenv("FACESEC_DIST_TIMEOUT_HOURS", text)
    with pytest.raises(ConfigError, match="FACESEC_DIST_TIMEOUT_HOURS"):
        distributed._timeout_hours()
    monkeypatch.setenv("FACESEC_DIST_TIMEOUT_HOURS", "0.5")
    assert distributed._timeout_hours() == 0.5
