"""Choose sentiment ensemble members on val, by the rule the shipped ensembles were chosen by: rank the candidate
checkpoints (one vocabulary) by single-model val binary accuracy, score the ensembles of the top k (k <= 5) on val,
keep the k with the best (binary accuracy + macro-F1) / 2. Prints the table and the chosen members; build the
checkpoint with `rnnchat train sentiment-ensemble CHOSEN... --out OUT`.

    python bench/sentiment_select.py runs/sub/v20k4.npz runs/sub/w1.npz ...
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rnnchat.data import corpora  # noqa: E402
from rnnchat.models.sentiment_ensemble import SentimentEnsemble, load_sentiment  # noqa: E402
from rnnchat.train.sentiment_eval import encode, model_table  # noqa: E402


def main(paths: list[str], largest: int = 5) -> list[str]:
    models = [load_sentiment(p)[0] for p in paths]
    reader = SentimentEnsemble(models).reader  # one reader for all: an unseen word has one id
    data = encode(corpora.load_vader("val"), reader)
    singles = {p: model_table(m, data)["pooled"] for p, m in zip(paths, models)}
    order = sorted(paths, key=lambda p: -singles[p]["binary_acc"])
    for p in order:
        print(f"{p}: {singles[p]['binary_acc']:.4f} / {singles[p]['macro_f1']:.4f}")
    best: tuple[float, list[str]] | None = None
    for k in range(1, min(largest, len(paths)) + 1):
        pooled = model_table(SentimentEnsemble([models[paths.index(p)] for p in order[:k]]), data)["pooled"]
        objective = (pooled["binary_acc"] + pooled["macro_f1"]) / 2
        print(f"top {k}: {pooled['binary_acc']:.4f} / {pooled['macro_f1']:.4f} objective {objective:.4f}")
        if best is None or objective > best[0]:
            best = (objective, order[:k])
    print("chosen:", " ".join(best[1]))
    return best[1]


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
