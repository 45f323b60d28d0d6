"""Batches: truncated-BPTT streams over one long token stream, padded length buckets for sequences, and the
padded source -> target exchanges of the seq2seq models."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


class StreamBatches:
    """N parallel streams over a token stream, cut into windows of T steps (state carried between windows).

    The stream is split into N contiguous rows; batch i is columns [i*T, (i+1)*T) of every row, with targets
    shifted one token ahead. Row r of batch i+1 continues row r of batch i, so a stateful model can carry
    its state across batches.

    vary=True gives variable-length BPTT (AWD-LSTM): window lengths are drawn around T (T with probability
    0.95, else T/2, plus N(0, 5) noise, at least 5), anew each epoch from (seed, epoch), so the windows start at
    different tokens every epoch. They are scaled to tile the rows exactly, so every epoch has the same number
    of windows as fixed T would give and sees every token once; `set_epoch` picks the epoch's cuts.
    """

    def __init__(self, tokens: np.ndarray, batch_size: int, bptt: int, vary: bool = False, seed: int = 0):
        n = (len(tokens) - 1) // batch_size
        if n < 1:
            raise ValueError(f"{len(tokens)} tokens are too few for {batch_size} streams")
        if vary and bptt < 10:
            raise ValueError(f"variable-length BPTT needs a window of at least 10 tokens, got {bptt}")
        self.x = np.ascontiguousarray(tokens[: n * batch_size].reshape(batch_size, n))
        self.y = np.ascontiguousarray(tokens[1: n * batch_size + 1].reshape(batch_size, n))
        self.bptt, self.vary, self.seed = bptt, vary, seed
        self._cuts = np.minimum(np.arange(len(self) + 1) * bptt, n)
        self.set_epoch(0)

    def __len__(self) -> int:
        return -(-self.x.shape[1] // self.bptt)

    def set_epoch(self, epoch: int) -> None:
        if not self.vary:
            return
        rng = np.random.default_rng([self.seed, epoch])
        k, n = len(self), self.x.shape[1]
        base = np.where(rng.random(k) < 0.95, self.bptt, self.bptt / 2)
        lengths = np.maximum(5.0, rng.normal(base, 5.0))
        cuts = np.rint(np.cumsum(lengths) * (n / lengths.sum())).astype(np.int64)
        self._cuts = np.concatenate([[0], cuts[:-1], [n]])

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        cols = slice(self._cuts[i], self._cuts[i + 1])
        return self.x[:, cols], self.y[:, cols]

    @property
    def tokens_per_epoch(self) -> int:
        return self.x.size


def pad(seqs: Sequence[Sequence[int]], pad_id: int = 0, length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad id sequences to (N, L) int64 with a (N, L) float32 mask of real positions."""
    L = max((len(s) for s in seqs), default=0) if length is None else length
    ids = np.full((len(seqs), L), pad_id, np.int64)
    mask = np.zeros((len(seqs), L), np.float32)
    for i, s in enumerate(seqs):
        s = list(s)[:L]
        ids[i, : len(s)] = s
        mask[i, : len(s)] = 1
    return ids, mask


def bucket_batches(lengths: Sequence[int], batch_size: int, rng: np.random.Generator | None = None,
                   bucket_factor: int = 50) -> list[np.ndarray]:
    """Index batches of similar length: shuffle, sort within chunks of batch_size*bucket_factor, cut, shuffle.

    With rng=None the order is deterministic (sorted by length), for evaluation.
    """
    lengths = np.asarray(lengths)
    if rng is None:
        order = np.argsort(lengths, kind="stable")
        return [order[i: i + batch_size] for i in range(0, len(order), batch_size)]
    order = rng.permutation(len(lengths))
    chunk = batch_size * bucket_factor
    batches = []
    for start in range(0, len(order), chunk):
        part = order[start: start + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches += [part[i: i + batch_size] for i in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


# -- seq2seq exchanges -----------------------------------------------------------------------------------------
@dataclass
class Exchange:
    """One source -> target step for some rows of a batch (padded arrays; see `make_exchange`)."""

    rows: np.ndarray        # (n,) rows of the batch (of chains) this exchange belongs to
    src: np.ndarray         # (n, S) int64 source ids, right-padded with 0
    src_mask: np.ndarray    # (n, S) float32
    tgt_in: np.ndarray      # (n, T) decoder inputs: bos + target
    tgt_out: np.ndarray     # (n, T) decoder targets: target + eos, 0 at padding
    tgt_mask: np.ndarray    # (n, T) float32

    @property
    def n_targets(self) -> int:
        return int(self.tgt_mask.sum())


def make_exchange(src: Sequence[Sequence[int]], tgt: Sequence[Sequence[int]], bos: int, eos: int,
                  rows: np.ndarray | None = None) -> Exchange:
    """Pad sources and targets; decoder input is [bos] + tgt, decoder output tgt + [eos]. Sources need >= 1 id."""
    if any(len(s) == 0 for s in src):
        raise ValueError("every source needs at least one token (attention over nothing is undefined)")
    s, sm = pad(src)
    ti, tm = pad([[bos, *t] for t in tgt])
    to, _ = pad([[*t, eos] for t in tgt])
    rows = np.arange(len(src)) if rows is None else np.asarray(rows, np.int64)
    return Exchange(rows, s, sm, ti, to, tm)
