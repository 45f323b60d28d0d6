"""bench/ngram_kn.py: interpolated Kneser-Ney yardstick (synthetic data only, fast)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parents[2] / "bench" / "ngram_kn.py"
_spec = importlib.util.spec_from_file_location("bench_ngram_kn", _PATH)
kn = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = kn  # dataclasses resolve annotations through sys.modules
_spec.loader.exec_module(kn)

V = 10  # ids 8 and 9 never occur in the synthetic training stream


def _train(n: int = 400, seed: int = 0) -> np.ndarray:
    """A stream with some structure: a random walk over ids 1..7 with frequent repeats of a motif."""
    rng = np.random.default_rng(seed)
    out: list[int] = []
    while len(out) < n:
        out += [1, 2, 3] if rng.random() < 0.3 else list(rng.integers(1, 8, rng.integers(1, 4)))
    return np.asarray(out[:n], np.int32)


def _reference(train: np.ndarray, order: int, d: float, hist: tuple[int, ...], w: int) -> float:
    """Textbook interpolated KN with dicts of tuples (slow, obviously right)."""
    toks = [int(t) for t in train]
    grams = {k: Counter(tuple(toks[i - k + 1:i + 1]) for i in range(k - 1, len(toks))) for k in range(1, order + 1)}
    hist = hist[max(0, len(hist) - order + 1):] if order > 1 else ()

    def p(k: int, h: tuple[int, ...]) -> float:
        lower = (1.0 / (V - 1) if w != 0 else 0.0) if k == 1 else p(k - 1, h[1:])
        counts = grams[k] if k == order else Counter(g[1:] for g in grams[k + 1])
        num = {g: c for g, c in counts.items() if g[:-1] == h}
        den = sum(num.values())
        if den == 0:
            return lower
        return (max(num.get(h + (w,), 0) - d, 0) + d * len(num) * lower) / den

    return p(len(hist) + 1, hist)


HISTORIES = [(), (1,), (9,), (1, 2), (3, 1, 2), (7, 7, 7), (1, 9, 2), (2, 8), (4, 1, 2, 3, 5), (9, 9, 9, 9)]


@pytest.mark.parametrize("order", [1, 2, 3, 4])
@pytest.mark.parametrize("modified", [False, True])
def test_distribution_sums_to_one(order, modified):
    model = kn.KneserNey(_train(), order, V, 0.75, modified=modified)
    for h in HISTORIES:
        p = model.distribution(list(h))
        assert p.shape == (V,)
        assert abs(p.sum() - 1.0) < 1e-9, (h, p.sum())
        assert p[0] == 0.0 and (p[1:] > 0).all()  # <pad> outside the support, everything else reachable


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_matches_dict_reference(order):
    train = _train(200)
    model = kn.KneserNey(train, order, V, 0.6)
    for h in HISTORIES[:6]:
        p = model.distribution(list(h))
        for w in range(V):
            assert p[w] == pytest.approx(_reference(train, order, 0.6, h, w), abs=1e-12), (h, w)


@pytest.mark.parametrize("order", [1, 2, 3, 5])
def test_token_probs_agree_with_distribution(order):
    model = kn.KneserNey(_train(), order, V)
    held_out = np.concatenate([_train(60, seed=1), [9, 8, 1, 2, 3]]).astype(np.int32)
    probs = model.token_probs(held_out)
    assert len(probs) == len(held_out) - 1
    for i in range(1, len(held_out)):
        assert probs[i - 1] == pytest.approx(model.distribution(held_out[:i])[held_out[i]], rel=1e-12)


def test_hand_computed_bigram():
    # bigrams: (1,2)x2 (2,3) (3,1) (2,4) (4,1) (1,3); left contexts: 1<-{3,4} 2<-{1} 3<-{2,1} 4<-{2}: 6 in all
    model = kn.KneserNey(np.array([1, 2, 3, 1, 2, 4, 1, 3]), 2, 6, 0.75)
    uniform = 1 / 5  # ids 1..5
    p1 = {w: (max(n - 0.75, 0) + 0.75 * 4 * uniform) / 6 for w, n in {1: 2, 2: 1, 3: 2, 4: 1, 5: 0}.items()}
    # c(1 .) = 3 with 2 distinct followers
    assert model.distribution([1])[2] == pytest.approx((2 - 0.75) / 3 + 0.75 * 2 / 3 * p1[2], abs=1e-15)
    assert model.distribution([1])[5] == pytest.approx(0.75 * 2 / 3 * 0.75 * 4 * uniform / 6, abs=1e-15)
    assert model.distribution([5])[3] == pytest.approx(p1[3], abs=1e-15)  # unseen history: lower order only
    assert model.distribution([2, 1])[2] == pytest.approx(model.distribution([1])[2], abs=1e-15)


@pytest.mark.parametrize("order", [2, 3, 4])
def test_repeating_sequence_has_perplexity_near_one(order):
    seq = np.tile(np.arange(1, 6), 200)
    model = kn.KneserNey(seq, order, 8)
    ppl, n = model.perplexity(seq[:500])
    assert n == 499
    assert 1.0 < ppl < 1.05
    unigram, _ = kn.KneserNey(seq, 1, 8).perplexity(seq[:500])
    assert unigram == pytest.approx(5.0, rel=0.01)


def test_modified_discounts_are_chen_goodman():
    counts = np.array([1] * 50 + [2] * 20 + [3] * 10 + [4] * 5 + [9] * 3)
    d1, d2, d3 = kn.modified_discounts(counts)
    y = 50 / (50 + 40)
    assert (d1, d2, d3) == pytest.approx((1 - 2 * y * 20 / 50, 2 - 3 * y * 10 / 20, 3 - 4 * y * 5 / 10))


def test_rejects_bad_input():
    with pytest.raises(ValueError):
        kn.KneserNey(np.array([1, 2, 12]), 2, 10)
    with pytest.raises(ValueError):
        kn.KneserNey(np.array([1, 2]), 0, 10)
    assert math.isfinite(kn.KneserNey(np.array([1]), 3, 4).perplexity(np.array([1, 2, 3]))[0])


def test_cli_table_and_json(tmp_path, monkeypatch, capsys):
    streams = (_train(400), _train(80, seed=1), _train(80, seed=2), V)
    monkeypatch.setattr(kn, "load_streams", lambda vocab_size, mark_starts: streams)
    out = tmp_path / "results" / "kn.json"
    result = kn.main(["--orders", "2", "3", "--json", str(out)])
    text = capsys.readouterr().out
    assert "best order by val ppl" in text and "LSTM bar" in text
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(result))
    assert [r["order"] for r in saved["rows"]] == [2, 3]
    assert all(r["val_scored"] == 79 and r["train_tokens"] == 400 for r in saved["rows"])
    best = min(saved["rows"], key=lambda r: r["val_ppl"])
    assert saved["best_order"] == best["order"]
    assert saved["lstm_bar_test_ppl"] == pytest.approx(0.75 * best["test_ppl"])
