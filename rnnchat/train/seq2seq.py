"""Seq2seq training and evaluation: the synthetic tasks (addition, dates) and the chat model.

Tasks (`rnnchat.tasks`): character-level source -> target, one exchange per example, zero initial state.
Metric: exact match of greedy (and optionally beam) decoding on the held-out 10%.

Chat: chitchat conversations (train split; conversations with < 2 turns are skipped). A turn is its messages,
each followed by `<eom>`; the source of an exchange is a turn plus `<eot>` (its last `max_src` tokens), the
target the other speaker's next turn (its first `max_tgt - 1` tokens) followed by `<eot>`; the decoder starts
from `<eot>`. Conversation memory: a conversation of turns t0 t1 t2 t3 ... gives two chains of exchanges in
which the model always plays the same speaker, exactly as in a chat (user turn -> model turn -> user turn):
(t0->t1, t2->t3, ...) and (t1->t2, t3->t4, ...). Along a chain the encoder of each exchange starts from the
decoder's final state of the previous one. Training runs windows of `window` consecutive exchanges with
backpropagation through the whole window; the state (detached) carries on to the chain's next window.
Chains are batched by length (about `batch_size` exchanges per window step).

Evaluation of the chat model on held-out conversations: reply perplexity with the state carried along each
chain vs. a fresh (zero) state at every exchange, and distinct-1/2 of sampled replies.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from rnnchat import corpora, tasks
from rnnchat.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from rnnchat.engine.sampling import SamplingSettings, skip_ids
from rnnchat.models.seq2seq import Exchange, Seq2Seq, Seq2SeqConfig, make_exchange, seq2seq_spec
from rnnchat.models.seq2seq_chat import chat_source_ids, chat_turn_ids
from rnnchat.models.seq2seq_decode import Seq2SeqDecoder
from rnnchat.nn import Adam
from rnnchat.text import EOM, EOT, Vocab, detokenize, tokenize
from rnnchat.train.trainer import TrainConfig, Trainer

ROOT = Path(__file__).resolve().parents[2]
TASK_NAMES = ("addition", "dates", "chat", "chat_backward")
CHAT_TASKS = ("chat", "chat_backward")
MODEL_KIND = "seq2seq"


def default_checkpoint(task: str) -> Path:
    return ROOT / "checkpoints" / f"seq2seq_{task}.npz"


# -- arguments -------------------------------------------------------------------------------------------------
@dataclass
class Seq2SeqTrainArgs:
    task: str = "addition"
    run_dir: Path | None = None        # default runs/seq2seq_<task>
    out: Path | None = None            # default checkpoints/seq2seq_<task>.npz
    resume: bool = False
    # architecture (None = the task's default, see TASK_DEFAULTS)
    embed: int | None = None
    hidden: int | None = None
    bidirectional: bool | None = None
    reverse: bool | None = None
    peeky: bool | None = None
    attention: str | None = None
    proj: int | None = None
    tie: bool | None = None
    dropout: float | None = None
    # optimisation
    batch_size: int | None = None      # examples (tasks) or exchanges per window step (chat)
    lr: float | None = None
    clip: float | None = None
    epochs: float | None = None
    eval_every: int | None = None      # steps between validations (tasks: 0 = once per epoch)
    lr_decay: float | None = None      # multiply lr when validation loss does not improve
    max_minutes: float | None = None   # stop (state saved, resumable) after this much training time
    seed: int = 0
    # data
    n_examples: int | None = None      # tasks: number of generated examples
    vocab_size: int | None = None      # chat
    max_src: int | None = None         # chat: source tokens kept (the end of the turn)
    max_tgt: int | None = None         # chat: target tokens kept (the start of the turn, <eot> included)
    window: int | None = None          # chat: exchanges per BPTT window
    max_train_convs: int | None = None  # chat: use only the first N training conversations


# The defaults are the configurations of the shipped checkpoints (checkpoints/seq2seq_<task>.npz).
TASK_DEFAULTS: dict[str, dict] = {
    "addition": dict(embed=32, hidden=128, bidirectional=True, reverse=True, peeky=False, attention="dot",
                     proj=128, tie=False, dropout=0.0, batch_size=128, lr=3e-3, clip=5.0, epochs=30,
                     eval_every=0, lr_decay=0.5, n_examples=50_000),
    "dates": dict(embed=32, hidden=128, bidirectional=True, reverse=False, peeky=False, attention="dot",
                  proj=128, tie=False, dropout=0.0, batch_size=128, lr=3e-3, clip=5.0, epochs=24, eval_every=0,
                  lr_decay=0.5, n_examples=50_000),
    "chat": dict(embed=128, hidden=256, bidirectional=False, reverse=False, peeky=False, attention="dot",
                 proj=128, tie=True, dropout=0.2, batch_size=128, lr=2e-3, clip=1.0, epochs=3, eval_every=400,
                 lr_decay=0.5, vocab_size=8000, max_src=40, max_tgt=40, window=4),
}
# The backward model (MMI-bidi's p(message | reply)): the chat model's shape, one exchange per chain, fresh state.
TASK_DEFAULTS["chat_backward"] = {**TASK_DEFAULTS["chat"], "window": 1}


def resolve(a: Seq2SeqTrainArgs) -> Seq2SeqTrainArgs:
    """Fill unset options from the task's defaults and the default paths."""
    if a.task not in TASK_NAMES:
        raise ValueError(f"unknown task {a.task!r}; choose one of {', '.join(TASK_NAMES)}")
    d = {**TASK_DEFAULTS[a.task], **{k: v for k, v in asdict(a).items() if v is not None}}
    d["run_dir"] = Path(d.get("run_dir") or ROOT / "runs" / f"seq2seq_{a.task}")
    d["out"] = Path(d.get("out") or default_checkpoint(a.task))
    return Seq2SeqTrainArgs(**{k: v for k, v in d.items() if k in {f.name for f in fields(Seq2SeqTrainArgs)}})


