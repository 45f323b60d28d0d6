"""The reply judge's features are what the LM computes for each reply, step by step; its checkpoint round-trips
and refuses what it cannot use."""

import numpy as np
import pytest

from rnnchat.checkpoint import CheckpointError
from rnnchat.models.lm import load_lm, LMDecoder
from rnnchat.models.reply_judge import N_TERMS, ReplyJudge, feature_size, reply_features
from rnnchat.models.scoring import lm_reply_logprobs
from rnnchat.text import conversation_ids, turn_ids


@pytest.fixture(scope="module")
def lm(small_lm_path):
    model, vocab, _ = load_lm(small_lm_path)
    return LMDecoder(model), vocab


def memory(dec, vocab, turns):
    """The state and next logits after <eot> then the conversation, fed one token at a time."""
    logits, state = dec.step(np.array([vocab.eot_id]), dec.initial_state(1))
    for tid in conversation_ids(turns, vocab):
        logits, state = dec.step(np.array([tid]), state)
    return logits, state


def test_features_are_the_lm_read_one_token_at_a_time(lm):
    dec, vocab = lm
    turns = [["hello there , how are you ?"]]
    logits, state = memory(dec, vocab, turns)
    replies = [turn_ids(["i like the movie"], vocab), turn_ids(["what"], vocab), []]
    back = np.array([-2.0, -3.0, -0.5])
    f, fresh = reply_features(dec, vocab, logits, state, replies, back)
    np.testing.assert_allclose(fresh, lm_reply_logprobs(dec, vocab, [], replies), rtol=1e-4, atol=1e-4)
    H = dec.hidden
    assert f.shape == (3, feature_size(H)) == (3, N_TERMS + 3 * H)
    want_lp = lm_reply_logprobs(dec, vocab, conversation_ids(turns, vocab), replies)
    for i, r in enumerate(replies):
        n = len(r) + 1
        lg, st, outs, lp = logits, state, [], 0.0
        for tid in [*r, vocab.eot_id]:
            z = lg[0].astype(np.float64)
            lp += z[tid] - np.log(np.exp(z - z.max()).sum()) - z.max()
            lg, st = dec.step(np.array([tid]), st)
            outs.append(st[-1][0][0])
        assert lp == pytest.approx(want_lp[i], abs=1e-4)
        np.testing.assert_allclose(f[i, :N_TERMS], [lp / n, lp - fresh[i], (lp - fresh[i]) / n, back[i], np.log(n)],
                                   rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(f[i, N_TERMS:N_TERMS + H], outs[-1], atol=1e-5)            # after <eot>
        np.testing.assert_allclose(f[i, N_TERMS + H:N_TERMS + 2 * H], np.mean(outs, axis=0), atol=1e-5)
        np.testing.assert_allclose(f[i, N_TERMS + 2 * H:], outs[-1] * state[-1][0][0], atol=1e-5)


def test_a_reply_s_features_do_not_depend_on_the_other_replies(lm):
    dec, vocab = lm
    logits, state = memory(dec, vocab, [["do you like dogs"]])
    a, b = turn_ids(["i love the dog"], vocab), turn_ids(["what is that thing you said"], vocab)
    both, fresh_both = reply_features(dec, vocab, logits, state, [a, b], np.zeros(2))
    alone, fresh_alone = reply_features(dec, vocab, logits, state, [a], np.zeros(1))
    np.testing.assert_allclose(both[0], alone[0], rtol=1e-5, atol=1e-5)  # padding never leaks into a row
    assert fresh_both[0] == pytest.approx(fresh_alone[0], abs=1e-4)


def judge(d, lm_id="lm-1"):
    rng = np.random.default_rng(0)
    return ReplyJudge(rng.normal(size=d), rng.uniform(0.5, 2, size=d), rng.normal(size=(2, d)), np.array([0.1, -0.2]),
                      lm_id, "bw-1", {"note": "test"})


def test_judge_round_trips_and_predicts_probabilities(tmp_path):
    j = judge(N_TERMS + 6)
    path = tmp_path / "judge.npz"
    j.save(path, {"name": "test pools"})
    back = ReplyJudge.load(path)
    assert back.lm_id == "lm-1" and back.backward_id == "bw-1" and back.metrics == {"note": "test"}
    X = np.random.default_rng(1).normal(size=(5, N_TERMS + 6))
    p = back.predict(X)
    assert p.shape == (5, 2) and ((p > 0) & (p < 1)).all()
    z = ((X - j.mean) / j.scale) @ j.weights.T + j.bias
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-z)), rtol=1e-5)  # stored as float32


