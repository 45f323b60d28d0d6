"""Language-model task: chitchat conversations (or your own text files) -> one token stream -> truncated BPTT
-> checkpoint.

Each message is its tokens followed by `<eom>`; each turn ends with `<eot>`; conversations follow one another
in the stream, so the model learns both to continue text and to answer as the next speaker. With `text` files
the stream is theirs instead (`rnnchat.train.lm_text`), word or char level, and the model continues text only.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from rnnchat.data import corpora
from rnnchat.data.text_files import SPLITS, TextFileError, load_texts, read_text, split_text, text_stream
from rnnchat.checkpoint import read_header
from rnnchat.models.lm import LanguageModel, LMConfig, LMRegularisation, load_lm, save_lm
from rnnchat.nn import Adam
from rnnchat.text import Vocab, conversation_ids, tokenize
from rnnchat.train import lm_text
from rnnchat.data.batches import StreamBatches
from rnnchat.train.trainer import STATE_FILE, TrainConfig, Trainer, check_out, check_run_dir

def stream(convs: list[dict], vocab: Vocab, mark_starts: bool = False) -> np.ndarray:
    """All conversations as one int32 token stream. mark_starts: each conversation opens with an extra <eot>,
    so a new conversation (<eot> <eot>) is told apart from the next turn of the same one (a single <eot>)."""
    out: list[int] = []
    for conv in convs:
        if mark_starts:
            out.append(vocab.eot_id)
        out += conversation_ids(conv["turns"], vocab)
    return np.asarray(out, np.int32)


def build_vocab(convs: list[dict], max_size: int, min_count: int = 1) -> Vocab:
    return Vocab.build((tokenize(m) for c in convs for t in c["turns"] for m in t), max_size=max_size,
                       min_count=min_count)


def evaluate(model: LanguageModel, tokens: np.ndarray, batch_size: int = 16, bptt: int = 64) -> dict:
    """Perplexity over a token stream, state carried across windows, dropout off (fewer streams for a stream
    too short to give each of `batch_size` a token; ValueError for one with no token to predict)."""
    if len(tokens) < 2:
        raise ValueError(f"nothing to score: {len(tokens)} token(s), at least 2 are needed")
    model.train(False)
    model.reset_state()
    batches = StreamBatches(tokens, min(batch_size, len(tokens) - 1), bptt)
    total, count = 0.0, 0
    for i in range(len(batches)):
        x, y = batches[i]
        loss, n = model.loss(x, y)
        total += loss * n
        count += n
    mean = total / max(count, 1)
    return {"loss": mean, "perplexity": math.exp(mean), "tokens": count}


def corpus_info() -> dict:
    return {"name": "chitchat", "manifest_sha256": corpora.manifest_hash("chitchat")}


def evaluate_memory(model: LanguageModel, convs: list[dict], vocab: Vocab) -> dict:
    """Per-turn perplexity of every turn after the first, with the state carried from the earlier turns vs
    reset (zeros, then the same <eot> input) at the turn start. Both score exactly the same tokens."""
    model.train(False)
    totals = {"carried": 0.0, "reset": 0.0}
    count = 0
    for conv in convs:
        turns = [conversation_ids([t], vocab) for t in conv["turns"]]
        if len(turns) < 2:
            continue
        model.reset_state()
        model.loss(np.array([[vocab.eot_id] + turns[0][:-1]]), np.array([turns[0]]))
        for turn in turns[1:]:
            x, y = np.array([[vocab.eot_id] + turn[:-1]]), np.array([turn])
            loss, n = model.loss(x, y)
            totals["carried"] += loss * n
            end_state = model.state
            model.reset_state()
            totals["reset"] += model.loss(x, y)[0] * n
            model.state = end_state
            count += n
    ppl = {k: math.exp(v / max(count, 1)) for k, v in totals.items()}
    return {"carried_perplexity": ppl["carried"], "reset_perplexity": ppl["reset"],
            "ratio": ppl["carried"] / ppl["reset"], "tokens": count}


# The recipe's switches: None (left out) is the saved run's value on --resume, else these.
RECIPE_DEFAULTS = {"mark_starts": False, "locked": False, "weight_drop": 0.0, "embed_drop": 0.0, "ar": 0.0,
                   "tar": 0.0, "vary_bptt": False}
# Sizes of a chitchat run the command line leaves out (a text run's follow its text: `lm_text.text_sizes`).
CHITCHAT_SIZES = {"vocab_size": 10_000, "hidden": 512, "layers": 2, "dropout": 0.3, "batch_size": 64, "bptt": 32,
                  "lr": 2e-3, "epochs": 10.0, "eval_every": 400}


def evaluate_texts(model: LanguageModel, vocab: Vocab, header: dict, paths: list, split: str) -> dict:
    """Loss, perplexity (and bits per char) on text files: of a file the model was trained on (same sha256),
    only its `split` part, of any other file all of it."""
    trained = {f.get("sha256") for f in header["corpus"].get("files", []) if isinstance(f, dict)}
    texts, files = [], []
    for path in paths:
        text, info = read_text(path)
        part = split_text(text)[SPLITS.index(split)] if info["sha256"] in trained else text
        texts.append(part)
        files.append({"path": str(path), "part": f"{split} part" if info["sha256"] in trained else "whole file",
                      "chars": len(part), "sha256": info["sha256"]})
    tokens = text_stream(texts, vocab)
    if len(tokens) < 2:
        raise TextFileError(f"{', '.join(map(str, paths))}: nothing to score in the {split} part")
    batch = max(1, min(16, (len(tokens) - 1) // 64))
    result = lm_text.with_bits(evaluate(model, tokens, batch_size=batch), vocab.level)
    return {**result, "unk_rate": unk_rate(tokens, vocab), "split": split, "files": files}


def unk_rate(tokens: np.ndarray, vocab: Vocab) -> float:
    """The share of the scored tokens (all but the first) that are <unk>: words outside the vocabulary, each
    scored as the one token <unk>, so a text full of them gets a low perplexity that means little."""
    targets = tokens[1:]
    return round(float(np.count_nonzero(targets == vocab.unk_id)) / max(len(targets), 1), 6)


@dataclass
class LMTrainArgs:
    run_dir: Path = Path("runs/lm")
    out: Path | None = None        # the best checkpoint; default <run_dir>/lm.npz (never the shipped model)
    resume: bool = False
    text: list[Path] | None = None  # train on these text files instead of chitchat
    level: str | None = None      # "char" or "word" tokens (None: char with text; chitchat is word level)
    minutes: float | None = None  # stop (validated, saved) after this many minutes of this call
    prime: str | None = None      # with text: the priming text of the samples shown at each validation
    vocab_size: int | None = None  # None: CHITCHAT_SIZES, or the text's sizes
    hidden: int | None = None
    layers: int | None = None
    dropout: float | None = None
    batch_size: int | None = None
    bptt: int | None = None
    lr: float | None = None
    clip: float = 0.5
    epochs: float | None = None
    eval_every: int | None = None
    max_train_convs: int | None = None   # a slice of the corpus (tests, quick runs)
    seed: int = 0
    set_lr: float | None = None   # on --resume: replace the saved learning rate (a manual decay step)
    mark_starts: bool | None = None  # train on a stream where each conversation opens with an extra <eot>
    init_from: Path | None = None  # start a new run from this checkpoint's weights (fresh optimizer)
    locked: bool | None = None    # AWD-LSTM regularisers (see LMRegularisation), all off by default
    weight_drop: float | None = None
    embed_drop: float | None = None
    ar: float | None = None
    tar: float | None = None
    vary_bptt: bool | None = None  # variable-length BPTT windows, cut anew each epoch
    average_from: int | None = None  # average the weights from this step on; validate and save the average

    def regularisation(self) -> LMRegularisation:
        return LMRegularisation(locked=self.locked, weight_drop=self.weight_drop, embed_drop=self.embed_drop,
                                ar=self.ar, tar=self.tar)

    def with_sizes(self, sizes: dict) -> "LMTrainArgs":
        """These arguments with every size left out (None) taken from `sizes`."""
        return replace(self, **{k: v for k, v in sizes.items() if getattr(self, k) is None})


# Flags that define the model or the token stream: a --resume with other values would train a different run.
RESUME_MUST_MATCH = ("vocab_size", "hidden", "layers", "max_train_convs", "mark_starts", "level")


def check_resume(saved: dict, now: dict, saved_corpus: dict | None = None, corpus: dict | None = None) -> None:
    """Raise ValueError when --resume asks for a different model or token stream than the saved run."""
    diff = [f"--{k.replace('_', '-')} {now.get(k)!r} (run has {saved[k]!r})"
            for k in RESUME_MUST_MATCH if k in saved and saved[k] != now.get(k)]
    if saved_corpus and corpus and saved_corpus != corpus:
        diff.append("the training text changed since the run started" if corpus.get("name") == "text"
                    else f"corpus {corpus.get('name')!r} (run has {saved_corpus.get('name')!r})")
    if diff:
        raise ValueError("--resume would change the run: " + ", ".join(diff))


def check_text_args(a: LMTrainArgs) -> None:
    """Flags that only make sense with (or without) --text: ValueError naming the clash."""
    if a.text:
        clash = [f for f, v in (("--max-train-convs", a.max_train_convs), ("--mark-starts", a.mark_starts)) if v]
        if clash:
            raise ValueError(f"{' and '.join(clash)} choose(s) chitchat conversations: not with --text")
    elif a.level == "char" or a.prime is not None:
        raise ValueError("--level char and --prime need --text (the chitchat LM is word level)")


def from_saved_run(a: LMTrainArgs) -> LMTrainArgs:
    """On --resume, what the command line leaves out comes from the saved run: its text files, level, sizes and
    regularisers (a resume that left out --weight-drop must not go on without it). Switches still left out
    get their defaults (off)."""
    if a.resume:
        saved = read_header(Path(a.run_dir) / STATE_FILE).get("training", {})
        keys = ("text", "level", "prime", "average_from", *CHITCHAT_SIZES, *RECIPE_DEFAULTS)
        fill = {k: saved[k] for k in keys if saved.get(k) is not None}
        if "text" in fill:
            fill["text"] = [Path(p) for p in fill["text"]]
        a = a.with_sizes(fill)
    return a.with_sizes(RECIPE_DEFAULTS)


def warm_start(model: LanguageModel, vocab: Vocab, path: Path) -> dict:
    """Copy a checkpoint's weights into `model` (same sizes and vocabulary; the dropout may differ); return its
    header."""
    source, source_vocab, header = load_lm(path)
    if source_vocab.to_list() != vocab.to_list():
        raise ValueError(f"--init-from {path}: its vocabulary differs from the one built from this corpus")
    shape = lambda config: {k: v for k, v in config.items() if k != "dropout"}  # dropout is training, not shape
    if shape(source.header_config()) != shape(model.header_config()):
        raise ValueError(f"--init-from {path}: architecture {shape(source.header_config())} != "
                         f"{shape(model.header_config())}")
    model.params.load(source.arrays())
    return header


def train_lm(a: LMTrainArgs) -> dict:
    """Train (or resume) the LM; writes the run directory and the best checkpoint to `a.out`."""
    check_run_dir(a.run_dir, a.resume)
    a = from_saved_run(a)
    check_text_args(a)
    out = Path(a.out) if a.out is not None else Path(a.run_dir) / "lm.npz"
    inputs = [("training text", t) for t in a.text or []]  # (a resumed run does not read --init-from again)
    check_out(out, "lm", inputs + ([] if a.resume else [("--init-from", a.init_from)]), run_dir=a.run_dir)
    t0 = time.monotonic()
    text = None
    if a.text:
        corpus = load_texts(a.text)
        a = a.with_sizes({"level": "char", **lm_text.text_sizes(a.level or "char", corpus.chars("train"))})
        text = lm_text.load_text_data(corpus, a.level, a.vocab_size, a.prime)
        vocab, train_tokens, val_tokens, corpus_header = text.vocab, text.train, text.val, corpus.info()
        a.batch_size, a.bptt = lm_text.fit_streams(a.batch_size, a.bptt, len(train_tokens))
    else:
        a = a.with_sizes({"level": "word", **CHITCHAT_SIZES})
        train_convs = corpora.load_chitchat("train")[: a.max_train_convs]
        val_convs = corpora.load_chitchat("val")[: None if a.max_train_convs is None else max(1, a.max_train_convs // 10)]
        vocab = build_vocab(train_convs, a.vocab_size)
        train_tokens, val_tokens = stream(train_convs, vocab, a.mark_starts), stream(val_convs, vocab)
        corpus_header = corpus_info()
    print(f"vocab {len(vocab)}, train {len(train_tokens):,} tokens, val {len(val_tokens):,} tokens "
          f"({time.monotonic() - t0:.1f}s)", file=sys.stderr)
    config = LMConfig(vocab_size=len(vocab), hidden=a.hidden, layers=a.layers, dropout=a.dropout)
    model = LanguageModel(config, seed=a.seed, reg=a.regularisation())
    opt = Adam(model.params.params, lr=a.lr)
    batches = StreamBatches(train_tokens, a.batch_size, a.bptt, vary=a.vary_bptt, seed=a.seed)
    hyper = {k: ([str(p) for p in v] if k == "text" and v else str(v) if isinstance(v, Path) else v)
             for k, v in vars(a).items()}

    def step_fn(batch):
        return model.train_step(*batch)

    def validate() -> dict:
        return lm_text.with_bits(evaluate(model, val_tokens), a.level)

    def save_best(metrics: dict) -> None:
        save_lm(model, vocab, out, {"val_perplexity": metrics["perplexity"], "val_tokens": metrics["tokens"],
                                      **({"val_bpc": metrics["bpc"]} if "bpc" in metrics else {}),
                                      "train_tokens_seen": trainer.tokens_seen, "epoch": trainer.epoch},
                corpus=corpus_header, extra={"training": hyper})

    def show_sample(metrics: dict) -> str:
        return lm_text.format_sample(text.prime, lm_text.sample(model, vocab, text.prime))

    trainer = Trainer(a.run_dir, model, opt, batches, step_fn, validate, save_best,
                      TrainConfig(epochs=a.epochs, clip=a.clip, eval_every=a.eval_every, average_from=a.average_from,
                                  max_seconds=None if a.minutes is None else a.minutes * 60,
                                  cosine_lr=None if a.minutes is None else a.lr),
                      header={"vocab": vocab.to_list(), "training": hyper, "corpus": corpus_header},
                      after_validate=show_sample if text else None)
    if a.resume:  # (check_run_dir refused a --resume without a run)
        saved = read_header(trainer.state_path)
        check_resume(saved.get("training", {}), hyper, saved.get("corpus"), corpus_header)
        trainer.load_state()
        print(f"resumed at step {trainer.step} (epoch {trainer.epoch}, batch {trainer.position})", file=sys.stderr)
        if a.set_lr is not None:
            print(f"learning rate {opt.lr:g} -> {a.set_lr:g}", file=sys.stderr)
            opt.lr = a.set_lr
    elif a.init_from is not None:
        source = warm_start(model, vocab, a.init_from)
        trainer.tokens_seen = source["metrics"].get("train_tokens_seen", 0)  # the curve continues the source's
        print(f"weights from {a.init_from} ({trainer.tokens_seen:,} tokens seen), fresh optimizer", file=sys.stderr)
    return trainer.fit()
