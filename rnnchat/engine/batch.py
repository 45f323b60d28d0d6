"""Scripted batch generation: many prompts in, JSONL out, prompts run through the network together.

Each prompt runs exactly as it would alone: the state after a turn boundary, the prompt fed, then tokens
sampled with its own seeded generator (every line has a seed: its own, or one derived from the run's seed and
its line number). Rows of a batch advance together (one matrix product per layer per step); rows that finish
drop out of the batch. Results are written in input order, each as soon as its batch is done, and a re-run
with the same output file skips ids already written (resume).

A row's result does not depend on the other rows of its batch, bit for bit (`engine.rows`): batch size,
resume and the split over Ray workers (`batch_ray`) cannot change a line.

Resume only ever continues a run of the same prompts with the same settings: next to a regular output file
`OUT` lies `OUT.run.json` (the prompts' sha256 and the default settings); an output file without it, or with
other prompts or settings, is refused (`ResumeError`), so a file this mode did not write is never cut or mixed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from rnnchat import paths
from rnnchat.data.batches import pad
from rnnchat.engine.rows import decode_rows, fresh_guide, prefill_rows, step_rows
from rnnchat.models.lm import LMDecoder, load_lm
from rnnchat.sampling import RowSampler, SamplingSettings, SettingsError, skip_ids
from rnnchat.atomic import atomic_write_bytes
from rnnchat.text import Vocab

RUN_FORMAT = "rnnchat-batch/1"


@dataclass
class Job:
    id: str
    prompt: str
    settings: SamplingSettings
    line: int = 0  # line number in the input file

    def to_wire(self) -> str:
        """The job as one JSON text (what a Ray worker receives); `from_wire` gives it back, equal."""
        return json.dumps({"id": self.id, "prompt": self.prompt, "settings": self.settings.to_dict(),
                           "line": self.line})

    @classmethod
    def from_wire(cls, text: str) -> "Job":
        d = json.loads(text)
        return cls(d["id"], d["prompt"], SamplingSettings.from_dict(d["settings"]), d["line"])


@dataclass
class BadLine:
    line: int
    error: str


def derive_seed(base: int | None, index: int) -> int:
    """The seed of the index-th prompt when it does not give its own: reproducible from the run's --seed."""
    return int(np.random.SeedSequence([0 if base is None else base, index]).generate_state(1)[0])


def line_id(obj: dict, n: int) -> str:
    """A JSONL line's id, removed from obj: a string as given, an integer as its digits, absent the line number.
    Anything else (a list, a float, null) is refused: written back as Python's repr it would not be the id the
    script sent."""
    value = obj.pop("id", n)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f'"id" must be a string or an integer, got {json.dumps(value)}')
    return str(value)


def read_jobs(lines: Iterable[str], defaults: SamplingSettings, jsonl: bool) -> Iterator[Job | BadLine]:
    """Jobs from prompt lines (plain text: one prompt per line; JSONL: {"prompt", "id"?, settings...})."""
    for n, line in enumerate(lines, start=1):
        line = line.rstrip("\r\n")
        if not jsonl:
            if line.strip():
                yield Job(str(n), line, defaults.with_(seed=derive_seed(defaults.seed, n)), n)
            continue
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict) or not isinstance(obj.get("prompt"), str):
                raise ValueError('each line must be a JSON object with a string "prompt"')
            job_id = line_id(obj, n)
            prompt = obj.pop("prompt")
            if obj.get("seed") is None:  # absent or null: derived, so that every row is reproducible
                obj["seed"] = derive_seed(defaults.seed, n)
            yield Job(job_id, prompt, SamplingSettings.from_dict(obj, defaults), n)
        except (ValueError, SettingsError, RecursionError) as e:
            yield BadLine(n, "too deeply nested" if isinstance(e, RecursionError) else str(e))


def generate_rows(decoder: LMDecoder, vocab: Vocab, jobs: list[Job]) -> list[dict]:
    """Run a batch of jobs together; returns one result dict per job, in order."""
    B = len(jobs)
    rows = [RowSampler(j.settings, skip_ids(j.settings, vocab)) for j in jobs]
    logits, state = step_rows(decoder, np.full(B, vocab.eot_id), decoder.initial_state(B))
    prompts = [vocab.encode(j.prompt) for j in jobs]
    if any(prompts):
        ids, mask = pad(prompts, vocab.pad_id)
        logits, state = prefill_rows(decoder, ids, state, mask)
    for row, p, job in zip(rows, prompts, jobs):
        n = job.settings.repeat_last_n
        row.observe(p[-n:] if n else [])
    guide = fresh_guide(decoder, vocab, [j.settings.guidance for j in jobs])
    out = decode_rows(decoder, vocab, logits, state, rows, [j.settings for j in jobs], guide=guide)
    return [{"id": job.id, "prompt": job.prompt, "text": d.text, "tokens": vocab.ids_to_tokens(d.ids),
             "token_ids": d.ids, "probs": [round(p, 6) for p in d.probs],
             "settings": job.settings.to_dict(), "seed": job.settings.seed} for job, d in zip(jobs, out)]


