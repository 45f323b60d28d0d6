"""Training and evaluation of the synthetic seq2seq tasks (`rnnchat.data.tasks`: addition, dates).

Character-level source -> target, one exchange per example, zero initial state. Metric: exact match of greedy
(and optionally beam) decoding on the held-out 10%.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from rnnchat.data import tasks
from rnnchat.data.batches import Exchange, make_exchange
from rnnchat.models.seq2seq import Seq2Seq, load_seq2seq, save_seq2seq
from rnnchat.models.seq2seq_decode import Seq2SeqDecoder
from rnnchat.nn import Adam
from rnnchat.text import Vocab
from rnnchat.train.seq2seq_run import (EpochBatches, RunClock, Seq2SeqTrainArgs, best_metrics, config_of, fit, hyper_of,
                                       resolve)
from rnnchat.train.trainer import TrainConfig, Trainer


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
    clock = RunClock(a.run_dir, a.resume)
    ts = load_task(a.task, a.n_examples, a.seed)
    model = Seq2Seq(config_of(a, len(ts.vocab), len(ts.vocab)), seed=a.seed)
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

    batches = EpochBatches(list(range(n_batches)), a.seed, make)
    hyper = hyper_of(a)
    corpus = task_corpus(ts)
    decoding = {"bos": eot, "eos": eot, "max_len": ts.max_len, "tokens": "chars"}

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
    result = fit(trainer, batches, a, deadline)
    clock.save()
    # final numbers from the best checkpoint
    best, _, header = load_seq2seq(a.out)
    final = evaluate_task(best, ts, beam=0, errors=10)
    metrics = {**best_metrics(header["metrics"]), "heldout_exact_match": final["exact_match"], "heldout_loss": final["loss"],
               "heldout_examples": final["examples"], **clock.totals(), "steps": trainer.step,
               "epochs_run": trainer.epoch + trainer.position / len(batches)}
    save_seq2seq(best, ts.vocab, a.out, task=a.task, corpus=corpus, decoding=decoding, metrics=metrics,
                 extra={"training": hyper, "variant": best.config.variant})
    return {**result, "metrics": metrics, "errors": final["errors"], "checkpoint": str(a.out)}
