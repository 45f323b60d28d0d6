"""A continuous cache for the LM (Grave, Joulin & Usunier 2016, "Improving Neural Language Models with a
Continuous Cache"): words that followed states like the present one earlier in this conversation get likelier.

The cache holds the last `size` pairs (h_i, w_{i+1}): the LM's top-layer hidden state at a position and the token
that came next. At a new state h:

    p_cache(w) = sum over cached i with w_{i+1} = w of softmax_i(theta * h . h_i)
    p(w)       = (1 - lam) * p_model(w) + lam * p_cache(w)        (p_model alone while the cache is empty)

Nothing is trained: theta and lam are chosen on val (`rnnchat eval lm --cache`). It gives the app's memory across
turns a second channel: names and topics the user mentioned a few turns back can be copied.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CacheSettings:
    theta: float = 0.3   # flatness of the match over cached states (dot products of tanh-bounded states)
    lam: float = 0.1     # weight of the cache in the mixture
    size: int = 2000     # states kept

    def __post_init__(self):
        if not (self.theta >= 0 and 0 <= self.lam < 1 and self.size >= 1):
            raise ValueError(f"cache needs theta >= 0, lam in [0, 1) and size >= 1, got {self}")


def _softmax_rows(scores: np.ndarray) -> np.ndarray:
    scores = scores - scores.max(axis=-1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=-1, keepdims=True)
    return scores


def sequence_cache_probs(hidden: np.ndarray, targets: np.ndarray, s: CacheSettings) -> np.ndarray:
    """For one sequence: hidden (T, H) top-layer states and targets (T,) (the token after each position) ->
    (T,) p_cache(target_t) from the pairs of the positions before t (at most s.size of them); NaN at t = 0.

    Used by evaluation, where the whole sequence is known: position t may only see pairs (h_i, targets_i), i < t.
    """
    T = len(targets)
    out = np.full(T, np.nan)
    h = hidden.astype(np.float64, copy=False)
    for start in range(1, T, 256):  # blocks of query rows bound the (rows, size) score matrix
        rows = np.arange(start, min(start + 256, T))
        lo = max(0, rows[0] - s.size)
        keys = h[lo:rows[-1]]                              # states at positions lo .. last row - 1
        scores = s.theta * (h[rows] @ keys.T)              # (rows, keys)
        pos = np.arange(lo, rows[-1])
        visible = (pos[None, :] < rows[:, None]) & (pos[None, :] >= rows[:, None] - s.size)
        scores[~visible] = -np.inf
        weights = _softmax_rows(scores)
        same = targets[lo:rows[-1]][None, :] == targets[rows][:, None]
        out[rows] = (weights * same).sum(axis=1)
    return out


def mix_log_probs(log_p_model: np.ndarray, p_cache: np.ndarray, lam: float) -> np.ndarray:
    """log((1 - lam) p_model + lam p_cache) elementwise; where p_cache is NaN (no cache yet) the model alone."""
    empty = np.isnan(p_cache)
    with np.errstate(divide="ignore"):  # a target the cache never saw (or lam 0): log 0 = -inf, logaddexp copes
        log_cache = np.log(np.where(empty, 1.0, p_cache))
        mixed = np.logaddexp(np.log1p(-lam) + log_p_model, np.log(lam) + log_cache)
    return np.where(empty, log_p_model, mixed)


class ConversationCache:
    """The cache of one conversation at inference: `add` states and the tokens that followed them, `mix` the
    next-token logits of one or more rows. Not thread-safe; one per conversation (`copy` for a fork)."""

    def __init__(self, hidden: int, vocab_size: int, settings: CacheSettings):
        self.settings, self.vocab_size = settings, vocab_size
        self.keys = np.zeros((settings.size, hidden), np.float32)
        self.values = np.zeros(settings.size, np.int64)
        self.count = 0  # pairs ever added; the ring holds the last min(count, size)

    def __len__(self) -> int:
        return min(self.count, self.settings.size)

    def copy(self) -> "ConversationCache":
        other = ConversationCache.__new__(ConversationCache)
        other.settings, other.vocab_size, other.count = self.settings, self.vocab_size, self.count
        other.keys, other.values = self.keys.copy(), self.values.copy()
        return other

    def clear(self) -> None:
        self.count = 0

    def add(self, states: np.ndarray, next_ids) -> None:
        """states (T, H) and the (T,) tokens that followed each, oldest first (one ring write, no loop)."""
        T, size = len(states), self.settings.size
        n = min(T, size)  # only the newest `size` can stay
        slots = (self.count + T - n + np.arange(n)) % size
        self.keys[slots], self.values[slots] = states[T - n:], np.asarray(next_ids)[T - n:]
        self.count += T

    def probs(self, h: np.ndarray) -> np.ndarray | None:
        """(B, V) p_cache at the states h (B, H), or None while the cache is empty."""
        sparse = self._word_probs(h)
        if sparse is None:
            return None
        words, p = sparse
        out = np.zeros((len(h), self.vocab_size))
        out[:, words] = p
        return out

    def _word_probs(self, h: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """The distinct words the cache holds (K,) and p_cache of each at the states h (B, K); None while empty."""
        n = len(self)
        if n == 0:
            return None
        words, slot_word = np.unique(self.values[:n], return_inverse=True)
        weights = _softmax_rows(self.settings.theta * (h.astype(np.float64) @ self.keys[:n].T.astype(np.float64)))
        return words, np.stack([np.bincount(slot_word, weights=w, minlength=len(words)) for w in weights])

    def mix(self, logits: np.ndarray, h: np.ndarray) -> np.ndarray:
        """Model logits (B, V) at states h (B, H) -> log of the mixed distribution (B, V), as logits for the
        sampler (any constant offset per row is harmless there).

        p_cache is 0 outside the K words the cache holds (a few hundred at most in a chat), so only those
        columns mix; every other one is log p_model + log(1 - lam), one pass over the row."""
        sparse, lam = self._word_probs(h), self.settings.lam
        if sparse is None or lam == 0:
            return logits.copy()  # a new array either way: the sampler writes into what it is given
        words, p_cache = sparse
        top = logits.max(axis=1, keepdims=True)
        lse = top + np.log(np.exp(logits - top).sum(axis=1, keepdims=True, dtype=np.float64))  # (B, 1) float64
        log_p = logits[:, words] - lse                                                         # (B, K)
        with np.errstate(divide="ignore"):  # a word whose weight underflowed: log 0 = -inf, logaddexp copes
            mixed = np.logaddexp(np.log1p(-lam) + log_p, np.log(lam) + np.log(p_cache))
        out = logits - (lse - np.log1p(-lam)).astype(logits.dtype)
        out[:, words] = mixed
        return out

    # -- persistence (inside a conversation file) ------------------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        n = len(self)
        order = (np.arange(self.count - n, self.count) % self.settings.size)  # oldest first
        return {"cache_keys": self.keys[order], "cache_values": self.values[order]}

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> bool:
        """Refill from `arrays()` output; False (cache left empty) when they are missing or do not fit."""
        self.clear()
        keys, values = arrays.get("cache_keys"), arrays.get("cache_values")
        if (keys is None or values is None or keys.ndim != 2 or keys.shape[1] != self.keys.shape[1]
                or values.shape != (keys.shape[0],) or keys.dtype.kind != "f" or values.dtype.kind not in "iu"
                or not np.isfinite(keys).all() or (values.size and not 0 <= values.min() <= values.max() < self.vocab_size)):
            return False
        self.add(keys, values)
        return True
