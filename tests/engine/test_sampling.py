"""Sampling: settings validation, greedy, skip masks, top-k/top-p, repetition penalty, seeds, batch rows."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnchat.sampling import RowSampler, SamplingSettings, SettingsError, sample_rows, skip_ids, top_k_ids
from rnnchat.text import SPECIALS, Vocab

VOCAB = Vocab(list(SPECIALS) + ["a", "b", "c", "d", "e", "f"])


def draw(logits, settings, n=1, seed=0):
    row = RowSampler(settings, skip_ids(settings, VOCAB), np.random.default_rng(seed))
    return [int(sample_rows(np.array([logits], np.float32), [row])[0][0]) for _ in range(n)]


LOGITS = [0.0, 0.0, 0.0, 0.0, 3.0, 2.5, 2.0, 1.0, 0.5, 0.0]


@pytest.mark.parametrize("bad", [dict(temperature=-1), dict(top_p=0), dict(top_p=1.5), dict(top_k=-1),
                                 dict(repeat_penalty=0), dict(repeat_penalty=1e-300), dict(repeat_penalty=1e300),
                                 dict(max_tokens=-1), dict(stop=("",)), dict(top_k=10**24), dict(repeat_last_n=10**7),
                                 dict(temperature=float("nan"))])
def test_invalid_settings_are_refused_with_a_clear_message(bad):
    with pytest.raises(SettingsError):
        SamplingSettings(**bad)


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(SettingsError, match="unknown setting"):
        SamplingSettings.from_dict({"temprature": 1})
    assert SamplingSettings.from_dict({"skip": "a"}).skip == ("a",)


def test_greedy_is_argmax_and_unk_pad_are_banned():
    logits = list(LOGITS)
    logits[1] = 99.0  # <unk>
    assert draw(logits, SamplingSettings(temperature=0)) == [4]


def test_skip_words_and_ids_are_never_emitted():
    s = SamplingSettings(temperature=1.0, top_k=0, top_p=1.0, repeat_penalty=1.0, skip=("a", "#5"))
    got = set(draw(LOGITS, s, n=400))
    assert 4 not in got and 5 not in got and 6 in got
    with pytest.raises(SettingsError, match="zebra"):
        skip_ids(s.with_(skip=("zebra",)), VOCAB)


def test_top_k_and_top_p_restrict_the_candidates():
    base = SamplingSettings(temperature=1.0, top_k=0, top_p=1.0, repeat_penalty=1.0)
    assert set(draw(LOGITS, base.with_(top_k=2), n=300)) == {4, 5}
    # softmax of 3, 2.5, 2, 1, 0.5, 0 (+ <eom>, <eot> at 0): p(4)=.45, p(5)=.27 -> top_p .6 keeps exactly {4, 5}
    assert set(draw(LOGITS, base.with_(top_p=0.6), n=300)) == {4, 5}
    assert set(draw(LOGITS, base.with_(top_p=0.3), n=100)) == {4}
    assert set(draw(LOGITS, base, n=600)) == set(range(2, 10))  # all but <pad> and <unk>


def test_repetition_penalty_lowers_recent_tokens():
    s = SamplingSettings(temperature=0, repeat_penalty=2.0, repeat_last_n=4)
    row = RowSampler(s, skip_ids(s, VOCAB))
    row.observe([4])
    ids, _ = sample_rows(np.array([LOGITS], np.float32), [row])
    assert ids[0] == 5  # 3.0/2 < 2.5


def test_same_seed_same_tokens_and_batch_rows_equal_single_rows():
    s = SamplingSettings(temperature=1.0, top_k=4, top_p=0.9)
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((16, 10)).astype(np.float32)
    rows = [RowSampler(s.with_(seed=i), skip_ids(s, VOCAB)) for i in range(16)]
    batch_ids, batch_p = sample_rows(logits.copy(), rows)
    for i in range(16):
        one = RowSampler(s.with_(seed=i), skip_ids(s, VOCAB))
        ids, p = sample_rows(logits[i: i + 1].copy(), [one])
        assert ids[0] == batch_ids[i] and p[0] == batch_p[i]
    assert 0 < batch_p.min() and batch_p.max() <= 1


def test_two_level_draw_follows_the_weights_and_never_draws_zero_weights():
    from rnnchat.sampling import _draw
    rng = np.random.default_rng(1)
    W = 1000  # not a multiple of the block size: the last block is short
    w = rng.random(W) ** 4
    w[::7] = 0.0  # zero weights (banned tokens) anywhere, including whole runs at the end
    w[-60:] = 0.0
    n = 200_000
    u = rng.random(n)
    u[:5] = [0.0, 1 - 1e-16, 0.5, 1e-300, np.nextafter(1.0, 0.0)]
    picks, totals = _draw(np.tile(w.astype(np.float32), (n, 1))[: 2000], u[:2000])  # batch path
    assert np.all(w[picks] > 0)
    assert np.allclose(totals, w.astype(np.float32).sum(dtype=np.float64), rtol=1e-6)
    counts = np.zeros(W)
    for lo in range(0, n, 5000):
        p, _ = _draw(np.broadcast_to(w.astype(np.float32), (len(u[lo:lo + 5000]), W)).copy(), u[lo:lo + 5000])
        np.add.at(counts, p, 1)
    assert counts[w == 0].sum() == 0
    expected = w / w.sum() * n
    big = expected > 50
    chi2 = ((counts[big] - expected[big]) ** 2 / expected[big]).sum()
    assert chi2 < 1.3 * big.sum()  # a biased sampler lands far above the degrees of freedom


def test_two_level_draw_matches_the_plain_inverse_cdf():
    from rnnchat.sampling import _draw
    rng = np.random.default_rng(2)
    p = rng.random((64, 3000)).astype(np.float32)
    u = rng.random(64)
    picks, _ = _draw(p, u)
    c = np.cumsum(p.astype(np.float64), axis=1)
    plain = (c <= (u * c[:, -1])[:, None]).sum(axis=1)
    assert np.mean(picks == plain) > 0.95  # equal but for rounding at a boundary
    assert np.all(np.abs(picks - plain) <= 1)
    for i in range(5):  # a row draws the same alone as in the batch
        assert _draw(p[i:i + 1], u[i:i + 1])[0][0] == picks[i]


def test_threaded_blocks_draw_what_each_row_draws_alone():
    # 80 rows of a 3000-word vocabulary: several 32-row blocks over the nn thread pool and the two-level draw;
    # every row must draw what it draws alone, whatever the thread count
    from rnnchat.nn import parallel
    V = 3000
    logits = np.random.default_rng(5).standard_normal((80, V)).astype(np.float32) * 3
    banned = np.array([0, 1, 7, V - 1])
    results = []
    old = parallel.num_threads()
    try:
        for threads in (1, 2, 3):
            parallel.set_num_threads(threads)
            for s in (SamplingSettings(top_k=0, top_p=1.0), SamplingSettings(top_k=0, top_p=0.8),
                      SamplingSettings(top_k=50, top_p=0.95)):
                rows = [RowSampler(s.with_(seed=i), banned) for i in range(80)]
                results.append((threads, s, *sample_rows(logits.copy(), rows)))
    finally:
        parallel.set_num_threads(old)
    for threads, s, ids, p in results:
        assert not np.isin(ids, banned).any() and np.all((0 < p) & (p <= 1))
        for i in (0, 31, 32, 47, 79):
            one_ids, one_p = sample_rows(logits[i:i + 1].copy(), [RowSampler(s.with_(seed=i), banned)])
            assert one_ids[0] == ids[i] and one_p[0] == p[i], (threads, s, i)


def test_a_tiny_positive_temperature_acts_as_greedy():
    # 1 / 1e-39 overflows float32: the best logit became 0 * inf = NaN and the row drew <pad> (banned) with p NaN
    logits = np.random.default_rng(6).standard_normal((2, 1000)).astype(np.float32)
    for t in (1e-30, 1e-39, 5e-324):
        s = SamplingSettings(temperature=t, top_k=0, top_p=1.0, seed=1)
        for top_p in (1.0, 0.9):
            rows = [RowSampler(s.with_(top_p=top_p, seed=i), np.array([0, 1])) for i in range(2)]
            ids, p = sample_rows(logits.copy(), rows)
            assert list(ids) == list(logits.argmax(axis=1)) and np.all(p == 1.0), (t, top_p, ids, p)


def test_a_huge_temperature_flattens_and_never_draws_a_banned_token():
    """Issue 20: 1 / 1e308 underflowed to 0 and -inf * 0 = NaN drew <pad>; now the allowed tokens are uniform."""
    vocab = Vocab(list(SPECIALS) + ["a", "b", "c"])
    for t in (1e308, 1e50, 1e38):
        s = SamplingSettings(temperature=t, top_k=0, top_p=1.0, repeat_penalty=1.0, seed=0)
        row = RowSampler(s, skip_ids(s, vocab), np.random.default_rng(0))
        logits = np.array([[0.0, 0.0, 5.0, -3.0, 1.0, 2.0, -1.0]] * 64, np.float32)
        ids, probs = sample_rows(logits, [row] * 64)
        assert set(ids.tolist()) <= {2, 3, 4, 5, 6} and np.isfinite(probs).all() and (probs > 0).all()
    s = SamplingSettings(temperature=1e308, top_k=0, top_p=0.5, repeat_penalty=1.0, seed=0)
    ids, probs = sample_rows(np.zeros((4, 7), np.float32) + np.arange(7), [RowSampler(s, skip_ids(s, vocab))] * 4)
    assert np.isfinite(probs).all() and not set(ids.tolist()) & {0, 1}


def test_banning_every_token_is_a_settings_error():
    vocab = Vocab(list(SPECIALS) + ["a", "b"])
    with pytest.raises(SettingsError, match="bans every token"):
        skip_ids(SamplingSettings(skip=("a", "b", "<eom>", "<eot>")), vocab)


@given(V=st.integers(2, 4000), k=st.integers(1, 200), rows=st.integers(1, 5), seed=st.integers(0, 2**32 - 1),
       banned=st.floats(0, 0.9), ties=st.booleans())
@settings(max_examples=150, deadline=None)
def test_top_k_ids_are_the_k_largest_whatever_the_row_count(V, k, rows, seed, banned, ties):
    k = min(k, V - 1) or 1
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(rows, V)).astype(np.float32)
    if ties:
        z = np.round(z)  # many equal logits
    z[rng.random((rows, V)) < banned] = -np.inf
    got = top_k_ids(z, k)
    assert got.shape == (rows, k)
    for r in range(rows):
        assert len(set(got[r].tolist())) == k
        kth = np.sort(z[r])[V - k]  # the k-th largest value
        assert (z[r, got[r]] >= kth).all() and (np.sum(z[r] > kth) <= k)
        assert np.array_equal(top_k_ids(z[r:r + 1], k)[0], got[r])  # the same alone as in the batch
