"""Reply ranking (issue 14): candidates sampled together, scored by the responder, the anti-LM and the backward
model, penalties for unfinished replies and repeats; the chosen reply's memory is exact."""

import numpy as np
import pytest

from rnnchat.engine.engine import Engine
from rnnchat.engine.ranking import Candidate, Ranker, RankWeights, _messages, lm_candidates, repeats
from rnnchat.engine.tokens import Token
from rnnchat.models.scoring import lm_reply_logprobs
from rnnchat.sampling import SamplingSettings, SettingsError, StopWatch
from rnnchat.text import turn_ids

RESPONDER_ONLY = RankWeights(responder=1, pmi=0, pmi_mean=0, backward=0)
S = SamplingSettings(seed=5, max_tokens=8, temperature=1.0, top_k=0, top_p=1.0, repeat_penalty=1.0)


@pytest.fixture(scope="module")
def engine(small_lm_path):
    return Engine(small_lm_path)


def cand(vocab, text, finished=True, logprob=-5.0):
    ids = turn_ids([text], vocab)
    watch = StopWatch((), vocab)
    return Candidate([Token(i, vocab.itos[i], watch.push(i), 0.5) for i in ids], ids, finished, logprob)


def test_candidates_are_the_rows_a_conversation_would_sample_and_score_under_the_model(engine):
    conv = engine.conversation()
    conv.feed("hello there , how are you ?", end_turn=True)
    history = list(conv.history)
    s = S.with_(max_tokens=12)  # with S's 8 no candidate finishes, and the check below would compare [] with []
    cands = lm_candidates(conv, s, 6)
    assert conv.history == history  # sampling candidates does not touch the memory
    assert len(cands) == 6 and len({tuple(c.ids) for c in cands}) > 1
    for c in cands:
        assert len(c.tokens) == len(c.ids) + c.finished and len(c.ids) <= s.max_tokens
        if c.finished:
            assert c.tokens[-1].token == "<eot>"
    # the sampled rows carry their log-probability under the model: the teacher-forced score of the same ids
    vocab = engine.vocab
    done = [c for c in cands if c.finished and c.ids]
    assert 0 < len(done) < len(cands)  # both kinds, so the <eot> and log-probability checks run
    want = lm_reply_logprobs(engine.decoder, vocab, history, [c.ids for c in done])
    np.testing.assert_allclose([c.logprob for c in done], want, rtol=1e-4, atol=1e-3)


def test_same_seed_same_candidates_and_n_independent_rows(engine):
    def draw(n):
        conv = engine.conversation()
        conv.feed("i like the movie", end_turn=True)
        return [c.ids for c in lm_candidates(conv, S, n)]
    assert draw(4) == draw(4)
    assert draw(8)[:4] == draw(4)  # a row's draws do not depend on how many rows were made


def test_a_candidate_that_repeats_the_user_loses(engine):
    v = engine.vocab
    echo, other = cand(v, "i like the movie", logprob=-1.0), cand(v, "what do you think", logprob=-4.0)
    ranked = Ranker(weights=RESPONDER_ONLY).rank([echo, other], "I like the movie!", [])
    assert ranked[0] is other and echo.terms["repeat"] == -1.0 and other.terms["repeat"] == 0.0
    # and the bot's own recent reply
    again = cand(v, "what do you think", logprob=-1.0)
    fresh = cand(v, "i love the dog", logprob=-4.0)
    assert Ranker(weights=RESPONDER_ONLY).rank(
        [again, fresh], "hello", ["What do you think?"])[0] is fresh


def test_an_unfinished_or_empty_candidate_loses(engine):
    v = engine.vocab
    cut, whole, empty = cand(v, "i think", finished=False, logprob=-1), cand(v, "i think so", logprob=-6), \
        Candidate([], [], True, 0.0)
    ranked = Ranker(weights=RESPONDER_ONLY).rank([cut, empty, whole], "hi", [])
    assert ranked[0] is whole and ranked[-1] is empty and cut.terms["unfinished"] == -1.0


