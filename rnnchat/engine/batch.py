"""Scripted batch generation: many prompts in, JSONL out, prompts run through the network together.

Each prompt runs exactly as it would alone: the state after a turn boundary, the prompt fed, then tokens
sampled with its own seeded generator (every line has a seed: its own, or one derived from the run's seed and
its line number). Rows of a batch advance together (one matrix product per layer per step); rows that finish
drop out of the batch. Results are written in input order, each as soon as its batch is done, and a re-run
with the same output file skips ids already written (resume).

A row's result does not depend on the other rows of its batch, bit for bit: OpenBLAS multiplies a matrix of
two or more rows with its GEMM kernels, where each row's sums come out the same whatever the other rows (no
row differed over 2..700 rows, 1 or 2 threads, for every product shape of the shipped LM and the test LM),
but a single row goes through GEMV, whose sums differ in the last bits (1 ulp, seen as probabilities 3e-6 apart
in the output); so a batch of one, and the last row left in a batch, run as two copies of themselves
(`step_rows`, `prefill_rows`). Batch size, resume and the split over Ray workers (`batch_ray`) then cannot
change a line.

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
from rnnchat.models.lm import LayerStates, LMDecoder, load_lm
from rnnchat.sampling import RowSampler, SamplingSettings, SettingsError, StopWatch, sample_rows, skip_ids
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
            job_id = str(obj.pop("id", n))
            prompt = obj.pop("prompt")
            if obj.get("seed") is None:  # absent or null: derived, so that every row is reproducible
                obj["seed"] = derive_seed(defaults.seed, n)
            yield Job(job_id, prompt, SamplingSettings.from_dict(obj, defaults), n)
        except (ValueError, SettingsError, RecursionError) as e:
            yield BadLine(n, "too deeply nested" if isinstance(e, RecursionError) else str(e))


@dataclass
class Decoded:
    """One row's sampled tokens: ids, their probabilities and text pieces (as `StopWatch` shows them, <eom> a
    new line), and `finished`: the row ended on <eot> (not on max tokens or a stop sequence)."""

    ids: list[int]
    probs: list[float]
    pieces: list[str]
    finished: bool
    logprob: float = 0.0  # with_logprobs: sum of log p(token) under the model (not the sampling distribution)

    @property
    def text(self) -> str:
        return "".join(self.pieces)


def _doubled(state: LayerStates) -> LayerStates:
    return [(np.repeat(h, 2, axis=0), np.repeat(c, 2, axis=0)) for h, c in state]


def _first(state: LayerStates) -> LayerStates:
    return [(h[:1], c[:1]) for h, c in state]


def step_rows(decoder: LMDecoder, ids: np.ndarray, state: LayerStates) -> tuple[np.ndarray, LayerStates]:
    """`decoder.step` whose result for a row does not depend on the other rows: one row runs as two copies
    (the GEMM path every bigger batch takes, not GEMV; see the module's docstring)."""
    if len(ids) != 1:
        return decoder.step(ids, state)
    logits, state = decoder.step(np.repeat(ids, 2), _doubled(state))
    return logits[:1], _first(state)


def prefill_rows(decoder: LMDecoder, ids: np.ndarray, state: LayerStates,
                 mask: np.ndarray) -> tuple[np.ndarray, LayerStates]:
    """`decoder.prefill`, one row run as two copies (as `step_rows`)."""
    if len(ids) != 1:
        return decoder.prefill(ids, state, mask)
    logits, state = decoder.prefill(np.repeat(ids, 2, axis=0), _doubled(state), np.repeat(mask, 2, axis=0))
    return logits[:1], _first(state)


@dataclass
class Guide:
    """Classifier-free guidance (Sanchez et al. 2023, "Stay on Topic with Classifier-Free Guidance"): every row
    also runs from a fresh state over the same sampled tokens, and draws from
    z + w * (log softmax(z) - log softmax(z_fresh)): words the conversation or prompt made likelier gain, words
    that are likely whatever was said lose (the anti-LM term of Li et al. 2016, applied at every token).
    The ends of a message and a turn (<eom>, <eot>) keep the model's own logits: where a reply ends is the
    model's call (a fresh state almost never ends a turn at once, so guided, every chat reply would be empty).
    `weights` (B,), `logits` (B, V) and `state` are the fresh stream's, one row per decoded row."""

    weights: np.ndarray
    logits: np.ndarray
    state: LayerStates
    plain: tuple[int, ...] = ()

    def apply(self, logits: np.ndarray) -> np.ndarray:
        """The logits to draw from (a new array), given the decoded rows' own."""
        w = self.weights[:, None].astype(logits.dtype)
        out = logits + w * (log_softmax(logits) - log_softmax(self.logits))
        out[:, self.plain] = logits[:, self.plain]
        return out

    def rows(self, keep: np.ndarray) -> "Guide":
        return Guide(self.weights[keep], self.logits[keep], [(h[keep], c[keep]) for h, c in self.state], self.plain)


def fresh_guide(decoder: LMDecoder, vocab: Vocab, weights: list[float]) -> Guide | None:
    """A guide for rows with these weights (None when all are 0), its rows in the state a conversation starts
    from (<eot> fed from zeros)."""
    if not any(weights):
        return None
    logits, state = step_rows(decoder, np.full(len(weights), vocab.eot_id), decoder.initial_state(len(weights)))
    return Guide(np.asarray(weights, np.float64), logits, state, (vocab.eom_id, vocab.eot_id))


def step_guided(decoder: LMDecoder, ids: np.ndarray, state: LayerStates,
                guide: Guide | None) -> tuple[np.ndarray, LayerStates]:
    """`step_rows` of the decoded rows and, with a guide, of its fresh rows in the same product per layer (the
    weights are read once for 2B rows); the guide's logits and state advance in place."""
    if guide is None:
        return step_rows(decoder, ids, state)
    k = len(ids)
    both = [(np.concatenate([h, gh]), np.concatenate([c, gc])) for (h, c), (gh, gc) in zip(state, guide.state)]
    out, both = step_rows(decoder, np.concatenate([ids, ids]), both)
    guide.logits, guide.state = out[k:], [(h[k:], c[k:]) for h, c in both]
    return out[:k], [(h[:k], c[:k]) for h, c in both]


def log_softmax(z: np.ndarray) -> np.ndarray:
    top = z.max(axis=1, keepdims=True)
    return z - (top + np.log(np.exp(z - top).sum(axis=1, keepdims=True)))


def decode_rows(decoder: LMDecoder, vocab: Vocab, logits: np.ndarray, state, rows: list[RowSampler],
                settings: list[SamplingSettings], with_logprobs: bool = False, enough: int | None = None,
                adjust: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
                guide: Guide | None = None) -> list[Decoded]:
    """Sample every row from its (logits (B, V), state) until <eot>, its max tokens or a stop sequence.

    Rows advance together, one matrix product per layer per step; rows that finish drop out of the batch, and
    what a row draws does not depend on the other rows (`step_rows`).
    with_logprobs: also sum each row's log-probabilities under the model (what reply ranking scores).
    enough: stop once this many rows have finished on <eot>; the rows still running end there, unfinished.
    adjust: (logits (B, V), top-layer states (B, H)) -> the logits to sample from and score (the conversation
    cache's mixture); applied before everything else at each step.
    guide: draw under classifier-free guidance (`Guide`, one row per row); `with_logprobs` still sums the
    model's own log-probabilities (what the reply ranking scores).
    """
    B = len(rows)
    out_ids: list[list[int]] = [[] for _ in range(B)]
    out_probs: list[list[float]] = [[] for _ in range(B)]
    out_pieces: list[list[str]] = [[] for _ in range(B)]
    max_tokens = np.array([s.max_tokens for s in settings])  # counts down: tokens each row may still add
    watches = [StopWatch(s.stop, vocab) for s in settings]
    finished = [False] * B
    logprob = np.zeros(B)
    active = np.flatnonzero(max_tokens > 0)
    logits, state = logits[active], [(h[active], c[active]) for h, c in state]
    if guide is not None:
        guide = guide.rows(active)
    while active.size:
        if adjust is not None:
            logits = adjust(logits, state[-1][0])
        if with_logprobs:  # log-softmax of the model's logits, before sampling changes them
            z = logits.copy()  # in the logits' precision; sums in float64
            top = z.max(axis=1, keepdims=True)
            logz = np.log(np.exp(z - top).sum(axis=1, dtype=np.float64)) + top[:, 0]
        if guide is not None:
            logits = guide.apply(logits)
        ids, probs = sample_rows(logits, [rows[j] for j in active])
        if with_logprobs:
            logprob[active] += z[np.arange(len(ids)), ids] - logz
        max_tokens[active] -= 1
        keep = (ids != vocab.eot_id) & (max_tokens[active] > 0)
        for k, (j, tid, p) in enumerate(zip(active.tolist(), ids.tolist(), probs.tolist())):
            out_ids[j].append(tid)
            out_probs[j].append(p)
            out_pieces[j].append(watches[j].push(tid))
            finished[j] = tid == vocab.eot_id
            if watches[j].hit:
                keep[k] = False
        if not keep.any() or (enough is not None and sum(finished) >= enough):
            break
        if not keep.all():  # rows that finished drop out of the batch
            ids, state, active = ids[keep], [(h[keep], c[keep]) for h, c in state], active[keep]
            if guide is not None:
                guide = guide.rows(keep)
        logits, state = step_guided(decoder, ids, state, guide)
    return [Decoded(out_ids[j], out_probs[j], out_pieces[j], finished[j], float(logprob[j])) for j in range(B)]


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
        except (OSError, ValueError):
            theirs = None
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
    out_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(side, (json.dumps(manifest, indent=1) + "\n").encode())
    return set()


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