def _best_metrics(metrics: dict) -> dict:
    """Header metrics written at the best validation, timing fields renamed best_* (time to reach the best)."""
    return {(f"best_{k}" if k.startswith("train_") else k): v for k, v in metrics.items()}


def _hyper(a: Seq2SeqTrainArgs) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(a).items()}


def _config(a: Seq2SeqTrainArgs, src_vocab: int, tgt_vocab: int) -> Seq2SeqConfig:
    return Seq2SeqConfig(src_vocab=src_vocab, tgt_vocab=tgt_vocab, embed=a.embed, hidden=a.hidden,
                         bidirectional=a.bidirectional, reverse=a.reverse, peeky=a.peeky, attention=a.attention,
                         proj=a.proj, tie=a.tie, dropout=a.dropout)


class _TimeUp(KeyboardInterrupt):
    """Raised inside the training loop when --max-minutes is spent (the trainer saves its state)."""


# -- checkpoints -----------------------------------------------------------------------------------------------
def save_seq2seq(model: Seq2Seq, vocab: Vocab, path: Path, *, task: str, metrics: dict, corpus: dict,
                 decoding: dict, extra: dict | None = None, float16: bool = False) -> None:
    header = {"model": MODEL_KIND, "config": model.header_config(), "vocab": vocab.to_list(), "corpus": corpus,
              "metrics": metrics, "task": task, "decoding": decoding, **(extra or {})}
    save_checkpoint(path, model.arrays(), header, float16=float16)


