"""Sentiment task: VADER's human-rated sentences -> LSTM classifier -> checkpoint, and its evaluation.

Train on the vader ``train`` split, select on ``val`` (the Trainer keeps the best validation objective),
report on ``test`` (held out). The embedding and first LSTM layer can start from the language model
(``init="lm"``: the LM's vocabulary and sizes are used) or from scratch (vocabulary built from the vader
train split).

Decisions used by the metrics (the same for every model and split):

* binary accuracy is over sentences with |rating| >= 0.5; the model says positive when
  P(positive) > P(negative) (the neutral probability is ignored); VADER says positive when compound > 0.
* three-class macro-F1 over all sentences; the model's class is the argmax of its probabilities;
  VADER's is positive for compound >= 0.05, negative for <= -0.05, else neutral.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnnchat import corpora
from rnnchat.checkpoint import load_vocab_model, save_checkpoint
from rnnchat.models.sentiment import LABELS, SentimentConfig, SentimentModel, rating_label, sentiment_spec
from rnnchat.nn import Adam
from rnnchat.text import Vocab, tokenize
from rnnchat.train.batches import bucket_batches, pad
from rnnchat.train.trainer import TrainConfig, Trainer

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CHECKPOINT = ROOT / "checkpoints" / "sentiment.npz"
DEFAULT_LM = ROOT / "checkpoints" / "lm.npz"
DOMAINS = ("tweets", "movies", "products", "news")
DECISION = ("binary: P(positive) > P(negative) on |rating| >= 0.5 (VADER: compound > 0); "
            "3-class: argmax (VADER: compound >= 0.05 pos, <= -0.05 neg)")


# -- data -----------------------------------------------------------------------------------------------
@dataclass
class Encoded:
    ids: list[list[int]]
    ratings: np.ndarray   # (N,) float64 in [-4, 4]
    labels: np.ndarray    # (N,) int64 class ids
    domains: list[str]
    texts: list[str]

    @property
    def targets(self) -> np.ndarray:
        return self.ratings / 4.0

    def batch(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        ids, mask = pad([self.ids[i] for i in idx])
        return ids, mask, self.labels[idx], self.targets[idx]


def encode(records: list[dict], vocab: Vocab) -> Encoded:
    return Encoded(ids=[vocab.encode(r["text"]) for r in records],
                   ratings=np.array([r["rating"] for r in records], np.float64),
                   labels=np.array([rating_label(r["rating"]) for r in records], np.int64),
                   domains=[r["domain"] for r in records], texts=[r["text"] for r in records])


class EpochBatches:
    """Length-bucketed batches reshuffled every epoch; epoch e's order depends only on (seed, e),
    so a resumed run sees exactly the batches it would have seen."""

    def __init__(self, data: Encoded, batch_size: int, seed: int, epoch_of):
        self.data, self.batch_size, self.seed, self.epoch_of = data, batch_size, seed, epoch_of
        self.lengths = np.array([len(s) for s in data.ids])
        self._cache: tuple[int, list[np.ndarray]] | None = None
        self._len = len(self._order(0))

    def _order(self, epoch: int) -> list[np.ndarray]:
        return bucket_batches(self.lengths, self.batch_size, np.random.default_rng([self.seed, epoch]))

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, i: int):
        epoch = self.epoch_of()
        if self._cache is None or self._cache[0] != epoch:
            self._cache = (epoch, self._order(epoch))
        return self.data.batch(self._cache[1][i])


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


def predict_ids(model: SentimentModel, ids: list[list[int]], batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (N, 3) and scores (N,) for id lists (any lengths, empty allowed)."""
    probs = np.zeros((len(ids), 3))
    scores = np.zeros(len(ids))
    for idx in bucket_batches([len(s) for s in ids], batch_size):
        x, mask = pad([ids[i] for i in idx])
        probs[idx], scores[idx] = model.predict(x, mask)
    return probs, scores


def model_table(model: SentimentModel, data: Encoded) -> dict:
    probs, _ = predict_ids(model, data.ids)
    return by_domain(data.domains, data.ratings, probs[:, 2] > probs[:, 0], probs.argmax(axis=1))


