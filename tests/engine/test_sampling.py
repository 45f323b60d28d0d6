"""Sampling: settings validation, greedy, skip masks, top-k/top-p, repetition penalty, seeds, batch rows."""

import numpy as np
import pytest

from rnnchat.engine.sampling import RowSampler, SamplingSettings, SettingsError, sample_rows, skip_ids
from rnnchat.text import SPECIALS, Vocab

VOCAB = Vocab(list(SPECIALS) + ["a", "b", "c", "d", "e", "f"])


def draw(logits, settings, n=1, seed=0):
    row = RowSampler(settings, skip_ids(settings, VOCAB), np.random.default_rng(seed))
    return [int(sample_rows(np.array([logits], np.float32), [row])[0][0]) for _ in range(n)]


LOGITS = [0.0, 0.0, 0.0, 0.0, 3.0, 2.5, 2.0, 1.0, 0.5, 0.0]


@pytest.mark.parametrize("bad", [dict(temperature=-1), dict(top_p=0), dict(top_p=1.5), dict(top_k=-1),
                                 dict(repeat_penalty=0), dict(max_tokens=-1), dict(stop=("",)),
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