def load_seq2seq(path: Path | str) -> tuple[Seq2Seq, Vocab, dict]:
    """Load and validate a seq2seq checkpoint: (model in eval mode, vocabulary, header)."""
    arrays, header = load_checkpoint(path, lambda h: seq2seq_spec(h["config"]), model=MODEL_KIND)
    vocab = Vocab.from_list(header["vocab"])
    try:
        config = Seq2SeqConfig.from_dict(header["config"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: invalid seq2seq config ({e})") from None
    if config.src_vocab != len(vocab) or config.tgt_vocab != len(vocab):
        raise CheckpointError(f"{path}: config vocabulary sizes {config.src_vocab}/{config.tgt_vocab} != "
                              f"vocabulary length {len(vocab)}")
    dec = header.get("decoding")
    if not isinstance(dec, dict) or not all(isinstance(dec.get(k), int) and 0 <= dec[k] < len(vocab)
                                            for k in ("bos", "eos")):
        raise CheckpointError(f"{path}: header has no valid decoding.bos / decoding.eos")
    model = Seq2Seq(config)
    model.load_arrays(arrays)
    model.train(False)
    return model, vocab, header


# -- timing ----------------------------------------------------------------------------------------------------
class _Clock:
    """Wall and CPU time of a run, summed over its invocations (`--resume`) in <run_dir>/timing.json.

    CPU time is this process's (one BLAS thread): on a shared machine it measures the work, wall time the wait.
    """

    def __init__(self, run_dir: Path, resume: bool):
        self.path = Path(run_dir) / "timing.json"
        self.before: list[dict] = []
        if resume and self.path.exists():
            self.before = json.loads(self.path.read_text()).get("invocations", [])
        self.wall0, self.cpu0 = time.monotonic(), time.process_time()

    def now(self) -> dict:
        return {"wall_s": round(time.monotonic() - self.wall0, 1), "cpu_s": round(time.process_time() - self.cpu0, 1)}

    def totals(self) -> dict:
        runs = self.before + [self.now()]
        cpu = [r.get("cpu_s") for r in runs]
        out = {"train_wall_s": round(sum(r["wall_s"] for r in runs), 1), "train_invocations": len(runs)}
        if all(c is not None for c in cpu):
            out["train_cpu_s"] = round(sum(cpu), 1)
        else:
            out["train_cpu_s_measured"] = round(sum(c for c in cpu if c is not None), 1)
        return out

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps({"invocations": self.before + [self.now()]}, indent=1) + "\n")


# -- batches ---------------------------------------------------------------------------------------------------
class _EpochBatches:
    """Index i of the current epoch -> a batch; the order is a function of (seed, epoch) only (exact resume)."""

    def __init__(self, items: list, seed: int, make):
        self.items, self.seed, self.make = items, seed, make
        self.epoch = 0
        self._order_epoch, self._order = -1, None

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        if self._order_epoch != self.epoch:
            self._order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.items))
            self._order_epoch = self.epoch
        return self.make(self.items[self._order[i]])


def _run(trainer: Trainer, batches: _EpochBatches, a: Seq2SeqTrainArgs, deadline: float | None) -> dict:
    """fit() with the batches following the trainer's epoch, --resume and --max-minutes."""
    if a.resume and trainer.state_path.exists():
        trainer.load_state()
        print(f"resumed at step {trainer.step} (epoch {trainer.epoch}, batch {trainer.position})", file=sys.stderr)
    batches.epoch = trainer.epoch
    inner = trainer.step_fn

    def step_fn(batch):
        if deadline is not None and time.monotonic() > deadline:
            raise _TimeUp()
        return inner(batch)

    def start_epoch():
        batches.epoch = trainer.epoch
        trainer.model.reset_state()

    trainer.step_fn, trainer.start_epoch_fn = step_fn, start_epoch
    try:
        return trainer.fit()
    except _TimeUp:
        print(f"time budget of {a.max_minutes} min spent at step {trainer.step}; final validation",
              file=sys.stderr)
        trainer.validate()
        trainer.save_state()
        return {"step": trainer.step, "epoch": trainer.epoch, "best_loss": trainer.best_loss, "stopped": "time"}


# -- tasks -----------------------------------------------------------------------------------------------------
@dataclass
class TaskSet:
    data: tasks.TaskData
    vocab: Vocab
    train: list[tuple[list[int], list[int]]]
    heldout: list[tuple[list[int], list[int]]]

    @property
    def max_len(self) -> int:
        return self.data.max_target_len + 1


def load_task(name: str, n: int = 50_000, seed: int = 0) -> TaskSet:
    data = tasks.load(name, n=n, seed=seed)
    vocab = tasks.char_vocab(data)
    enc = lambda pairs: [(tasks.encode_chars(s, vocab), tasks.encode_chars(t, vocab)) for s, t in pairs]
    return TaskSet(data, vocab, enc(data.train), enc(data.heldout))


def task_corpus(ts: TaskSet) -> dict:
    return {"name": f"task:{ts.data.name}", "fingerprint_sha256": ts.data.fingerprint(), "params": ts.data.params,
            "train_examples": len(ts.train), "heldout_examples": len(ts.heldout)}


