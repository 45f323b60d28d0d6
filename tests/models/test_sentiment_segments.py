"""Sentiment models that restart after each sentence / clause end: gradients, the batched forward against the
segment-by-segment live fold, long texts, checkpoints."""

import numpy as np
import pytest

from rnnchat.data.batches import pad
from rnnchat.engine.sentiment_live import LiveSentiment
from rnnchat.models.sentiment import SentimentConfig, SentimentModel
from rnnchat.models.sentiment_ensemble import SentimentEnsemble, load_sentiment, save_sentiment
from rnnchat.models.sentiment_segments import Segments, segment_ends, split_ids
from rnnchat.text import SPECIALS, Vocab
from rnnchat.train import sentiment_eval
from tests.nn.gradcheck import numerical_grad, rel_error

VOCAB = Vocab([*SPECIALS, ".", ",", "!", "...", "?!", ";", "a", "b", "c", "d"])
DOT, COMMA, BANG = VOCAB.stoi["."], VOCAB.stoi[","], VOCAB.stoi["!"]


def model(restart, layers=2, seed=0, dtype=np.float64, scale=3.0):
    m = SentimentModel(SentimentConfig(vocab_size=len(VOCAB), embed=4, hidden=5, layers=layers, dropout=0.0,
                                       word_dropout=0.0, score_weight=1.5, restart=restart), seed=seed, dtype=dtype)
    m.set_vocab(VOCAB)
    for p in m.params.params:  # larger weights: gradients well above finite-difference noise
        p *= scale
    return m


def batch():
    a, b, c, d = (VOCAB.stoi[w] for w in "abcd")
    rows = [[a, b, DOT, DOT, c, COMMA, d, BANG, a], [c, d, a, b], [DOT], [], [a, COMMA, b, DOT]]
    ids, mask = pad(rows)
    return rows, (ids, mask, np.array([0, 1, 2, 2, 0]), np.array([-0.6, 0.1, 0.9, 0.3, -0.2]))


def test_segment_ends_and_splits():
    ends = segment_ends(VOCAB.itos, "sentence")
    assert [t for t, e in zip(VOCAB.itos, ends) if e] == [".", "!", "...", "?!"]
    assert [t for t, e in zip(VOCAB.itos, segment_ends(VOCAB.itos, "clause")) if e] == \
        [".", ",", "!", "...", "?!", ";"]
    assert segment_ends(VOCAB.itos, "none") is None
    with pytest.raises(ValueError, match="restart"):
        segment_ends(VOCAB.itos, "paragraph")
    a, b = VOCAB.stoi["a"], VOCAB.stoi["b"]
    assert split_ids([a, DOT, DOT, b], ends) == [[a, DOT], [DOT], [b]]
    assert split_ids([a, b], None) == [[a, b]] and split_ids([], ends) == []
    rows, (ids, mask, _, _) = batch()
    segs = Segments(ids, mask, ends)
    assert segs.S == sum(len(split_ids(r, ends)) for r in rows)
    assert [list(r[m > 0]) for r, m in zip(segs.rows(ids), segs.mask)] == \
        [s for r in rows for s in split_ids(r, ends)]


@pytest.mark.parametrize("restart", ["sentence", "clause"])
def test_gradients_match_finite_differences(restart):
    m = model(restart)
    _, data = batch()
    m.train_step(*data)
    grads = {n: g.copy() for n, g in zip(m.params.names, m.params.grads())}
    for name, p in m.params.named().items():
        num = numerical_grad(lambda: m.loss(*data)[0], p, eps=1e-5)
        assert rel_error(grads[name], num) < 1e-6, name


