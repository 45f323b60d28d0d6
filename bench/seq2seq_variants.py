"""Seq2seq variants on the addition task with the same training budget (issue 5).

Trains each variant with identical data (rnnchat.data.tasks.addition: 45,000 training / 5,000 held-out problems),
embedding and hidden sizes, batch size, optimiser, learning-rate schedule and number of epochs, and reports the
held-out exact match of greedy decoding after every epoch, the final one, and the wall time.

    python bench/seq2seq_variants.py [--epochs 10] [--variants plain reversed ...] \
        [--json bench/results/seq2seq_variants.json]

Run with one BLAS thread (OPENBLAS_NUM_THREADS=1); wall times depend on the machine's load.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rnnchat.models.seq2seq import load_seq2seq  # noqa: E402
from rnnchat.train.seq2seq_run import Seq2SeqTrainArgs  # noqa: E402
from rnnchat.train.seq2seq_tasks import train_task  # noqa: E402

# name -> architecture options (everything else identical)
VARIANTS: dict[str, dict] = {
    "plain": dict(bidirectional=False, reverse=False, peeky=False, attention="none"),
    "reversed": dict(bidirectional=False, reverse=True, peeky=False, attention="none"),
    "reversed+peeky": dict(bidirectional=False, reverse=True, peeky=True, attention="none"),
    "attention": dict(bidirectional=False, reverse=False, peeky=False, attention="dot"),
    "reversed+attention": dict(bidirectional=False, reverse=True, peeky=False, attention="dot"),
    "bi+reversed+attention": dict(bidirectional=True, reverse=True, peeky=False, attention="dot"),
}


def curve(run_dir: Path) -> list[float]:
    out = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        if "val_exact_match" in r:
            out.append(r["val_exact_match"])
    return out


def summary(a: argparse.Namespace, rows: list[dict]) -> dict:
    return {"task": "addition", "train_examples": 45_000, "heldout_examples": 5_000,
            "budget": {"epochs": a.epochs, "embed": a.embed, "hidden": a.hidden, "proj": a.proj,
                       "batch_size": a.batch_size, "optimizer": "Adam", "lr": a.lr, "lr_decay_on_plateau": 0.5,
                       "clip": 5.0, "seed": a.seed},
            "decoding": "greedy", "machine": platform.processor() or platform.machine(), "blas_threads": 1,
            "timing_note": "cpu_s: this process's CPU time (the work); wall_s also counts waiting for a shared "
                           "CPU (the machine was shared with other training jobs)",
            "rows": list(rows)}


def merge(path: Path, out: dict) -> list[dict]:
    """Write `out` to `path`, keeping rows of other variants already there from a run with the same budget
    (so variants can run as parallel processes); returns the merged rows in VARIANTS order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(Path(tempfile.gettempdir()) / "rnnchat_seq2seq_variants.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            old = json.loads(path.read_text()) if path.exists() else {}
        except ValueError:
            old = {}
        rows = {r["variant"]: r for r in old.get("rows", [])} if old.get("budget") == out["budget"] else {}
        rows |= {r["variant"]: r for r in out["rows"]}
        out["rows"] = [rows[v] for v in VARIANTS if v in rows]
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(out, indent=2) + "\n")
        tmp.replace(path)
    return out["rows"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=float, default=10)
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    p.add_argument("--embed", type=int, default=32)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--proj", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "seq2seq_variants.json")
    a = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.variants:
            t0, c0 = time.monotonic(), time.process_time()
            args = Seq2SeqTrainArgs(task="addition", run_dir=Path(tmp) / name, out=Path(tmp) / f"{name}.npz",
                                    embed=a.embed, hidden=a.hidden, proj=a.proj, batch_size=a.batch_size,
                                    lr=a.lr, epochs=a.epochs, seed=a.seed, tie=False, dropout=0.0,
                                    **VARIANTS[name])
            result = train_task(args)
            model, _, header = load_seq2seq(args.out)
            row = {"variant": name, **VARIANTS[name],
                   "params": int(sum(p.size for p in model.params.params)),
                   "exact_match": result["metrics"]["heldout_exact_match"],
                   "heldout_loss": result["metrics"]["heldout_loss"],
                   "best_epoch": header["metrics"]["epoch"],
                   "exact_match_by_epoch": curve(args.run_dir),
                   "wall_s": round(time.monotonic() - t0, 1), "cpu_s": round(time.process_time() - c0, 1)}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
            merged = merge(a.json, summary(a, rows))  # after every variant: partial results survive
    print("| variant | params | exact match | best epoch | CPU time | wall |\n|---|---:|---:|---:|---:|---:|")
    for r in merged:
        print(f"| {r['variant']} | {r['params']:,} | {r['exact_match']:.2%} | {r['best_epoch']} | "
              f"{r['cpu_s']:.0f} s | {r['wall_s']:.0f} s |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
