"""Batched reply log-probabilities (rnnchat.models.scoring) against a slow token-by-token reference built on the
decoders' own `step`, on small random-weight models; a reply's score must not depend on its batch."""

import numpy as np
import pytest

from rnnchat.models.lm import LanguageModel, LMConfig, LMDecoder, load_lm
from rnnchat.models.scoring import lm_reply_logprobs, seq2seq_reply_logprobs, token_counts
from rnnchat.models.seq2seq import Seq2Seq, Seq2SeqConfig
from rnnchat.models.seq2seq_decode import Seq2SeqDecoder
from rnnchat.text import SPECIALS, Vocab


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    return z - z.max() - np.log(np.exp(z - z.max()).sum())


def lm_reference(dec: LMDecoder, vocab: Vocab, context: list[int], reply: list[int]) -> float:
    """<eot> from zeros, then the context, then the reply and its <eot>, one step at a time."""
    logits, state = dec.step(np.array([vocab.eot_id]), dec.initial_state(1))
    for t in context:
        logits, state = dec.step(np.array([t]), state)
    total = 0.0
    for t in [*reply, vocab.eot_id]:
        total += log_softmax(logits[0])[t]
        logits, state = dec.step(np.array([t]), state)
    return total


def seq2seq_reference(model: Seq2Seq, vocab: Vocab, source: list[int], target: list[int], state0=None) -> float:
    dec = Seq2SeqDecoder(model)
    enc = dec.encode([source], state0)
    ids, state, total = np.array([vocab.eot_id]), enc.state, 0.0
    for t in [*target, vocab.eot_id]:
        logits, state, _ = dec.step(ids, state, enc)
        total += log_softmax(logits[0])[t]
        ids = np.array([t])
    return total


def random_ids(rng, vocab: Vocab, n: int, lo: int = 0, hi: int = 12) -> list[list[int]]:
    """n id lists of lengths in [lo, hi] over the non-special words (and <eom>)."""
    pool = [vocab.eom_id, *range(len(SPECIALS), len(vocab))]
    return [list(rng.choice(pool, int(rng.integers(lo, hi + 1)))) for _ in range(n)]


@pytest.fixture(scope="module")
def lm64():
    vocab = Vocab([*SPECIALS, *"a b c d e f g h i j".split()])
    model = LanguageModel(LMConfig(vocab_size=len(vocab), hidden=10, layers=3, dropout=0.0), seed=1,
                          dtype=np.float64)
    for p in model.params.params:
        p *= 4
    model.train(False)
    return LMDecoder(model), vocab


@pytest.mark.parametrize("context_len", [0, 1, 7])
def test_lm_scores_equal_the_step_by_step_reference(lm64, context_len):
    dec, vocab = lm64
    rng = np.random.default_rng(context_len)
    context = random_ids(rng, vocab, 1, context_len, context_len)[0]
    replies = random_ids(rng, vocab, 6) + [[]]
    got = lm_reply_logprobs(dec, vocab, context, replies)
    want = [lm_reference(dec, vocab, context, r) for r in replies]
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
    assert got.shape == (7,) and got.dtype == np.float64 and (got < 0).all()
    np.testing.assert_array_equal(token_counts(replies), [len(r) + 1 for r in replies])


def test_lm_scores_of_the_float32_checkpoint_match_to_float32_precision(small_lm_path):
    model, vocab, _ = load_lm(small_lm_path)
    dec = LMDecoder(model)
    rng = np.random.default_rng(0)
    context, replies = random_ids(rng, vocab, 1, 30, 30)[0], random_ids(rng, vocab, 5, 1, 20)
    got = lm_reply_logprobs(model, vocab, context, replies)  # a model is wrapped in a decoder
    want = [lm_reference(dec, vocab, context, r) for r in replies]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_a_replys_lm_score_does_not_depend_on_its_batch(lm64):
    dec, vocab = lm64
    rng = np.random.default_rng(3)
    context, replies = random_ids(rng, vocab, 1, 5, 5)[0], random_ids(rng, vocab, 8, 1, 15)
    together = lm_reply_logprobs(dec, vocab, context, replies)
    alone = [lm_reply_logprobs(dec, vocab, context, [r])[0] for r in replies]
    np.testing.assert_allclose(together, alone, rtol=1e-12, atol=1e-12)
    assert lm_reply_logprobs(dec, vocab, context, []).shape == (0,)


def seq2seq_model(dtype=np.float64, **kw) -> tuple[Seq2Seq, Vocab]:
    vocab = Vocab([*SPECIALS, *"a b c d e f g h".split()])
    cfg = dict(src_vocab=len(vocab), tgt_vocab=len(vocab), embed=6, hidden=5, attention="general", proj=6,
               tie=True) | kw
    model = Seq2Seq(Seq2SeqConfig(**cfg), seed=4, dtype=dtype)
    for p in model.params.params:
        p *= 3
    model.train(False)
    return model, vocab


@pytest.mark.parametrize("kw", [{}, {"bidirectional": True, "reverse": True, "peeky": True},
                                {"attention": "none", "proj": 0, "tie": False}])
def test_seq2seq_scores_equal_the_step_by_step_reference(kw):
    model, vocab = seq2seq_model(**kw)
    rng = np.random.default_rng(1)
    sources, targets = random_ids(rng, vocab, 5, 1, 9), random_ids(rng, vocab, 5, 0, 9)
    got = seq2seq_reply_logprobs(model, vocab, sources, targets)  # one source per target
    np.testing.assert_allclose(got, [seq2seq_reference(model, vocab, s, t) for s, t in zip(sources, targets)],
                               rtol=1e-9, atol=1e-9)
    one = seq2seq_reply_logprobs(model, vocab, sources[0], targets)  # one source for every target
    np.testing.assert_allclose(one, [seq2seq_reference(model, vocab, sources[0], t) for t in targets],
                               rtol=1e-9, atol=1e-9)


def test_seq2seq_scores_start_from_a_given_state_and_ignore_their_batch():
    model, vocab = seq2seq_model(dtype=np.float32)
    rng = np.random.default_rng(2)
    sources, targets = random_ids(rng, vocab, 7, 1, 9), random_ids(rng, vocab, 7, 0, 12)
    state0 = tuple(rng.normal(size=(1, 5)).astype(np.float32) for _ in range(2))
    got = seq2seq_reply_logprobs(model, vocab, sources, targets, state0=state0, batch=3)
    want = [seq2seq_reference(model, vocab, s, t, state0) for s, t in zip(sources, targets)]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    alone = [seq2seq_reply_logprobs(model, vocab, s, [t], state0=state0)[0] for s, t in zip(sources, targets)]
    np.testing.assert_allclose(got, alone, rtol=1e-5, atol=1e-5)


def test_seq2seq_scoring_refuses_training_mode_and_mismatched_sources():
    model, vocab = seq2seq_model()
    with pytest.raises(ValueError, match="2 sources for 3 targets"):
        seq2seq_reply_logprobs(model, vocab, [[4], [5]], [[4], [5], [6]])
    model.train(True)
    with pytest.raises(ValueError, match="eval mode"):
        seq2seq_reply_logprobs(model, vocab, [4], [[5]])