def evaluate_task(model: Seq2Seq, ts: TaskSet, pairs=None, beam: int = 0, chunk: int = 1000,
                  errors: int = 0) -> dict:
    """Held-out loss and exact match (greedy; also beam search with width `beam` when > 0)."""
    pairs = ts.heldout if pairs is None else pairs
    model.train(False)
    vocab = ts.vocab
    dec = Seq2SeqDecoder(model)
    total, count, right, right_beam, wrong = 0.0, 0, 0, 0, []
    t0 = time.perf_counter()
    for start in range(0, len(pairs), chunk):
        part = pairs[start: start + chunk]
        ex = make_exchange([s for s, _ in part], [t for _, t in part], vocab.eot_id, vocab.eot_id)
        loss, n, _ = model.chain_loss([ex])
        total, count = total + loss * n, count + n
        hyps = dec.greedy(dec.encode([s for s, _ in part]), vocab.eot_id, vocab.eot_id, ts.max_len,
                          banned=(vocab.pad_id, vocab.unk_id))
        for (s, t), h in zip(part, hyps):
            ok = h.finished and h.ids == t
            right += ok
            if not ok and len(wrong) < errors:
                wrong.append({"source": "".join(vocab.ids_to_tokens(s)), "target": "".join(vocab.ids_to_tokens(t)),
                              "greedy": "".join(vocab.ids_to_tokens(h.ids))})
    greedy_s = time.perf_counter() - t0
    mean = total / max(count, 1)
    out = {"loss": mean, "perplexity": math.exp(mean), "exact_match": right / len(pairs), "examples": len(pairs),
           "greedy_decode_s": round(greedy_s, 2)}
    if beam:
        t0 = time.perf_counter()
        for s, t in pairs:
            h = dec.beam(dec.encode([s]), vocab.eot_id, vocab.eot_id, ts.max_len, width=beam,
                         banned=(vocab.pad_id, vocab.unk_id))[0]
            right_beam += h.finished and h.ids == t
        out |= {f"exact_match_beam{beam}": right_beam / len(pairs),
                "beam_decode_s": round(time.perf_counter() - t0, 2)}
    if errors:
        out["errors"] = wrong
    return out


def train_task(a: Seq2SeqTrainArgs) -> dict:
    a = resolve(a)
    clock = _Clock(a.run_dir, a.resume)
    ts = load_task(a.task, a.n_examples, a.seed)
    model = Seq2Seq(_config(a, len(ts.vocab), len(ts.vocab)), seed=a.seed)
    opt = Adam(model.params.params, lr=a.lr)
    bs = a.batch_size
    n_batches = len(ts.train) // bs  # full batches only; the order of examples changes every epoch
    examples = ts.train
    eot = ts.vocab.eot_id

    perms: dict[int, np.ndarray] = {}

    def make(i: int):
        # batch i of this epoch: a slice of an epoch-seeded permutation of the examples
        if batches.epoch not in perms:
            perms.clear()
            perms[batches.epoch] = np.random.default_rng([a.seed, batches.epoch, 1]).permutation(len(examples))
        part = [examples[j] for j in perms[batches.epoch][i * bs: (i + 1) * bs]]
        return make_exchange([s for s, _ in part], [t for _, t in part], eot, eot)

    batches = _EpochBatches(list(range(n_batches)), a.seed, make)
    hyper = _hyper(a)
    corpus = task_corpus(ts)
    decoding = {"bos": eot, "eos": eot, "max_len": ts.max_len, "tokens": "chars"}
    train_time = {"s": 0.0}

    def step_fn(ex: Exchange):
        loss, n, _ = model.train_chain([ex])
        return loss, n

    def save_best(metrics: dict) -> None:
        save_seq2seq(model, ts.vocab, a.out, task=a.task, corpus=corpus, decoding=decoding,
                     metrics={"heldout_exact_match": metrics["exact_match"], "heldout_loss": metrics["loss"],
                              "epoch": trainer.epoch, "step": trainer.step, **clock.totals()},
                     extra={"training": hyper, "variant": model.config.variant})

    eval_every = a.eval_every or n_batches  # default: once per epoch
    trainer = Trainer(a.run_dir, model, opt, batches, step_fn, lambda: evaluate_task(model, ts), save_best,
                      TrainConfig(epochs=a.epochs, clip=a.clip, eval_every=eval_every, log_every=50,
                                  lr_decay_on_plateau=a.lr_decay),
                      header={"vocab": ts.vocab.to_list(), "training": hyper, "corpus": corpus})
    deadline = None if a.max_minutes is None else time.monotonic() + 60 * a.max_minutes
    result = _run(trainer, batches, a, deadline)
    clock.save()
    # final numbers from the best checkpoint
    best, _, header = load_seq2seq(a.out)
    final = evaluate_task(best, ts, beam=0, errors=10)
    metrics = {**_best_metrics(header["metrics"]), "heldout_exact_match": final["exact_match"], "heldout_loss": final["loss"],
               "heldout_examples": final["examples"], **clock.totals(), "steps": trainer.step,
               "epochs_run": trainer.epoch + trainer.position / len(batches)}
    save_seq2seq(best, ts.vocab, a.out, task=a.task, corpus=corpus, decoding=decoding, metrics=metrics,
                 extra={"training": hyper, "variant": best.config.variant})
    return {**result, "metrics": metrics, "errors": final["errors"], "checkpoint": str(a.out)}


