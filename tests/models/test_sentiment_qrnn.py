"""QRNN sentiment members (issue 18, the 1 ms edit): a float64 gradient check of the whole model, the checkpoint
spec and round trip, the live path's tables, and training from the CLI flags."""

import numpy as np
import pytest

from rnnchat.data import corpora
from rnnchat.data.batches import pad
from rnnchat.engine.sentiment_live import LiveSentiment
from rnnchat.models.sentiment import SentimentConfig, SentimentModel
from rnnchat.models.sentiment_ensemble import SentimentEnsemble, load_sentiment, save_sentiment, sentiment_spec
from rnnchat.models.sentiment_qrnn import StackedQRNN
from rnnchat.text import SPECIALS, Vocab
from rnnchat.train.sentiment import SentimentTrainArgs, train_sentiment
from tests.nn.gradcheck import numerical_grad, rel_error

VOCAB = Vocab([*SPECIALS, "good", "bad", "not", "great", "the", "food", "was", ":)", "."])
TEXTS = ["the food was good", "not bad . not great", "goodish :)", "", "shattered"]


def model(seed=0, dtype=np.float64, window=3, **kw):
    config = SentimentConfig(vocab_size=len(VOCAB), embed=4, hidden=5, dropout=0.0, word_dropout=0.0,
                             cell="qrnn", window=window, **kw)
    m = SentimentModel(config, seed=seed, dtype=dtype)
    for p in m.params.params:  # larger weights: gradients well above finite-difference noise
        p *= 3
    m.set_vocab(VOCAB)
    return m


@pytest.mark.parametrize("kw", [{"subwords": 11}, {"restart": "sentence", "pool": "last+mean"}, {"window": 1}])
def test_gradients_match_finite_differences(kw):
    m = model(**kw)
    ids, mask = pad([m.reader.text_ids(t) for t in TEXTS])
    batch = (ids, mask, np.array([2, 0, 1, 1, 0]), np.array([0.6, -0.4, 0.1, 0.0, -0.9]))
    m.train_step(*batch)
    grads = {n: g.copy() for n, g in zip(m.params.names, m.params.grads())}
    assert set(grads) == set(sentiment_spec(m.header_config())) and grads["qrnn0.W"].any()
    for name, p in m.params.named().items():
        num = numerical_grad(lambda: m.loss(*batch)[0], p, eps=1e-5)
        assert rel_error(grads[name], num) < 1e-6, name


def test_config_spec_and_checkpoint_round_trip(tmp_path):
    with pytest.raises(ValueError, match="qrnn"):
        SentimentConfig(vocab_size=9, cell="qrnn", layers=2)  # the live path's gate rows need the tokens' inputs
    with pytest.raises(ValueError, match="cell"):
        SentimentConfig(vocab_size=9, cell="gru")
    spec = sentiment_spec(model(window=3, subwords=11).header_config())
    assert spec["qrnn0.W"] == (3 * 4, 3 * 5) and spec["qrnn0.b"] == (15,) and "lstm0.Wx" not in spec
    members = [model(seed=s, dtype=np.float32, subwords=11) for s in (1, 2)]
    save_sentiment(SentimentEnsemble(members), VOCAB, tmp_path / "q.npz", {}, float16=False)
    loaded, _, header = load_sentiment(tmp_path / "q.npz")
    assert isinstance(loaded.stacked, StackedQRNN) and header["config"]["members"][0]["window"] == 3
    for text in TEXTS:
        ids, mask = pad([loaded.reader.text_ids(text)])
        expected = np.mean([m.predict(*pad([m.reader.text_ids(text)]))[0][0] for m in members], axis=0)
        np.testing.assert_allclose(loaded.predict(ids, mask)[0][0], expected, rtol=1e-6)
        np.testing.assert_allclose(LiveSentiment(loaded, loaded.reader.vocab).set_text(text).probs, expected,
                                   rtol=1e-5, atol=1e-6)