def test_pmi_prefers_a_reply_the_lm_does_not_say_to_everyone(engine):
    v = engine.vocab
    a, b = cand(v, "hello", logprob=-3.0), cand(v, "cat dog food", logprob=-3.0)
    ranker = Ranker(engine.decoder, v, weights=RankWeights(responder=0, pmi=1, pmi_mean=0, backward=0))
    ranked = ranker.rank([a, b], "hi", [])
    fresh = lm_reply_logprobs(engine.decoder, v, [], [a.ids, b.ids])  # log p(reply) from a fresh state
    assert a.terms["pmi"] == pytest.approx(-3.0 - fresh[0]) and b.terms["pmi"] == pytest.approx(-3.0 - fresh[1])
    assert a.terms["pmi_mean"] == pytest.approx(a.terms["pmi"] / (len(a.ids) + 1))
    assert ranked[0] is (a if fresh[0] < fresh[1] else b)  # the same responder score: the less generic wins


def test_repeats_and_weights_validation():
    assert repeats("I like the movie.", ["i like the movie"]) and not repeats("hello", ["goodbye"])
    assert not repeats("", ["anything"])
    assert RankWeights.from_dict({"pmi": 0.25}).pmi == 0.25
    with pytest.raises(SettingsError):
        RankWeights.from_dict({"nope": 1})


def test_backward_model_loader_refuses_what_it_cannot_use(tmp_path, seq2seq_chat):
    from rnnchat.engine.engine import load_backward_model
    from rnnchat.models.seq2seq import save_seq2seq
    model, note = load_backward_model(tmp_path / "none.npz")
    assert model is None and "no backward model" in note
    chat = tmp_path / "chat.npz"
    save_seq2seq(seq2seq_chat.model, seq2seq_chat.vocab, chat, task="chat", metrics={}, corpus={},
                 decoding={"bos": 3, "eos": 3, "max_src": 20})
    model, note = load_backward_model(chat)
    assert model is None and "not a backward chat model" in note
    from rnnchat.engine.engine import load_chat_model
    for bad in ("x", 2.5, 0, True):
        for task, load in (("chat_backward", load_backward_model), ("chat", load_chat_model)):
            path = tmp_path / f"bad{bad}{task}.npz"
            save_seq2seq(seq2seq_chat.model, seq2seq_chat.vocab, path, task=task, metrics={}, corpus={},
                         decoding={"bos": 3, "eos": 3, "max_src": bad})
            model, note = load(path)
            assert model is None and "max_src" in note  # refused at load (the chat model crashed at a reply)
    good = tmp_path / "good.npz"
    save_seq2seq(seq2seq_chat.model, seq2seq_chat.vocab, good, task="chat_backward", metrics={}, corpus={},
                 decoding={"bos": 3, "eos": 3, "max_src": 20})
    (m, v, max_src), note = load_backward_model(good)
    assert note == "" and max_src == 20 and len(v) == len(seq2seq_chat.vocab)


def test_backward_term_is_the_message_log_prob_given_each_reply(engine, seq2seq_chat):
    from rnnchat.models.scoring import seq2seq_reply_logprobs
    from rnnchat.text import source_ids
    v, bv = engine.vocab, seq2seq_chat.vocab
    a, b = cand(v, "i love the dog"), cand(v, "what is that")
    ranker = Ranker(engine.decoder, v, seq2seq_chat.model, bv, 20,
                    weights=RankWeights(responder=0, pmi=0, pmi_mean=0, backward=1))
    ranked = ranker.rank([a, b], "do you like dogs", [])
    message = turn_ids(["do you like dogs"], bv)
    want = seq2seq_reply_logprobs(seq2seq_chat.model, bv, [source_ids(turn_ids([t], bv), bv, 20)
                                                           for t in (a.text, b.text)], [message] * 2)
    want = want / (len(message) + 1)
    assert [a.terms["backward"], b.terms["backward"]] == pytest.approx(list(want))
    assert ranked[0] is (a if want[0] > want[1] else b)