# -- chat data -------------------------------------------------------------------------------------------------
def turn_ids(turn: list[str], vocab: Vocab) -> list[int]:
    return chat_turn_ids(turn, vocab)


def source_ids(ids: list[int], vocab: Vocab, max_src: int) -> list[int]:
    return chat_source_ids(ids, vocab, max_src)


def target_ids(ids: list[int], max_tgt: int) -> list[int]:
    """A turn as a decoder target (eos added by make_exchange): its first max_tgt - 1 tokens."""
    return ids[: max_tgt - 1]


Chain = list[tuple[list[int], list[int]]]


def conversation_chains(conv: dict, vocab: Vocab, max_src: int, max_tgt: int, backward: bool = False
                        ) -> list[Chain]:
    """The two chains of exchanges of a conversation (see the module docstring); empty ones left out.

    backward: every (reply -> the message it answered) pair as a chain of its own (the MMI-bidi scorer).
    """
    turns = [turn_ids(t, vocab) for t in conv["turns"]]
    if backward:
        return [[(source_ids(turns[i + 1], vocab, max_src), target_ids(turns[i], max_tgt))]
                for i in range(len(turns) - 1)]
    chains = []
    for start in (0, 1):
        chain = [(source_ids(turns[i], vocab, max_src), target_ids(turns[i + 1], max_tgt))
                 for i in range(start, len(turns) - 1, 2)]
        if chain:
            chains.append(chain)
    return chains


def build_chat_vocab(convs: list[dict], size: int) -> Vocab:
    return Vocab.build((tokenize(m) for c in convs for t in c["turns"] for m in t), max_size=size)


