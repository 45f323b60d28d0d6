"""Keystroke latency of LiveSentiment.set_text: type a ~100-token paragraph character by character, with a
burst of backspaces, an edit in the middle, one at the start and a paste in the middle (a model that never
restarts runs every token after an edit again; one that restarts at sentence or clause ends runs the rest of
the edited segment); single BLAS thread; print mean / p50 / p99 / max per kind.

    python bench/sentiment_keystroke.py [--checkpoint rnnchat/checkpoints/sentiment.npz] [--repeat 5]

Without a checkpoint a randomly initialised model of the default size is timed (the cost is the same).
An ensemble checkpoint runs one step per member on each keystroke.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rnnchat.engine.sentiment_live import LiveSentiment  # noqa: E402

PARAGRAPH = (
    "Okay so I finally tried that new ramen place downtown last night. The broth was honestly "
    "amazing, really rich and not too salty, but the service was painfully slow and our waiter "
    "forgot the drinks twice :( Still, I'd go back for the noodles alone! Not bad at all for the "
    "price, and the dessert was a nice surprise :) Has anyone else been there yet? My friend says the "
    "spicy miso bowl is even better, so we are going again next Friday with my sister, her kids and the "
    "whole team."
)


def keystrokes(paragraph: str) -> list[tuple[str, str]]:
    """(kind, full text) per keystroke: typing, a burst of backspaces, retyping, a mid-text edit, an edit at
    the start, a paste in the middle ("setup" entries put the paragraph back, untimed)."""
    out = [("type", paragraph[:i]) for i in range(1, len(paragraph) + 1)]
    text = paragraph
    for _ in range(25):
        text = text[:-1]
        out.append(("backspace", text))
    for ch in paragraph[len(text):]:
        text += ch
        out.append(("type", text))
    cut = paragraph.index("painfully")
    for i in range(1, len("incredibly ") + 1):
        out.append(("edit-middle", paragraph[:cut] + "incredibly "[:i] + paragraph[cut:]))
    out.append(("setup", paragraph))  # untimed: each kind edits the paragraph itself, one change at a time
    for i in range(1, len("Well, ") + 1):
        out.append(("edit-start", "Well, "[:i] + paragraph))
    out.append(("setup", paragraph))
    paste = " and honestly the best ramen I have had in years"
    out.append(("paste-middle", paragraph[:cut] + paste + " " + paragraph[cut:]))
    return out


def describe(model) -> str:
    """Sizes of a model, or of each member of an ensemble."""
    members = getattr(model, "members", [model])
    sizes = [f"embed {c.embed}, hidden {c.hidden} x {c.layers} layer(s), pool {c.pool}"
             for c in (m.config for m in members)]
    return (f"ensemble of {len(members)}: " if len(members) > 1 else "") + "; ".join(sizes)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(__file__).resolve().parents[1] / "rnnchat" / "checkpoints" / "sentiment.npz"
    p.add_argument("--checkpoint", type=Path, default=default)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--json", type=Path, help="also write the table to this file")
    args = p.parse_args()
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(1)
    except ImportError:
        pass
    if args.checkpoint.exists():
        live = LiveSentiment.from_checkpoint(args.checkpoint)
        what = str(args.checkpoint)
    else:
        from rnnchat.models.sentiment import SentimentConfig, SentimentModel
        from rnnchat.text import SPECIALS, Vocab
        vocab = Vocab([*SPECIALS] + [f"w{i}" for i in range(12_000 - len(SPECIALS))])
        live = LiveSentiment(SentimentModel(SentimentConfig(vocab_size=len(vocab))), vocab)
        what = "random model (no checkpoint)"
    strokes = keystrokes(PARAGRAPH)
    times: dict[str, list[float]] = {}
    steps: list[int] = []
    kind_steps: dict[str, list[int]] = {}
    for _ in range(args.repeat):
        live.reset()
        for kind, text in strokes:
            t0 = time.perf_counter()
            live.set_text(text)
            dt = time.perf_counter() - t0
            if kind == "setup":
                continue
            times.setdefault(kind, []).append(dt)
            times.setdefault("all", []).append(dt)
            steps.append(live.steps_run)
            kind_steps.setdefault(kind, []).append(live.steps_run)
            kind_steps.setdefault("all", []).append(live.steps_run)
    t0 = time.perf_counter()
    for _ in range(args.repeat):
        live.classify(PARAGRAPH)
    scratch = (time.perf_counter() - t0) / args.repeat
    print(f"model: {what}: {describe(live.model)}")
    timed = sum(kind != "setup" for kind, _ in strokes)
    print(f"{timed} keystrokes x {args.repeat}, paragraph {len(PARAGRAPH)} chars / "
          f"{len(live.tokens)} tokens; model steps per keystroke: mean {np.mean(steps):.2f}, max {max(steps)}")
    print(f"{'kind':<12}{'n':>6}{'steps':>7}{'mean ms':>10}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    table = {}
    for kind, ts in times.items():
        a = np.array(ts) * 1e3
        table[kind] = {"n": len(a), "max_steps": max(kind_steps[kind]), "mean_ms": round(float(a.mean()), 3),
                       "p50_ms": round(float(np.percentile(a, 50)), 3),
                       "p99_ms": round(float(np.percentile(a, 99)), 3), "max_ms": round(float(a.max()), 3)}
        t = table[kind]
        print(f"{kind:<12}{t['n']:>6}{t['max_steps']:>7}{t['mean_ms']:>10.3f}{t['p50_ms']:>9.3f}"
              f"{t['p99_ms']:>9.3f}{t['max_ms']:>9.3f}")
    print(f"whole paragraph from scratch: {scratch * 1e3:.2f} ms")
    # Noise floor: the same number of calls to a trivial ~50 us Python loop. Its p99/max show what
    # the OS scheduler adds (e.g. when other processes keep every core busy), independent of the model.
    floor = []
    for _ in range(len(times["all"])):
        t0 = time.perf_counter()
        sum(range(1500))
        floor.append(time.perf_counter() - t0)
    f = np.array(floor) * 1e3
    print(f"{'noise floor':<12}{len(f):>6}{f.mean():>10.3f}{np.percentile(f, 50):>9.3f}"
          f"{np.percentile(f, 99):>9.3f}{f.max():>9.3f}   (trivial loop; spikes here are scheduling)")
    if args.json:
        import json
        args.json.write_text(json.dumps({"model": what, "sizes": describe(live.model), "tokens": len(live.tokens),
                                         "repeat": args.repeat, "kinds": table,
                                         "scratch_ms": round(scratch * 1e3, 3),
                                         "noise_floor_p99_ms": round(float(np.percentile(f, 99)), 3)}, indent=1)
                             + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