def test_the_judge_decides_in_lm_chat_and_is_left_out_without_the_lm_memory(engine, seq2seq_chat):
    from rnnchat.models.reply_judge import N_TERMS, ReplyJudge, feature_size, reply_features
    v, d = engine.vocab, feature_size(engine.decoder.hidden)
    weights = np.zeros((2, d))
    weights[0, N_TERMS - 1] = 5.0  # P(sensible) grows with the reply's length: longer wins
    mean = np.zeros(d)
    mean[N_TERMS - 1] = np.log(5)  # replies of fewer than 5 tokens (with <eot>) are judged unlikely sensible
    judge = ReplyJudge(mean, np.ones(d), weights, np.zeros(2), engine.weights_id, "bw", {})
    ranker = Ranker(engine.decoder, v, seq2seq_chat.model, seq2seq_chat.vocab, 20, judge=judge)
    conv = engine.conversation()
    conv.feed("do you like dogs", end_turn=True)
    short, long = cand(v, "what", logprob=-1.0), cand(v, "i love the dog and the cat", logprob=-30.0)
    ranked = ranker.rank([short, long], "do you like dogs", [], conv)
    assert ranked[0] is long and long.terms["judge"] > short.terms["judge"] + 0.5 > 0.5
    back = ranker.backward_scores([short.text, long.text], "do you like dogs")
    feats, fresh = reply_features(engine.decoder, v, conv.logits, conv.state,
                                  [turn_ids([t], v) for t in (short.text, long.text)], back)
    want = judge.predict(feats).sum(axis=1)
    assert list(fresh) == pytest.approx(list(ranker.fresh_logprobs([short.text, long.text])), abs=1e-3)
    assert short.terms["pmi"] == pytest.approx(short.logprob - fresh[0])
    assert [short.terms["judge"], long.terms["judge"]] == pytest.approx(list(want))
    ranked = ranker.rank([short, long], "do you like dogs", [])  # seq2seq chat: no LM memory, no judge term
    assert ranked[0] is short and short.terms["judge"] == long.terms["judge"] == 0.0


def random_judge(engine, seed=0):
    """A judge that reads every feature (random weights), for the test LM."""
    from rnnchat.models.reply_judge import ReplyJudge, feature_size
    rng = np.random.default_rng(seed)
    d = feature_size(engine.decoder.hidden)
    return ReplyJudge(rng.normal(size=d), rng.uniform(0.5, 2, size=d), rng.normal(size=(2, d)) / np.sqrt(d),
                      np.zeros(2), engine.weights_id, "bw", {})


@pytest.mark.parametrize("cache", [False, True])
def test_the_judge_reads_each_sampled_candidate_from_the_conversation_it_answers(engine, seq2seq_chat, cache):
    """... from the LM alone: with the cache on, the candidates are drawn from the mixture, but the judge reads
    the LM's own log-probabilities and states (what it was trained on), kept while they were drawn."""
    from rnnchat.engine.conversation import Conversation
    from rnnchat.models.lm_cache import CacheSettings
    from rnnchat.models.reply_judge import reply_features
    v = engine.vocab
    judge = random_judge(engine)
    ranker = Ranker(engine.decoder, v, seq2seq_chat.model, seq2seq_chat.vocab, 20, judge=judge)
    conv = Conversation(engine.decoder, v, engine.model_id, CacheSettings(lam=0.5) if cache else None)
    conv.feed("hello there , how are you ?", end_turn=True)
    cands = lm_candidates(conv, S.with_(cache=cache, seed=0, max_tokens=12), 24)
    mixed = [c.logprob != pytest.approx(c.lm_logprob) for c in cands]
    assert any(mixed) if cache else not any(mixed)
    # with the cache some candidates end on <eom> <eot> (this random LM's own turns end on a bare <eot>): their
    # kept states and LM log-probabilities are what the judge reads, and must give the teacher-forced terms
    reused = [c for c in cands if c.finished and c.ids == ranker.lm_ids([c.text])[0]]
    assert (len(reused) > 0) == cache and all(c.states is not None for c in reused)
    ranked = ranker.rank(cands, "hello there , how are you ?", [], conv)
    texts = [c.text for c in cands]
    feats, _ = reply_features(engine.decoder, v, conv.logits, conv.state, [turn_ids(_messages(t), v) for t in texts],
                              ranker.backward_scores(texts, "hello there , how are you ?"))  # all teacher-forced
    want = judge.predict(feats).sum(axis=1)
    done = [i for i, c in enumerate(cands) if c.finished]
    assert 0 < len(done) < len(cands)
    assert [cands[i].terms["judge"] for i in done] == pytest.approx(list(want[done]), rel=1e-3, abs=1e-4)
    assert len({round(cands[i].terms["judge"], 6) for i in done}) > 1
    # the cut ones lose anyway: not judged, no anti-LM term (the longest rows, not run again)
    assert all(c.terms["judge"] == 0 == c.terms["pmi"] for c in cands if not c.finished)
    other = engine.conversation()
    other.feed("i hate the cat", end_turn=True)
    feats_other, _ = reply_features(engine.decoder, v, other.logits, other.state, [turn_ids(_messages(t), v) for t in texts],
                                    ranker.backward_scores(texts, "hello there , how are you ?"))
    assert not np.allclose(judge.predict(feats_other).sum(axis=1), want, rtol=1e-3)  # the conversation matters
    finished = [c for c in ranked if c.finished]
    assert all(c.finished for c in ranked[:len(finished)])  # a cut candidate loses to every finished one


