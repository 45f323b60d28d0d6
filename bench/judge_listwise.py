"""Would a judge trained to pick (a softmax over each pool) pick better than the shipped pointwise one (issue 14)?

The shipped reply judge fits P(sensible) and P(specific) of each candidate alone (two logistic regressions) and
ranks by their sum. A listwise judge fits one linear score whose softmax over a pool's finished candidates
matches the pool's judged SSA shares (ListNet, Cao et al. 2007), the objective of the choice it is used for.
Both are fitted on the same standardised features with 5 folds over prompts (3 shuffles) and scored by the mean
SSA of their held-out picks; `mix` z-scores both and adds them (alpha = the listwise weight).

    OPENBLAS_NUM_THREADS=2 python bench/judge_listwise.py [--pools DIR ...] [--json OUT]
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

FOLDS, SHUFFLES, STEPS, LR = 5, 3, 300, 0.05
RUNS = [("pointwise", 0.0, 0.0), *(("listwise", l2, 0.0) for l2 in (1.0, 10.0, 100.0, 1000.0)),
        ("mix", 100.0, 0.25), ("mix", 100.0, 0.5)]


def fit_listwise(X: np.ndarray, ssa: np.ndarray, finished: np.ndarray, l2: float) -> np.ndarray:
    """(D,) weights of a linear score: Adam on the cross-entropy between each pool's softmax over its finished
    candidates (X: (P, K, D) standardised) and its SSA shares (pools with no sensible finished candidate or
    fewer than two finished ones teach nothing and are left out)."""
    keep = (np.where(finished, ssa, 0).sum(1) > 0) & (finished.sum(1) >= 2)
    X, finished = X[keep], finished[keep]
    target = np.where(finished, ssa[keep], 0)
    target /= target.sum(1, keepdims=True)
    w, m, v = np.zeros(X.shape[-1]), np.zeros(X.shape[-1]), np.zeros(X.shape[-1])
    for t in range(1, STEPS + 1):
        z = np.where(finished, X @ w, -1e9)
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        g = np.einsum("pk,pkd->d", p - target, X) / len(X) + l2 * w / len(X)
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        w -= LR * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
    return w


def held_out_pick(pools: list[jt.Pool], X: np.ndarray, method: str, l2: float, alpha: float, seed: int) -> float:
    labels = np.stack([p.labels for p in pools])          # (P, K, 2)
    ssa, finished = labels.sum(-1) / 2, np.stack([p.finished for p in pools])
    prompts = sorted({p.prompt_id for p in pools})
    np.random.default_rng(seed).shuffle(prompts)
    fold = np.array([{q: i % FOLDS for i, q in enumerate(prompts)}[p.prompt_id] for p in pools])
    picks = np.zeros(len(pools))
    for k in range(FOLDS):
        train, test = fold != k, fold == k
        flat = X[train].reshape(-1, X.shape[-1])
        scores = []
        if method != "listwise":
            judge = jt.fit_judge(flat, labels[train].reshape(-1, 2), 300.0)  # the shipped judge's l2
            scores.append(np.stack([judge.predict(x).sum(1) for x in X[test]]))
        if method != "pointwise":
            Xs = (X - flat.mean(0)) / (flat.std(0) + 1e-6)
            scores.append(Xs[test] @ fit_listwise(Xs[train], ssa[train], finished[train], l2))
        s = scores[0] if len(scores) == 1 else sum(w * (x - x.mean()) / x.std()
                                                   for w, x in zip((1.0, alpha), scores))
        j = np.where(finished[test], s, s - 1e9).argmax(1)
        picks[test] = ssa[test][np.arange(test.sum()), j]
    return float(picks.mean())


def main() -> None:
    args, pools, feats = judged_pools(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
    X = np.stack(feats)  # every judged pool holds 16 candidates
    out = {"pools": len(pools), "prompts": len({p.prompt_id for p in pools}), "pick_ssa": {}}
    for method, l2, alpha in RUNS:
        runs = [held_out_pick(pools, X, method, l2, alpha, seed) for seed in range(SHUFFLES)]
        name = method if method == "pointwise" else f"{method} l2={l2:g}" + (f" alpha={alpha:g}" if alpha else "")
        out["pick_ssa"][name] = {"mean": round(float(np.mean(runs)), 4), "sd": round(float(np.std(runs)), 4)}
        print(f"{name}: pick SSA {np.mean(runs):.4f} (sd {np.std(runs):.4f})", flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
