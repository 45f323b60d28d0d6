"""Interpolated Kneser-Ney n-gram language model: the classic yardstick for the LSTM LM (issue 3).

Built on exactly the LM's training token stream and vocabulary (`rnnchat.train.lm.build_vocab` / `stream`) and
scored on the same val/test streams: every token from position 1 on is predicted from the previous n-1 tokens of
the stream (shorter histories near the start), so `len(tokens) - 1` tokens are scored, as the LM does.

Model (Chen & Goodman 1998, interpolated KN): the highest order uses raw counts, lower orders use continuation
counts N1+(.hw) (distinct left contexts); each level subtracts an absolute discount and hands the freed mass,
gamma(h) = sum_w d(hw) / den(h), to the next lower level; histories never seen at a level back off to the lower
level entirely. The unigram level interpolates with a uniform distribution over the vocabulary without <pad>
(id 0, which never occurs), so P(<pad>) = 0 and the probabilities of ids 1..V-1 sum to 1 for any history.
`--modified` uses Chen & Goodman's three count-dependent discounts (D1, D2, D3+) estimated per level.

Implementation: the n-gram of length k ending at a position gets a dense id; the key of a k-gram is
id(prefix (k-1)-gram) * V + last token, so every key fits in an int64 and `np.unique` / `np.searchsorted` do all
counting and look-ups.

    python bench/ngram_kn.py [--orders 2 3 4 5] [--discount 0.75] [--modified] [--json bench/results/ngram_kn.json]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Level:
    """One order k of the model. k-gram ids index `keys`/`kept`; (k-1)-gram (history) ids index `den`/`gamma`.

    `kept`, `den` and `gamma` end with an extra 0 so that the id -1 (unseen) reads as zero counts.
    """

    keys: np.ndarray   # sorted int64 keys of the k-grams seen in training: prefix id * V + last token
    kept: np.ndarray   # discounted count (raw at the top level, continuation below) of each k-gram
    den: np.ndarray    # per history: total (continuation) count of the k-grams it starts
    gamma: np.ndarray  # per history: discount mass freed for the lower level
    discounts: tuple[float, ...]


def _find(keys: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Index of each query in the sorted `keys`, -1 where absent (negative queries never match)."""
    if len(keys) == 0:
        return np.full(query.shape, -1, np.int64)
    idx = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
    return np.where((keys[idx] == query) & (query >= 0), idx, -1)


def modified_discounts(counts: np.ndarray) -> tuple[float, float, float]:
    """Chen & Goodman's D1, D2, D3+ from the count-of-counts n1..n4 (falls back to 0.75 when degenerate)."""
    n1, n2, n3, n4 = (int(np.count_nonzero(counts == c)) for c in (1, 2, 3, 4))
    if min(n1, n2, n3) == 0:
        return 0.75, 0.75, 0.75
    y = n1 / (n1 + 2 * n2)
    return 1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3


