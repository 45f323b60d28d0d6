"""Batch jobs on Ray Data (`--ray`): the same result lines as the local batch mode, on one machine or a cluster.

Only the `--ray` path imports this module (and Ray with it); nothing else in rnnchat imports Ray.

The pipeline is Ray Data's offline batch inference: `from_items` (one row per job: its id and its wire text) ->
`map_batches` with an actor pool of `workers` actors (`_Worker`: each loads the models once, from the
picklable `models` spec, and runs on one CPU with one BLAS thread) -> `iter_batches` on the driver. Ray
schedules the batches, applies backpressure, and restarts a dead actor and retries its batch (Ray Data's
defaults for actor pools: `max_restarts=-1`, `max_task_retries=-1`).

Exactly-once output, and why the driver is the one writer: a batch's results reach the driver only once its
task has finished, so a batch that a dead worker was running is retried, never half delivered; the results
come back in input order (`DataContext.execution_options.preserve_order`), and the driver appends them to
`--out` through the local mode's resume logic (`OUT.run.json`, ids already written are not sent again),
checking each id against the one expected next. A crash of the driver loses only results not yet written,
which a rerun (Ray or local: the lines are the same) finishes. Workers writing shard files would need storage
that every node and the driver share, and a merge step; the driver writing keeps `--out` an ordinary local
file. What it costs: every result passes through the driver (a JSON line of ~1 KB: at ~150 prompts/s per
worker, 100 workers send it ~15 MB/s), and the jobs are held in the object store from the start.

Lines equal the local mode's because a row's result does not depend on its batch (`engine.batch`), as long as
every node multiplies with the same BLAS kernels (one CPU type and NumPy build across the cluster).
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import socket
from collections.abc import Iterator

import numpy as np
import ray
import ray.data
from ray.data import ActorPoolStrategy, DataContext
from ray.util.debug import log_once

from rnnchat.engine.batch import Models
from rnnchat.nn.parallel import set_num_threads
from rnnchat.runtime import one_blas_thread

CONNECT_TIMEOUT_S = 5.0
_ERROR_LINE = re.compile(r"^([\w.]*(?:Error|Exception)): .*$", re.MULTILINE)
DEFAULT_PORT = 6379  # `ray start --head`'s GCS port


class RayError(Exception):
    """Ray cannot run the batch (unreachable cluster, too few CPUs): the message says why; `code` the exit."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def _check_reachable(address: str) -> None:
    """Fail in seconds, with a message, where `ray.init` would retry an unreachable address for minutes."""
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        host, port = hostport, str(DEFAULT_PORT)
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise RayError(f"cannot reach a Ray cluster at {address} ({e.strerror or e}): start one there with "
                       f"`ray start --head`, or check the address") from None


@contextlib.contextmanager
def connected(address: str | None) -> Iterator[int]:
    """Connected to Ray for the block; yields the cluster's CPU count.

    address None: the Ray cluster running on this machine if there is one (or $RAY_ADDRESS), else a new local
    instance; "auto": the running one (an error if none); else host:port (or ray://host:port) of a head node.
    A process already connected (a test, a notebook) keeps its connection; otherwise it is closed after.
    """
    owned = not ray.is_initialized()
    if owned:
        if address not in (None, "auto", "local"):
            _check_reachable(address)
        try:
            ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
        except (ConnectionError, ValueError, RuntimeError) as e:
            raise RayError(f"cannot start or join Ray ({'address ' + address if address else 'local'}): "
                           f"{e}") from None
    _quiet_console()
    try:
        yield int(ray.cluster_resources().get("CPU", 0))
    finally:
        if owned:
            ray.shutdown()


def _quiet_console() -> None:
    """Ray Data's INFO lines (execution plans) stay in its log file; stderr keeps warnings and our progress."""
    for handler in logging.getLogger("ray.data").handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setLevel(logging.WARNING)
    log_once("ray_data_progress_manager_disabled")  # its "progress bars disabled" warning: ours are on


def check_workers(workers: int | None, cpus: int) -> int:
    """The actor pool's size: `workers`, by default one per CPU of the cluster; RayError if it cannot be."""
    if workers is None:
        return max(1, cpus)
    if workers > cpus:
        raise RayError(f"--workers {workers}: the Ray cluster has {cpus} CPU(s), one per worker; add nodes "
                       f"(`ray start --address=...`) or ask for fewer workers", code=2)
    return workers


class _Worker:
    """One actor of the pool: the models loaded once, then batches of wire texts -> result lines."""

    def __init__(self, models: Models):
        set_num_threads(1)  # one CPU per worker: no element-wise helper threads either
        self.run = models.load()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with one_blas_thread():
            lines = self.run([str(t) for t in batch["job"]])
        return {"id": batch["id"], "line": np.array(lines, dtype=object)}


def results(models: Models, jobs: list[tuple[str, str]], workers: int,
            batch_size: int) -> Iterator[list[tuple[str, str]]]:
    """(id, wire text) jobs -> batches of (id, result line), in input order, computed on `workers` actors.

    Call within `connected`. Blocks of `batch_size` jobs: one task per batch, so a dead worker costs at most
    the batches it held; no more workers start than there are batches.
    """
    if not jobs:
        return
    blocks = math.ceil(len(jobs) / batch_size)
    ctx = DataContext.get_current()
    saved = ctx.execution_options.preserve_order, ctx.enable_progress_bars
    ctx.execution_options.preserve_order, ctx.enable_progress_bars = True, False  # our bar is on stderr
    try:
        ds = ray.data.from_items([{"id": i, "job": w} for i, w in jobs], override_num_blocks=blocks)
        ds = ds.map_batches(_Worker, fn_constructor_kwargs={"models": models}, batch_size=batch_size,
                            compute=ActorPoolStrategy(size=min(workers, blocks)), num_cpus=1, batch_format="numpy")
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            yield list(zip((str(i) for i in batch["id"]), (str(line) for line in batch["line"])))
    except ray.exceptions.RayError as e:  # an error in the models' code (retrying would fail again): it stops
        raise RayError(f"a Ray worker failed ({_failure(e)}); the results written so far are kept, a rerun "
                       f"finishes the rest") from None
    finally:
        ctx.execution_options.preserve_order, ctx.enable_progress_bars = saved


def _failure(e: Exception) -> str:
    """The error behind a Ray failure, in one line: the last `SomeError: message` line of the worker's
    traceback that is not one of Ray's wrappers (Ray passes the user's exception to the driver as text)."""
    found = [m.group(0) for m in _ERROR_LINE.finditer(str(e)) if not m.group(1).startswith("ray.")]
    return found[-1] if found else type(e).__name__
