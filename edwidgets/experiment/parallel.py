"""Frame-level parallelism on the CPU.

A frame's work is a batch of small eigendecompositions (quartz: 34 matrices of ~40 beams), which
torch's intra-op threads do not speed up (two OpenMP threads made it 3× *slower* on the 2-core
machine; benchmarks/RESULTS.md). Frames are independent, and torch releases the GIL inside its
kernels, so running whole frames in Python threads (one intra-op thread each) uses the cores.

Results do not depend on the number of workers: each frame is computed by the same
single-threaded kernels, and anything summed over frames is summed in frame order.
"""
from __future__ import annotations

import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_in_worker = threading.local()


def available_cores() -> int:
    """CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def resolve_workers(workers: int | str | None, device=None) -> int:
    """Frame workers: ``"auto"``/None → the available cores on the CPU, 1 on a GPU (one stream)."""
    if workers in (None, "auto"):
        on_gpu = device is not None and str(device).split(":")[0] != "cpu"
        return 1 if on_gpu else available_cores()
    try:
        n = int(workers)
    except (TypeError, ValueError):
        raise ValueError(f"workers must be a positive integer or 'auto', got {workers!r}") from None
    if n < 1:
        raise ValueError(f"workers must be ≥ 1, got {workers!r}")
    return n


@functools.lru_cache(maxsize=None)
def _pool(workers: int) -> ThreadPoolExecutor:
    # one pool per size for the whole process: models come and go, threads stay few
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="edwidgets-frames",
                              initializer=_mark_worker)


def _mark_worker() -> None:
    _in_worker.active = True


def imap_frames(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """``fn(x) for x in items`` spread over ``workers`` threads, yielded in input order as they finish
    (so a progress bar can follow).

    Runs serially with one worker, for a single item, or when called from inside a worker (a
    nested map would wait on its own pool).
    """
    items = list(items)
    if workers <= 1 or len(items) <= 1 or getattr(_in_worker, "active", False):
        return (fn(x) for x in items)
    return _pool(workers).map(fn, items)


def map_frames(fn: Callable[[T], R], items: Iterable[T], workers: int) -> list[R]:
    """``[fn(x) for x in items]`` spread over ``workers`` threads; results in input order."""
    return list(imap_frames(fn, items, workers))


def intra_op_threads(workers: int) -> int:
    """torch intra-op threads to pair with ``workers`` frame threads: the cores left per worker.

    One per worker on a machine with as many cores as workers: two intra-op threads made a
    quartz epoch 1.6× and a 300-beam CsPbBr₃ epoch 1.6× slower on 2 cores (benchmarks/RESULTS.md).
    """
    return max(1, available_cores() // max(1, int(workers)))
