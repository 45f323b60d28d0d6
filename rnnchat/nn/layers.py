"""Feed-forward layers: embedding, embedding bag, linear over time, inverted dropout, masked softmax cross-entropy.

Every layer keeps `params` and `grads` (dicts of arrays with the same keys) and has `forward` / `backward`.
Sequence tensors are batch-major: (N, T, ...).
"""

from __future__ import annotations

import numpy as np

from rnnchat.nn.parallel import blocked


class Layer:
    """Base class: a layer owns `params` and the matching `grads`."""

    params: dict[str, np.ndarray]
    grads: dict[str, np.ndarray]
    training: bool = True

    def _init_grads(self) -> None:
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}


def transposed(a: np.ndarray, block: int = 256) -> np.ndarray:
    """A row-major copy of a.T, copied in row blocks (5x faster than one strided copy of a
    10k x 512 matrix)."""
    out = np.empty(a.shape[::-1], a.dtype)
    for i in range(0, a.shape[0], block):
        out[:, i:i + block] = a[i:i + block].T
    return out


def uniform_init(rng: np.random.Generator | None, shape: tuple[int, ...], scale: float, dtype) -> np.ndarray:
    """U(-scale, scale) weights in `dtype`; zeros when rng is None (a layer about to be loaded from a file)."""
    if rng is None:
        return np.zeros(shape, dtype)
    return rng.uniform(-scale, scale, size=shape).astype(dtype)


class Embedding(Layer):
    """Token ids (N, T) -> vectors (N, T, D). Backward accumulates repeated ids."""

    def __init__(self, vocab_size: int, dim: int, *, rng: np.random.Generator, dtype=np.float32, scale: float = 0.1):
        self.params = {"W": uniform_init(rng, (vocab_size, dim), scale, dtype)}
        self._init_grads()
        self._ids: np.ndarray | None = None

    def forward(self, ids: np.ndarray) -> np.ndarray:
        self._ids = ids
        return self.params["W"][ids]

    def backward(self, dout: np.ndarray) -> None:
        sum_rows(self._ids.ravel(), dout.reshape(-1, self.grads["W"].shape[1]), self.grads["W"])


