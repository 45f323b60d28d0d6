"""Ablation of the AWD-LSTM regularisers on the shipped LM (issue 17): each technique alone, at equal tokens.

Every variant fine-tunes the same starting weights (`--init-from`, default the shipped `rnnchat/checkpoints/lm.npz`) on
the same token stream for the same number of steps, and is scored by validation perplexity (carried state,
dropout off) at the end: val only, never test. Variants run as `rnnchat train lm` subprocesses, `--jobs` at a
time, each with `--threads` BLAS threads (two one-thread jobs use two cores better than one two-thread job).

    python bench/lm_ablation.py [--steps 100] [--jobs 2] [--only baseline average ...] \
        [--json bench/results/lm_ablation.json]

Prints a table: val perplexity of each variant and its change from the baseline (the shipped recipe continued).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

VARIANTS: dict[str, list[str]] = {
    "baseline": [],
    "average": ["--average-from", "0"],
    "weight_drop": ["--weight-drop", "0.3"],
    "locked": ["--locked-dropout"],
    "embed_drop": ["--embed-drop", "0.1"],
    "ar_tar": ["--ar", "2", "--tar", "1"],
    "vary_bptt": ["--vary-bptt"],
    "all": ["--average-from", "0", "--weight-drop", "0.3", "--locked-dropout", "--embed-drop", "0.1",
            "--ar", "2", "--tar", "1", "--vary-bptt"],
}


def run_variant(name: str, extra: list[str], a: argparse.Namespace, steps_per_epoch: int) -> dict:
    run_dir = Path(a.run_root) / name
    cmd = [sys.executable, "-m", "rnnchat", "train", "lm", "--init-from", str(a.init_from), "--mark-starts",
           "--run-dir", str(run_dir), "--bptt", str(a.bptt), "--batch-size", str(a.batch_size), "--lr", str(a.lr),
           "--epochs", f"{a.steps / steps_per_epoch:.8f}", "--eval-every", str(a.steps), *extra]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(a.threads), "OMP_NUM_THREADS": str(a.threads)}
    t0 = time.monotonic()
    with open(Path(a.run_root) / f"{name}.log", "w") as log:
        rc = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    vals = []
    metrics = run_dir / "metrics.jsonl"
    if metrics.exists():
        vals = [json.loads(line) for line in metrics.read_text().splitlines() if '"val_perplexity"' in line]
    return {"variant": name, "flags": " ".join(extra), "rc": rc, "seconds": round(time.monotonic() - t0, 1),
            "steps": vals[-1]["step"] if vals else None, "val_perplexity": vals[-1]["val_perplexity"] if vals else None}


def steps_in_epoch(batch_size: int, bptt: int) -> int:
    from rnnchat.data import corpora
    from rnnchat.train.lm import build_vocab, stream
    convs = corpora.load_chitchat("train")
    n = (len(stream(convs, build_vocab(convs, 10_000), mark_starts=True)) - 1) // batch_size
    return -(-n // bptt)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--init-from", type=Path, default=Path("rnnchat/checkpoints/lm.npz"))
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--bptt", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--only", nargs="*", choices=list(VARIANTS), default=None)
    p.add_argument("--run-root", type=Path, default=Path("runs/ablation"))
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args()
    Path(a.run_root).mkdir(parents=True, exist_ok=True)
    per_epoch = steps_in_epoch(a.batch_size, a.bptt)
    names = a.only or list(VARIANTS)
    with ThreadPoolExecutor(a.jobs) as pool:
        rows = list(pool.map(lambda n: run_variant(n, VARIANTS[n], a, per_epoch), names))
    base = next((r["val_perplexity"] for r in rows if r["variant"] == "baseline"), None)
    print(f"{'variant':<12} {'val ppl':>8} {'vs baseline':>11}  steps  seconds  flags")
    for r in rows:
        ppl = r["val_perplexity"]
        delta = f"{ppl - base:+.2f}" if ppl is not None and base is not None else "-"
        print(f"{r['variant']:<12} {ppl if ppl is None else round(ppl, 2)!s:>8} {delta:>11}  {r['steps']!s:>5} "
              f"{r['seconds']:>8}  {r['flags']}")
    if a.json:
        setup = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items() if k not in ("json", "only")}
        a.json.write_text(json.dumps({"setup": setup, "steps_per_epoch": per_epoch, "rows": rows}, indent=1) + "\n")
    return 0 if all(r["rc"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