def vader_table(data: Encoded) -> dict:
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError as e:
        raise RuntimeError("VADER comparison needs vaderSentiment: pip install 'rnnchat[train]'") from e
    sia = SentimentIntensityAnalyzer()
    comp = np.array([sia.polarity_scores(t)["compound"] for t in data.texts])
    classes = np.where(comp >= 0.05, 2, np.where(comp <= -0.05, 0, 1))
    return by_domain(data.domains, data.ratings, comp > 0, classes)


def validation_metrics(model: SentimentModel, data: Encoded, select: str = "loss") -> dict:
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


class AdamEMA(Adam):
    """Adam that also keeps an exponential moving average of the parameters (Polyak averaging).

    The average is part of `state_dict`, so a resumed run continues it exactly. `swap()` exchanges the
    live parameters with the averages in place (call it twice to undo): validation and the saved
    checkpoint use the averaged weights.
    """

    def __init__(self, params: list[np.ndarray], lr: float, ema: float):
        super().__init__(params, lr=lr)
        self.ema = ema
        self.avg = [p.copy() for p in params]

    def step(self, grads: list[np.ndarray]) -> None:
        super().step(grads)
        d = min(self.ema, (1 + self.step_count) / (10 + self.step_count))  # short warm-up
        for a, p in zip(self.avg, self.params):
            a *= d
            a += (1 - d) * p

    def swap(self) -> None:
        for a, p in zip(self.avg, self.params):
            tmp = p.copy()
            np.copyto(p, a)
            np.copyto(a, tmp)

    def state_dict(self) -> dict[str, np.ndarray]:
        return super().state_dict() | {f"ema{i}": a for i, a in enumerate(self.avg)}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        super().load_state_dict(state)
        for i, a in enumerate(self.avg):
            np.copyto(a, state[f"ema{i}"])


# -- checkpoints -----------------------------------------------------------------------------------------
def corpus_info() -> dict:
    return {"name": "vader", "manifest_sha256": corpora.manifest_hash("vader"),
            "train": "train split", "selection": "val split", "report": "test split"}


def save_sentiment(model: SentimentModel, vocab: Vocab, path: Path, metrics: dict, extra: dict | None = None,
                   float16: bool = True) -> None:
    header = {"model": "sentiment", "config": model.header_config(), "vocab": vocab.to_list(),
              "corpus": corpus_info(), "metrics": metrics, **(extra or {})}
    save_checkpoint(path, model.arrays(), header, float16=float16)


def load_sentiment(path: Path | str = DEFAULT_CHECKPOINT) -> tuple[SentimentModel, Vocab, dict]:
    return load_vocab_model(path, "sentiment", sentiment_spec, lambda c: SentimentModel(SentimentConfig.from_dict(c)))


# -- training -------------------------------------------------------------------------------------------
@dataclass
class SentimentTrainArgs:
    run_dir: Path = Path("runs/sentiment")
    out: Path = DEFAULT_CHECKPOINT
    resume: bool = False
    init: str = "scratch"           # "scratch" or "lm"
    lm_checkpoint: Path = DEFAULT_LM
    freeze_embed: bool = False      # with init="lm": keep the LM's embeddings fixed
    lm_vocab_extend: bool = False   # with init="lm": append vader-train tokens missing from the LM vocab
    vocab_size: int = 20_000        # vocabulary: at most this many tokens (with lm_vocab_extend: in all) ...
    min_count: int = 1              # ... seen at least this often in the train split
    embed: int = 96
    hidden: int = 256
    layers: int = 1
    dropout: float = 0.5
    word_dropout: float = 0.1
    pool: str = "last+max+mean"
    score_weight: float = 1.0
    batch_size: int = 32
    lr: float = 2e-3
    clip: float = 5.0
    epochs: float = 8.0
    eval_every: int = 200
    lr_decay: float = 0.7           # on a validation plateau
    oversample: str = ""            # e.g. "tweets=2": repeat a domain's training sentences
    ema: float = 0.0                # >0: validate and save an exponential moving average of the weights
    select: str = "acc_f1"          # "loss" or "acc_f1": what the best checkpoint maximises on val
    float16: bool = True            # store float16 if test/val numbers are unchanged
    max_train: int | None = None    # only the first N training sentences (tests, quick runs)
    seed: int = 0
    compare_vader: bool = True


