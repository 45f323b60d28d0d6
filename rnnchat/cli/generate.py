"""`rnnchat generate`: stream a continuation to stdout (batch files: `rnnchat.cli.batch`)."""

from __future__ import annotations

import json
import sys
import time
from typing import TextIO

from rnnchat.runtime import one_blas_thread
from rnnchat.engine.engine import Engine
from rnnchat.engine.tokens import continued
from rnnchat.sampling import SamplingSettings


class InputError(Exception):
    """Unreadable input (e.g. not UTF-8), or a batch that cannot run: a clear message, exit code `code`."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def read_prompt(arg: str, stdin: TextIO | None = None) -> str:
    """The prompt argument, or standard input for '-' (strict UTF-8: bad bytes are an error)."""
    if arg != "-":
        return arg
    stdin = stdin or sys.stdin
    data = stdin.buffer.read() if hasattr(stdin, "buffer") else stdin.read().encode()
    try:
        text = data.decode("utf-8-sig")  # -sig: a leading byte-order mark (Notepad) is not text
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
        unknown = base.history.count(engine.vocab.unk_id)  # (the ids just fed: the model reads each as <unk>)
        if unknown and unknown >= n_prompt / 2:
            print(f"note: {unknown} of the prompt's {n_prompt} tokens are outside the model's vocabulary "
                  f"(each reads as <unk>)", file=sys.stderr)
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