class KneserNey:
    """Interpolated Kneser-Ney LM of a given order over ids 0..vocab_size-1, trained on one token stream."""

    def __init__(self, tokens: np.ndarray, order: int, vocab_size: int, discount: float = 0.75,
                 modified: bool = False) -> None:
        if order < 1:
            raise ValueError("order must be >= 1")
        if not 0.0 < discount <= 1.0:
            raise ValueError("discount must be in (0, 1]")
        tokens = np.asarray(tokens, np.int64)
        if len(tokens) and (tokens.min() < 0 or tokens.max() >= vocab_size):
            raise ValueError("token ids out of range")
        self.order, self.vocab_size = order, vocab_size
        self.uniform = np.full(vocab_size, 1.0 / (vocab_size - 1))
        self.uniform[0] = 0.0  # <pad> is outside the support
        # gids[k - 1][i]: dense id of the k-gram ending at position i (-1 for i < k - 1); 1-gram id = token id.
        gids, keys = [tokens], [np.arange(vocab_size, dtype=np.int64)]
        for k in range(2, order + 1):
            prev = gids[-1]
            key = np.full(len(tokens), -1, np.int64)
            key[k - 1:] = prev[k - 2:-1] * vocab_size + tokens[k - 1:]
            uniq, inv = np.unique(key[k - 1:], return_inverse=True)
            gid = np.full(len(tokens), -1, np.int64)
            gid[k - 1:] = inv.reshape(-1)
            gids.append(gid)
            keys.append(uniq)
        self.levels: list[Level] = []
        for k in range(1, order + 1):
            n_k = len(keys[k - 1])
            if k == order:  # raw counts
                counts = np.bincount(gids[k - 1][k - 1:], minlength=n_k)
            else:  # continuation counts: distinct (k+1)-grams whose suffix is this k-gram
                suffix = np.empty(len(keys[k]), np.int64)
                suffix[gids[k][k:]] = gids[k - 1][k:]
                counts = np.bincount(suffix, minlength=n_k)
            counts = counts.astype(np.float64)
            ds = modified_discounts(counts) if modified else (discount,) * 3
            d = np.select([counts == 0, counts == 1, counts == 2], [0.0, ds[0], ds[1]], ds[2])
            d = np.minimum(d, counts)
            parent = keys[k - 1] // vocab_size if k > 1 else np.zeros(n_k, np.int64)
            n_hist = len(keys[k - 2]) if k > 1 else 1
            den, gamma = np.bincount(parent, counts, n_hist), np.bincount(parent, d, n_hist)
            self.levels.append(Level(keys[k - 1], np.append(counts - d, 0.0), np.append(den, 0.0),
                                     np.append(gamma, 0.0), ds if modified else (discount,)))

    def _interpolate(self, k: int, hist: np.ndarray, target: np.ndarray, lower: np.ndarray) -> np.ndarray:
        """P_k from the history ids (-1: unseen/too short), target k-gram ids (-1: unseen) and P_{k-1}."""
        lv = self.levels[k - 1]
        den = lv.den[hist]
        ok = den > 0
        return np.where(ok, (lv.kept[target] + lv.gamma[hist] * lower) / np.where(ok, den, 1.0), lower)

    def _ids(self, tokens: np.ndarray) -> list[np.ndarray]:
        """ids[k - 1][i]: id of the k-gram ending at position i of `tokens` in the model, -1 if unseen/too short."""
        ids = [tokens.astype(np.int64)]
        for k in range(2, self.order + 1):
            q = np.full(len(tokens), -1, np.int64)
            prev = ids[-1][k - 2:-1]
            q[k - 1:] = np.where(prev >= 0, prev * self.vocab_size + tokens[k - 1:], -1)
            ids.append(_find(self.levels[k - 1].keys, q))
        return ids

    def token_probs(self, tokens: np.ndarray) -> np.ndarray:
        """P(tokens[i] | tokens[max(0, i-n+1):i]) for i = 1..len-1 (the LM's targets)."""
        tokens = np.asarray(tokens, np.int64)
        ids = self._ids(tokens)
        tgt = tokens[1:]
        p = self._interpolate(1, np.zeros(len(tgt), np.int64), tgt, self.uniform[tgt])
        for k in range(2, self.order + 1):
            hist = ids[k - 2][:-1]  # (k-1)-gram ending at i-1; -1 when i < k-1 (shorter history)
            p = self._interpolate(k, hist, ids[k - 1][1:], p)
        return p

    def history_id(self, history: list[int]) -> int:
        """Id of the (len(history))-gram `history` in the model, -1 if unseen (the empty history is 0)."""
        if not history:
            return 0
        hid = int(history[0])
        for k in range(2, len(history) + 1):
            if hid < 0:
                return -1
            hid = int(_find(self.levels[k - 1].keys, np.array([hid * self.vocab_size + int(history[k - 1])]))[0])
        return hid

    def distribution(self, history: list[int] | np.ndarray) -> np.ndarray:
        """P(w | history) for every id w (uses the last order-1 tokens of `history`)."""
        hist = [int(t) for t in history]
        words = np.arange(self.vocab_size, dtype=np.int64)
        p = self._interpolate(1, np.zeros(self.vocab_size, np.int64), words, self.uniform)
        for k in range(2, min(self.order, len(hist) + 1) + 1):  # shorter history: stop at level len + 1
            hid = self.history_id(hist[len(hist) - (k - 1):])
            target = _find(self.levels[k - 1].keys, np.where(hid >= 0, hid * self.vocab_size + words, -1))
            p = self._interpolate(k, np.full(self.vocab_size, hid, np.int64), target, p)
        return p

    def perplexity(self, tokens: np.ndarray) -> tuple[float, int]:
        """(perplexity, number of scored tokens = len(tokens) - 1)."""
        p = self.token_probs(tokens)
        return math.exp(-float(np.mean(np.log(p)))), len(p)


