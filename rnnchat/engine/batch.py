"""Scripted batch generation: many prompts in, JSONL out, prompts run through the network together.

Each prompt runs exactly as it would alone: the state after a turn boundary, the prompt fed, then tokens
sampled with its own seeded generator. Rows of a batch advance together (one matrix product per layer per
step); rows that finish drop out of the batch. Results are written in input order, each as soon as its batch
is done, and a re-run with the same output file skips ids already written (resume).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnnchat.data.batches import pad
from rnnchat.models.lm import LMDecoder
from rnnchat.sampling import RowSampler, SamplingSettings, SettingsError, StopWatch, sample_rows, skip_ids
from rnnchat.text import Vocab


@dataclass
class Job:
    id: str
    prompt: str
    settings: SamplingSettings
    line: int = 0  # line number in the input file


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
            obj.setdefault("seed", derive_seed(defaults.seed, n))
            yield Job(job_id, prompt, SamplingSettings.from_dict(obj, defaults), n)
        except (ValueError, SettingsError, RecursionError) as e:
            yield BadLine(n, "too deeply nested" if isinstance(e, RecursionError) else str(e))


def generate_rows(decoder: LMDecoder, vocab: Vocab, jobs: list[Job]) -> list[dict]:
    """Run a batch of jobs together; returns one result dict per job, in order."""
    B = len(jobs)
    rows = [RowSampler(j.settings, skip_ids(j.settings, vocab)) for j in jobs]
    logits, state = decoder.step(np.full(B, vocab.eot_id), decoder.initial_state(B))
    prompts = [vocab.encode(j.prompt) for j in jobs]
    if any(prompts):
        ids, mask = pad(prompts, vocab.pad_id)
        logits, state = decoder.prefill(ids, state, mask)
    for row, p, job in zip(rows, prompts, jobs):
        n = job.settings.repeat_last_n
        row.observe(p[-n:] if n else [])
    out_ids: list[list[int]] = [[] for _ in jobs]
    out_probs: list[list[float]] = [[] for _ in jobs]
    max_tokens = np.array([j.settings.max_tokens for j in jobs])  # counts down: tokens each row may still add
    watches = [StopWatch(j.settings.stop, vocab.itos) for j in jobs]  # every row: its text is the result
    active = np.flatnonzero(max_tokens > 0)
    logits, state = logits[active], [(h[active], c[active]) for h, c in state]
    while active.size:
        ids, probs = sample_rows(logits, [rows[j] for j in active])
        max_tokens[active] -= 1
        keep = (ids != vocab.eot_id) & (max_tokens[active] > 0)
        for k, (j, tid, p) in enumerate(zip(active.tolist(), ids.tolist(), probs.tolist())):
            out_ids[j].append(tid)
            out_probs[j].append(p)
            watches[j].push(tid)
            if watches[j].hit:
                keep[k] = False
        if not keep.any():
            break
        if not keep.all():  # rows that finished drop out of the batch
            ids, state, active = ids[keep], [(h[keep], c[keep]) for h, c in state], active[keep]
        logits, state = decoder.step(ids, state)
    return [{"id": job.id, "prompt": job.prompt, "text": watches[j].text, "tokens": vocab.ids_to_tokens(out_ids[j]),
             "token_ids": out_ids[j], "probs": [round(p, 6) for p in out_probs[j]],
             "settings": job.settings.to_dict(), "seed": job.settings.seed} for j, job in enumerate(jobs)]


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
