"""The UI-independent chat session: modes, replies, memory across turns, stopping, settings, commands, files."""

import threading
from contextlib import closing

import numpy as np
import pytest

from rnnchat.engine.engine import load_live_sentiment as load_sentiment
from rnnchat.engine.tokens import Token
from rnnchat.models.sentiment_result import Sentiment as Mood
from rnnchat import paths
from rnnchat.paths import data_dir
from rnnchat.session.opening import _start_fresh, open_session
from rnnchat.session.session import ChatSession
from rnnchat.session.store import LAST, SessionError
from rnnchat.session.transcript import Mode, to_json
from rnnchat.sampling import SamplingSettings, SettingsError
from rnnchat.text import detokenize, tokenize


def reply(session, text, **kw):
    return list(session.respond(text, **kw))


def test_lm_chat_feeds_a_turn_and_the_memory_carries_across_turns(make_session, engine):
    s = make_session()
    v = engine.vocab
    first = reply(s, "hello there", mood=Mood("positive", 0.5))
    second = reply(s, "i like the cat")
    h = s.conv.history
    n1 = len(v.encode("hello there")) + 2
    assert h[:n1] == v.encode("hello there") + [v.eom_id, v.eot_id]
    assert h[n1:n1 + len(first)] == [t.id for t in first]
    assert h[-len(second):] == [t.id for t in second]
    # the state is the state after exactly this history: the same as feeding it to a fresh conversation
    fresh = engine.conversation()
    fresh.feed_ids(h)
    for (a, b), (c, d) in zip(s.conv.state, fresh.state):
        np.testing.assert_allclose(a, c, atol=1e-5)
        np.testing.assert_allclose(b, d, atol=1e-5)
    roles = [(m["role"], m["text"]) for m in to_json(s.transcript)]
    assert roles == [("user", "hello there"), ("assistant", "".join(t.text for t in first)),
                     ("user", "i like the cat"), ("assistant", "".join(t.text for t in second))]
    assert to_json(s.transcript)[0]["sentiment"] == {"label": "positive", "score": 0.5}
    assert s.moods() == [0.5]
    assert s.last_stats.tokens == len(second) and s.last_stats.tokens_per_s == len(second) / 0.25


def test_stopping_keeps_exactly_the_tokens_yielded_and_closes_the_turn_next_time(make_session, engine):
    s = make_session(max_tokens=40, skip=("#3",))  # no <eot>: the reply would run to 40 tokens
    v, cancel = engine.vocab, threading.Event()
    shown = []
    with closing(s.respond("hi", cancel)) as it:
        for tok in it:
            shown.append(tok)
            if len(shown) == 5:
                cancel.set()
    assert len(shown) == 5 and s.last_stats.stopped
    assert s.conv.history == v.encode("hi") + [v.eom_id, v.eot_id] + [t.id for t in shown]
    assert to_json(s.transcript)[-1]["stopped"] is True
    n = len(s.conv.history)
    reply(s, "yes")
    closing_ids = s.conv.history[n:n + 2]
    assert closing_ids in ([v.eom_id, v.eot_id], [v.eot_id])


def test_seeded_conversations_are_reproducible(make_session):
    a, b = make_session(), make_session()
    for text in ("hello", "i like the cat"):
        assert [t.id for t in reply(a, text)] == [t.id for t in reply(b, text)]


def test_continue_mode_extends_the_text_with_natural_spacing(make_session, engine):
    s = make_session(skip=("#2", "#3"), max_tokens=8)  # no <eom>/<eot>: plain words
    s.set_mode("continue")
    toks = reply(s, "I like the")
    v = engine.vocab
    assert s.conv.history == v.encode("I like the") + [t.id for t in toks]
    shown = "I like the" + "".join(t.text for t in toks)
    assert shown == detokenize(tokenize("I like the") + [t.token for t in toks])
    assert to_json(s.transcript)[-1]["mode"] == "continue"


def test_seq2seq_mode_is_unavailable_without_its_model_and_used_when_given(make_session, engine):
    s = make_session()
    assert s.unavailable(Mode.CHAT) == "seq2seq model not available"
    with pytest.raises(SessionError, match="seq2seq model not available"):
        s.set_mode("chat")
    with pytest.raises(SessionError, match="unknown mode"):
        s.set_mode("poetry")

    class Echo:
        def reply(self, state, text, settings, cancel, beam=0):
            yield Token(5, "hi", "Hi", 1.0)

        def save_memory(self, state):
            return {}, {}

    s2 = ChatSession(engine, None, seq2seq=Echo())
    s2.set_mode(Mode.CHAT)
    assert [t.text for t in s2.respond("hello")] == ["Hi"]
    assert s2.conv.history == []  # the LM's memory is not involved


