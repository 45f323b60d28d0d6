"""Subword input of the sentiment classifier (issue 18): the token reader, a float64 gradient check with the
n-gram table, unseen words read as <unk> plus their n-grams, live = batched, checkpoints and training."""

import numpy as np
import pytest

from rnnchat.data import corpora
from rnnchat.data.batches import pad
from rnnchat.engine.sentiment_live import LiveSentiment
from rnnchat.models import sentiment_tokens
from rnnchat.models.sentiment import SentimentConfig, SentimentModel
from rnnchat.models.sentiment_ensemble import SentimentEnsemble, load_sentiment, save_sentiment, sentiment_spec
from rnnchat.models.sentiment_tokens import TokenReader, char_ngrams, ngram_buckets
from rnnchat.text import SPECIALS, Vocab
from rnnchat.train.sentiment import SentimentTrainArgs, train_sentiment
from tests.nn.gradcheck import numerical_grad, rel_error

WORDS = ["good", "bad", "not", "great", "awful", "the", "food", "was", ":)"]
VOCAB = Vocab([*SPECIALS, *WORDS])
TEXTS = ["the food was good", "goodish and baddest", "not gooood at all :)", "", "shattered"]


def model(seed=0, dtype=np.float64, subwords=11, layers=1, **kw):
    config = SentimentConfig(vocab_size=len(VOCAB), embed=4, hidden=5, layers=layers, dropout=0.0,
                             word_dropout=0.0, subwords=subwords, **kw)
    m = SentimentModel(config, seed=seed, dtype=dtype)
    for p in m.params.params:  # larger weights: gradients well above finite-difference noise
        p *= 3
    m.set_vocab(VOCAB)
    return m


def test_the_reader_gives_unseen_words_ids_of_their_own_and_their_ngrams():
    assert char_ngrams("ab") == ["<ab", "ab>", "<ab>"]
    assert char_ngrams("good")[:3] == ["<go", "goo", "ood"] and len(char_ngrams("good")) == 4 + 3 + 2
    rows = ngram_buckets("good", 7)
    assert rows.dtype == np.int64 and rows.min() >= 0 and rows.max() < 7
    np.testing.assert_array_equal(rows, ngram_buckets("good", 7))  # CRC-32: the same in every process
    plain, sub = TokenReader(VOCAB), TokenReader(VOCAB, 16)
    assert plain.text_ids("good zzz") == [VOCAB.stoi["good"], VOCAB.unk_id]
    n = len(VOCAB)
    assert sub.text_ids("good zzz yyy zzz goooood") == [VOCAB.stoi["good"], n, n + 1, n, VOCAB.stoi["good"]]
    np.testing.assert_array_equal(sub.words(np.array([4, n, n + 1])), [4, VOCAB.unk_id, VOCAB.unk_id])
    offsets, rows = sub.bags([0, 1, VOCAB.stoi["good"], n])  # specials have no n-grams
    assert list(np.diff(offsets)) == [0, 0, len(char_ngrams("good")), len(char_ngrams("zzz"))]
    np.testing.assert_array_equal(rows[offsets[3]:], ngram_buckets("zzz", 16))
    with pytest.raises(ValueError, match="buckets"):
        TokenReader(VOCAB, -1)


def test_an_emoji_reads_as_its_unicode_names_words():
    from rnnchat.models.sentiment_tokens import subwords
    assert subwords("😞") == char_ngrams("disappointed") + char_ngrams("face")
    assert subwords("💔") == char_ngrams("broken") + char_ngrams("heart")
    assert subwords(":)") == char_ngrams(":)") and subwords("é") == char_ngrams("é")  # not a pictograph
    assert subwords("👍🏽") == [g for w in ("thumbs", "up", "sign") for g in char_ngrams(w)]  # a skin tone
    assert subwords("👨\u200d👧") == char_ngrams("man") + char_ngrams("girl")  # joined by a zero-width joiner
    np.testing.assert_array_equal(ngram_buckets("😍", 16)[:len(char_ngrams("smiling"))], ngram_buckets("smiling", 16))
    assert subwords("z" * 400_000) == char_ngrams("z" * 64)  # a pasted run of letters: bounded n-grams