def test_a_model_changed_by_training_is_read_live_with_its_new_weights():
    m = model(dtype=np.float32)
    m.train(False)
    before = LiveSentiment(m, VOCAB).set_text("the food was good")
    m.train(True)
    m.params.named()["qrnn0.W"][:] *= -1  # as an optimizer step would, in place
    m.train(False)
    after = LiveSentiment(m, VOCAB).set_text("the food was good")
    assert after != before
    np.testing.assert_allclose(after.probs, m.predict(*pad([m.reader.text_ids("the food was good")]))[0][0],
                               rtol=1e-5)


@pytest.mark.skipif(not (corpora.default_root() / "vader" / "train.jsonl").exists(),
                    reason="vader corpus not built (rnnchat corpus build vader)")
def test_training_a_qrnn_member(tmp_path):
    args = SentimentTrainArgs(run_dir=tmp_path / "run", out=tmp_path / "q.npz", embed=6, hidden=6, epochs=1,
                              batch_size=50, eval_every=4, max_train=200, vocab_size=300, subwords=32, cell="qrnn",
                              window=3, compare_vader=False, float16=False)
    metrics = train_sentiment(args)
    trained, vocab, header = load_sentiment(tmp_path / "q.npz")
    assert header["config"]["cell"] == "qrnn" and header["config"]["window"] == 3
    assert metrics["val"]["pooled"]["binary_acc"] > 0.3
    live = LiveSentiment(trained, vocab)
    for text in ["the food was great", "not good at all"]:
        probs = trained.predict(*pad([trained.reader.text_ids(text)]))[0][0]
        np.testing.assert_allclose(live.set_text(text).probs, probs, rtol=1e-5, atol=1e-6)


def test_a_new_vocabulary_or_lexicon_is_read_live_at_once():
    """The live path keeps gate rows per token id: a new vocabulary (other ids for the same words) or new
    lexicon ratings make it again, for one model and for an ensemble's stacked members."""
    other = Vocab([*SPECIALS, "bad", "good", "great", "not", "the", "food", "was", ":)", "."])  # ids swapped
    one, pair = model(dtype=np.float32), SentimentEnsemble([model(seed=s, dtype=np.float32) for s in (3, 4)])
    for m in (one, pair):
        m.train(False)
        LiveSentiment(m, VOCAB).set_text("good not bad")
        m.set_vocab(other)
        ids, mask = pad([m.reader.text_ids("good not bad")])
        np.testing.assert_allclose(LiveSentiment(m, other).set_text("good not bad").probs, m.predict(ids, mask)[0][0],
                                   rtol=1e-5)
    rated = model(dtype=np.float32, lexicon=True)
    rated.train(False)
    LiveSentiment(rated, VOCAB).set_text("good not bad")
    rated.set_lexicon(np.linspace(-1, 1, len(VOCAB)).astype(np.float32))
    ids, mask = pad([rated.reader.text_ids("good not bad")])
    np.testing.assert_allclose(LiveSentiment(rated, VOCAB).set_text("good not bad").probs,
                               rated.predict(ids, mask)[0][0], rtol=1e-5)


def test_typing_and_replies_in_two_threads_read_the_same_tables():
    """The app scores the bot's replies (`classify`) in one thread while the user types (`set_text`) in another;
    both fill the QRNN's shared gate-row and window tables, which start over often here: every result is
    still the single-threaded one."""
    import threading
    vocab = Vocab([*SPECIALS, *(f"w{i}" for i in range(60))])
    members = [SentimentModel(SentimentConfig(vocab_size=len(vocab), embed=8, hidden=6, cell="qrnn", window=3),
                              seed=s) for s in (5, 6)]
    rng = np.random.default_rng(0)
    texts = [" ".join(f"w{i}" for i in rng.integers(0, 60, 12)) for _ in range(300)]
    reference = SentimentEnsemble(members)
    expected = [LiveSentiment(reference, vocab).classify(t) for t in texts]
    shared = SentimentEnsemble(members)
    shared.stacked.gate_rows.limit, shared.stacked.windows.limit = 40, 60
    typing, replies = LiveSentiment(shared, vocab), LiveSentiment(shared, vocab)
    wrong = []

    def run(score):
        for t, e in zip(texts, expected):
            if score(t) != e:
                wrong.append(t)

    threads = [threading.Thread(target=run, args=(f,)) for f in (typing.set_text, replies.classify)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not wrong
