"""Classifier-free guidance (issue 14): draws from z + w (log p(. | conversation) - log p(. | fresh state)), the
fresh rows stepped over the same tokens; replies never open with <eot> or <eom>."""

import numpy as np
import pytest

from rnnchat.engine.batch import Job, generate_rows
from rnnchat.engine.conversation import Conversation
from rnnchat.engine.engine import Engine
from rnnchat.engine.rows import Guide, decode_rows, fresh_guide
from rnnchat.models.lm_cache import CacheSettings
from rnnchat.engine.ranking import lm_candidates
from rnnchat.sampling import RowSampler, SamplingSettings, SettingsError, skip_ids

GREEDY = SamplingSettings(temperature=0.0, repeat_penalty=1.0, max_tokens=12)


def log_softmax(z: np.ndarray) -> np.ndarray:
    """The reference: each row's log-probabilities, in float64."""
    z = np.asarray(z, np.float64)
    top = z.max(axis=1, keepdims=True)
    return z - top - np.log(np.exp(z - top).sum(axis=1, keepdims=True))


@pytest.fixture(scope="module")
def engine(small_lm_path):
    return Engine(small_lm_path)


def after(engine, text):
    conv = engine.conversation()
    conv.feed(text, end_turn=True)
    return conv


def test_apply_weights_the_log_ratio_and_keeps_the_models_chance_of_ending():
    rng = np.random.default_rng(0)
    z, zf = rng.normal(size=(3, 7)), rng.normal(size=(3, 7))
    w = np.array([0.0, 1.0, 2.5])
    out = Guide(w, zf, [], plain=(2, 3)).apply(z)
    assert np.array_equal(out[0], z[0])  # weight 0: the model's logits exactly
    p, q, got = np.exp(log_softmax(z)), np.exp(log_softmax(zf)), np.exp(log_softmax(out))
    np.testing.assert_allclose(got[:, [2, 3]], p[:, [2, 3]], rtol=1e-12)  # the ends: the model's chance
    words = [0, 1, 4, 5, 6]
    guided = p[:, words] ** (1 + w[:, None]) / q[:, words] ** w[:, None]  # p (p / q)^w among the words
    want = guided / guided.sum(axis=1, keepdims=True) * (1 - p[:, [2, 3]].sum(axis=1, keepdims=True))
    np.testing.assert_allclose(got[:, words], want, rtol=1e-10)
    assert np.isfinite(Guide(w, zf, [], (2, 3)).apply(np.where(np.arange(7) < 2, -np.inf, z))[1, 2:]).all()


def test_no_guide_for_weights_of_zero(engine):
    assert fresh_guide(engine.decoder, engine.vocab, [0.0, 0.0]) is None
    g = fresh_guide(engine.decoder, engine.vocab, [0.0, 1.5])
    assert g.weights.tolist() == [0.0, 1.5] and g.logits.shape == (2, len(engine.vocab))


def test_guided_greedy_rows_follow_a_step_by_step_reference(engine):
    """decode_rows under guidance = a plain loop over the conversation and a fresh conversation fed the same
    tokens, drawing argmax(z + w (lsm(z) - lsm(z_fresh))) with <eom>/<eot> unguided."""
    dec, vocab, w = engine.decoder, engine.vocab, 1.5
    conv = after(engine, "what do you like to eat ?")
    banned = skip_ids(GREEDY, vocab)
    settings = GREEDY.with_(guidance=w)
    got = decode_rows(dec, vocab, conv.logits.copy(), conv.state, [RowSampler(settings, banned)], [settings],
                      guide=fresh_guide(dec, vocab, [w]))[0].ids
    ref, fresh = conv.fork(), engine.conversation()
    want = []
    ends = [vocab.eom_id, vocab.eot_id]
    for _ in range(GREEDY.max_tokens):
        p = np.exp(log_softmax(ref.logits.astype(np.float64))[0])
        q = np.exp(log_softmax(fresh.logits.astype(np.float64))[0])
        g = p ** (1 + w) / q ** w
        g[ends] = 0
        g *= (1 - p[ends].sum()) / g.sum()
        g[ends] = p[ends]
        g[banned] = 0
        tid = int(np.argmax(g))
        want.append(tid)
        if tid == vocab.eot_id:
            break
        ref.feed_ids([tid])
        fresh.feed_ids([tid])
    assert got == want
    plain = decode_rows(dec, vocab, conv.logits.copy(), conv.state, [RowSampler(GREEDY, banned)], [GREEDY])[0].ids
    assert plain != got  # the small model's guided reply differs from its plain one here


