"""Sentiment evaluation and scoring: VADER sentences -> ids, metrics tables (model and the VADER lexicon),
checkpoint load/save, `rnnchat eval sentiment` and `rnnchat sentiment` (score_texts).

Decisions used by the metrics (the same for every model and split):

* binary accuracy is over sentences with |rating| >= 0.5; the model says positive when
  P(positive) > P(negative) (the neutral probability is ignored); VADER says positive when compound > 0.
* three-class macro-F1 over all sentences; the model's class is the argmax of its probabilities;
  VADER's is positive for compound >= 0.05, negative for <= -0.05, else neutral.

Training (rnnchat.train.sentiment) selects on the ``val`` split; reports are on ``test`` (held out).

Next to the vader test split, `rnnchat eval sentiment` scores the team's chat set (`rnnchat/data/
sentiment_chat.tsv`: 260 short chat messages the team wrote with a clear polarity, labelled when written and
confirmed by a blind second judge, never trained or tuned on; bench/sentiment_chat/README.md), binary
accuracy with the same decisions, overall and per style (plain, slang, emoji, elongation, negation, typo).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnnchat import paths
from rnnchat.data import corpora
from rnnchat.models.sentiment import SentimentModel
from rnnchat.models.sentiment_result import Sentiment, rating_label
from rnnchat.models.sentiment_tokens import TokenReader
from rnnchat.models.sentiment_ensemble import Classifier, load_sentiment
from rnnchat.models.sentiment_segments import split_ids
from rnnchat.text import Vocab
from rnnchat.data.batches import bucket_batches, pad

DOMAINS = corpora.VADER_DOMAINS
CHAT_SET = Path(__file__).resolve().parent.parent / "data" / "sentiment_chat.tsv"
DECISION = ("binary: P(positive) > P(negative) on |rating| >= 0.5 (VADER: compound > 0); "
            "3-class: argmax (VADER: compound >= 0.05 pos, <= -0.05 neg)")


# -- data -----------------------------------------------------------------------------------------------
@dataclass
class SentimentData:
    ids: list[list[int]]
    ratings: np.ndarray   # (N,) float64 in [-4, 4]
    labels: np.ndarray    # (N,) int64 class ids
    domains: list[str]
    texts: list[str]
    soft: np.ndarray | None = None  # (N, 3) class probabilities to train on (a teacher's), else the labels

    @property
    def targets(self) -> np.ndarray:
        return self.ratings / 4.0

    def batch(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        ids, mask = pad([self.ids[i] for i in idx])
        return ids, mask, (self.labels if self.soft is None else self.soft)[idx], self.targets[idx]


def encode(records: list[dict], reader: TokenReader) -> SentimentData:
    """The records' texts as the classifier reads them (`reader`: the model's, `model.reader`)."""
    return SentimentData(ids=[reader.text_ids(r["text"]) for r in records],
                   ratings=np.array([r["rating"] for r in records], np.float64),
                   labels=np.array([rating_label(r["rating"]) for r in records], np.int64),
                   domains=[r["domain"] for r in records], texts=[r["text"] for r in records])


# -- metrics ----------------------------------------------------------------------------------------------
def macro_f1(labels: np.ndarray, preds: np.ndarray) -> float:
    """Mean over the 3 classes of F1 (a class absent from both labels and predictions counts 0)."""
    f1s = []
    for c in range(3):
        tp = int(np.sum((labels == c) & (preds == c)))
        fp = int(np.sum((labels != c) & (preds == c)))
        fn = int(np.sum((labels == c) & (preds != c)))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return float(np.mean(f1s))


def scores_table(ratings: np.ndarray, positive: np.ndarray, classes: np.ndarray) -> dict:
    """Binary accuracy on |rating| >= 0.5 (`positive`: the system's yes/no) and 3-class macro-F1."""
    labels = np.array([rating_label(r) for r in ratings], np.int64)
    polar = np.abs(ratings) >= 0.5
    acc = float(np.mean(positive[polar] == (ratings[polar] > 0))) if polar.any() else float("nan")
    return {"binary_acc": acc, "binary_n": int(polar.sum()), "macro_f1": macro_f1(labels, classes),
            "n": int(len(ratings))}


def by_domain(domains: Sequence[str], ratings: np.ndarray, positive: np.ndarray, classes: np.ndarray) -> dict:
    dom = np.array(domains)
    out = {"pooled": scores_table(ratings, positive, classes)}
    for d in DOMAINS:
        sel = dom == d
        if sel.any():
            out[d] = scores_table(ratings[sel], positive[sel], classes[sel])
    return out


LONG_TEXT = 1024  # tokens; a longer text runs alone, a chunk at a time (a padded batch would be its length wide)


def predict_ids(model: Classifier, ids: list[list[int]], batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (N, 3) and scores (N,) for id lists (any lengths, empty allowed); time linear in the total
    length and memory bounded, however long one text is."""
    probs = np.zeros((len(ids), 3))
    scores = np.zeros(len(ids))
    short = [i for i, s in enumerate(ids) if len(s) <= LONG_TEXT]
    for idx in bucket_batches([len(ids[i]) for i in short], batch_size):
        rows = [short[i] for i in idx]
        x, mask = pad([ids[i] for i in rows])
        probs[rows], scores[rows] = model.predict(x, mask)
    for i in (i for i, s in enumerate(ids) if len(s) > LONG_TEXT):
        state = model.zero_state()
        for segment in split_ids(ids[i], model.segment_ends):  # the whole text when the model never restarts
            state = model.join(state, model.advance_many(model.zero_state(), segment))
        probs[i], scores[i] = model.readout(state)
    return probs, scores


def model_table(model: Classifier, data: SentimentData) -> dict:
    probs, _ = predict_ids(model, data.ids)
    return by_domain(data.domains, data.ratings, probs[:, 2] > probs[:, 0], probs.argmax(axis=1))


def vader_table(data: SentimentData) -> dict:
    sia = _vader()
    comp = np.array([sia.polarity_scores(t)["compound"] for t in data.texts])
    classes = np.where(comp >= 0.05, 2, np.where(comp <= -0.05, 0, 1))
    return by_domain(data.domains, data.ratings, comp > 0, classes)


def load_chat_set(path: Path = CHAT_SET) -> list[dict]:
    """The chat set's rows: {"label": "positive" | "negative", "style", "text"}."""
    lines = path.read_text(encoding="utf-8").splitlines()[1:]
    return [dict(zip(("label", "style", "text"), line.split("\t"))) for line in lines if line]


def chat_set_table(model: Classifier, compare_vader: bool = True) -> dict:
    """Binary accuracy on the chat set, overall and per style, for the model (and VADER, with how many
    messages it has no opinion on: compound 0, which its decision counts as negative)."""
    rows = load_chat_set()
    truth = np.array([r["label"] == "positive" for r in rows])
    styles = np.array([r["style"] for r in rows])
    probs, _ = predict_ids(model, [model.reader.text_ids(r["text"]) for r in rows])

    def table(positive: np.ndarray) -> dict:
        right = positive == truth
        return {"binary_acc": float(right.mean()), "n": len(rows),
                "by_style": {s: float(right[styles == s].mean()) for s in dict.fromkeys(styles.tolist())}}
    out = {"model": table(probs[:, 2] > probs[:, 0])}
    if compare_vader:
        sia = _vader()
        comp = np.array([sia.polarity_scores(r["text"])["compound"] for r in rows])
        out["vader"] = {**table(comp > 0), "no_opinion": int(np.sum(comp == 0))}
    return out


def _vader():
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError as e:
        raise RuntimeError("VADER comparison needs vaderSentiment: pip install 'rnnchat[train]'") from e
    return SentimentIntensityAnalyzer()


def validation_metrics(model: SentimentModel, data: SentimentData, select: str = "loss") -> dict:
    """Pooled validation numbers: "ce_mse" (the training loss CE + lambda*MSE), binary accuracy,
    macro-F1, and "loss", the selection objective the Trainer minimises: "ce_mse" itself
    (select="loss") or 1 - (binary_acc + macro_f1) / 2 (select="acc_f1")."""
    mode = model.training
    model.train(False)
    total, count = 0.0, 0
    for idx in bucket_batches([len(s) for s in data.ids], 256):
        loss, n = model.loss(*data.batch(idx))
        total += loss * n
        count += n
    model.train(mode)
    table = model_table(model, data)
    pooled = table["pooled"]
    val_loss = total / max(count, 1)
    objective = val_loss if select == "loss" else 1 - (pooled["binary_acc"] + pooled["macro_f1"]) / 2
    return {"loss": objective, "ce_mse": val_loss, "binary_acc": pooled["binary_acc"],
            "macro_f1": pooled["macro_f1"], **{f"acc_{d}": table[d]["binary_acc"] for d in DOMAINS if d in table}}


# -- checkpoints -----------------------------------------------------------------------------------------
def corpus_info() -> dict:
    return {"name": "vader", "manifest_sha256": corpora.manifest_hash("vader"),
            "train": "train split", "selection": "val split", "report": "test split"}


# -- evaluation / scoring API --------------------------------------------------------------------------
def evaluate_sentiment(checkpoint: Path | str | None = None, split: str = "test",
                       compare_vader: bool = True) -> dict:
    """Per-domain and pooled binary accuracy and macro-F1 of the checkpoint (and VADER on the same
    sentences) on a vader split. Returns {"split", "decision", "model": {...}, "vader": {...}}."""
    checkpoint = checkpoint or paths.sentiment_checkpoint()
    model, _, _ = load_sentiment(checkpoint)
    data = encode(corpora.load_vader(split), model.reader)
    out = {"split": split, "checkpoint": str(checkpoint), "decision": DECISION,
           "model": model_table(model, data)}
    if compare_vader:
        out["vader"] = vader_table(data)
    out["chat_set"] = chat_set_table(model, compare_vader)
    return out


def format_comparison(model: dict, vader: dict | None, title: str = "") -> str:
    """A plain-text table: per domain and pooled, model vs VADER."""
    head = f"{title:<9}{'n(bin)':>8}{'acc':>8}{'F1':>8}"
    if vader:
        head += f"{'VADER acc':>11}{'VADER F1':>10}{'d acc':>8}{'d F1':>8}"
    lines = [head]
    for d in [*DOMAINS, "pooled"]:
        if d not in model:
            continue
        m = model[d]
        line = f"{d:<9}{m['binary_n']:>8}{m['binary_acc']:>8.3f}{m['macro_f1']:>8.3f}"
        if vader:
            v = vader[d]
            d_acc, d_f1 = 100 * (m["binary_acc"] - v["binary_acc"]), 100 * (m["macro_f1"] - v["macro_f1"])
            line += f"{v['binary_acc']:>11.3f}{v['macro_f1']:>10.3f}{d_acc:>+8.1f}{d_f1:>+8.1f}"
        lines.append(line)
    return "\n".join(lines)


def format_evaluation(result: dict) -> str:
    text = format_comparison(result["model"], result.get("vader"), result["split"])
    if (chat := result.get("chat_set")) is None:
        return text
    m, v = chat["model"], chat.get("vader")
    styles = "  ".join(f"{s} {a:.2f}" + (f"/{v['by_style'][s]:.2f}" if v else "") for s, a in m["by_style"].items())
    vs = (f" (VADER {v['binary_acc']:.3f}, no opinion on {v['no_opinion']}; {100 * (m['binary_acc'] - v['binary_acc']):+.1f})"
          if v else "")
    return (f"{text}\nchat set ({m['n']} team-written messages): binary accuracy {m['binary_acc']:.3f}{vs}\n"
            f"  by style{' (model/VADER)' if v else ''}: {styles}")


_LOADED: dict[str, tuple[Classifier, Vocab, dict]] = {}


def _cached(checkpoint: Path | str) -> tuple[Classifier, Vocab, dict]:
    key = str(Path(checkpoint).resolve())
    if key not in _LOADED:
        _LOADED[key] = load_sentiment(checkpoint)
    return _LOADED[key]


def score_texts(texts: Sequence[str], checkpoint: Path | str | None = None) -> list[dict]:
    """[{"text", "label", "score", "probs": {"negative", "neutral", "positive"}}] for each text."""
    model, _, _ = _cached(checkpoint or paths.sentiment_checkpoint())
    probs, scores = predict_ids(model, [model.reader.text_ids(t) for t in texts])
    return [{"text": t, **Sentiment.of(p, s).as_dict()} for t, p, s in zip(texts, probs, scores)]


# -- CLI helpers (wired in rnnchat/cli.py) ---------------------------------------------------------------
def add_eval_arguments(p) -> None:
    """`rnnchat eval sentiment` flags."""
    p.add_argument("--checkpoint", type=Path, default=paths.sentiment_checkpoint())
    p.add_argument("--split", choices=["val", "test"], default="test")
    p.add_argument("--no-vader", dest="compare_vader", action="store_false", help="skip the VADER comparison")
    p.add_argument("--json", action="store_true")


def eval_from_namespace(args) -> str:
    """Run `rnnchat eval sentiment` and return the text to print (a table, or JSON with --json)."""
    import json
    result = evaluate_sentiment(args.checkpoint, args.split, args.compare_vader)
    return json.dumps(result) if args.json else format_evaluation(result)