@pytest.mark.parametrize("restart", ["sentence", "clause"])
def test_batched_forward_equals_the_live_fold_over_segments(restart):
    """Each segment stepped from the zero state, the text's state their left fold (`join`): the batched
    probabilities; and a segment's numbers do not depend on what came before it."""
    m = model(restart, seed=1)
    m.train(False)
    rows, (ids, mask, _, _) = batch()
    probs, scores = m.predict(ids, mask)
    for i, row in enumerate(rows):
        state = m.zero_state()
        for segment in split_ids(row, m.segment_ends):
            state = m.join(state, m.steps(m.zero_state(), segment)[-1] if segment else m.zero_state())
        p, s = m.readout(state)
        np.testing.assert_allclose(p, probs[i], rtol=1e-12)
        assert s == pytest.approx(scores[i], rel=1e-12, abs=1e-15)
    plain = model("none", seed=1)
    plain.train(False)
    assert not np.allclose(plain.predict(ids, mask)[0][0], probs[0])  # the restarts change the first row


def test_restarts_cut_the_recurrence_but_not_the_pooling():
    m = model("sentence", seed=2)
    m.train(False)
    a, b, c = (VOCAB.stoi[w] for w in "abc")
    texts = [[a, DOT, c], [b, DOT, c], [a, b, DOT, c]]
    ids, mask = pad(texts)
    probs, _ = m.predict(ids, mask)
    m.predict(ids, mask)
    last = m._hs[np.arange(3), m._last]
    np.testing.assert_array_equal(last[0], last[1])  # "c" after any sentence: the same recurrent state
    assert not np.allclose(probs[0], probs[1])  # but the pooled text differs


def test_long_texts_follow_the_segments_in_bounded_chunks():
    m = SentimentEnsemble([model("sentence", layers=1, seed=s, dtype=np.float32, scale=1.0) for s in (3, 4)])
    m.set_vocab(VOCAB)
    rng = np.random.default_rng(0)
    ids = list(rng.integers(4, len(VOCAB), 1500))
    p_long, s_long = sentiment_eval.predict_ids(m, [ids])
    probs, scores = m.predict(np.array([ids]), np.ones((1, len(ids)), np.float32))
    np.testing.assert_allclose(p_long[0], probs[0], rtol=1e-4, atol=1e-6)
    assert s_long[0] == pytest.approx(scores[0], rel=1e-4, abs=1e-6)


def test_checkpoints_keep_the_rule_and_refuse_mixed_ensembles(tmp_path):
    m = model("clause", dtype=np.float32, scale=1.0)
    save_sentiment(m, VOCAB, tmp_path / "s.npz", {})
    loaded, vocab, header = load_sentiment(tmp_path / "s.npz")
    assert header["config"]["restart"] == "clause"
    np.testing.assert_array_equal(loaded.segment_ends, segment_ends(VOCAB.itos, "clause"))
    ids, mask = pad([[VOCAB.stoi["a"], COMMA, VOCAB.stoi["b"]]])
    m.train(False)
    np.testing.assert_allclose(loaded.predict(ids, mask)[0], m.predict(ids, mask)[0], rtol=1e-3)
    with pytest.raises(ValueError, match="restart"):
        SentimentEnsemble([model("clause", dtype=np.float32), model("none", dtype=np.float32)])
    unset = SentimentModel(SentimentConfig(vocab_size=len(VOCAB), restart="sentence"))
    with pytest.raises(ValueError, match="set_vocab"):
        unset.predict(ids, mask)
    live = LiveSentiment(unset, VOCAB)  # live, the model learns its vocabulary: it restarts, as in the batch
    assert unset.segment_ends is not None
    text = " ".join(VOCAB.itos[i] for i in ids[0][mask[0] > 0])
    np.testing.assert_allclose(live.set_text(text).probs, unset.predict(ids[:1], mask[:1])[0][0], rtol=1e-4)
    assert m.steps(m.zero_state(), []) == []
    stacked = SentimentEnsemble([model("clause", layers=1, dtype=np.float32, seed=s) for s in (5, 6)])
    assert stacked.stacked is not None and stacked.steps(stacked.zero_state(), []) == []
    with pytest.raises(ValueError, match="restart"):
        SentimentConfig(vocab_size=5, restart="words")