def test_forms_stop_at_the_limit_and_keep_few_ngram_rows(monkeypatch):
    monkeypatch.setattr(sentiment_tokens, "FORMS_LIMIT", 2)
    reader = TokenReader(VOCAB, 8)
    assert reader.text_ids("aa bb cc aa") == [len(VOCAB), len(VOCAB) + 1, VOCAB.unk_id, len(VOCAB)]
    monkeypatch.setattr(sentiment_tokens, "FORM_BAGS_KEPT", 1)
    for _ in range(2):  # rows made again once the memo is cleared are the same rows
        offsets, rows = reader.bags([len(VOCAB), len(VOCAB) + 1])
        np.testing.assert_array_equal(rows, np.r_[ngram_buckets("aa", 8), ngram_buckets("bb", 8)])
        assert len(reader._form_bags) == 1


def ids_from_two_threads(reader: TokenReader, words: list[str]) -> list[list[int]]:
    """Each thread's ids of `words`, the two reading at once and switching as often as the interpreter can (without
    the reader's lock, 2 runs in 10 gave one word two ids)."""
    import sys
    import threading
    got: list[list[int]] = [[], []]
    threads = [threading.Thread(target=lambda k=k: got[k].extend(reader.token_id(w) for w in words)) for k in (0, 1)]
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    return got


def test_two_threads_give_an_unseen_word_one_id():
    words = [f"w{i}" for i in range(20000)]
    for _ in range(3):
        a, b = ids_from_two_threads(TokenReader(VOCAB, 8), words)
        assert a == b and sorted(a) == list(range(len(VOCAB), len(VOCAB) + len(words)))


