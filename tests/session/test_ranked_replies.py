"""Ranked replies in a session (issue 14): N = 1 is the plain stream, N > 1 shows the best candidate at once, and
regenerate replaces the reply with the memory holding exactly the one shown."""

import numpy as np
import pytest

from rnnchat.session.store import SessionError
from rnnchat.session.transcript import Mode, to_json


def reply(session, text):
    return list(session.respond(text))


def test_one_candidate_is_the_plain_stream(make_session):
    a, b = make_session(), make_session()
    a.set_mode(Mode.LM)
    b.set_mode(Mode.LM)
    b.set_candidates(1)
    assert [t.id for t in reply(a, "hello there")] == [t.id for t in reply(b, "hello there")]
    assert a.last_reply is not None and a.last_reply.ranked == []  # a fresh draw is what regenerate makes


@pytest.mark.parametrize("mode", [Mode.LM, Mode.CHAT])
def test_the_shown_reply_is_the_best_ranked_candidate_and_the_memory_holds_it(make_session, engine, mode):
    s = make_session(seq2seq=True)
    s.set_mode(mode)
    s.set_candidates(6)
    toks = reply(s, "i love the dog")
    ranked = s.last_reply.ranked
    assert len(ranked) == 6 and [c.score for c in ranked] == sorted((c.score for c in ranked), reverse=True)
    assert [t.id for t in toks] == [t.id for t in ranked[0].tokens] and s.last_tokens == toks
    assert to_json(s.transcript)[-1]["text"] == "".join(t.text for t in toks)
    if mode is Mode.LM:
        fed = engine.conversation()
        fed.feed_ids(s.conv.history)  # the same tokens fed one way from the start: the same memory
        np.testing.assert_allclose(s.conv.logits, fed.logits, rtol=1e-4, atol=1e-5)
    else:
        assert s.chat_state.transcript[-1] == {"user": "i love the dog", "reply": ranked[0].text}


@pytest.mark.parametrize("mode", [Mode.LM, Mode.CHAT])
def test_regenerate_shows_the_next_candidate_then_fresh_draws_and_forgets_the_replaced(make_session, mode):
    s = make_session(seq2seq=True)
    s.set_mode(mode)
    s.set_candidates(3)
    reply(s, "hello")
    reply(s, "i like the movie")
    before = s.last_reply
    history = list(before.conv.history)  # (LM) the memory after the user's turn
    chat_before = before.chat_state.copy()
    seen = [[t.id for t in s.last_tokens]]
    for k in range(1, 3):
        toks = list(s.regenerate())
        assert [t.id for t in toks] == [t.id for t in before.ranked[k].tokens]
        seen.append([t.id for t in toks])
        assert [t.role for t in s.transcript] == ["user", "assistant"] * 2  # replaced, not added
        assert s.transcript[-1].text == "".join(t.text for t in toks)
        if mode is Mode.LM:
            assert s.conv.history == history + [t.id for t in toks]
        else:
            assert s.chat_state.transcript[:-1] == chat_before.transcript
            assert s.chat_state.transcript[-1]["reply"] == before.ranked[k].text
    fresh = list(s.regenerate())  # every candidate was shown: a fresh ranked draw
    assert s.last_reply is not before and s.last_reply.draws == 1 and len(s.last_reply.ranked) == 3
    assert [t.id for t in fresh] == [t.id for t in s.last_reply.ranked[0].tokens]


def test_regenerate_needs_a_reply_and_reset_forgets_it(make_session):
    s = make_session()
    s.set_mode(Mode.LM)
    with pytest.raises(SessionError, match="nothing to regenerate"):
        list(s.regenerate())
    reply(s, "hello")
    s.reset()
    with pytest.raises(SessionError, match="nothing to regenerate"):
        list(s.regenerate())


def test_candidates_setting_and_command(make_session):
    s = make_session()
    assert "candidates 1" in s.command("/candidates")
    assert "candidates 16" in s.command("/candidates 16") and s.candidates == 16
    from rnnchat.sampling import SettingsError
    for bad in ("0", "65", "x"):
        with pytest.raises(SettingsError):
            s.command(f"/candidates {bad}")



