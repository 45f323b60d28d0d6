"""Sentiment training: VADER's human-rated sentences -> LSTM classifier -> checkpoint.

Train on the vader ``train`` split, select on ``val`` (the Trainer keeps the best validation objective),
report on ``test`` (held out; metrics and scoring live in rnnchat.train.sentiment_eval). The embedding and
first LSTM layer can start from the language model (``init="lm"``: the LM's vocabulary and sizes are used)
or from scratch (vocabulary built from the vader train split).
"""

from __future__ import annotations

import copy
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnnchat import paths
from rnnchat.data import corpora
from rnnchat.data.batches import bucket_batches
from rnnchat.models.lm import load_lm
from rnnchat.models.sentiment import SentimentConfig, SentimentModel
from rnnchat.models.sentiment_ensemble import Classifier, load_sentiment, save_sentiment
from rnnchat.nn import Adam
from rnnchat.nn.optim import swap_arrays
from rnnchat.text import Vocab, tokenize
from rnnchat.train.sentiment_eval import (DECISION, DOMAINS, SentimentData, corpus_info, encode, format_comparison,
                                          model_table, predict_ids, vader_table, validation_metrics)
from rnnchat.train.sentiment_distill import with_teacher_texts
from rnnchat.train.trainer import TrainConfig, Trainer, check_out, check_run_dir

# -- data ----------------------------------------------------------------------------------------------
class EpochBatches:
    """Length-bucketed batches reshuffled every epoch; epoch e's order depends only on (seed, e),
    so a resumed run sees exactly the batches it would have seen."""

    def __init__(self, data: SentimentData, batch_size: int, seed: int, epoch_of):
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


# -- optimiser --------------------------------------------------------------------------------------------
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
        swap_arrays(self.avg, self.params)

    def state_dict(self) -> dict[str, np.ndarray]:
        return super().state_dict() | {f"ema{i}": a for i, a in enumerate(self.avg)}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        super().load_state_dict(state)
        for i, a in enumerate(self.avg):
            np.copyto(a, state[f"ema{i}"])


# -- training -------------------------------------------------------------------------------------------
@dataclass
class SentimentTrainArgs:
    run_dir: Path = Path("runs/sentiment")
    out: Path | None = None         # the final checkpoint; default <run_dir>/sentiment.npz (never the shipped one)
    resume: bool = False
    init: str = "scratch"           # "scratch" or "lm"
    lm_checkpoint: Path = paths.lm_checkpoint()
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
    restart: str = "none"           # "sentence" / "clause": the recurrence restarts after each (live edits re-run less)
    subwords: int = 0               # >0: hashed character n-gram rows added to each token's vector (fastText)
    cell: str = "lstm"              # "qrnn": gates from the inputs only (live edits re-run element-wise)
    window: int = 2                 # qrnn: tokens each gate reads (the current one and those before it)
    score_weight: float = 1.0
    batch_size: int = 32
    lr: float = 2e-3
    clip: float = 5.0
    epochs: float = 8.0
    eval_every: int = 200
    lr_decay: float = 0.7           # on a validation plateau
    oversample: str = ""            # e.g. "tweets=2": repeat a domain's training sentences
    lexicon: float = 0.0            # >0: VADER's rated lexicon entries as extra examples, this many copies
    lexicon_channel: bool = False   # each token's VADER rating / 4 as a fixed extra input (lexicon words join)
    ema: float = 0.0                # >0: validate and save an exponential moving average of the weights
    select: str = "acc_f1"          # "loss" or "acc_f1": what the best checkpoint maximises on val
    float16: bool = True            # store float16 if test/val numbers are unchanged
    max_train: int | None = None    # only the first N training sentences (tests, quick runs)
    teacher: Path | None = None     # a sentiment checkpoint that labels --teacher-texts chat messages ...
    teacher_texts: int = 0          # ... which the model also trains on (distillation: sentiment_distill)
    seed: int = 0
    compare_vader: bool = True


def _init_from_lm(a: SentimentTrainArgs, train_recs: list[dict]) -> tuple[Vocab, SentimentConfig, dict]:
    """The LM's vocabulary, embedding and first LSTM layer (sizes follow the LM). With `lm_vocab_extend`,
    vader-train tokens the LM lacks are appended with small random embeddings."""
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
                             word_dropout=a.word_dropout, pool=a.pool, score_weight=a.score_weight,
                             restart=a.restart)
    arrays = {"embed.W": W}
    arrays |= {f"lstm0.{k}": v for k, v in lm.lstms[0].params.items()}
    info = {"lm_checkpoint": str(a.lm_checkpoint), "lm_metrics": header.get("metrics", {}),
            "lm_created": header.get("created")}
    return vocab, config, {"arrays": arrays, "info": info}


def vader_lexicon() -> list[dict]:
    """VADER's human-rated lexicon (``vader_lexicon.txt`` in the vaderSentiment package): one record per
    entry, the word (or emoticon) as the text and its mean rating by 10 raters (-4..4) as the rating."""
    try:
        import vaderSentiment
    except ImportError as e:
        raise RuntimeError("--lexicon needs vaderSentiment: pip install 'rnnchat[train]'") from e
    path = Path(vaderSentiment.__file__).with_name("vader_lexicon.txt")
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        parts = line.split("\t")
        if len(parts) >= 2 and parts[0].strip():
            out.append({"id": f"lexicon:{i}", "domain": "lexicon", "rating": float(parts[1]), "text": parts[0]})
    return out