def test_long_texts_of_a_restarting_subword_model_are_scored_in_chunks():
    from rnnchat.train.sentiment_eval import LONG_TEXT, predict_ids
    m = model(dtype=np.float32, restart="sentence")
    m.train(False)
    ids = m.reader.text_ids("good shattered . " * (LONG_TEXT // 3 + 10))  # past LONG_TEXT, with forms
    assert len(ids) > LONG_TEXT and max(ids) >= len(VOCAB)
    probs, _ = predict_ids(m, [ids])
    np.testing.assert_allclose(probs[0], m.predict(*pad([ids]))[0][0], rtol=1e-4, atol=1e-6)


def test_gradients_match_finite_differences_with_subwords():
    for layers, restart in ((1, "none"), (2, "clause")):
        m = model(layers=layers, restart=restart)
        ids, mask = pad([m.reader.text_ids(t) for t in ["good , goodish baddest", *TEXTS[1:]]])
        assert ids.max() >= len(VOCAB)  # unseen words are in the batch as forms
        batch = (ids, mask, np.array([2, 0, 1, 1, 0]), np.array([0.6, -0.4, 0.1, 0.0, -0.9]))
        m.train_step(*batch)
        grads = {n: g.copy() for n, g in zip(m.params.names, m.params.grads())}
        assert "ngrams.W" in grads and set(grads) == set(sentiment_spec(m.header_config()))
        assert grads["ngrams.W"].any()
        for name, p in m.params.named().items():
            num = numerical_grad(lambda: m.loss(*batch)[0], p, eps=1e-5)
            assert rel_error(grads[name], num) < 1e-6, (layers, name)


def test_a_token_reads_as_its_row_plus_its_ngrams_mean():
    m = model()
    E, G = m.embed.params["W"], m.ngrams.params["W"]
    good, unseen = VOCAB.stoi["good"], m.reader.token_id("shattered")
    np.testing.assert_allclose(m.vectors([good])[0], E[good] + G[ngram_buckets("good", 11)].mean(axis=0))
    np.testing.assert_allclose(m.vectors([unseen])[0], E[VOCAB.unk_id] + G[ngram_buckets("shattered", 11)].mean(0))
    np.testing.assert_array_equal(m.vectors([0])[0], E[0])  # <pad>: no n-grams
    # two unseen words differ (they were both one <unk> before)
    m.train(False)
    a, b = (m.predict(*pad([m.reader.text_ids(t)]))[0][0] for t in ("shattered", "thankful"))
    assert not np.allclose(a, b)


def test_word_dropout_keeps_the_ngrams():
    m = model(dtype=np.float32)
    m.config.word_dropout = 1.0  # every word dropped: only <unk> plus n-grams are left
    ids, mask = pad([m.reader.text_ids("good food")])
    m.forward(ids, mask)
    x = m.embed._ids
    assert (x[mask > 0] == VOCAB.unk_id).all() and m.ngrams._bags[1].size > 0


@pytest.mark.parametrize("restart", ["none", "sentence"])
def test_live_steps_equal_the_batch_for_one_model_and_stacked_members(restart):
    single = model(seed=1, dtype=np.float32, restart=restart)
    members = [SentimentModel(SentimentConfig(vocab_size=len(VOCAB), embed=4, hidden=5, subwords=11,
                                              restart=restart), seed=s) for s in (2, 3)]
    for m in members:
        for p in m.params.params:
            p *= 4
    stacked = SentimentEnsemble(members)
    stacked.set_vocab(VOCAB)
    assert stacked.stacked is not None and members[0].reader is members[1].reader  # one id per unseen word
    for clf in (single, stacked):
        clf.train(False)
        live = LiveSentiment(clf, VOCAB)
        for text in TEXTS + ["the food was shattered . goodish !"]:
            r = live.set_text(text)
            assert r == live.classify(text)
            probs, scores = clf.predict(*pad([clf.reader.text_ids(text)]))
            np.testing.assert_allclose(r.probs, probs[0], rtol=1e-5, atol=1e-6)
            assert r.score == pytest.approx(scores[0], rel=1e-5, abs=1e-6)
    with pytest.raises(ValueError, match="subword"):
        SentimentEnsemble([members[0], model(subwords=7, restart=restart)])
    with pytest.raises(ValueError, match="subwords"):
        SentimentConfig(vocab_size=9, subwords=4, lexicon=True)


def test_an_ensemble_of_loaded_members_reads_with_one_reader(tmp_path):
    for seed in (4, 5):
        save_sentiment(model(seed=seed, dtype=np.float32), VOCAB, tmp_path / f"{seed}.npz", {}, float16=False)
    loaded = [load_sentiment(tmp_path / f"{seed}.npz")[0] for seed in (4, 5)]
    assert loaded[0].reader is not loaded[1].reader
    ens = SentimentEnsemble(loaded)
    assert loaded[0].reader is loaded[1].reader is ens.reader
    kept = ens.reader
    assert SentimentEnsemble(loaded).reader is kept  # members that share one reader keep it (ids stay valid)
    ids, mask = pad([ens.reader.text_ids(t) for t in TEXTS])
    probs, _ = ens.predict(ids, mask)
    want = np.mean([m.predict(ids, mask)[0] for m in loaded], axis=0)
    np.testing.assert_allclose(probs, want, rtol=1e-6)
    with pytest.raises(ValueError, match="vocabulary"):
        other = model(dtype=np.float32)
        other.set_vocab(Vocab([*SPECIALS, *reversed(WORDS)]))
        SentimentEnsemble([loaded[0], other])


def test_checkpoints_keep_the_ngram_table(tmp_path):
    m = model(dtype=np.float32)
    save_sentiment(m, VOCAB, tmp_path / "s.npz", {}, float16=False)
    loaded, vocab, header = load_sentiment(tmp_path / "s.npz")
    assert header["config"]["subwords"] == 11 and loaded.reader.buckets == 11
    m.train(False)
    for text in TEXTS:
        np.testing.assert_allclose(loaded.predict(*pad([loaded.reader.text_ids(text)]))[0],
                                   m.predict(*pad([m.reader.text_ids(text)]))[0], rtol=1e-6)


@pytest.mark.skipif(not (corpora.default_root() / "vader" / "train.jsonl").exists(),
                    reason="vader corpus not built (rnnchat corpus build vader)")
def test_training_with_subwords(tmp_path):
    args = SentimentTrainArgs(run_dir=tmp_path / "run", out=tmp_path / "s.npz", embed=6, hidden=6, epochs=1,
                              batch_size=50, eval_every=4, max_train=200, vocab_size=300, subwords=64,
                              compare_vader=False, float16=False)
    train_sentiment(args)
    trained, vocab, header = load_sentiment(tmp_path / "s.npz")
    assert header["config"]["subwords"] == 64 and len(vocab) == 300
    assert np.abs(trained.ngrams.params["W"]).max() > 0.1  # trained away from its U(-0.1, 0.1) start
    with pytest.raises(ValueError, match="subwords"):
        train_sentiment(SentimentTrainArgs(**{**vars(args), "lexicon_channel": True, "run_dir": tmp_path / "b"}))
    # two loads of it as an ensemble (each load has its own reader until the ensemble shares one)
    from rnnchat.train.sentiment_ensemble import build_ensemble
    metrics = build_ensemble([tmp_path / "s.npz", tmp_path / "s.npz"], tmp_path / "e.npz", compare_vader=False)
    assert metrics["val"]["pooled"]["binary_acc"] == pytest.approx(header["metrics"]["val"]["pooled"]["binary_acc"])
