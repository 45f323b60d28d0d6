"""Blocked, multi-threaded element-wise passes over big arrays (softmax rows, optimizer updates).

NumPy runs each ufunc on one core and streams the whole array through memory once per call, so a chain of
ten ufuncs over a 40 MB array reads it ten times. `blocked` runs the chain on cache-sized blocks instead, and
spreads the blocks over a few threads (ufunc loops release the GIL), the way PyTorch's intra-op pool does.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

_pool: ThreadPoolExecutor | None = None
_threads: int | None = None  # None: sized from the CPUs this process may use, on first use


def _default_threads() -> int:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(4, cpus))


def set_num_threads(n: int) -> None:
    """Threads used by `blocked` (1 = run in the caller's thread)."""
    global _threads, _pool
    if n < 1:
        raise ValueError("threads must be >= 1")
    if n != _threads and _pool is not None:
        _pool.shutdown()
        _pool = None
    _threads = n


def num_threads() -> int:
    global _threads
    if _threads is None:
        _threads = _default_threads()
    return _threads


def blocked(fn: Callable[[int, int], None], n: int, block: int) -> None:
    """Call fn(lo, hi) over [0, n) in blocks of `block`; the blocks are split between the threads.

    fn must only touch its own [lo, hi) slice of shared arrays.
    """
    global _pool

    def run(lo: int, hi: int) -> None:
        for s in range(lo, hi, block):
            fn(s, min(s + block, hi))

    threads = num_threads()
    parts = min(threads, -(-n // block))
    if parts <= 1:
        run(0, n)
        return
    if _pool is None:
        _pool = ThreadPoolExecutor(threads, thread_name_prefix="rnnchat-nn")
    edges = [n * k // parts for k in range(parts + 1)]
    futures = [_pool.submit(run, edges[k], edges[k + 1]) for k in range(1, parts)]
    run(edges[0], edges[1])
    for f in futures:
        f.result()
