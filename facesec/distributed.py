"""Runs spread over torchrun's processes: each process attacks its share of a run's shards, every process
receives all shards' results in order, and process 0 alone writes the suite.

A shard is `attack.shard_size` consecutive attempts with random numbers of its own (seeded from the run's
seed and the shard's number), so a run's results depend on the shard size, never on how many processes
share the shards. Processes exchange per-sample results, not gradients, over gloo (CPU or GPU alike).
"""

from __future__ import annotations

import atexit
import contextlib
import os
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from facesec.errors import ConfigError, FacesecError
from facesec.progress import bar

T = TypeVar("T")
TIMEOUT_HOURS = 24.0
"""How long a process waits for the others at an exchange by default (e.g. while process 0 alone runs a
backdoor fine-tune, which is not sharded); $FACESEC_DIST_TIMEOUT_HOURS changes it."""

_alone = False
_exchanges = 0


class OutOfStep(FacesecError):
    """The processes reached different exchanges: the suite cannot go on consistently."""


class ShardFailed(FacesecError):
    """Another process failed while working on its shards of this run."""


def start() -> None:
    """Join torchrun's process group (gloo) when started by torchrun with more than one process."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("gloo", timeout=timedelta(hours=_timeout_hours()))
        atexit.register(_leave)


def _leave() -> None:
    """Leave the process group at exit, so its gloo threads end before the interpreter does (left to the
    interpreter, a worker aborted with 'terminate called without an active exception' in about 1 exit in 10)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def _timeout_hours() -> float:
    text = os.environ.get("FACESEC_DIST_TIMEOUT_HOURS", "")
    if not text:
        return TIMEOUT_HOURS
    try:
        hours = float(text)
    except ValueError:
        hours = -1.0
    if not 0 < hours <= 24 * 365:
        raise ConfigError(f"FACESEC_DIST_TIMEOUT_HOURS={text!r}: give a number of hours above 0 (default 24)")
    return hours


def world() -> int:
    """How many processes share the work (1 without torchrun, or inside `alone`)."""
    return 1 if _alone or not dist.is_initialized() else dist.get_world_size()


def rank() -> int:
    """This process's number (0 without torchrun, or inside `alone`)."""
    return 0 if _alone or not dist.is_initialized() else dist.get_rank()


def is_main() -> bool:
    """Whether this process writes files and prints: process 0, or the only one."""
    return not dist.is_initialized() or dist.get_rank() == 0


def processes() -> int:
    """How many processes run the suite (for provenance), whatever `alone` says."""
    return dist.get_world_size() if dist.is_initialized() else 1


def local_rank() -> int:
    """This process's number on its machine (torchrun's LOCAL_RANK): which GPU it takes."""
    return int(os.environ.get("LOCAL_RANK", "0")) if dist.is_initialized() else 0


@contextlib.contextmanager
def alone() -> Iterator[None]:
    """Work as the only process (a run process 0 does by itself while the others wait)."""
    global _alone
    before, _alone = _alone, True
    try:
        yield
    finally:
        _alone = before


def exchange(tag: str, value: T) -> list[T]:
    """Every process's `value`, in process order. Each process must reach the same exchanges in the same
    order; `tag` checks it, and OutOfStep stops all of them when they do not."""
    global _exchanges
    if world() == 1:
        return [value]
    _exchanges += 1
    mark = f"{_exchanges}:{tag}"
    gathered: list[Any] = [None] * world()
    dist.all_gather_object(gathered, (mark, value))
    marks = [m for m, _ in gathered]
    if any(m != mark for m in marks):
        raise OutOfStep(f"torchrun processes out of step (at {', '.join(marks)}); rerun the suite")
    return [v for _, v in gathered]


def shard_generator(seed: int, shard: int) -> torch.Generator:
    """The random numbers of one shard of a run: the same for any number of processes."""
    state = np.random.SeedSequence([seed, shard]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def map_shards(n: int, size: int, seed: int, work: Callable[[slice, torch.Generator], T], tag: str,
               progress: bool = False) -> list[T]:
    """`work(attempts, generator)` for each shard of `n` attempts (`size` at a time), this process taking
    shards rank, rank + world, ...; returns every shard's result, in order, on every process (tensors on the
    CPU). A failure in any process's shard fails the call in all of them."""
    shards = [slice(s, min(s + size, n)) for s in range(0, n, size)] or [slice(0, 0)]  # always one to join
    done: list[tuple[int, Any]] = []
    failure: Exception | None = None
    mine = range(rank(), len(shards), world())
    for k in bar(mine, desc=tag, unit="shard", enabled=progress and is_main() and len(shards) > 1):
        try:
            done.append((k, _to_cpu(work(shards[k], shard_generator(seed, k)))))
        except Exception as exc:  # noqa: BLE001 - told to the other processes, then raised here
            failure = exc
            break
    reports = exchange(tag, (done, None if failure is None else f"{type(failure).__name__}: {failure}"))
    if failure is not None:
        raise failure
    for number, (_, error) in enumerate(reports):
        if error is not None:
            raise ShardFailed(f"process {number} failed on its shards: {error}")
    results = dict(item for part, _ in reports for item in part)
    return [results[k] for k in range(len(shards))]


def _to_cpu(value: Any) -> Any:
    """Tensors (also inside tuples, lists and dicts) moved to the CPU, so any process can unpickle them."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, tuple | list):
        return type(value)(_to_cpu(v) for v in value)
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    return value
