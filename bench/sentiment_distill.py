"""Issue 18 experiment: distil the shipped LSTM ensemble into a QRNN student, with a cosine learning rate.

The student (window 3, embedding 192, hidden 256, 4,096 subword rows; the teacher's vocabulary) trains on the
vader train sentences (alpha * their human label + (1 - alpha) * the teacher's probabilities) plus N_CHAT
chitchat train messages labelled by the teacher (probabilities and score), validates every 1,000 steps and
keeps the best val (accuracy + macro-F1) as runs/distill/NAME.npz. `rnnchat train sentiment --teacher CKPT
--teacher-texts N` gives the project's trainer the same data (its lr decays on a val plateau instead).
`eval` prints val per domain and the team's dev chat set (bench/sentiment_chat/dev.tsv: all, and negation).

    OPENBLAS_NUM_THREADS=1 python bench/sentiment_distill.py train NAME N_CHAT EPOCHS [SEED [ALPHA]]
    python bench/sentiment_distill.py eval CKPT...
"""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rnnchat import paths  # noqa: E402
from rnnchat.data import corpora  # noqa: E402
from rnnchat.data.batches import pad  # noqa: E402
from rnnchat.models.sentiment import SentimentConfig, SentimentModel  # noqa: E402
from rnnchat.models.sentiment_ensemble import load_sentiment, save_sentiment  # noqa: E402
from rnnchat.nn.optim import Adam, clip_grad_norm  # noqa: E402
from rnnchat.train.sentiment_distill import with_teacher_texts  # noqa: E402
from rnnchat.train.sentiment_eval import encode, model_table, predict_ids  # noqa: E402

DEV = Path(__file__).resolve().parent / "sentiment_chat" / "dev.tsv"
BATCH, LR, EVAL_EVERY = 32, 2e-3, 1000


def train(name: str, n_chat: int, epochs: float, seed: int = 0, alpha: float = 1.0) -> None:
    teacher, vocab, _ = load_sentiment(paths.sentiment_checkpoint())
    rated = encode(corpora.load_vader("train"), teacher.reader)
    val = encode(corpora.load_vader("val"), teacher.reader)
    data = with_teacher_texts(rated, teacher.reader, paths.sentiment_checkpoint(), n_chat, seed=123)
    Q, S, n = data.soft.copy(), data.targets.copy(), len(rated.ids)  # (N, 3) soft labels, scores in [-1, 1]
    if alpha < 1:  # the rated sentences: alpha * their label + (1 - alpha) * the teacher's
        tp, ts = predict_ids(teacher, rated.ids)
        Q[:n], S[:n] = alpha * Q[:n] + (1 - alpha) * tp, alpha * S[:n] + (1 - alpha) * ts
    ids = data.ids
    m = SentimentModel(SentimentConfig(vocab_size=len(vocab), embed=192, hidden=256, subwords=4096, cell="qrnn",
                                       window=3), seed=seed)
    m.set_vocab(vocab, teacher.reader)
    opt, rng = Adam(m.params.params, lr=LR), np.random.default_rng(seed)
    total, order, pos, best, t0 = int(epochs * len(ids) // BATCH), rng.permutation(len(ids)), 0, None, time.time()
    for step in range(1, total + 1):
        if pos + BATCH > len(ids):
            order, pos = rng.permutation(len(ids)), 0
        idx = order[pos:pos + BATCH]
        pos += BATCH
        m.train(True)
        opt.lr = LR * 0.5 * (1 + np.cos(np.pi * (step - 1) / total))
        m.train_step(*pad([ids[i] for i in idx]), Q[idx], S[idx])
        grads = m.params.grads()
        clip_grad_norm(grads, 5.0)
        opt.step(grads)
        if step % EVAL_EVERY == 0 or step == total:
            m.train(False)
            pooled = model_table(m, val)["pooled"]
            acc, f1 = pooled["binary_acc"], pooled["macro_f1"]
            print(f"step {step}/{total} val {acc:.4f} / {f1:.4f} ({time.time() - t0:.0f}s)", flush=True)
            if best is None or acc + f1 > best[0]:
                best = (acc + f1, step)
                save_sentiment(m, vocab, f"runs/distill/{name}.npz", {"val_binary_acc": acc, "val_macro_f1": f1,
                                                                       "step": step}, float16=False)
    print("best (acc + F1, step):", best)


def evaluate(path: str) -> None:
    rows = list(csv.DictReader(DEV.open(encoding="utf-8"), delimiter="\t"))
    m, _, _ = load_sentiment(path)
    t = model_table(m, encode(corpora.load_vader("val"), m.reader))
    probs, _ = predict_ids(m, [m.reader.text_ids(r["text"]) for r in rows])
    right = (probs[:, 2] > probs[:, 0]) == np.array([r["label"] == "positive" for r in rows])
    negation = np.array([r["style"] == "negation" for r in rows])
    domains = " ".join(f"{d} {t[d]['binary_acc']:.3f}/{t[d]['macro_f1']:.3f}"
                       for d in ("tweets", "movies", "products", "news"))
    print(f"{path}: val {t['pooled']['binary_acc']:.4f}/{t['pooled']['macro_f1']:.4f} {domains} | "
          f"dev chat {right.mean():.3f}, negation {right[negation].mean():.3f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["train"] and len(sys.argv) >= 5:
        a = sys.argv[2:]
        train(a[0], int(a[1]), float(a[2]), *([int(a[3])] if len(a) > 3 else []), *map(float, a[4:5]))
    elif sys.argv[1:2] == ["eval"] and len(sys.argv) > 2:
        for p in sys.argv[2:]:
            evaluate(p)
    else:
        sys.exit(__doc__)
