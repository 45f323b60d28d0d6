"""Does the reply judge get better with more judged pools (issue 14)? Is judging more the lever?

Prompts are split into 5 folds; the judge is fitted on a share (25/50/75/100%) of the other folds' prompts
(`judge_training.fit_judge`) and picks among each held-out pool's finished candidates; printed: the mean SSA of
its picks over 3 shuffles per l2, and the oracle (the best finished candidate of each pool).

    OPENBLAS_NUM_THREADS=1 python bench/judge_learning_curve.py [--pools DIR ...] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from judge_pool_size import judged_pools  # noqa: E402
from rnnchat.session import judge_training as jt  # noqa: E402

SHARES = (0.25, 0.5, 0.75, 1.0)
L2S = (100.0, 300.0, 1000.0)
FOLDS, SHUFFLES = 5, 3


def held_out_picks(pools: list[jt.Pool], feats: list[np.ndarray], share: float, l2: float, seed: int) -> float:
    prompts = sorted({p.prompt_id for p in pools})
    np.random.default_rng(seed).shuffle(prompts)
    fold = {pid: k % FOLDS for k, pid in enumerate(prompts)}
    picks = []
    for k in range(FOLDS):
        others = [p for p in prompts if fold[p] != k]
        kept = set(others[: max(1, round(share * len(others)))])
        train = [i for i, p in enumerate(pools) if p.prompt_id in kept]
        judge = jt.fit_judge(np.concatenate([feats[i] for i in train]),
                             np.concatenate([pools[i].labels for i in train]), l2)
        for i, pool in enumerate(pools):
            if fold[pool.prompt_id] == k:
                score = judge.predict(feats[i]).sum(axis=1)
                picks.append(pool.labels[int(np.argmax(np.where(pool.finished, score, score - 1e9)))].sum() / 2)
    return float(np.mean(picks))


def main() -> None:
    args, pools, feats = judged_pools(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
    n_prompts = len({p.prompt_id for p in pools})
    out = {"pools": len(pools), "texts": int(sum(len(p.texts) for p in pools)), "prompts": n_prompts,
           "train_prompts_at_share_1": round(n_prompts * (FOLDS - 1) / FOLDS), "pick_ssa": {}}
    for l2 in L2S:
        for share in SHARES:
            runs = [held_out_picks(pools, feats, share, l2, seed) for seed in range(SHUFFLES)]
            out["pick_ssa"][f"l2={l2:g} share={share:g}"] = {"mean": round(float(np.mean(runs)), 4),
                                                             "sd": round(float(np.std(runs)), 4)}
            print(f"l2={l2:g} share={share:g}: pick SSA {np.mean(runs):.4f} (sd {np.std(runs):.4f})", flush=True)
    out["oracle_ssa"] = round(float(np.mean([p.labels[p.finished].sum(axis=1).max() / 2 if p.finished.any() else 0.0
                                             for p in pools])), 4)
    print(f"oracle {out['oracle_ssa']:.4f}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