def test_settings_from_text_are_validated(make_session):
    s = make_session()
    s.set_setting("temperature", " 0.5 ")
    s.set_setting("top_k", "7")
    s.set_setting("skip", "cat, dog")
    assert (s.settings.temperature, s.settings.top_k, s.settings.skip) == (0.5, 7, ("cat", "dog"))
    for name, bad in (("temperature", "-1"), ("top_p", "0"), ("top_k", "x"), ("skip", "zebra"), ("max_tokens", "")):
        with pytest.raises(SettingsError):
            s.set_setting(name, bad)
    assert s.settings.temperature == 0.5  # a bad value changes nothing


def test_slash_commands(make_session, data_dir):
    s = make_session()
    assert "temperature 0.7" in s.command("/temp 0.7")
    assert "temperature 0.6" in s.command("/temp\t0.6") and s.command("/mode\tlm") == "mode: LM chat"  # a tab parts too
    assert s.command("/save -f\ttabbed").startswith("saved to") and "tabbed" in s.saved_names()
    s.store.delete("tabbed")
    s.command("/topk 12")
    s.command("/topp 0.9")
    assert "(every reply is empty)" in s.command("/max 0") and "empty" not in s.command("/max 5")
    s.command("/skip cat")
    s.command("/skip dog")
    assert (s.settings.top_k, s.settings.top_p, s.settings.max_tokens, s.settings.skip) == (12, 0.9, 5, ("cat", "dog"))
    s.command("/skip")
    assert s.settings.skip == ()
    assert s.command("/mode continue") == "mode: continue text" and s.mode is Mode.CONTINUE
    with pytest.raises(SessionError):
        s.command("/mode chat")
    with pytest.raises(SessionError, match="unknown command"):
        s.command("/frobnicate")
    reply(s, "hello")
    assert "saved to" in s.command("/save first")
    assert s.command("/load") == "saved conversations: first"
    s.command("/reset")
    assert s.conv.history == [] and to_json(s.transcript) == []
    s.command("/load first")
    assert [m["text"] for m in to_json(s.transcript)][0] == "hello"
    with pytest.raises(SessionError, match="bad conversation name"):
        s.command("/save ../evil")
    with pytest.raises(SessionError, match="no saved conversation"):
        s.command("/load nothing")


def test_autosave_restore_and_refusing_another_models_conversation(make_session, data_dir, tmp_path):
    s = make_session()
    reply(s, "hello")
    assert (data_dir / "last.npz").exists()
    t = make_session()
    assert t.restore() is None
    assert t.conv.history == s.conv.history and to_json(t.transcript) == to_json(s.transcript)
    s.save("mine")
    assert s.saved_names() == ["mine"]

    from rnnchat.engine.engine import Engine
    from rnnchat.models.lm import LanguageModel, LMConfig
    from rnnchat.text import SPECIALS, Vocab
    from rnnchat.models.lm import save_lm
    vocab = Vocab(list(SPECIALS) + ["a", "b"])
    other_path = tmp_path / "other.npz"
    save_lm(LanguageModel(LMConfig(vocab_size=len(vocab), hidden=8, layers=1, dropout=0.0)), vocab, other_path, {},
            float16=False)
    other = ChatSession(Engine(other_path))
    # the last conversation is sound: kept where /load lists it (it went to unreadable/, out of reach)
    note = other.restore()
    kept = next(n for n in other.saved_names() if n.startswith("other-model-"))
    assert f"kept as {kept!r}" in note and not other.path(LAST).exists()
    with pytest.raises(SessionError, match="different model"):
        other.load("mine")
    assert s.load(kept) is None and s.transcript  # with its own model it loads as it was


def test_open_session_errors_notes_and_fresh(small_lm_path, data_dir, tmp_path):
    with pytest.raises(SessionError, match="no language model at .*train one with `rnnchat train lm`"):
        open_session(tmp_path / "missing.npz", None, SamplingSettings())
    s, notes = open_session(small_lm_path, tmp_path / "no-sentiment.npz", SamplingSettings(max_tokens=3))
    assert s.sentiment is None and s.mood("good") is None
    assert notes[0] == f"sentiment: unavailable (no sentiment model at {tmp_path / 'no-sentiment.npz'})"
    assert notes[1:] == [f"reply ranking without the reply judge ({paths.reply_judge_checkpoint()} was trained for "
                         "another language model; `rnnchat train reply-judge` makes one for this one)"]
    reply(s, "hello")
    again, _ = open_session(small_lm_path, tmp_path / "x.npz", SamplingSettings())
    assert to_json(again.transcript) == to_json(s.transcript)
    fresh, fresh_notes = open_session(small_lm_path, tmp_path / "x.npz", SamplingSettings(), fresh=True)
    assert to_json(fresh.transcript) == [] and fresh.conv.history == []
    kept = fresh_notes[-1].rsplit("/load ", 1)[1].rstrip(")")  # --fresh keeps the last conversation, as /reset does
    fresh.load(kept)
    assert to_json(fresh.transcript) == to_json(s.transcript)
    with pytest.raises(SettingsError, match="cannot skip"):
        open_session(small_lm_path, None, SamplingSettings(skip=("zebra",)))