def _init_from_lm(a: SentimentTrainArgs, train_recs: list[dict]) -> tuple[Vocab, SentimentConfig, dict]:
    """The LM's vocabulary, embedding and first LSTM layer (sizes follow the LM). With `lm_vocab_extend`,
    vader-train tokens the LM lacks are appended with small random embeddings."""
    from rnnchat.train.lm import load_lm
    lm, vocab, header = load_lm(a.lm_checkpoint)
    H = lm.config.hidden
    W = lm.embed.params["W"]
    if a.lm_vocab_extend:
        train_vocab = Vocab.build((tokenize(r["text"]) for r in train_recs), max_size=None, min_count=a.min_count)
        extra = [t for t in train_vocab.itos[4:] if t not in vocab][: max(0, a.vocab_size - len(vocab))]
        rng = np.random.default_rng(a.seed + 1)
        W = np.concatenate([W, rng.normal(0, float(W[4:].std()), (len(extra), H)).astype(W.dtype)])
        vocab = Vocab([*vocab.itos, *extra])
    config = SentimentConfig(vocab_size=len(vocab), embed=H, hidden=H, layers=a.layers, dropout=a.dropout,
                             word_dropout=a.word_dropout, pool=a.pool, score_weight=a.score_weight)
    arrays = {"embed.W": W}
    arrays |= {f"lstm0.{k}": v for k, v in lm.lstms[0].params.items()}
    info = {"lm_checkpoint": str(a.lm_checkpoint), "lm_metrics": header.get("metrics", {}),
            "lm_created": header.get("created")}
    return vocab, config, {"arrays": arrays, "info": info}


def oversample(records: list[dict], spec: str) -> list[dict]:
    """Repeat each training sentence of a domain: spec "tweets=2,news=1.5" (fractions repeat a fixed,
    evenly spread subset). The vocabulary is built before, from the original split."""
    if not spec:
        return records
    factors = {}
    for part in spec.split(","):
        name, _, value = part.partition("=")
        if name.strip() not in DOMAINS or not value:
            raise ValueError(f"oversample must look like 'tweets=2,news=1.5', got {spec!r}")
        factors[name.strip()] = float(value)
    out = []
    seen: dict[str, int] = {}
    for r in records:
        f = factors.get(r["domain"], 1.0)
        k = seen.get(r["domain"], 0)
        seen[r["domain"]] = k + 1
        out += [r] * (int(f) + (1 if (k * (f % 1)) % 1 + (f % 1) >= 1 else 0))
    return out


def _hyper(a: SentimentTrainArgs) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()}