def load_streams(vocab_size: int = 10_000, mark_starts: bool = False
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The LM's own train/val/test token streams and vocabulary size (rnnchat's corpora and tokenizer);
    mark_starts: the training stream of `rnnchat train lm --mark-starts` (val/test are never marked)."""
    root = str(Path(__file__).resolve().parents[1])  # run as a script from a checkout: import this repo's rnnchat
    if root not in sys.path:
        sys.path.insert(0, root)
    from rnnchat.data import corpora
    from rnnchat.train.lm import build_vocab, stream

    train_convs = corpora.load_chitchat("train")
    vocab = build_vocab(train_convs, vocab_size)
    train = stream(train_convs, vocab, mark_starts)
    val, test = (stream(corpora.load_chitchat(s), vocab) for s in ("val", "test"))
    return train, val, test, len(vocab)


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--orders", type=int, nargs="+", default=[2, 3, 4, 5])
    ap.add_argument("--discount", type=float, default=0.75)
    ap.add_argument("--modified", action="store_true", help="modified KN: count-dependent D1, D2, D3+ per level")
    ap.add_argument("--vocab-size", type=int, default=10_000)
    ap.add_argument("--mark-starts", action="store_true",
                    help="train on the stream of `rnnchat train lm --mark-starts` (an extra <eot> per conversation)")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    a = ap.parse_args(argv)

    t0 = time.monotonic()
    train, val, test, v = load_streams(a.vocab_size, a.mark_starts)
    load_s = time.monotonic() - t0
    print(f"vocab {v}, train {len(train):,} / val {len(val):,} / test {len(test):,} tokens ({load_s:.1f}s)")
    rows = []
    print(f"{'order':>5} {'val ppl':>9} {'test ppl':>9} {'train tok':>10} {'scored val':>10} {'scored test':>11} "
          f"{'seconds':>8}")
    for n in a.orders:
        t = time.monotonic()
        model = KneserNey(train, n, v, a.discount, a.modified)
        vp, vn = model.perplexity(val)
        tp, tn = model.perplexity(test)
        row = {"order": n, "val_ppl": vp, "test_ppl": tp, "train_tokens": len(train), "val_scored": vn,
               "test_scored": tn, "seconds": time.monotonic() - t,
               "discounts": [list(lv.discounts) for lv in model.levels],
               "ngram_types": [len(lv.keys) for lv in model.levels]}
        rows.append(row)
        print(f"{n:>5} {vp:>9.2f} {tp:>9.2f} {len(train):>10,} {vn:>10,} {tn:>11,} {row['seconds']:>8.1f}")
        del model
    best = min(rows, key=lambda r: r["val_ppl"])
    bar, goal = 0.75 * best["test_ppl"], 0.65 * best["test_ppl"]
    print(f"best order by val ppl: {best['order']} (val {best['val_ppl']:.2f}, test {best['test_ppl']:.2f}); "
          f"LSTM bar (0.75x test): {bar:.2f}, goal (0.65x): {goal:.2f}")
    print(f"peak RSS {peak_rss_mb():.0f} MiB, total {time.monotonic() - t0:.1f}s")
    result = {"model": "interpolated Kneser-Ney" + (" (modified)" if a.modified else ""),
              "discount": None if a.modified else a.discount, "vocab_size": v,
              "support": "ids 1..V-1 (<pad> excluded from the uniform base)", "rows": rows,
              "best_order": best["order"], "lstm_bar_test_ppl": bar, "lstm_goal_test_ppl": goal,
              "peak_rss_mib": peak_rss_mb(), "load_seconds": load_s}
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {a.json}")
    return result


if __name__ == "__main__":
    main()