def test_fresh_that_cannot_keep_the_last_conversation_leaves_it_and_does_not_autosave(make_session, monkeypatch):
    s = make_session()
    reply(s, "hello")
    s.autosave()
    before = s.path("last").read_bytes()

    def full_disk(*_a, **_k):
        raise OSError(28, "no space left on device")
    monkeypatch.setattr(s, "save", full_disk)
    assert "not autosaved, so the last is left as it was" in _start_fresh(s)
    assert s.transcript == [] and s.conv.history == [] and s.autosave_off
    reply(s, "a new one")
    assert s.path("last").read_bytes() == before


def test_data_dir_override_and_missing_sentiment(monkeypatch, tmp_path):
    monkeypatch.setenv("RNNCHAT_DATA_DIR", str(tmp_path / "d"))
    assert data_dir() == tmp_path / "d"
    model, note = load_sentiment(tmp_path / "none.npz")
    assert model is None and "no sentiment model" in note


def test_mood_uses_the_incremental_classifier(make_session):
    s = make_session()
    assert s.mood("   ") is None
    assert s.mood("i love it") == Mood("positive", 0.5)
    assert s.sentiment.calls == ["i love it"]


def test_save_by_name_refuses_an_existing_name_unless_forced(make_session, data_dir):
    """Issue 20, item 14: `/save NAME` replaced an existing conversation silently."""
    s = make_session()
    reply(s, "hello there")
    assert "saved to" in s.command("/save keep")
    before = (data_dir / "conversations" / "keep.npz").read_bytes()
    reply(s, "and more")
    with pytest.raises(SessionError, match="exists"):
        s.command("/save keep")
    assert (data_dir / "conversations" / "keep.npz").read_bytes() == before
    assert "saved to" in s.command("/save -f keep")
    assert (data_dir / "conversations" / "keep.npz").read_bytes() != before


def test_stale_temporaries_are_cleaned_and_a_second_process_does_not_autosave(small_lm_path, data_dir):
    """Issue 20, item 14: a kill mid-save leaves `.last.npz.XXXX.tmp`; two processes on one data directory:
    the last writer won silently. Old temporaries go at start (fresh ones may be a save in progress); a second
    session on a locked directory says so once and never autosaves over the first one's conversation."""
    import os
    import subprocess
    import sys
    import time
    (data_dir / "conversations").mkdir(parents=True)
    old, fresh = data_dir / ".last.npz.abc123.tmp", data_dir / "conversations" / ".x.npz.def456.tmp"
    old.write_bytes(b"partial")
    fresh.write_bytes(b"partial")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, sys, time; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); "
        "print('locked', flush=True); time.sleep(60)"), str(data_dir / "lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        s, notes = open_session(small_lm_path, None, SamplingSettings(max_tokens=3), candidates=1, fresh=True)
        assert not old.exists() and fresh.exists()
        assert any("another rnnchat is using" in n for n in notes)
        reply(s, "hello")
        assert not (data_dir / "last.npz").exists() and s.last_stats.save_error is None
        s.save("by_name")  # saving by name still works
    finally:
        holder.kill()
        holder.wait()
    s2, notes2 = open_session(small_lm_path, None, SamplingSettings(max_tokens=3), candidates=1, fresh=True)
    assert not any("another rnnchat" in n for n in notes2)
    reply(s2, "hello")
    assert (data_dir / "last.npz").exists()


def test_reset_keeps_the_previous_conversation_and_loses_nothing_when_it_cannot(make_session, data_dir, monkeypatch):
    s = make_session()
    assert s.reset() is None  # nothing said yet: nothing to keep
    reply(s, "hello there")
    said, history = to_json(s.transcript), list(s.conv.history)
    message = s.command("/reset")
    [kept] = s.saved_names()
    assert f"/load {kept}" in message and s.transcript == [] and s.conv.history == []
    s.load(kept)
    assert to_json(s.transcript) == said and s.conv.history == history
    monkeypatch.setattr(s.store, "write", lambda *a, **k: (_ for _ in ()).throw(OSError(28, "No space left")))
    with pytest.raises(SessionError, match="nothing was reset"):
        s.command("/reset")
    assert to_json(s.transcript) == said and s.conv.history == history  # nothing was forgotten
    monkeypatch.setattr(s, "autosave", lambda: None)
    assert "memory reset" in s.command("/reset -f")  # asked for anyway: reset without keeping it
    assert s.transcript == [] and s.conv.history == []
