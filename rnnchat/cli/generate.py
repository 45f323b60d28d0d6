"""`rnnchat generate`: stream a continuation to stdout, or run a prompt file in batches to JSONL."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TextIO


from rnnchat.runtime import one_blas_thread
from rnnchat.engine.batch import (BadLine, Job, ResumeError, duplicate_ids, generate_rows, read_jobs, run_manifest,
                                  start_run)
from rnnchat.engine.engine import Engine
from rnnchat.engine.tokens import continued
from rnnchat.sampling import SamplingSettings, SettingsError, skip_ids
from rnnchat.progress import Progress


class InputError(Exception):
    """Unreadable input (e.g. not UTF-8): a clear message, exit code 1."""


def read_prompt(arg: str, stdin: TextIO | None = None) -> str:
    """The prompt argument, or standard input for '-' (strict UTF-8: bad bytes are an error)."""
    if arg != "-":
        return arg
    stdin = stdin or sys.stdin
    data = stdin.buffer.read() if hasattr(stdin, "buffer") else stdin.read().encode()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"standard input is not valid UTF-8 (byte {e.start}: {data[e.start:e.start + 1]!r})")
    return text[:-1] if text.endswith("\n") else text


def stream_samples(engine: Engine, prompt: str, settings: SamplingSettings, num_samples: int, as_json: bool,
                   out: TextIO | None = None, echo: bool = False) -> None:
    """Each sample streams token by token to `out` (text only) or, with as_json, one JSON object per sample.

    The text continues the prompt as one text would (spacing and capitals: "the movie was" + " great");
    echo prints the prompt before it. Several plain-text samples are each headed by a `--- sample K ---` line.
    """
    out = out or sys.stdout
    with one_blas_thread():
        base = engine.conversation(cache=settings.cache)
        t0 = time.perf_counter()
        n_prompt = base.feed(prompt)
        prefill_s = time.perf_counter() - t0
        for k in range(num_samples):
            s = settings if settings.seed is None else settings.with_(seed=settings.seed + k)
            conv = base.fork()
            t1 = time.perf_counter()
            first = None
            toks = []
            if not as_json and num_samples > 1:
                out.write(f"--- sample {k + 1} ---\n")
            if not as_json and echo:
                out.write(prompt)
            for tok in continued(prompt, conv.stream(s, stop_ids=(engine.vocab.eot_id,)), engine.vocab):
                first = first or time.perf_counter() - t1
                toks.append(tok)
                if not as_json:
                    out.write(tok.text)
                    out.flush()
            total = time.perf_counter() - t1
            text = "".join(t.text for t in toks)
            if as_json:
                out.write(json.dumps({"prompt": prompt, "text": text, "tokens": [t.token for t in toks],
                                      "probs": [round(t.prob, 6) for t in toks], "settings": s.to_dict(),
                                      "seed": s.seed, "timing": {
                                          "prompt_tokens": n_prompt, "prefill_s": round(prefill_s, 4),
                                          "first_token_s": round(first or 0.0, 4), "total_s": round(total, 4),
                                          "tokens_per_s": round(len(toks) / total, 1) if total else None}}) + "\n")
            else:
                out.write("\n")
            out.flush()


def run_batch(engine: Engine, in_path: Path, out_path: Path, defaults: SamplingSettings, batch_size: int,
              progress: bool = True) -> int:
    """Run a prompt file; returns the number of malformed lines (reported on stderr, the rest completes)."""
    jsonl = in_path.suffix.lower() in (".jsonl", ".json")
    try:
        text = in_path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{in_path} is not valid UTF-8 (byte {e.start})")
    except OSError as e:
        raise InputError(f"cannot read {in_path}: {e.strerror}")
    lines = text.split("\n")  # only \n ends a line (str.splitlines also splits on U+2028, \x0c, ...)
    if lines and lines[-1] == "":
        lines.pop()
    items = list(read_jobs(lines, defaults, jsonl))
    for n, item in enumerate(items):
        if isinstance(item, Job):
            try:
                skip_ids(item.settings, engine.vocab)
            except SettingsError as e:
                items[n] = BadLine(item.line, str(e))
    jobs_all = [i for i in items if isinstance(i, Job)]
    if dups := duplicate_ids(jobs_all):
        raise InputError(f"{in_path}: every prompt needs its own id (results and resume are keyed by it): "
                         + "; ".join(dups[:3]) + (f" (+{len(dups) - 3} more)" if len(dups) > 3 else ""))
    bad = [i for i in items if isinstance(i, BadLine)]
    for b in bad:
        print(f"{in_path}:{b.line}: skipped: {b.error}", file=sys.stderr)
    if out_path.exists() and in_path.exists() and out_path.samefile(in_path):
        raise InputError(f"--out {out_path} is the prompts file itself: choose another output file")
    special = out_path.exists() and not out_path.is_file()  # /dev/stdout, a pipe, /dev/null: write only
    try:
        seen = set() if special else start_run(out_path, run_manifest(text.encode("utf-8"), defaults))
        out = open(out_path, "a", encoding="utf-8")
    except ResumeError as e:
        raise InputError(str(e)) from None
    except OSError as e:
        raise InputError(f"cannot write {out_path}: {e.strerror or e}")
    jobs = [j for j in jobs_all if j.id not in seen]
    if seen:
        print(f"resuming: {len(seen)} results already in {out_path}, {len(jobs)} to go", file=sys.stderr)
    bar = Progress(len(jobs), "generate") if progress else None
    try:
        with out:
            for start in range(0, len(jobs), batch_size):
                for result in generate_rows(engine.decoder, engine.vocab, jobs[start: start + batch_size]):
                    out.write(json.dumps(result) + "\n")
                out.flush()
                if bar:
                    bar.update(min(start + batch_size, len(jobs)))
    except OSError as e:  # a full disk, a closed pipe: what was flushed stays, a re-run resumes from it
        raise InputError(f"cannot write {out_path}: {e.strerror or e}") from None
    if bar:
        bar.close()
    return len(bad)