def test_a_session_ranks_lm_chat_with_the_judge_on_its_own_memory(engine, data_dir):
    from rnnchat.engine.ranking import Ranker, _messages
    from rnnchat.models.reply_judge import ReplyJudge, feature_size, reply_features
    from rnnchat.session.session import ChatSession
    from rnnchat.text import turn_ids
    rng = np.random.default_rng(1)
    d = feature_size(engine.decoder.hidden)
    judge = ReplyJudge(rng.normal(size=d), np.ones(d), rng.normal(size=(2, d)) / np.sqrt(d), np.zeros(2),
                       engine.weights_id, "bw", {})
    from rnnchat.models.seq2seq import Seq2Seq, Seq2SeqConfig
    v = engine.vocab
    backward = Seq2Seq(Seq2SeqConfig(src_vocab=len(v), tgt_vocab=len(v), embed=8, hidden=8, proj=8, tie=True), seed=1)
    backward.train(False)
    ranker = Ranker(engine.decoder, v, backward, v, 20, judge=judge)
    from rnnchat.sampling import SamplingSettings
    s = ChatSession(engine, ranker=ranker, candidates=6, directory=data_dir, settings=SamplingSettings(seed=3))
    s.set_mode(Mode.LM)
    s.prime("hello there", "how are you ?")
    reply(s, "i love the dog")
    r = s.last_reply
    texts = [c.text for c in r.ranked]
    feats, _ = reply_features(engine.decoder, v, r.conv.logits, r.conv.state, [turn_ids(_messages(t), v) for t in texts],
                              ranker.backward_scores(texts, "i love the dog"))
    want = judge.predict(feats).sum(axis=1)
    done = [i for i, c in enumerate(r.ranked) if c.finished]  # (while any finished, cut ones are not judged)
    assert done and [r.ranked[i].terms["judge"] for i in done] == pytest.approx(list(want[done]), rel=1e-3, abs=1e-4)
    assert all(r.ranked[i].terms["judge"] > 0 for i in done)


@pytest.mark.parametrize("candidates", [1, 4])
def test_a_stop_while_a_long_message_is_read_ends_the_turn_with_no_reply(make_session, monkeypatch, candidates):
    """Esc (or Ctrl+C in the REPL) while a huge paste was read did nothing until all of it was fed (~20 s for
    100k words); now the reading stops, no candidates are made, and the next message starts a turn as usual."""
    import threading

    import rnnchat.engine.conversation as conversation
    monkeypatch.setattr(conversation, "FEED_CHUNK", 16)
    looks = iter(range(10**6))

    class EscAfterAWhile(threading.Event):
        def is_set(self) -> bool:
            return next(looks) >= 3

    s = make_session()
    s.set_candidates(candidates)
    text = "hello there , i think the cat is good . " * 40
    assert list(s.respond(text, cancel=EscAfterAWhile())) == []
    assert [(t.role, t.text, t.stopped) for t in s.transcript] == [("user", text, False), ("assistant", "", True)]
    vocab = s.engine.vocab
    assert s.conv.history[-2:] == [vocab.eom_id, vocab.eot_id] and len(s.conv.history) < 100
    with pytest.raises(SessionError, match="nothing to regenerate"):  # (1 candidate drew again from the part read)
        list(s.regenerate())
    assert len(list(s.respond("and then"))) > 0 and s.transcript[-1].text


@pytest.mark.parametrize("candidates", [1, 4])
def test_regenerate_keeps_the_cache_as_the_setting_says_now(make_session, engine, monkeypatch, candidates):
    """/cache on, then /retry: the memory a retry keeps was copied before the cache was on, so the cache went
    off while the settings still said on (and /cache off then /retry brought the old cache back; adversarial)."""
    from rnnchat.models.lm_cache import CacheSettings
    monkeypatch.setattr(engine, "cache_settings", CacheSettings(lam=0.5))
    s = make_session()
    s.set_candidates(candidates)
    list(s.respond("hello there"))
    s.command("/cache on")
    assert s.conv.cache is not None
    list(s.regenerate())
    assert s.settings.cache and s.conv.cache is not None
    s.command("/cache off")
    list(s.regenerate())
    assert not s.settings.cache and s.conv.cache is None


