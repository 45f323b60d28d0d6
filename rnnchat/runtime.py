"""The BLAS and thread policy in one place: set once at start-up, helpers for "decode on one thread", and the
BLAS thread counts as they are now."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from threadpoolctl import ThreadpoolController, threadpool_limits


def configure() -> None:
    """Process-wide settings; call before NumPy is imported (the `rnnchat` command does, first thing).

    OpenBLAS worker threads busy-wait for ~2^28 cycles (~0.1 s) after every product by default, which takes the
    cores away from the element-wise passes that rnnchat runs on its own threads between products (softmax,
    Adam) and from anything else the user runs. 2^20 cycles (~0.3 ms) still bridges back-to-back products.
    """
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "20")


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Batch-1 decoding is memory-bound: one BLAS thread is as fast and leaves the other cores alone."""
    with threadpool_limits(1):
        yield


def decode_threads(rows: int) -> contextlib.AbstractContextManager:
    """The BLAS threads for decoding `rows` sequences together: one for a single stream; all of them for a
    batch (16 ranked candidates: 234 ms instead of 431 ms with one thread on this 2-core machine)."""
    return one_blas_thread() if rows <= 1 else contextlib.nullcontext()


_blas: list = []  # the BLAS libraries' controllers, found on first use (NumPy is loaded by then)


def blas_threads() -> tuple[int, ...]:
    """Each loaded BLAS library's configured thread count (~1 us a call; () when none is found)."""
    if not _blas:
        _blas.append(ThreadpoolController().select(user_api="blas").lib_controllers)
    return tuple(lib.get_num_threads() or 0 for lib in _blas[0])