def test_the_judge_reads_a_candidate_s_kept_states_and_lm_log_probability(engine, seq2seq_chat):
    from rnnchat.models.reply_judge import reply_features
    v = engine.vocab
    judge = random_judge(engine, seed=2)
    ranker = Ranker(engine.decoder, v, seq2seq_chat.model, seq2seq_chat.vocab, 20, judge=judge)
    conv = engine.conversation()
    conv.feed("do you like dogs", end_turn=True)
    ids = turn_ids(["i love the dog"], v)
    judge.mean = reply_features(engine.decoder, v, conv.logits, conv.state, [ids],
                                ranker.backward_scores(["I love the dog"], "do you like dogs"))[0][0]  # P near 1/2
    judge.weights = judge.weights * 30  # and steep: a change in any feature moves it
    logits, state, lp, tops = conv.logits, conv.state, 0.0, []
    for tid in [*ids, v.eot_id]:  # what decoding keeps for this reply, one token at a time
        z = logits[0].astype(np.float64)
        lp += z[tid] - z.max() - np.log(np.exp(z - z.max()).sum())
        logits, state = engine.decoder.step(np.array([tid]), state)
        tops.append(state[-1][0][0])

    def judged(states, lm_logprob):
        c = cand(v, "i love the dog", logprob=lp)
        c.ids, c.states, c.lm_logprob = ids, states, lm_logprob
        return ranker.rank([c], "do you like dogs", [], conv)[0].terms["judge"]

    plain = judged(None, None)  # teacher-forced
    assert judged(np.stack(tops), lp) == pytest.approx(plain, rel=1e-4)
    assert judged(np.stack(tops) * 0.5, lp) != pytest.approx(plain, rel=1e-3)  # the kept states are what it reads
    assert judged(np.stack(tops), lp - 3.0) != pytest.approx(plain, rel=1e-3)  # and the kept log-probability


def test_when_every_candidate_is_cut_the_judge_ranks_them_all(engine, seq2seq_chat):
    v = engine.vocab
    ranker = Ranker(engine.decoder, v, seq2seq_chat.model, seq2seq_chat.vocab, 20, judge=random_judge(engine))
    conv = engine.conversation()
    conv.feed("do you like dogs", end_turn=True)
    cut = [cand(v, t, finished=False) for t in ("i love the dog", "what is that", "the cat")]
    ranker.rank(cut, "do you like dogs", [], conv)
    assert all(c.terms["judge"] > 0 and c.terms["pmi"] != 0 for c in cut)


def test_ranking_no_candidates_is_no_candidates(engine):
    conv = engine.conversation()
    conv.feed("hi", end_turn=True)
    assert Ranker(engine.decoder, engine.vocab, judge=random_judge(engine)).rank([], "hi", [], conv) == []


@pytest.mark.parametrize("backward_weight", [0.0, 20.0])
def test_with_the_judge_the_backward_term_is_skipped_for_cut_candidates_only_when_it_weighs_nothing(
        engine, seq2seq_chat, backward_weight):
    """Scoring the backward model for the judged (finished) candidates only saved time; with a backward weight
    of its own, a cut candidate's term of 0 (the best there is) outranked a finished reply (review finding)."""
    import dataclasses
    v = engine.vocab
    ranker = Ranker(engine.decoder, v, seq2seq_chat.model, seq2seq_chat.vocab, 20, judge=random_judge(engine))
    ranker = dataclasses.replace(ranker, weights=RankWeights(backward=backward_weight))
    conv = engine.conversation()
    conv.feed("do you like dogs", end_turn=True)
    done, cut = cand(v, "i love the dog"), cand(v, "what is that", finished=False)
    ranked = ranker.rank([done, cut], "do you like dogs", [], conv)
    truth = ranker.backward_scores([done.text, cut.text], "do you like dogs")
    assert done.terms["backward"] == pytest.approx(truth[0])
    assert cut.terms["backward"] == (pytest.approx(truth[1]) if backward_weight else 0.0)
    assert ranked[0] is done
