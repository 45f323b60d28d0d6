"""Batch files: `rnnchat generate --batch` (prompts to continue) and `rnnchat chat --batch` (conversations to
answer), run here or on Ray (`--ray`).

Both read a file of jobs (plain text: one per line; JSONL: objects with their own settings, seed and id),
report malformed lines on stderr and go on, claim `--out` for this run (`OUT.run.json`; a rerun skips the ids
already written), then run the jobs in batches and write each batch's result lines in input order as soon as
it is done, checking every id against the one expected next (exactly once, nothing reordered). Where the
batches run is the executor: `local` (this process) or `on_ray` (`engine.batch_ray`, imported only then);
the lines are the same, so a run started one way can be resumed the other.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

from rnnchat.cli.generate import InputError
from rnnchat.engine.batch import BadLine, Models, ResumeError, duplicate_ids, manifest_path, start_run
from rnnchat.progress import Progress


class AnyJob(Protocol):
    id: str
    line: int

    def to_wire(self) -> str: ...


Results = Iterator[list[tuple[str, str]]]  # batches of (id, result line), in input order
Executor = Callable[[list], Results]


def read_lines(in_path: Path) -> tuple[bytes, list[str]]:
    """The file's bytes (what a resumed run checks) and its lines (only \\n ends a line: str.splitlines also
    splits on U+2028, \\x0c, ...)."""
    try:
        data = in_path.read_bytes()
        text = data.decode("utf-8-sig")  # a leading byte-order mark is not a line
    except UnicodeDecodeError as e:
        raise InputError(f"{in_path} is not valid UTF-8 (byte {e.start})")
    except OSError as e:
        raise InputError(f"cannot read {in_path}: {e.strerror}")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return data, lines


def is_jsonl(in_path: Path) -> bool:
    return in_path.suffix.lower() in (".jsonl", ".json")


def check_batch_arguments(args: argparse.Namespace) -> None:
    """Usage errors of the batch flags (exit 2)."""
    if args.batch and args.out is None:
        raise InputError("--batch needs --out FILE for the JSONL results", code=2)
    if not args.batch and (args.ray is not None or args.workers is not None or args.out is not None):
        used = [f for f, on in (("--ray", args.ray is not None), ("--workers", args.workers is not None),
                                ("--out", args.out is not None)) if on]
        raise InputError(f"{', '.join(used)}: only with --batch FILE", code=2)
    if args.workers is not None and args.ray is None:
        raise InputError("--workers: only with --ray (the local batch mode runs in this process)", code=2)


def local(run: Callable[[list], list[str]], batch_size: int) -> Executor:
    """Batches of `batch_size` jobs through `run` (jobs -> result lines) in this process."""
    def execute(jobs: list) -> Results:
        for start in range(0, len(jobs), batch_size):
            part = jobs[start: start + batch_size]
            yield list(zip((j.id for j in part), run(part)))
    return execute


@contextlib.contextmanager
def on_ray(models: Models, address: str | None, workers: int | None, batch_size: int) -> Iterator[Executor]:
    """Connected to Ray (`address`: None = this machine's cluster, or a new local one), an executor running
    batches of `batch_size` jobs on `workers` actors (default: one per CPU of the cluster)."""
    try:
        from rnnchat.engine import batch_ray
    except ImportError as e:
        raise InputError(f"--ray needs Ray Data ({e}): pip install 'rnnchat[distributed]'") from None
    try:
        with batch_ray.connected(address) as cpus:
            k = batch_ray.check_workers(workers, cpus)
            print(f"ray: {k} worker(s), {cpus} CPU(s) in the cluster", file=sys.stderr)
            yield lambda jobs: batch_ray.results(models, [(j.id, j.to_wire()) for j in jobs], k, batch_size)
    except batch_ray.RayError as e:
        raise InputError(str(e), e.code) from None


def run_jobs(in_path: Path, out_path: Path, items: list, manifest: dict, execute: Executor,
             progress: bool = True, desc: str = "generate", jobs: str = "prompts") -> int:
    """Run the jobs of `items` not yet in `out_path`; returns the number of malformed lines (reported on
    stderr, the rest completes). InputError for a file that cannot be run or written."""
    jobs_all: list[AnyJob] = [i for i in items if not isinstance(i, BadLine)]
    if dups := duplicate_ids(jobs_all):
        raise InputError(f"{in_path}: every line needs its own id (results and resume are keyed by it): "
                         + "; ".join(dups[:3]) + (f" (+{len(dups) - 3} more)" if len(dups) > 3 else ""))
    bad = [i for i in items if isinstance(i, BadLine)]
    if not items:
        raise InputError(f"{in_path}: no {jobs} in it (it is empty or holds only blank lines)")
    for b in bad:
        print(f"{in_path}:{b.line}: skipped: {b.error}", file=sys.stderr)
    side = manifest_path(out_path)
    for path, what in ((out_path, f"--out {out_path}"), (side, f"{side} (the run's manifest beside --out)")):
        if path.exists() and in_path.exists() and path.samefile(in_path):
            raise InputError(f"{what} is the {jobs} file itself: choose another output file")
    special = out_path.exists() and not out_path.is_file()  # /dev/stdout, a pipe, /dev/null: write only
    try:
        seen = set() if special else start_run(out_path, manifest)
        out = open(out_path, "a", encoding="utf-8")
    except ResumeError as e:
        raise InputError(str(e)) from None
    except OSError as e:
        raise InputError(f"cannot write {out_path}: {e.strerror or e}")
    jobs = [j for j in jobs_all if j.id not in seen]
    if seen:
        print(f"resuming: {len(seen)} results already in {out_path}, {len(jobs)} to go", file=sys.stderr)
    bar = Progress(len(jobs), desc) if progress else None
    expected = iter([j.id for j in jobs])
    done = 0
    try:
        with out:
            for batch in execute(jobs) if jobs else ():
                for job_id, line in batch:
                    want = next(expected, None)
                    if job_id != want or json.loads(line).get("id") != want:
                        raise InputError(f"a result for id {job_id!r} came where {want!r} was due (each result "
                                         f"must come back once, in input order); what was written is kept")
                    out.write(line + "\n")
                out.flush()
                done += len(batch)
                if bar:
                    bar.update(done)
    except OSError as e:  # a full disk, a closed pipe: what was flushed stays, a re-run resumes from it
        raise InputError(f"cannot write {out_path}: {e.strerror or e}") from None
    if (missing := next(expected, None)) is not None:
        raise InputError(f"no result came back for id {missing!r} and the ones after it: rerun to finish them")
    if bar:
        bar.close()
    return len(bad)


def _on_every_node(lm_path: Path) -> Path | None:
    """None for the shipped LM (each worker finds it in its own install of the package), else the path."""
    from rnnchat import paths
    return None if lm_path.resolve() == paths.lm_checkpoint().resolve() else lm_path


def executor(args: argparse.Namespace, models: Models,
             run: Callable[[list], list[str]]) -> contextlib.AbstractContextManager:
    """The executor the flags ask for: on Ray with `models` loaded on each worker, or `run` here."""
    if args.ray is None:
        return contextlib.nullcontext(local(run, args.batch_size))
    return on_ray(models, args.ray or None, args.workers, args.batch_size)


def prompt_batch(args: argparse.Namespace, engine, defaults) -> int:
    """`rnnchat generate --batch`: continuations of a prompts file; returns the number of malformed lines."""
    from rnnchat.engine.batch import PromptModels, PromptRunner, read_jobs, run_manifest
    from rnnchat.sampling import SettingsError, skip_ids
    in_path = Path(args.batch)
    data, lines = read_lines(in_path)
    items = list(read_jobs(lines, defaults, is_jsonl(in_path)))
    for n, item in enumerate(items):
        if not isinstance(item, BadLine):
            try:
                skip_ids(item.settings, engine.vocab)
            except SettingsError as e:
                items[n] = BadLine(item.line, str(e))
    models = PromptModels(_on_every_node(engine.lm_path))
    with executor(args, models, PromptRunner(engine.decoder, engine.vocab)) as execute:
        return run_jobs(in_path, Path(args.out), items, run_manifest(data, defaults),
                        execute, progress=not args.quiet, desc="generate")


def chat_batch(args: argparse.Namespace, defaults) -> int:
    """`rnnchat chat --batch`: one reply to each conversation of a file; returns the number of malformed lines."""
    from rnnchat.engine.batch import run_manifest
    from rnnchat.sampling import SettingsError, skip_ids
    from rnnchat.session.batch_chat import CHAT_FORMAT, REPLY_MODES, ChatModels, read_chat_jobs
    from rnnchat.engine.ranking import check_candidates
    if args.mode not in REPLY_MODES:
        raise InputError(f"--mode {args.mode}: a batch makes chat replies (lm or chat); to continue prompts use "
                         f"`rnnchat generate --batch`", code=2)
    try:
        check_candidates(args.candidates)
    except SettingsError as e:
        raise InputError(str(e), code=2) from None
    if not Path(args.checkpoint).exists():
        raise InputError(f"no language model at {args.checkpoint}; train one with `rnnchat train lm`")
    models = ChatModels(_on_every_node(Path(args.checkpoint)), args.seq2seq, args.backward)
    runner, notes = models.runner()
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    in_path = Path(args.batch)
    data, lines = read_lines(in_path)
    items = list(read_chat_jobs(lines, defaults, args.mode, args.candidates, is_jsonl(in_path)))
    for n, item in enumerate(items):
        if not isinstance(item, BadLine):
            try:
                skip_ids(item.settings, runner.engine.vocab)
                if why := runner.unavailable(item):
                    raise SettingsError(why)
            except SettingsError as e:
                items[n] = BadLine(item.line, str(e))
    manifest = run_manifest(data, defaults, CHAT_FORMAT, mode=args.mode, candidates=args.candidates)
    with executor(args, models, runner) as execute:
        return run_jobs(in_path, Path(args.out), items, manifest, execute, progress=not args.quiet, desc="chat",
                        jobs="conversations")