def sum_rows(ids: np.ndarray, rows: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out = the sum of rows[k] over each id (out[i] = sum of rows[k] with ids[k] == i, 0 for ids not there):
    sort the ids, add each run of equal ids once (np.add.at is slower)."""
    out.fill(0)
    if ids.size:
        order = np.argsort(ids, kind="stable")
        sorted_ids = ids[order]
        starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
        out[sorted_ids[starts]] = np.add.reduceat(rows[order], starts, axis=0)
    return out


class EmbeddingBag(Layer):
    """Bags of ids -> the mean of their rows (fastText's subword vectors): bag i holds ids[offsets[i]:offsets[i+1]];
    (N + 1,) offsets and (K,) ids -> (N, D). An empty bag is the zero vector. Backward sums repeated ids."""

    def __init__(self, num: int, dim: int, *, rng: np.random.Generator | None, dtype=np.float32, scale: float = 0.1):
        self.params = {"W": uniform_init(rng, (num, dim), scale, dtype)}
        self._init_grads()
        self._bags: tuple[np.ndarray, np.ndarray] | None = None

    def lookup(self, offsets: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """The bags' means (pure: nothing is kept for backward)."""
        W = self.params["W"]
        sizes = np.diff(offsets)
        out = np.zeros((len(sizes), W.shape[1]), W.dtype)
        full = sizes > 0
        if ids.size:  # each non-empty bag sums from its start to the next non-empty bag's start (its end)
            out[full] = np.add.reduceat(W[ids], offsets[:-1][full], axis=0) / sizes[full, None].astype(W.dtype)
        return out

    def forward(self, offsets: np.ndarray, ids: np.ndarray) -> np.ndarray:
        self._bags = (np.diff(offsets), ids)
        return self.lookup(offsets, ids)

    def backward(self, dout: np.ndarray) -> None:
        sizes, ids = self._bags
        per_id = np.repeat(dout / np.maximum(sizes, 1)[:, None].astype(dout.dtype), sizes, axis=0)  # (K, D)
        sum_rows(ids, per_id, self.grads["W"])


class Linear(Layer):
    """y = x @ W + b over the last axis of any (..., D_in) input."""

    def __init__(self, d_in: int, d_out: int, *, rng: np.random.Generator, dtype=np.float32, bias: bool = True):
        scale = 1.0 / np.sqrt(d_in)
        self.params = {"W": uniform_init(rng, (d_in, d_out), scale, dtype)}
        if bias:
            self.params["b"] = np.zeros(d_out, dtype)
        self._init_grads()
        self._x: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._x = x
        y = x @ self.params["W"]
        if "b" in self.params:
            y += self.params["b"]
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        W = self.params["W"]
        x2 = self._x.reshape(-1, W.shape[0])
        dy2 = dy.reshape(-1, W.shape[1])
        np.dot(x2.T, dy2, out=self.grads["W"])
        if "b" in self.params:
            dy2.sum(axis=0, out=self.grads["b"])
        return (dy2 @ W.T).reshape(self._x.shape)


class TiedOutput(Layer):
    """Output projection whose weight IS the embedding matrix (shared by identity): logits = h @ E.T + b.

    Its gradient for `W` is kept in its own buffer; `ParamSet` sums it with the embedding's gradient once.
    """

    def __init__(self, embedding: Embedding):
        W = embedding.params["W"]
        self.params = {"W": W, "b": np.zeros(W.shape[0], W.dtype)}
        self._init_grads()
        self._h: np.ndarray | None = None

    def forward(self, h: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """h (..., H) -> logits (..., V), written into `out` when given (a reused buffer saves page faults)."""
        self._h = h
        y = np.matmul(h, self.params["W"].T, out=out)
        y += self.params["b"]
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        W = self.params["W"]
        h2 = self._h.reshape(-1, W.shape[1])
        dy2 = dy.reshape(-1, W.shape[0])
        np.dot(dy2.T, h2, out=self.grads["W"])
        np.dot(np.ones(dy2.shape[0], dy2.dtype), dy2, out=self.grads["b"])  # column sums as a (threaded) GEMV
        return (dy2 @ W).reshape(self._h.shape)


def keep_mask(rng: np.random.Generator, shape: tuple[int, ...], p: float, dtype) -> np.ndarray:
    """Inverted-dropout mask: 0 with probability q = round(p * 2^16) / 2^16, else 1 / (1 - q).

    16 random bits per unit (cheaper than floats); the scale uses the exact q, so the expectation is exactly 1.
    """
    threshold = min(round(p * 65536), 65535)
    bits = np.frombuffer(rng.bytes(2 * int(np.prod(shape))), np.uint16).reshape(shape)
    return np.multiply(bits >= threshold, 65536 / (65536 - threshold), dtype=dtype)


class Dropout(Layer):
    """Inverted dropout: scales kept units by 1/(1-p) in training, identity at eval.

    Used between layers (on each layer's input/output), never on the recurrent h -> h connection (the LSTM's
    `weight_drop` is the recurrent regulariser).
    """

    def __init__(self, p: float, *, rng: np.random.Generator):
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout p must be in [0, 1), got {p}")
        self.p = p
        self.rng = rng
        self.params, self.grads = {}, {}
        self._mask: np.ndarray | None = None

    def mask_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return shape

    def forward(self, x: np.ndarray) -> np.ndarray:
        if not self.training or self.p == 0.0:
            self._mask = None
            return x
        self._mask = keep_mask(self.rng, self.mask_shape(x.shape), self.p, x.dtype)
        return x * self._mask

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout if self._mask is None else dout * self._mask


class LockedDropout(Dropout):
    """Variational (locked) dropout: one mask per sequence, the same at every step (Gal & Ghahramani 2016, as
    AWD-LSTM uses it). Input is time-major (T, N, D); the mask is (1, N, D), so a dropped unit stays dropped
    for the whole window instead of flickering step to step."""

    def mask_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (1, *shape[1:])


class WordDropout(Layer):
    """Embedding dropout (Gal & Ghahramani; AWD-LSTM): for one batch, whole words lose their vectors.

    A (V,) mask over the vocabulary is drawn per forward call; every occurrence of a dropped word reads a zero
    vector and kept words are scaled by 1/(1-p). Applied to looked-up vectors (T, N, D) with their ids, which
    equals dropping rows of the embedding matrix; a tied output layer still reads the full matrix.
    """

    def __init__(self, p: float, vocab_size: int, *, rng: np.random.Generator):
        if not 0.0 <= p < 1.0:
            raise ValueError(f"embedding dropout p must be in [0, 1), got {p}")
        self.p, self.vocab_size, self.rng = p, vocab_size, rng
        self.params, self.grads = {}, {}
        self._scale: np.ndarray | None = None

    def forward(self, vectors: np.ndarray, ids: np.ndarray) -> np.ndarray:
        if not self.training or self.p == 0.0:
            self._scale = None
            return vectors
        self._scale = keep_mask(self.rng, (self.vocab_size,), self.p, vectors.dtype)[ids][..., None]
        return vectors * self._scale

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout if self._scale is None else dout * self._scale


class SoftmaxCrossEntropy:
    """Mean cross-entropy of logits (..., V) against integer targets, ignoring `ignore_index` positions.

    `forward` returns (mean loss over counted positions, number of counted positions). The probabilities are
    computed in place in the logits buffer, so `backward` costs one scaling pass and no V-sized temporaries.
    """

    def __init__(self, ignore_index: int | None = 0):
        self.ignore_index = ignore_index
        self._probs: np.ndarray | None = None

    def forward(self, logits: np.ndarray, targets: np.ndarray) -> tuple[float, int]:
        V = logits.shape[-1]
        z = logits.reshape(-1, V)
        t = targets.reshape(-1)
        total = np.empty(t.size, z.dtype)
        target_logit = np.empty(t.size, z.dtype)

        def rows(lo: int, hi: int) -> None:  # a few rows at a time, so the passes below run in cache
            zb = z[lo:hi]
            zb -= zb.max(axis=1, keepdims=True)
            target_logit[lo:hi] = zb[np.arange(hi - lo), t[lo:hi]]
            np.exp(zb, out=zb)
            zb.sum(axis=1, out=total[lo:hi])

        blocked(rows, t.size, 32)
        nll = np.log(total) - target_logit
        if self.ignore_index is None:
            keep = np.ones(t.size, bool)
        else:
            keep = t != self.ignore_index
        count = int(keep.sum())
        weight = keep.astype(z.dtype) / max(count, 1)  # d(mean loss)/d(nll) per position
        self._probs, self._targets, self._weight = z, t, weight
        self._scale = weight / total
        self._shape = logits.shape
        return float(nll[keep].sum() / max(count, 1)), count

    def backward(self) -> np.ndarray:
        """Gradient of the mean loss w.r.t. the logits (overwrites and returns the forward's buffer)."""
        z, t, scale, weight = self._probs, self._targets, self._scale, self._weight

        def rows(lo: int, hi: int) -> None:
            zb = z[lo:hi]
            zb *= scale[lo:hi, None]
            zb[np.arange(hi - lo), t[lo:hi]] -= weight[lo:hi]

        blocked(rows, t.size, 32)
        return z.reshape(self._shape)