class Models(Protocol):
    """What a worker needs to run one kind of job (`PromptModels`, `session.batch_chat.ChatModels`):
    picklable (checkpoint paths), loaded once per worker into wire texts -> result lines."""

    def load(self) -> Callable[[list[str]], list[str]]: ...


class PromptRunner:
    """Runs batches of prompt jobs on a loaded LM: jobs in, their result lines (JSON text) out."""

    def __init__(self, decoder: LMDecoder, vocab: Vocab):
        self.decoder, self.vocab = decoder, vocab

    def __call__(self, jobs: list[Job]) -> list[str]:
        return [json.dumps(r) for r in generate_rows(self.decoder, self.vocab, jobs)]


@dataclass(frozen=True)
class PromptModels:
    """What a worker needs to run prompt jobs (picklable: a path, None = the shipped LM of the worker's own
    install; each worker loads the model once)."""

    checkpoint: Path | None = None

    def load(self) -> Callable[[list[str]], list[str]]:
        """Wire texts (`Job.to_wire`) -> result lines, on the model loaded now."""
        model, vocab, _ = load_lm(self.checkpoint or paths.lm_checkpoint())
        run = PromptRunner(LMDecoder(model), vocab)
        return lambda texts: run([Job.from_wire(t) for t in texts])


class ResumeError(ValueError):
    """An output file that a run may not write into (another run's, or not ours); the message says why."""


def duplicate_ids(jobs: list[Job]) -> list[str]:
    """Ids given to more than one prompt (each would shadow the other on resume)."""
    seen: dict[str, int] = {}
    dups = []
    for job in jobs:
        if job.id in seen:
            dups.append(f"id {job.id!r} on lines {seen[job.id]} and {job.line}")
        seen.setdefault(job.id, job.line)
    return dups


def run_manifest(prompts: bytes, defaults: SamplingSettings, fmt: str = RUN_FORMAT, **extra) -> dict:
    """What makes a run: the input file's content, the default settings, the kind of job (`fmt`) and any other
    defaults the lines inherit (`extra`, e.g. the reply mode of a chat batch)."""
    return {"format": fmt, "prompts_sha256": hashlib.sha256(prompts).hexdigest(),
            "settings": defaults.to_dict(), **extra}


def manifest_path(out_path: Path) -> Path:
    return out_path.with_name(out_path.name + ".run.json")


def start_run(out_path: Path, manifest: dict) -> set[str]:
    """Claim `out_path` (a regular file, or none yet) for this run and return the ids already done in it.

    A new or empty output gets its manifest; an output with content resumes only when its manifest is this
    run's (same prompts file content, same settings). ResumeError otherwise.
    """
    side = manifest_path(out_path)
    if out_path.exists() and out_path.stat().st_size > 0:
        try:
            theirs = json.loads(side.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            theirs = None
        if isinstance(theirs, dict) and isinstance(theirs.get("settings"), dict):
            try:  # a run started by an older version lacks the settings added since, at their defaults
                theirs["settings"] = SamplingSettings.from_dict(theirs["settings"]).to_dict()
            except SettingsError:
                pass
        if not isinstance(theirs, dict):
            raise ResumeError(f"{out_path} exists and was not written by `rnnchat generate --batch` or `rnnchat "
                              f"chat --batch` (no readable {side.name}): choose another --out, or remove it")
        if theirs != manifest:
            what = ("another kind of batch" if theirs.get("format") != manifest["format"] else
                    "the prompts file changed since it was started"
                    if theirs.get("prompts_sha256") != manifest["prompts_sha256"]
                    else "the settings differ from the ones it was started with")
            raise ResumeError(f"{out_path} holds another run's results ({what}): choose another --out to start a "
                              f"new run")
        return done_ids(out_path)
    if side.exists() and not _is_manifest(side):  # a run's own manifest is replaced; anything else is kept
        raise ResumeError(f"{side} exists and is not a batch run's manifest (it would be replaced): choose another "
                          f"--out, or remove it")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(side, (json.dumps(manifest, indent=1) + "\n").encode())
    return set()


def _is_manifest(path: Path) -> bool:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(data, dict) and isinstance(data.get("format"), str) and "prompts_sha256" in data


def done_ids(out_path: Path) -> set[str]:
    """Ids already written to an output file (for resume). A torn last line (a crash mid-write) is cut off."""
    if not out_path.exists():
        return set()
    data = out_path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(out_path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)
    ids = set()
    with open(out_path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                ids.add(str(json.loads(line)["id"]))
            except (ValueError, KeyError, TypeError, RecursionError):
                continue
    return ids