def lexicon_ratings() -> dict[str, float]:
    """VADER's rating of each lexicon entry that is one token of ours (as `tokenize` spells it)."""
    out = {}
    for r in vader_lexicon():
        tokens = tokenize(r["text"])
        if len(tokens) == 1:
            out.setdefault(tokens[0], r["rating"])
    return out


def _copies(k: int, factor: float) -> int:
    """How often the k-th record of a group is used: int(factor), plus once for an evenly spread fraction."""
    return int(factor) + (1 if (k * (factor % 1)) % 1 + (factor % 1) >= 1 else 0)


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
        out += [r] * _copies(k, f)
    return out


def _hyper(a: SentimentTrainArgs) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()}


def train_sentiment(a: SentimentTrainArgs) -> dict:
    """Train (or resume) the classifier; writes the run directory and the final checkpoint `a.out`.

    Returns the final metrics (val/test tables, VADER's, float16 check)."""
    check_run_dir(a.run_dir, a.resume)
    out = Path(a.out) if a.out is not None else Path(a.run_dir) / "sentiment.npz"
    check_out(out, "sentiment", [("--teacher", a.teacher)], run_dir=a.run_dir)
    t0 = time.monotonic()
    if bool(a.teacher) != (a.teacher_texts > 0):
        raise ValueError("--teacher and --teacher-texts go together (a checkpoint, and how many messages it labels)")
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
                                 score_weight=a.score_weight, restart=a.restart, subwords=a.subwords,
                                 cell=a.cell, window=a.window)
    else:
        raise ValueError(f"init must be 'scratch' or 'lm', not {a.init!r}")
    train_recs = oversample(train_recs, a.oversample)
    if a.lexicon:  # the entries' tokens join the vocabulary (appended), the entries the training data
        if lm_init:
            raise ValueError("lexicon works with init='scratch' only")
        lexicon = vader_lexicon()
        extra = dict.fromkeys(t for r in lexicon for t in tokenize(r["text"]) if t not in vocab)
        vocab = Vocab([*vocab.itos, *extra])
        config.vocab_size = len(vocab)
        train_recs = train_recs + [r for k, r in enumerate(lexicon) for _ in range(_copies(k, a.lexicon))]
    if (a.lexicon_channel or a.subwords) and lm_init:
        raise ValueError("lexicon_channel and subwords work with init='scratch' only")
    if a.lexicon_channel and a.subwords:
        raise ValueError("lexicon_channel and subwords are not used together")
    ratings = lexicon_ratings() if a.lexicon_channel else {}
    if ratings:  # every lexicon word gets an entry (its rating is its only input until it is trained on)
        vocab = Vocab([*vocab.itos, *(t for t in ratings if t not in vocab)])
        config.vocab_size, config.lexicon = len(vocab), True
    model = SentimentModel(config, seed=a.seed)
    model.set_vocab(vocab)
    train, val = encode(train_recs, model.reader), encode(val_recs, model.reader)
    if a.teacher_texts:
        train = with_teacher_texts(train, model.reader, a.teacher, a.teacher_texts, a.seed)
    if ratings:
        model.set_lexicon(np.array([ratings.get(t, 0.0) / 4 for t in vocab.itos], model.dtype))
    if lm_init:
        for name, value in lm_init["arrays"].items():
            layer, key = name.split(".")
            target = model.embed if layer == "embed" else model.cells[0]
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
    if a.resume:  # (check_run_dir refused a --resume without a run)
        trainer.load_state()
        print(f"resumed at step {trainer.step} (epoch {trainer.epoch}, batch {trainer.position})",
              file=sys.stderr)
    summary = trainer.fit()
    train_s = time.monotonic() - t0
    metrics = finalize(best_path, out, float16=a.float16, compare_vader=a.compare_vader,
                       extra={"training": hyper, "init": a.init,
                              **({"lm_init": lm_init["info"]} if lm_init else {})},
                       timing={"train_seconds": round(train_s, 1), "steps": summary["step"]})
    return metrics


def finalize(best_path: Path, out: Path, *, float16: bool = True, compare_vader: bool = True,
             extra: dict | None = None, timing: dict | None = None) -> dict:
    """Evaluate the best (float32) checkpoint on val and test, check float16 storage, write `out`."""
    model, vocab, header = load_sentiment(best_path)
    return finalize_model(model, vocab, out, selection=header["metrics"], float16=float16,
                          compare_vader=compare_vader, extra=extra, timing=timing)


def finalize_model(model: Classifier, vocab: Vocab, out: Path, *, selection: dict, float16: bool = True,
                   compare_vader: bool = True, extra: dict | None = None, timing: dict | None = None) -> dict:
    """Val and test tables of a trained (float32) model or ensemble, the float16 check, then write `out`.

    float16 storage is used only if (almost) no verdict changes: <= 0.2% of val+test sentences."""
    val = encode(corpora.load_vader("val"), model.reader)
    test = encode(corpora.load_vader("test"), model.reader)
    tables = {"val": model_table(model, val), "test": model_table(model, test)}
    use16 = False
    if float16:
        m16 = copy.deepcopy(model, {id(model.reader): model.reader})  # the same reader: val/test's ids
        m16.load_arrays({k: v.astype(np.float16).astype(np.float32) for k, v in model.arrays().items()})
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
    metrics = {"decision": DECISION, "selection": selection, "float16": float16_check,
               **{f"{s}": t for s, t in tables.items()}}
    if compare_vader:
        metrics["vader"] = {"val": vader_table(val), "test": vader_table(test)}
    metrics |= timing or {}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_sentiment(model, vocab, out, metrics, corpus_info(), extra=extra, float16=use16)
    print(format_comparison(metrics["test"], metrics.get("vader", {}).get("test"), "test"), file=sys.stderr)
    return metrics