def test_last_is_not_a_name_to_save_under(make_session):
    """/save last wrote the autosave file, which the next reply replaced: a save that saved nothing lasting."""
    from rnnchat.session.store import SessionError
    s = make_session()
    list(s.respond("hello there"))
    for command in ("/save last", "/save -f last"):
        with pytest.raises(SessionError, match="'last' is the autosaved conversation"):
            s.command(command)
    assert "last" not in s.saved_names()


@pytest.mark.parametrize("mode", [Mode.LM, Mode.CHAT])
def test_a_stop_while_candidates_are_made_leaves_the_best_for_regenerate(make_session, monkeypatch, mode):
    """Esc while the candidates were made showed nothing, and Ctrl+G then showed the second best: the best
    one was never seen (adversarial finding)."""
    import threading
    from rnnchat.session import replies
    s = make_session(seq2seq=True)
    s.set_mode(mode)
    s.set_candidates(3)
    stop, real = threading.Event(), replies.make

    def make(*args, **kwargs):  # the stop comes while they are made
        made = real(*args, **kwargs)
        stop.set()
        return made
    monkeypatch.setattr(replies, "make", make)
    assert list(s.respond("i like the movie", cancel=stop)) == []
    best = s.last_reply.ranked[0]
    toks = list(s.regenerate())
    assert [t.id for t in toks] == [t.id for t in best.tokens] and s.transcript[-1].text == best.text
    assert [t.id for t in s.regenerate()] == [t.id for t in s.last_reply.ranked[1].tokens]
    # a regenerate stopped before it plays leaves its candidate to the next one (review finding: it was skipped)
    assert list(s.regenerate(cancel=stop)) == []
    assert [t.id for t in s.regenerate()] == [t.id for t in s.last_reply.ranked[2].tokens]


def stopped_on_the_third_step(monkeypatch, owner, name: str):
    """(stop event, step calls): `owner.name`, a decoding step, sets the stop during its third call."""
    import threading
    stop, steps, real = threading.Event(), [], getattr(owner, name)

    def step(*args, **kwargs):
        steps.append(1)
        if len(steps) == 3:
            stop.set()
        return real(*args, **kwargs)
    monkeypatch.setattr(owner, name, step)
    return stop, steps


def test_a_stop_while_lm_candidates_are_drawn_ends_them_after_the_step_in_progress(make_session, monkeypatch):
    """Esc took effect only once all N candidates were made and ranked (~0.4 s at 64; adversarial finding)."""
    from rnnchat.engine import rows
    s = make_session(max_tokens=40)
    s.set_candidates(8)
    stop, steps = stopped_on_the_third_step(monkeypatch, rows, "step_guided")
    assert list(s.respond("i like the movie", cancel=stop)) == []
    assert len(steps) == 3 and s.last_reply.ranked == []  # no more steps, nothing ranked
    history = list(s.conv.history)
    stop, steps = stopped_on_the_third_step(monkeypatch, rows, "step_guided")
    assert list(s.regenerate(cancel=stop)) == [] and len(steps) == 3  # a regenerate's fresh draw stops too
    fresh = list(s.regenerate())  # a fresh draw (nothing of the stopped ones is kept)
    assert fresh and s.conv.history == history + [t.id for t in fresh]


def test_a_stop_while_seq2seq_candidates_are_drawn_ends_them_after_the_step_in_progress(make_session, monkeypatch):
    """Seq2seq chat's candidates were all made and ranked before Esc took effect (~0.2 s at 64)."""
    s = make_session(seq2seq=True, max_tokens=40)
    s.set_mode(Mode.CHAT)
    s.set_candidates(8)
    stop, steps = stopped_on_the_third_step(monkeypatch, s.seq2seq.decoder, "step")
    assert list(s.respond("i like the movie", cancel=stop)) == []
    assert len(steps) == 3 and s.last_reply.ranked == []  # no more steps, nothing ranked
    before = list(s.chat_state.transcript)
    stop, steps = stopped_on_the_third_step(monkeypatch, s.seq2seq.decoder, "step")
    assert list(s.regenerate(cancel=stop)) == [] and len(steps) == 3  # a regenerate's fresh draw stops too
    fresh = list(s.regenerate())  # a fresh draw (nothing of the stopped ones is kept)
    shown = "".join(t.text for t in fresh).strip("\n")
    assert fresh and s.chat_state.transcript == before + [{"user": "i like the movie", "reply": shown}]
