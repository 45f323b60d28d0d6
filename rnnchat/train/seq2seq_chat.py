"""Training and evaluation of the seq2seq chat model (and its backward scorer) on chitchat.

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

Backward (`--task chat_backward`, MMI-bidi's p(message | reply)): every (reply -> the message it answered)
pair is a chain of its own, so each exchange starts from a fresh state.
"""

from __future__ import annotations

import math
import sys
import time

import numpy as np

from rnnchat.data import corpora
from rnnchat.data.batches import Exchange, make_exchange
from rnnchat.models.seq2seq import Seq2Seq, load_seq2seq, save_seq2seq
from rnnchat.models.seq2seq_decode import Seq2SeqDecoder
from rnnchat.nn import Adam
from rnnchat.sampling import SamplingSettings, skip_ids
from rnnchat.text import EOM, EOT, Vocab, source_ids, tokenize, turn_ids
from rnnchat.train.seq2seq_run import (EpochBatches, Seq2SeqTrainArgs, best_metrics, config_of, fit, hyper_of,
                                       resolve, RunClock)
from rnnchat.train.trainer import TrainConfig, Trainer


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
    clock = RunClock(a.run_dir, a.resume)
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
    model = Seq2Seq(config_of(a, len(vocab), len(vocab)), seed=a.seed)
    opt = Adam(model.params.params, lr=a.lr)
    eot = vocab.eot_id

    # one epoch = every chain batch once, in an epoch-seeded order, each batch's windows in order
    class Windows(EpochBatches):
        def __getitem__(self, i):
            if self._order_epoch != self.epoch:
                perm = np.random.default_rng([self.seed, self.epoch]).permutation(len(groups))
                self._order = [(g, w) for g in perm for w in range(-(-max(len(chains[c]) for c in groups[g])
                                                                    // a.window))]
                self._order_epoch = self.epoch
            return self._order[i]

    batches = Windows(items, a.seed, None)
    hyper = hyper_of(a)
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
    result = fit(trainer, batches, a, deadline)
    clock.save()
    totals = clock.totals()
    best, _, header = load_seq2seq(a.out)
    test_chains = load_chat_chains("test", vocab, a.max_src, a.max_tgt, val_limit, backward)
    final = evaluate_chat(best, vocab, test_chains)
    val = chat_perplexity(best, val_chains, vocab, carry=False)
    metrics = {**best_metrics(header["metrics"]), "val_perplexity_fresh": val["perplexity"],
               **{f"test_{k}": v for k, v in final.items() if k not in ("loss", "samples", "sampling", "eval_s")},
               **totals, "steps": trainer.step,
               "epochs_run": trainer.epoch + trainer.position / len(batches)}
    save_seq2seq(best, vocab, a.out, task=a.task, corpus=chat_corpus(), decoding=decoding, float16=True,
                 metrics=metrics, extra={"training": hyper, "variant": best.config.variant,
                                         "samples": final["samples"][:6]})
    return {**result, "metrics": metrics, "samples": final["samples"], "checkpoint": str(a.out)}