def chain_batches(chains: list[Chain], budget: int, window: int, rng: np.random.Generator | None
                  ) -> list[list[int]]:
    """Group chains of similar length, about `budget` exchanges per window step (longest first in each)."""
    lengths = np.array([len(c) for c in chains])
    tie = rng.random(len(chains)) if rng is not None else np.arange(len(chains))
    order = np.lexsort((tie, -lengths))
    groups, i = [], 0
    while i < len(order):
        rows = max(1, budget // min(int(lengths[order[i]]), window))
        groups.append([int(j) for j in order[i: i + rows]])
        i += rows
    return groups


def window_exchanges(chains: list[Chain], group: list[int], start: int, stop: int, bos: int, eos: int
                     ) -> list[Exchange]:
    """Exchanges start..stop-1 of a group of chains; rows are positions in `group` (chains that are long enough)."""
    out = []
    for k in range(start, stop):
        rows = [r for r, ci in enumerate(group) if len(chains[ci]) > k]
        if not rows:
            break
        pairs = [chains[group[r]][k] for r in rows]
        out.append(make_exchange([s for s, _ in pairs], [t for _, t in pairs], bos, eos, rows=np.array(rows)))
    return out


def chat_perplexity(model: Seq2Seq, chains: list[Chain], vocab: Vocab, carry: bool = True, budget: int = 256,
                    by_position: bool = False) -> dict:
    """Reply perplexity over whole chains (state carried along each chain, or fresh at every exchange)."""
    model.train(False)
    eot = vocab.eot_id
    total, count = 0.0, 0
    pos_tot: dict[int, list[float]] = {}
    for group in chain_batches(chains, budget, 4, None):
        L = max(len(chains[c]) for c in group)
        exs = window_exchanges(chains, group, 0, L, eot, eot)
        _, _, per = model.chain_loss(exs, carry=carry, batch=len(group))
        for k, (s, n) in enumerate(per):
            total, count = total + s, count + n
            b = min(k, 3)
            pos_tot.setdefault(b, [0.0, 0])
            pos_tot[b][0] += s
            pos_tot[b][1] += n
    mean = total / max(count, 1)
    out = {"loss": mean, "perplexity": math.exp(mean), "tokens": count}
    if by_position:
        out["perplexity_by_exchange"] = {("3+" if k == 3 else str(k)): math.exp(s / n)
                                         for k, (s, n) in sorted(pos_tot.items())}
    return out


def distinct_n(replies: list[list[str]], n: int) -> float:
    grams = [tuple(r[i: i + n]) for r in replies for i in range(len(r) - n + 1)]
    return len(set(grams)) / max(len(grams), 1)


def sample_replies(model: Seq2Seq, vocab: Vocab, chains: list[Chain], settings: SamplingSettings, n: int = 500,
                   batch: int = 100) -> list[dict]:
    """Replies sampled for the first exchange of the first n chains (fresh state), with sources and targets."""
    dec = Seq2SeqDecoder(model)
    banned = skip_ids(settings, vocab)
    firsts = [c[0] for c in chains[:n]]
    out = []
    for start in range(0, len(firsts), batch):
        part = firsts[start: start + batch]
        enc = dec.encode([s for s, _ in part])
        seeds = None if settings.seed is None else [settings.seed + start + r for r in range(len(part))]
        if settings.temperature == 0:
            hyps = dec.greedy(enc, vocab.eot_id, vocab.eot_id, settings.max_tokens, banned=banned)
        else:
            hyps = dec.sample(enc, vocab.eot_id, vocab.eot_id, settings, banned, seeds=seeds)
        for (s, t), h in zip(part, hyps):
            out.append({"source": vocab.decode(s), "target": vocab.decode(t),
                        "reply": vocab.decode(h.ids), "tokens": [x for x in vocab.ids_to_tokens(h.ids)
                                                                 if x not in (EOM, EOT)]})
    return out


def evaluate_chat(model: Seq2Seq, vocab: Vocab, chains: list[Chain], n_samples: int = 500,
                  settings: SamplingSettings | None = None) -> dict:
    t0 = time.perf_counter()
    carried = chat_perplexity(model, chains, vocab, carry=True, by_position=True)
    fresh = chat_perplexity(model, chains, vocab, carry=False, by_position=True)
    settings = settings or SamplingSettings(seed=0)
    sampled = sample_replies(model, vocab, chains, settings, n_samples)
    greedy = sample_replies(model, vocab, chains, settings.with_(temperature=0.0, repeat_penalty=1.0), n_samples)
    toks = [r["tokens"] for r in sampled]
    gtoks = [r["tokens"] for r in greedy]
    return {
        "loss": carried["loss"], "perplexity": carried["perplexity"], "perplexity_carried": carried["perplexity"],
        "perplexity_fresh": fresh["perplexity"], "tokens": carried["tokens"], "chains": len(chains),
        "exchanges": sum(len(c) for c in chains),
        "perplexity_by_exchange_carried": carried["perplexity_by_exchange"],
        "perplexity_by_exchange_fresh": fresh["perplexity_by_exchange"],
        "distinct_1": distinct_n(toks, 1), "distinct_2": distinct_n(toks, 2),
        "mean_reply_tokens": float(np.mean([len(t) for t in toks])) if toks else 0.0,
        "greedy_distinct_1": distinct_n(gtoks, 1), "greedy_distinct_2": distinct_n(gtoks, 2),
        "sampling": settings.to_dict(), "samples": [{**s, "greedy": g["reply"]} for s, g in
                                                    zip(sampled[:12], greedy[:12])],
        "eval_s": round(time.perf_counter() - t0, 1),
    }


def load_chat_chains(split: str, vocab: Vocab, max_src: int, max_tgt: int, limit: int | None = None,
                     backward: bool = False) -> list[Chain]:
    convs = corpora.load_chitchat(split)[:limit]
    return [ch for c in convs if len(c["turns"]) >= 2
            for ch in conversation_chains(c, vocab, max_src, max_tgt, backward)]


def chat_corpus() -> dict:
    return {"name": "chitchat", "manifest_sha256": corpora.manifest_hash("chitchat")}


def train_chat(a: Seq2SeqTrainArgs) -> dict:
    a = resolve(a)
    t_start = time.monotonic()
    clock = _Clock(a.run_dir, a.resume)
    train_convs = [c for c in corpora.load_chitchat("train")[: a.max_train_convs] if len(c["turns"]) >= 2]
    vocab = build_chat_vocab(train_convs, a.vocab_size)
    backward = a.task == "chat_backward"
    chains = [ch for c in train_convs for ch in conversation_chains(c, vocab, a.max_src, a.max_tgt, backward)]
    val_limit = None if a.max_train_convs is None else max(10, a.max_train_convs // 10)
    val_chains = load_chat_chains("val", vocab, a.max_src, a.max_tgt, val_limit, backward)
    groups = chain_batches(chains, a.batch_size, a.window, np.random.default_rng(a.seed))
    items = [(g, w) for g in range(len(groups))
             for w in range(-(-max(len(chains[c]) for c in groups[g]) // a.window))]
    n_ex = sum(len(c) for c in chains)
    print(f"vocab {len(vocab)}, {len(train_convs)} conversations, {len(chains)} chains, {n_ex} exchanges, "
          f"{len(groups)} chain batches, {len(items)} window steps per epoch, {len(val_chains)} val chains "
          f"({time.monotonic() - t_start:.1f}s)", file=sys.stderr)
    model = Seq2Seq(_config(a, len(vocab), len(vocab)), seed=a.seed)
    opt = Adam(model.params.params, lr=a.lr)
    eot = vocab.eot_id

    # one epoch = every chain batch once, in an epoch-seeded order, each batch's windows in order
    class Windows(_EpochBatches):
        def __getitem__(self, i):
            if self._order_epoch != self.epoch:
                perm = np.random.default_rng([self.seed, self.epoch]).permutation(len(groups))
                self._order = [(g, w) for g in perm for w in range(-(-max(len(chains[c]) for c in groups[g])
                                                                    // a.window))]
                self._order_epoch = self.epoch
            return self._order[i]

    batches = Windows(items, a.seed, None)
    hyper = _hyper(a)
    decoding = {"bos": eot, "eos": eot, "max_src": a.max_src, "max_tgt": a.max_tgt, "tokens": "words"}

    def step_fn(item):
        g, w = item
        group = groups[g]
        exs = window_exchanges(chains, group, w * a.window, (w + 1) * a.window, eot, eot)
        state0 = None if w == 0 or model.carry is None else model.carry
        loss, n, final = model.train_chain(exs, state0=state0, batch=len(group))
        model.carry = final
        return loss, n

    def evaluate() -> dict:
        return chat_perplexity(model, val_chains, vocab, carry=True)

    def save_best(metrics: dict) -> None:
        save_seq2seq(model, vocab, a.out, task=a.task, corpus=chat_corpus(), decoding=decoding, float16=True,
                     metrics={"val_perplexity_carried": metrics["perplexity"], "val_tokens": metrics["tokens"],
                              "epoch": trainer.epoch, "step": trainer.step, **clock.totals()},
                     extra={"training": hyper, "variant": model.config.variant})

    trainer = Trainer(a.run_dir, model, opt, batches, step_fn, evaluate, save_best,
                      TrainConfig(epochs=a.epochs, clip=a.clip, eval_every=a.eval_every, log_every=25,
                                  lr_decay_on_plateau=a.lr_decay),
                      header={"vocab": vocab.to_list(), "training": hyper, "corpus": chat_corpus()})
    deadline = None if a.max_minutes is None else time.monotonic() + 60 * a.max_minutes
    result = _run(trainer, batches, a, deadline)
    clock.save()
    totals = clock.totals()
    best, _, header = load_seq2seq(a.out)
    test_chains = load_chat_chains("test", vocab, a.max_src, a.max_tgt, val_limit, backward)
    final = evaluate_chat(best, vocab, test_chains)
    val = chat_perplexity(best, val_chains, vocab, carry=False)
    metrics = {**_best_metrics(header["metrics"]), "val_perplexity_fresh": val["perplexity"],
               **{f"test_{k}": v for k, v in final.items() if k not in ("loss", "samples", "sampling", "eval_s")},
               **totals, "steps": trainer.step,
               "epochs_run": trainer.epoch + trainer.position / len(batches)}
    save_seq2seq(best, vocab, a.out, task=a.task, corpus=chat_corpus(), decoding=decoding, float16=True,
                 metrics=metrics, extra={"training": hyper, "variant": best.config.variant,
                                         "samples": final["samples"][:6]})
    return {**result, "metrics": metrics, "samples": final["samples"], "checkpoint": str(a.out)}


def train_seq2seq(a: Seq2SeqTrainArgs) -> dict:
    return train_chat(a) if a.task in CHAT_TASKS else train_task(a)


def eval_seq2seq(task: str, checkpoint: Path | None = None, split: str = "test", beam: int = 0,
                 n_samples: int = 500, settings: SamplingSettings | None = None) -> dict:
    """Evaluate a checkpoint: tasks -> held-out exact match; chat -> perplexity carried/fresh, distinct-n."""
    path = Path(checkpoint or default_checkpoint(task))
    model, vocab, header = load_seq2seq(path)
    if header.get("task") != task:
        raise CheckpointError(f"{path}: holds a model for task {header.get('task')!r}, not {task!r}")
    t0 = time.perf_counter()
    if task in CHAT_TASKS:
        dec = header["decoding"]
        chains = load_chat_chains(split, vocab, dec["max_src"], dec["max_tgt"], backward=task == "chat_backward")
        out = evaluate_chat(model, vocab, chains, n_samples, settings) | {"split": split}
    else:
        hp = header.get("training", {})
        ts = load_task(task, hp.get("n_examples") or 50_000, hp.get("seed", 0))
        if ts.vocab.to_list() != vocab.to_list():
            raise CheckpointError(f"{path}: vocabulary does not match the regenerated {task} task")
        out = evaluate_task(model, ts, beam=beam, errors=10) | {"split": "heldout"}
    return {"task": task, "checkpoint": str(path), "variant": model.config.variant, **out,
            "wall_s": round(time.perf_counter() - t0, 1)}


# -- command line (wired by rnnchat.cli) ---------------------------------------------------------------------
def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of `rnnchat train seq2seq`; unset architecture/optimisation flags take the task's defaults."""
    p.add_argument("--task", choices=TASK_NAMES, default="addition")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    p.add_argument("--run-dir", type=Path, default=None, help="run directory (default runs/seq2seq_TASK)")
    p.add_argument("--out", type=Path, default=None, help="best checkpoint (default checkpoints/seq2seq_TASK.npz)")
    for name in ("embed", "hidden", "proj", "batch_size", "eval_every", "n_examples", "vocab_size", "max_src",
                 "max_tgt", "window", "max_train_convs"):
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=None)
    for name in ("dropout", "lr", "clip", "epochs", "lr_decay", "max_minutes"):
        p.add_argument(f"--{name.replace('_', '-')}", type=float, default=None)
    for name in ("bidirectional", "reverse", "peeky", "tie"):
        p.add_argument(f"--{name}", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--attention", choices=("none", "dot", "general"), default=None)
    p.add_argument("--seed", type=int, default=0)


def run_train_command(args: argparse.Namespace) -> int:
    names = {f.name for f in fields(Seq2SeqTrainArgs)}
    result = train_seq2seq(Seq2SeqTrainArgs(**{k: v for k, v in vars(args).items() if k in names}))
    print(json.dumps({k: v for k, v in result.items() if k not in ("samples", "errors")}))
    return 0


def add_eval_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", choices=TASK_NAMES, default="addition")
    p.add_argument("--checkpoint", type=Path, default=None, help="default checkpoints/seq2seq_TASK.npz")
    p.add_argument("--split", choices=("val", "test"), default="test", help="chat: held-out split")
    p.add_argument("--beam", type=int, default=0, help="tasks: also exact match with beam search of this width")
    p.add_argument("--samples", type=int, default=500, help="chat: replies sampled for distinct-n")
    p.add_argument("--json", action="store_true")


def run_eval_command(args: argparse.Namespace) -> int:
    result = eval_seq2seq(args.task, args.checkpoint, args.split, args.beam, args.samples)
    if args.json:
        print(json.dumps(result))
        return 0
    if args.task in CHAT_TASKS:
        print(f"{args.split}: reply perplexity {result['perplexity_carried']:.2f} with carried state, "
              f"{result['perplexity_fresh']:.2f} fresh; distinct-1 {result['distinct_1']:.3f}, "
              f"distinct-2 {result['distinct_2']:.3f} ({result['checkpoint']})")
        for s in result["samples"][:5]:
            print(f"  > {s['source']}\n  < {s['reply']}")
    else:
        line = f"{args.task}: held-out exact match {result['exact_match']:.2%} (greedy)"
        if args.beam:
            line += f", {result[f'exact_match_beam{args.beam}']:.2%} (beam {args.beam})"
        print(f"{line} over {result['examples']} examples ({result['checkpoint']})")
    return 0
