"""LiveSentiment: after any sequence of keystrokes the result equals classifying the text from scratch."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnchat.models.sentiment import SentimentConfig, SentimentModel
from rnnchat.models.sentiment_ensemble import SentimentEnsemble
from rnnchat.engine.sentiment_live import LiveSentiment
from rnnchat.models.sentiment_result import Sentiment
from rnnchat.models.sentiment_tokens import TokenReader
from rnnchat.text import SPECIALS, Vocab, tokenize
from rnnchat.data.batches import pad
from rnnchat import paths
from rnnchat.train.sentiment_eval import score_texts

DEFAULT_CHECKPOINT = paths.sentiment_checkpoint()

WORDS = ["good", "not", "bad", "at", "all", "great", "but", "awful", "really", "the", "food", ":)", ":(", "!",
         ".", "don't", "3.14", ",", "...", "?!"]
VOCAB = Vocab([*SPECIALS, *WORDS])
MODEL = SentimentModel(SentimentConfig(vocab_size=len(VOCAB), embed=6, hidden=7, layers=2, dropout=0.3),
                       seed=5)
MODEL.train(False)
# a second model of another shape: MODEL and it form a two-member ensemble (probabilities averaged)
OTHER = SentimentModel(SentimentConfig(vocab_size=len(VOCAB), embed=5, hidden=4, layers=1, dropout=0.3,
                                       pool="max+mean"), seed=6)
for p in [*MODEL.params.params, *OTHER.params.params]:  # livelier than the small initial weights
    p *= 4
ENSEMBLE = SentimentEnsemble([MODEL, OTHER])
# members of one shape are stepped together as stacked arrays (one batched product per weight)
TWIN = SentimentModel(SentimentConfig(vocab_size=len(VOCAB), embed=6, hidden=7, layers=2, dropout=0.3), seed=8)
for p in TWIN.params.params:
    p *= 4
STACKED = SentimentEnsemble([MODEL, TWIN, MODEL])
# restarting after each sentence / clause end (segments re-run alone): one model, and alike members stacked
SENTENCES = SentimentModel(SentimentConfig(vocab_size=len(VOCAB), embed=6, hidden=7, layers=2, dropout=0.3,
                                           restart="sentence"), seed=9)
CLAUSE_MEMBERS = [SentimentModel(SentimentConfig(vocab_size=len(VOCAB), embed=5, hidden=6, restart="clause"),
                                 seed=s) for s in (10, 11)]
for p in [*SENTENCES.params.params, *(q for m in CLAUSE_MEMBERS for q in m.params.params)]:
    p *= 4
CLAUSES = SentimentEnsemble(CLAUSE_MEMBERS)  # stacked copies of the weights as they are now
SENTENCES.set_vocab(VOCAB)
CLAUSES.set_vocab(VOCAB)
# subwords: an unseen word reads as <unk> plus its character n-grams (one model; alike members stacked)
SUBWORDS = SentimentModel(SentimentConfig(vocab_size=len(VOCAB), embed=6, hidden=7, layers=2, subwords=32), seed=12)
SUBWORD_MEMBERS = [SentimentModel(SentimentConfig(vocab_size=len(VOCAB), embed=5, hidden=6, subwords=16), seed=s)
                   for s in (13, 14)]
for p in [*SUBWORDS.params.params, *(q for m in SUBWORD_MEMBERS for q in m.params.params)]:
    p *= 4
SUBWORD_PAIR = SentimentEnsemble(SUBWORD_MEMBERS)  # stacked copies of the weights as they are now
# QRNN cells (gate rows kept per token id, an element-wise scan): one model of window 1, stacked members with
# subwords, and members of window 3 restarting after each clause
QRNN_ONE = SentimentModel(SentimentConfig(vocab_size=len(VOCAB), embed=6, hidden=7, cell="qrnn", window=1), seed=15)
QRNN_MEMBERS = [SentimentModel(SentimentConfig(vocab_size=len(VOCAB), embed=5, hidden=6, subwords=16, cell="qrnn"),
                               seed=s) for s in (16, 17, 18)]
QRNN_CLAUSE_MEMBERS = [SentimentModel(SentimentConfig(vocab_size=len(VOCAB), embed=5, hidden=6, cell="qrnn", window=3,
                                                      restart="clause"), seed=s) for s in (19, 20)]
for p in [*QRNN_ONE.params.params, *(q for m in QRNN_MEMBERS + QRNN_CLAUSE_MEMBERS for q in m.params.params)]:
    p *= 4
QRNN_ONE.train(False)
QRNN_STACK = SentimentEnsemble(QRNN_MEMBERS)
QRNN_CLAUSES = SentimentEnsemble(QRNN_CLAUSE_MEMBERS)
QRNN_CLAUSES.set_vocab(VOCAB)
MODELS = [MODEL, ENSEMBLE, STACKED, SENTENCES, CLAUSES, SUBWORDS, SUBWORD_PAIR, QRNN_ONE, QRNN_STACK, QRNN_CLAUSES]
MODEL_IDS = ["model", "ensemble", "stacked", "sentences", "clauses", "subwords", "subword-pair", "qrnn",
             "qrnn-stack", "qrnn-clauses"]
# characters that make tokens grow, merge and split: letters, spaces, emoticon, number and sentence-end parts
ALPHABET = "gonbdatlr :()!.'3147é,?"


def batched(model, vocab, text):
    ids, mask = pad([model.reader.text_ids(text)])  # the model's reader: unseen words' ids are its own
    probs, scores = model.predict(ids, mask)
    return probs[0], scores[0]


edit = st.one_of(
    st.tuples(st.just("type"), st.text(ALPHABET, min_size=1, max_size=3)),
    st.tuples(st.just("backspace"), st.integers(1, 4)),
    st.tuples(st.just("insert"), st.integers(0, 10 ** 6), st.text(ALPHABET + " ", min_size=1, max_size=4)),
    st.tuples(st.just("delete"), st.integers(0, 10 ** 6), st.integers(1, 5)),
    st.tuples(st.just("paste"), st.lists(st.sampled_from(WORDS + ["zzz"]), max_size=6).map(" ".join)),
)


def apply(text, e):
    if e[0] == "type":
        return text + e[1]
    if e[0] == "backspace":
        return text[: max(0, len(text) - e[1])]
    if e[0] == "insert":
        i = e[1] % (len(text) + 1)
        return text[:i] + e[2] + text[i:]
    if e[0] == "delete":
        i = e[1] % (len(text) + 1)
        return text[:i] + text[i + e[2]:]
    return e[1]


@pytest.mark.parametrize("model", MODELS, ids=MODEL_IDS)
@settings(max_examples=150, deadline=None)
@given(edits=st.lists(edit, max_size=25))
def test_random_edits_equal_classifying_from_scratch(model, edits):
    live = LiveSentiment(model, VOCAB)
    text = ""
    for e in edits:
        text = apply(text, e)
        r = live.set_text(text)
        assert r == live.classify(text)  # bit-identical to a fresh classifier
        probs, score = batched(model, VOCAB, text)  # float32, summed in another order: ~1e-7 apart
        np.testing.assert_allclose(r.probs, probs, rtol=1e-5, atol=1e-6)
        assert r.score == pytest.approx(score, rel=1e-5, abs=1e-6)
        assert r.tokens == len(tokenize(text))
        assert r.label == ("negative", "neutral", "positive")[int(np.argmax(r.probs))]


@pytest.mark.parametrize("model", [MODEL, STACKED, SENTENCES, CLAUSES, QRNN_STACK],
                         ids=["model", "stacked", "sentences", "clauses", "qrnn-stack"])
@settings(max_examples=60, deadline=None)
@given(edits=st.lists(edit, max_size=25))
def test_sparse_states_of_long_texts_give_the_same_results(model, edits):
    """Issue 20, item 9: only the last DENSE states and every STRIDE-th before are kept (bounded memory); edits
    behind the dense tail re-run from a kept state and still equal classifying from scratch, bit for bit."""
    import rnnchat.engine.sentiment_live as live_module
    old = live_module.DENSE, live_module.STRIDE
    live_module.DENSE, live_module.STRIDE = 3, 4
    try:
        live = LiveSentiment(model, VOCAB)
        text = "the food was good but the service was awful and slow, not great at all. really good "
        for e in edits:
            text = apply(text, e)
            r = live.set_text(text)
            assert r == live.classify(text)
            n = len(tokenize(text))
            assert live.kept_states() <= 3 + n // 4 + len(live._segs)
            assert live.steps_run <= n
    finally:
        live_module.DENSE, live_module.STRIDE = old


def test_long_texts_are_scored_in_bounded_chunks_like_short_ones():
    """A text longer than LONG_TEXT runs a chunk at a time (no padded batch as wide as the text), giving what
    the batched forward gives."""
    from rnnchat.train import sentiment_eval
    ids = list(np.random.default_rng(0).integers(4, len(VOCAB), 3000))
    chunked = ENSEMBLE.readout(ENSEMBLE.advance_many(ENSEMBLE.zero_state(), ids))
    x, mask = np.array([ids]), np.ones((1, len(ids)), np.float32)
    probs, scores = ENSEMBLE.predict(x, mask)
    np.testing.assert_allclose(chunked[0], probs[0], rtol=1e-4, atol=1e-6)
    assert chunked[1] == pytest.approx(scores[0], rel=1e-4, abs=1e-6)
    p2, s2 = sentiment_eval.predict_ids(ENSEMBLE, [ids, ids[:5], []])
    np.testing.assert_allclose(p2[0], chunked[0])
    np.testing.assert_allclose(p2[1:], ENSEMBLE.predict(*[np.array(a) for a in ([ids[:5], [0] * 5],
                                                                                 [[1] * 5, [0] * 5])])[0],
                               rtol=1e-5)


@pytest.mark.parametrize("model", MODELS, ids=MODEL_IDS)
def test_typing_costs_constant_model_steps(model):
    live = LiveSentiment(model, VOCAB)
    text = "the food was really good but the service was awful :( not bad at all! " * 5
    steps = []
    for i in range(1, len(text) + 1):
        live.set_text(text[:i])
        steps.append(live.steps_run)
    assert max(steps) <= 1 and sum(steps) < len(text)
    live.set_text(text[:-30])  # backspacing over words re-runs nothing
    assert live.steps_run == 0
    middle = text.index("service")
    live.set_text(text[:middle] + "staff" + text[middle + 7:])  # an edit in the middle re-runs from there
    assert live.steps_run == len(tokenize(text[middle:]))


@pytest.mark.parametrize("model", [SENTENCES, CLAUSES], ids=["sentences", "clauses"])
def test_a_restarting_model_re_runs_only_the_edited_segment(model):
    """Issue 18: with restarts an edit in the middle runs from the edit to the end of its sentence (or clause);
    the sentences after it are reused, and inserting or deleting a whole sentence runs only what is new."""
    live = LiveSentiment(model, VOCAB)
    first, second, third = "the food was really good .", "but the service was awful !", "not bad at all"
    text = f"{first} {second} {third}"
    live.set_text(text)
    edited = text.replace("awful", "not awful")
    assert live.set_text(edited) == live.classify(edited)
    assert live.steps_run == len(tokenize("not awful !"))  # without restarts: everything after "service"
    added = edited.replace(second.replace("awful", "not awful"), "great . " + second.replace("awful", "not awful"))
    assert live.set_text(added) == live.classify(added)
    assert live.steps_run == len(tokenize("great ."))
    assert live.set_text(edited) == live.classify(edited)  # the inserted sentence deleted again
    assert live.steps_run == 0
    clause = "the food , the service , the food !"
    live.set_text(clause)
    assert live.set_text(clause.replace("service", "food")) == live.classify(clause.replace("service", "food"))
    assert live.steps_run == (2 if model is CLAUSES else len(tokenize("food , the food !")))


def test_empty_text_and_result_shape():
    live = LiveSentiment(MODEL, VOCAB)
    r = live.set_text("")
    assert isinstance(r, Sentiment) and r.tokens == 0 and sum(r.probs) == pytest.approx(1)
    assert r == live.set_text("   ")
    assert set(r.as_dict()["probs"]) == {"negative", "neutral", "positive"}


@pytest.mark.skipif(not DEFAULT_CHECKPOINT.exists(), reason="rnnchat/checkpoints/sentiment.npz not present")
def test_shipped_checkpoint_live_matches_score_texts():
    live = LiveSentiment.from_checkpoint()
    text = "The food was great but the service was awful :( not bad at all though, really really good!"
    for i in range(1, len(text) + 1):
        r = live.set_text(text[:i])
    expected = score_texts([text])[0]
    assert r.label == expected["label"]
    np.testing.assert_allclose(r.probs, list(expected["probs"].values()), rtol=1e-4, atol=1e-6)
    assert r.score == pytest.approx(expected["score"], rel=1e-4, abs=1e-6)


def test_alike_members_step_stacked_and_agree_with_stepping_one_by_one():
    assert STACKED.stacked is not None and ENSEMBLE.stacked is None  # other shapes: one by one
    one_by_one = SentimentEnsemble([MODEL, TWIN, MODEL])
    one_by_one.stacked = None
    for text in ["not bad at all :)", "the food was awful !", "good but really bad", ""]:
        a, b = LiveSentiment(STACKED, VOCAB).set_text(text), LiveSentiment(one_by_one, VOCAB).set_text(text)
        np.testing.assert_allclose(a.probs, b.probs, rtol=1e-5, atol=1e-7)
        assert a.score == pytest.approx(b.score, rel=1e-5, abs=1e-7)
    STACKED.train(True)
    assert STACKED.stacked is None  # training: the live copy of the weights is dropped, remade in eval mode
    STACKED.train(False)
    assert STACKED.stacked is not None


def test_elongated_words_read_as_the_word_live_and_batched():
    reader = TokenReader(VOCAB)
    assert reader.token_id("goooood") == VOCAB.stoi["good"] and reader.token_id("baaad") == VOCAB.stoi["bad"]
    assert reader.token_id("zzzz") == VOCAB.unk_id and reader.token_id("good") == VOCAB.stoi["good"]
    assert reader.text_ids("sooo goooood :)") == [VOCAB.unk_id, VOCAB.stoi["good"], VOCAB.stoi[":)"]]
    live = LiveSentiment(MODEL, VOCAB)
    for a, b in [("the food was goooood", "the food was good"), ("baaaad", "bad")]:
        assert live.set_text(a) == live.classify(b)
        ids, mask = pad([reader.text_ids(a)])
        np.testing.assert_allclose(live.set_text(a).probs, MODEL.predict(ids, mask)[0][0], rtol=1e-5)


WIDE_QRNN = [SentimentModel(SentimentConfig(vocab_size=len(VOCAB), embed=96, hidden=16, subwords=16, cell="qrnn",
                                           window=3), seed=s) for s in (21, 22)]  # OpenBLAS's kernels differ here


@settings(max_examples=40, deadline=None)
@given(edits=st.lists(edit, max_size=20))
def test_qrnn_tables_that_start_over_give_the_same_numbers(edits):
    """The QRNN's kept gate rows and window gates hold a few ids and windows here, so they start over on
    almost every edit and compute rows in other batches: every result is still the one of tables that never
    do, bit for bit (an embedding as wide as the shipped one's, where a one-row product rounds differently)."""
    small, reference = SentimentEnsemble(WIDE_QRNN), SentimentEnsemble(WIDE_QRNN)
    small.set_vocab(VOCAB)
    reference.set_vocab(VOCAB)
    small.stacked.gate_rows.limit, small.stacked.windows.limit = 3, 4
    live, whole = LiveSentiment(small, VOCAB), LiveSentiment(reference, VOCAB)
    text = ""
    for e in edits:
        text = apply(text, e)
        assert live.set_text(text) == whole.set_text(text)


@pytest.mark.parametrize("model", [QRNN_STACK, QRNN_CLAUSES, ENSEMBLE], ids=["qrnn-stack", "qrnn-clauses", "ensemble"])
def test_states_kept_behind_the_dense_tail_hold_only_their_own_arrays(model):
    """A pasted long text stays in bounded memory with QRNN members too: every state kept behind the dense tail
    is compacted (a QRNN run's state would keep its whole run's h and c alive)."""
    from rnnchat.engine.sentiment_live import DENSE, STRIDE
    from rnnchat.models.sentiment_qrnn import RunState
    live = LiveSentiment(model, VOCAB)
    text = "the food was good , but not great . " * 400  # 3,600 tokens
    live.set_text(text)
    live.set_text(text + "really")
    lazy = [s for seg in live._segs for s in seg.states.values()
            if isinstance(s, RunState) or (isinstance(s, tuple) and any(isinstance(m, RunState) for m in s))]
    n = len(live.tokens)
    assert len(lazy) <= DENSE and live.kept_states() <= DENSE + n // STRIDE + len(live._segs) + 1
    assert live.set_text(text + "really") == live.classify(text + "really")



# Sizes where OpenBLAS's many-row kernel rounds a row by the number of rows in the product (an input at least
# 32 wide, 4H or 3H a little over a multiple of 16): each token's input product is a product of its own here.
ODD_LSTM = SentimentModel(SentimentConfig(vocab_size=len(VOCAB), embed=40, hidden=6, layers=2), seed=23)
ODD_QRNN = [SentimentModel(SentimentConfig(vocab_size=len(VOCAB), embed=40, hidden=7, cell="qrnn"), seed=s)
            for s in (24, 25)]
for p in (q for m in [ODD_LSTM, *ODD_QRNN] for q in m.params.params):
    p *= 4
ODD_LSTM.train(False)


@pytest.mark.parametrize("kind", ["lstm-hidden-6", "qrnn-hidden-7"])
@settings(max_examples=40, deadline=None)
@given(edits=st.lists(edit, min_size=1, max_size=20))
def test_any_sizes_give_results_bit_identical_to_classifying_from_scratch(kind, edits):
    """Typed, edited or read whole, a text's tokens reach the products in runs of any length: the result is
    the same bit for bit (the QRNN's reference has tables of its own, filled in other batches)."""
    lstm = kind == "lstm-hidden-6"
    live = LiveSentiment(ODD_LSTM if lstm else SentimentEnsemble(ODD_QRNN), VOCAB)
    text = "the food was good but "
    typed = [("type", w + " ") for w in "not bad at all , really great :) awful".split()]  # new ids, one by one
    for e in typed + edits:
        text = apply(text, e)
        reference = ODD_LSTM if lstm else SentimentEnsemble(ODD_QRNN)  # (the QRNN's: with empty tables)
        assert live.set_text(text) == LiveSentiment(reference, VOCAB).classify(text)
