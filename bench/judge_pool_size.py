"""How the reply judge's pick grows with the number of candidates (issue 14): is N the lever?

Each judged 16-candidate pool is cut to k random candidates (20 draws per pool); the cross-validated judge
(`judge_training.cross_validated_predictions`: fitted without the pool's prompt) picks among the finished
ones; printed per system: the mean SSA of its pick and of the best candidate (the oracle) at each k.

    OPENBLAS_NUM_THREADS=1 python bench/judge_pool_size.py [--pools DIR ...] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rnnchat.session import judge_training as jt  # noqa: E402

SIZES = (2, 4, 8, 12, 16)


def judged_pools(ap: argparse.ArgumentParser) -> tuple[argparse.Namespace, list[jt.Pool], list[np.ndarray]]:
    """--pools DIR... (default: the committed judged pools) and --json OUT added to `ap`; the parsed arguments,
    the pools and their candidates' judge features."""
    ap.add_argument("--pools", type=Path, nargs="+",
                    default=[ROOT / "bench/chat_judging/pool_dev", ROOT / "bench/chat_judging/pool_train"])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    try:
        _, _, pools, feats = jt.judged_features(args.pools)
    except ValueError as e:
        raise SystemExit(str(e)) from None
    return args, pools, feats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--draws", type=int, default=20)
    args, pools, feats = judged_pools(ap)
    predictions = jt.cross_validated_predictions(pools, feats, 300.0)
    rng = np.random.default_rng(1)
    out = {}
    for system in sorted({p.system for p in pools}):
        picks = {k: [] for k in SIZES}
        best = {k: [] for k in SIZES}
        for pool, pred in zip(pools, predictions):
            if pool.system != system:
                continue
            for k in SIZES:
                for _ in range(args.draws):
                    sub = rng.choice(len(pool.texts), size=min(k, len(pool.texts)), replace=False)
                    score = pred[sub].sum(axis=1) - 1e9 * ~pool.finished[sub]
                    picks[k].append(pool.labels[sub[np.argmax(score)]].sum() / 2)
                    best[k].append(pool.labels[sub].sum(axis=1).max() / 2)
        out[system] = {k: {"pick_ssa": round(float(np.mean(picks[k])), 3), "oracle_ssa": round(float(np.mean(best[k])), 3)}
                       for k in SIZES}
        print(system, "  ".join(f"k={k}: {v['pick_ssa']:.3f} / {v['oracle_ssa']:.3f}" for k, v in out[system].items()))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