def train_sentiment(a: SentimentTrainArgs) -> dict:
    """Train (or resume) the classifier; writes the run directory and the final checkpoint `a.out`.

    Returns the final metrics (val/test tables, VADER's, float16 check)."""
    t0 = time.monotonic()
    train_recs = corpora.load_vader("train")[: a.max_train]
    val_recs = corpora.load_vader("val")
    lm_init = None
    if a.init == "lm":
        vocab, config, lm_init = _init_from_lm(a, train_recs)
    elif a.init == "scratch":
        vocab = Vocab.build((tokenize(r["text"]) for r in train_recs), max_size=a.vocab_size,
                            min_count=a.min_count)
        config = SentimentConfig(vocab_size=len(vocab), embed=a.embed, hidden=a.hidden, layers=a.layers,
                                 dropout=a.dropout, word_dropout=a.word_dropout, pool=a.pool,
                                 score_weight=a.score_weight)
    else:
        raise ValueError(f"init must be 'scratch' or 'lm', not {a.init!r}")
    train_recs = oversample(train_recs, a.oversample)
    train, val = encode(train_recs, vocab), encode(val_recs, vocab)
    model = SentimentModel(config, seed=a.seed)
    if lm_init:
        for name, value in lm_init["arrays"].items():
            layer, key = name.split(".")
            target = model.embed if layer == "embed" else model.lstms[0]
            np.copyto(target.params[key], value)
        if a.freeze_embed:
            model.freeze_embedding()
    coverage = vocab.coverage(tokenize(r["text"]) for r in val_recs)
    print(f"vocab {len(vocab)} (val coverage {coverage:.3f}), train {len(train.ids):,} sentences, "
          f"val {len(val.ids):,} ({time.monotonic() - t0:.1f}s)", file=sys.stderr)
    opt = AdamEMA(model.params.params, lr=a.lr, ema=a.ema) if a.ema else Adam(model.params.params, lr=a.lr)
    hyper = _hyper(a)
    run_dir = Path(a.run_dir)
    best_path = run_dir / "best.npz"
    trainer: Trainer

    def step_fn(batch):
        return model.train_step(*batch)

    def evaluate() -> dict:
        if a.ema:
            opt.swap()  # validate (and save) the averaged weights
        try:
            return validation_metrics(model, val, a.select)
        finally:
            if a.ema:
                opt.swap()

    def save_best(metrics: dict) -> None:
        if a.ema:
            opt.swap()
        try:
            save_sentiment(model, vocab, best_path, {f"val_{k}": v for k, v in metrics.items()} |
                           {"epoch": trainer.epoch, "step": trainer.step}, extra={"training": hyper},
                           float16=False)
        finally:
            if a.ema:
                opt.swap()

    batches = EpochBatches(train, a.batch_size, a.seed, lambda: trainer.epoch)
    config_t = TrainConfig(epochs=a.epochs, clip=a.clip, eval_every=a.eval_every, log_every=50,
                           lr_decay_on_plateau=a.lr_decay)
    trainer = Trainer(run_dir, model, opt, batches, step_fn, evaluate, save_best, config_t,
                      header={"vocab": vocab.to_list(), "training": hyper, "corpus": corpus_info()})
    if a.resume and trainer.state_path.exists():
        trainer.load_state()
        print(f"resumed at step {trainer.step} (epoch {trainer.epoch}, batch {trainer.position})",
              file=sys.stderr)
    summary = trainer.fit()
    train_s = time.monotonic() - t0
    metrics = finalize(best_path, a.out, float16=a.float16, compare_vader=a.compare_vader,
                       extra={"training": hyper, "init": a.init,
                              **({"lm_init": lm_init["info"]} if lm_init else {})},
                       timing={"train_seconds": round(train_s, 1), "steps": summary["step"]})
    return metrics


def finalize(best_path: Path, out: Path, *, float16: bool = True, compare_vader: bool = True,
             extra: dict | None = None, timing: dict | None = None) -> dict:
    """Evaluate the best (float32) checkpoint on val and test, check float16 storage, write `out`."""
    model, vocab, header = load_sentiment(best_path)
    val = encode(corpora.load_vader("val"), vocab)
    test = encode(corpora.load_vader("test"), vocab)
    tables = {"val": model_table(model, val), "test": model_table(model, test)}
    use16 = False
    if float16:  # store float16 only if (almost) no verdict changes: <= 0.2% of val+test sentences
        m16, _, _ = load_sentiment(best_path)
        m16.load_arrays({k: v.astype(np.float16).astype(np.float32) for k, v in m16.arrays().items()})
        changed = n = 0
        for data in (val, test):
            p32, _ = predict_ids(model, data.ids)
            p16, _ = predict_ids(m16, data.ids)
            changed += int(np.sum((p32.argmax(1) != p16.argmax(1)) |
                                  ((p32[:, 2] > p32[:, 0]) != (p16[:, 2] > p16[:, 0]))))
            n += len(data.ids)
        use16 = changed <= 0.002 * n
        if use16:
            model = m16
            tables = {"val": model_table(model, val), "test": model_table(model, test)}
        float16_check = {"verdicts_changed": changed, "of": n, "stored_float16": use16}
    else:
        float16_check = {"stored_float16": False}
    metrics = {"decision": DECISION, "selection": header["metrics"], "float16": float16_check,
               **{f"{s}": t for s, t in tables.items()}}
    if compare_vader:
        metrics["vader"] = {"val": vader_table(val), "test": vader_table(test)}
    metrics |= timing or {}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_sentiment(model, vocab, out, metrics, extra=extra, float16=use16)
    print(format_comparison(metrics["test"], metrics.get("vader", {}).get("test"), "test"), file=sys.stderr)
    return metrics