def test_a_row_of_weight_zero_in_a_guided_batch_draws_what_it_draws_unguided(engine):
    dec, vocab = engine.decoder, engine.vocab
    conv = after(engine, "i like the movie")
    s0 = SamplingSettings(seed=3, max_tokens=10)
    s1 = s0.with_(guidance=2.0, seed=4)
    logits, state = np.repeat(conv.logits, 2, axis=0), [(np.repeat(h, 2, 0), np.repeat(c, 2, 0)) for h, c in conv.state]
    rows = lambda: [RowSampler(s, skip_ids(s, vocab)) for s in (s0, s1)]  # noqa: E731
    mixed = decode_rows(dec, vocab, logits, state, rows(), [s0, s1], guide=fresh_guide(dec, vocab, [0.0, 2.0]))
    alone = decode_rows(dec, vocab, logits[:1], [(h[:1], c[:1]) for h, c in state], rows()[:1], [s0])
    assert mixed[0].ids == alone[0].ids and mixed[0].probs == alone[0].probs


def test_batch_jobs_with_guidance_do_not_depend_on_their_batch(engine):
    dec, vocab = engine.decoder, engine.vocab
    jobs = [Job("a", "i think the", SamplingSettings(seed=1, guidance=1.0, max_tokens=10)),
            Job("b", "my dog", SamplingSettings(seed=2, max_tokens=10)),
            Job("c", "", SamplingSettings(seed=3, guidance=3.0, max_tokens=10))]
    together = generate_rows(dec, vocab, jobs)
    for job, row in zip(jobs, together):
        assert generate_rows(dec, vocab, [job]) == [row]
    assert together[0]["settings"]["guidance"] == 1.0


@pytest.mark.parametrize("cache", [False, True])
def test_candidates_and_streams_never_open_with_the_end_of_a_turn(engine, cache):
    vocab = engine.vocab
    conv = Conversation(engine.decoder, vocab, cache=CacheSettings(lam=0.5) if cache else None)
    conv.feed("hello . hello", end_turn=True)  # with the cache: the ends of turns are in it
    conv.logits[:, vocab.eot_id] = 50.0   # the model would end the turn at once, then open a message empty
    conv.logits[:, vocab.eom_id] = 40.0
    s = SamplingSettings(seed=1, max_tokens=5, cache=cache)
    for guidance in (0.0, 2.0):
        for c in lm_candidates(conv, s.with_(guidance=guidance), 8):
            assert c.ids and c.ids[0] not in (vocab.eot_id, vocab.eom_id)
    # the candidates' log-probabilities stay the model's (the ban does not renormalise the first token)
    c = lm_candidates(conv, s.with_(temperature=0.0, max_tokens=1), 1)[0]
    model = log_softmax(conv.next_logits(s).astype(np.float64))[0]
    np.testing.assert_allclose(c.logprob, model[c.ids[0]], rtol=1e-5)
    assert model[[vocab.eom_id, vocab.eot_id]].max() > model[c.ids[0]]  # what the ban took is still counted
    first = next(iter(conv.fork().stream(GREEDY, not_first=(vocab.eom_id, vocab.eot_id))))
    assert first.id not in (vocab.eot_id, vocab.eom_id)
    assert next(iter(conv.fork().stream(GREEDY))).id == vocab.eot_id  # without it, as the model says


def test_guided_stream_keeps_the_conversation_invariant(engine):
    conv = after(engine, "what is your favorite movie ?")
    s = SamplingSettings(seed=9, guidance=1.0, max_tokens=8)
    toks = list(conv.stream(s))
    ref = after(engine, "what is your favorite movie ?")
    ref.feed_ids([t.id for t in toks])
    assert conv.history == ref.history
    np.testing.assert_allclose(conv.logits, ref.logits, rtol=1e-4, atol=1e-5)
    # the fresh stream starts where a new conversation starts
    np.testing.assert_allclose(fresh_guide(engine.decoder, engine.vocab, [1.0]).logits,
                               engine.conversation().logits, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("bad", [-0.5, 10.5, float("nan"), float("inf"), "1", True])
def test_guidance_out_of_range_is_a_settings_error(bad):
    with pytest.raises(SettingsError, match="guidance"):
        SamplingSettings(guidance=bad)