def test_judge_checkpoint_problems_are_errors(tmp_path):
    from rnnchat.checkpoint import save_checkpoint
    path = tmp_path / "j.npz"
    d = N_TERMS + 2
    arrays = {"mean": np.zeros(d), "scale": np.ones(d), "weights": np.zeros((2, d)), "bias": np.zeros(2)}
    head = {"model": "reply_judge", "config": {"features": d}, "vocab": [], "corpus": {}, "metrics": {}}
    save_checkpoint(path, arrays, head)
    with pytest.raises(ValueError, match="lm_id"):
        ReplyJudge.load(path)
    save_checkpoint(path, arrays, {**head, "lm_id": "x"})
    with pytest.raises(ValueError, match="backward_id"):
        ReplyJudge.load(path)
    head["backward_id"] = "y"
    save_checkpoint(path, {**arrays, "scale": np.zeros(d)}, {**head, "lm_id": "x"})
    with pytest.raises(ValueError, match="scale"):
        ReplyJudge.load(path)
    save_checkpoint(path, {**arrays, "weights": np.zeros((2, d + 1))}, {**head, "lm_id": "x"})
    with pytest.raises(CheckpointError, match="shape"):
        ReplyJudge.load(path)
    save_checkpoint(path, arrays, {**head, "model": "lm", "lm_id": "x"})
    with pytest.raises(CheckpointError, match="reply_judge"):
        ReplyJudge.load(path)


def test_no_replies_no_features(lm):
    dec, vocab = lm
    logits, state = memory(dec, vocab, [["hi"]])
    f, fresh = reply_features(dec, vocab, logits, state, [], np.zeros(0))
    assert f.shape == (0, feature_size(dec.hidden)) and fresh.shape == (0,)


def test_known_sums_replace_the_teacher_forced_ones_row_by_row(lm):
    dec, vocab = lm
    logits, state = memory(dec, vocab, [["do you like dogs"]])
    replies = [turn_ids(["i love the dog"], vocab), turn_ids(["what"], vocab)]
    plain, fresh = reply_features(dec, vocab, logits, state, replies, np.zeros(2))
    part, fresh_part = reply_features(dec, vocab, logits, state, replies, np.zeros(2), np.array([-7.0, np.nan]))
    n = len(replies[0]) + 1
    assert part[0, 0] == pytest.approx(-7.0 / n) and part[0, 1] == pytest.approx(-7.0 - fresh[0], abs=1e-4)
    np.testing.assert_allclose(part[1], plain[1], rtol=1e-5, atol=1e-5)  # an unknown row is computed as before
    np.testing.assert_allclose(part[0, N_TERMS:], plain[0, N_TERMS:], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fresh_part, fresh, rtol=1e-5, atol=1e-5)


def test_states_kept_from_decoding_replace_the_conversation_pass(lm):
    from rnnchat.engine.rows import decode_rows
    from rnnchat.sampling import RowSampler, SamplingSettings, skip_ids
    dec, vocab = lm
    logits, state = memory(dec, vocab, [["do you like dogs"]])
    settings = SamplingSettings(temperature=1.0, max_tokens=12)
    n = 6
    rows = [RowSampler(settings, skip_ids(settings, vocab), np.random.default_rng(s)) for s in range(n)]
    out = decode_rows(dec, vocab, np.repeat(logits, n, axis=0), [(np.repeat(h, n, 0), np.repeat(c, n, 0))
                      for h, c in state], rows, [settings] * n, not_first=vocab.end_ids, keep_states=True)
    done = [d for d in out if d.finished]
    assert done and any(not d.finished for d in out)  # both kinds occur with these seeds
    assert all(d.states is None for d in out if not d.finished)
    for d in done:  # the top state after each id, <eot> included, as one-at-a-time steps give it
        st, tops = state, []
        for tid in d.ids:
            _, st = dec.step(np.array([tid]), st)
            tops.append(st[-1][0][0])
        np.testing.assert_allclose(d.states, tops, atol=1e-5)
    replies = [d.ids[:-1] if d.finished else d.ids for d in out]
    plain, fresh = reply_features(dec, vocab, logits, state, replies, np.zeros(n))
    kept, fresh_kept = reply_features(dec, vocab, logits, state, replies, np.zeros(n), states=[d.states for d in out])
    np.testing.assert_allclose(kept, plain, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fresh_kept, fresh, rtol=1e-5, atol=1e-5)
    off = [None if d.states is None else d.states + 0.25 for d in out]  # the given states are the ones read
    moved, _ = reply_features(dec, vocab, logits, state, replies, np.zeros(n), states=off)
    first = next(i for i, d in enumerate(out) if d.finished)
    assert not np.allclose(moved[first, N_TERMS:], plain[first, N_TERMS:], atol=1e-3)
    with pytest.raises(ValueError, match="shape"):
        reply_features(dec, vocab, logits, state, [turn_ids(["i love the dog"], vocab)], np.zeros(1),
                       states=[np.zeros((1, dec.hidden))])