# -- evaluation / scoring API --------------------------------------------------------------------------
def evaluate_sentiment(checkpoint: Path | str = DEFAULT_CHECKPOINT, split: str = "test",
                       compare_vader: bool = True) -> dict:
    """Per-domain and pooled binary accuracy and macro-F1 of the checkpoint (and VADER on the same
    sentences) on a vader split. Returns {"split", "decision", "model": {...}, "vader": {...}}."""
    model, vocab, _ = load_sentiment(checkpoint)
    data = encode(corpora.load_vader(split), vocab)
    out = {"split": split, "checkpoint": str(checkpoint), "decision": DECISION,
           "model": model_table(model, data)}
    if compare_vader:
        out["vader"] = vader_table(data)
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
    return format_comparison(result["model"], result.get("vader"), result["split"])


_LOADED: dict[str, tuple[SentimentModel, Vocab, dict]] = {}


def _cached(checkpoint: Path | str) -> tuple[SentimentModel, Vocab, dict]:
    key = str(Path(checkpoint).resolve())
    if key not in _LOADED:
        _LOADED[key] = load_sentiment(checkpoint)
    return _LOADED[key]


def score_texts(texts: Sequence[str], checkpoint: Path | str = DEFAULT_CHECKPOINT) -> list[dict]:
    """[{"text", "label", "score", "probs": {"negative", "neutral", "positive"}}] for each text."""
    model, vocab, _ = _cached(checkpoint)
    probs, scores = predict_ids(model, [vocab.encode(t) for t in texts])
    return [{"text": t, "label": LABELS[int(p.argmax())], "score": float(s),
             "probs": {name: float(x) for name, x in zip(LABELS, p)}}
            for t, p, s in zip(texts, probs, scores)]


# -- CLI helpers (wired in rnnchat/cli.py) ---------------------------------------------------------------
_FLAG_HELP = {
    "init": "scratch: vocabulary from the vader train split; lm: embedding + first LSTM from --lm-checkpoint",
    "select": "what the best checkpoint minimises on val: loss (CE+lambda*MSE) or acc_f1 (1-(acc+F1)/2)",
    "pool": "'+'-joined subset of last, max, mean",
    "max_train": "use only the first N training sentences",
}


def add_train_arguments(p) -> None:
    """Add `rnnchat train sentiment` flags (one per SentimentTrainArgs field) to an argparse parser."""
    d = SentimentTrainArgs()
    for name, value in vars(d).items():
        flag = "--" + name.replace("_", "-")
        helptext = _FLAG_HELP.get(name)
        if isinstance(value, bool):
            if value:
                p.add_argument(f"--no-{name.replace('_', '-')}", dest=name, action="store_false", help=helptext)
            else:
                p.add_argument(flag, dest=name, action="store_true", help=helptext)
        elif name == "init":
            p.add_argument(flag, choices=["scratch", "lm"], default=value, help=helptext)
        elif name == "select":
            p.add_argument(flag, choices=["loss", "acc_f1"], default=value, help=helptext)
        elif name == "max_train":
            p.add_argument(flag, type=int, default=None, help=helptext)
        else:
            p.add_argument(flag, type=type(value), default=value, help=helptext)


def train_from_namespace(args) -> dict:
    """`rnnchat train sentiment`: SentimentTrainArgs from the parsed flags, then train_sentiment."""
    names = SentimentTrainArgs.__dataclass_fields__
    return train_sentiment(SentimentTrainArgs(**{k: v for k, v in vars(args).items() if k in names}))


def add_eval_arguments(p) -> None:
    """`rnnchat eval sentiment` flags."""
    p.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    p.add_argument("--split", choices=["val", "test"], default="test")
    p.add_argument("--no-vader", dest="compare_vader", action="store_false", help="skip the VADER comparison")
    p.add_argument("--json", action="store_true")


def eval_from_namespace(args) -> str:
    """Run `rnnchat eval sentiment` and return the text to print (a table, or JSON with --json)."""
    import json
    result = evaluate_sentiment(args.checkpoint, args.split, args.compare_vader)
    return json.dumps(result) if args.json else format_evaluation(result)


__all__ = ["SentimentTrainArgs", "train_sentiment", "add_train_arguments", "train_from_namespace",
           "add_eval_arguments", "eval_from_namespace", "evaluate_sentiment", "score_texts", "load_sentiment",
           "save_sentiment", "format_evaluation", "format_comparison", "macro_f1", "DEFAULT_CHECKPOINT"]
