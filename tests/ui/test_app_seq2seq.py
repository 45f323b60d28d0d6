"""The Textual app with the seq2seq chat model (a small random-weight one): switching to chat mode, streamed
replies, stopping, the attention view, the beam setting, and its memory through reset, save and load."""

import threading
from contextlib import closing

import numpy as np
import pytest
from rich.console import Console
from textual.widgets import Input, RadioButton, Static

from rnnchat.engine.seq2seq_chat import ChatState
from rnnchat.session.transcript import Mode, to_json
from rnnchat.data.batches import make_exchange
from rnnchat.ui.tui.app import ChatApp, ReplyTokens
from rnnchat.ui.render import attention_grid
from rnnchat.ui.tui.screens import AttentionScreen, LoadScreen, TokensScreen, heat_map
from rnnchat.ui.tui.widgets import Bubble, StreamText
from tests.ui.test_app import SIZE, send, wait_until

pytestmark = pytest.mark.asyncio


def grid_text(tokens) -> list[str]:
    console = Console(width=400, color_system=None)
    with console.capture() as capture:
        console.print(heat_map(attention_grid(tokens)))
    return capture.get().splitlines()


def memory_after(chat, state0, text, ids):
    """The memory the chat model should hold after replying `ids` to `text` (teacher forced)."""
    v = chat.vocab
    ex = make_exchange([chat.source(text)], [ids], v.eot_id, v.eot_id)
    return chat.model._features(ex, state0 if state0 is not None else chat.model.zero_state(1))[1]


async def test_switching_to_chat_mode(make_session):
    s = make_session(seq2seq=True)
    s.set_mode("lm")
    app = ChatApp(s, cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        assert not app.query_one("#mode-chat", RadioButton).disabled and not app.query(".unavailable")
        await pilot.click("#mode-chat")
        assert s.mode is Mode.CHAT and app.sub_title == "seq2seq chat"
        await pilot.press("f2", "f2")
        assert s.mode is Mode.CONTINUE
        await pilot.press("f2")
        assert s.mode is Mode.CHAT and app.query_one("#mode-chat", RadioButton).value
        await pilot.click("#prompt")
        await pilot.press(*"/mode lm", "enter")
        assert s.mode is Mode.LM
        await pilot.press(*"/mode chat", "enter")
        assert s.mode is Mode.CHAT and app.query_one("#mode-chat", RadioButton).value
        assert "Mode: seq2seq chat" in {c.title for c in app.get_system_commands(app.screen)}


async def test_a_seq2seq_reply_streams_into_its_bubble(make_session):
    s = make_session(seq2seq=True)
    batches = []
    app = ChatApp(s, cursor_blink=False)
    async with app.run_test(size=SIZE, message_hook=lambda m: batches.append(m) if isinstance(m, ReplyTokens)
                            else None) as pilot:
        assert s.mode is Mode.CHAT and app.sub_title == "seq2seq chat"
        await send(pilot, "i love the dog")
        user, rep = app.query(Bubble)
        assert (user.who, rep.who) == ("you", "seq2seq") and user.mood.label == "positive"
        shown = rep.query_one(StreamText).text
        assert shown and shown == to_json(s.transcript)[-1]["text"] == "".join(t.text for t in s.last_tokens)
        assert batches and sum(len(b.tokens) for b in batches) == len(s.last_tokens)
        assert all(t.attention is not None for b in batches for t in b.tokens)
        assert s.chat_state.transcript == [{"user": "i love the dog", "reply": shown.strip("\n")}]
        assert s.conv.history == []


async def test_escape_stops_a_seq2seq_reply_and_its_memory_holds_the_tokens_shown(make_session, monkeypatch):
    s = make_session(seq2seq=True, max_tokens=40, skip=("#3",))  # no <eot>: the reply would run to 40 tokens
    reached, gate, real = threading.Event(), threading.Event(), s.seq2seq.reply

    def stream(*args, **kwargs):
        with closing(real(*args, **kwargs)) as tokens:
            for i, tok in enumerate(tokens, 1):
                yield tok
                if i == 3:
                    reached.set()
                    gate.wait(30)
    monkeypatch.setattr(s.seq2seq, "reply", stream)  # the model is shared by the tests: patched for this one
    app = ChatApp(s, cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(*"hello there", "enter")
        await wait_until(pilot, lambda: reached.is_set() and app._streamed > 0)
        await pilot.press("escape")
        gate.set()
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert s.last_stats.stopped and len(s.last_tokens) == 3
        assert app.query(StreamText).last().text == "".join(t.text for t in s.last_tokens)
        h, c = memory_after(s.seq2seq, None, "hello there", [t.id for t in s.last_tokens])
        np.testing.assert_allclose(s.chat_state.h, h, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(s.chat_state.c, c, rtol=1e-4, atol=1e-6)


async def test_attention_view_shows_the_users_words_and_the_reply_tokens(make_session):
    s = make_session(seq2seq=True)
    app = ChatApp(s, cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f4")
        assert isinstance(app.screen, AttentionScreen)
        assert "no seq2seq reply yet" in str(app.screen.query_one("#no-attention", Static).render())
        await pilot.press("escape")
        await send(pilot, "i love the dog")
        await pilot.press("f4")
        assert isinstance(app.screen, AttentionScreen) and app.screen.query_one("#attention-grid")
        tokens = s.last_tokens
        header, *rows = grid_text(tokens)
        assert header.split() == ["i", "love", "the", "dog", "<eom>", "<eot>"]
        assert len(rows) == len(tokens)
        for row, tok in zip(rows, tokens):
            label, *cells = row.split()
            assert label == tok.token and [int(c) for c in cells] == [round(100 * w) for w in tok.attention]
        await pilot.press("f4")  # F4 closes it again
        assert not isinstance(app.screen, AttentionScreen)
        await pilot.press("f3")  # the probability view works for seq2seq replies too
        assert isinstance(app.screen, TokensScreen)
        assert str(app.screen.query_one("#token-view", Static).render()) == "".join(t.text for t in tokens)
        await pilot.press("escape")
        await pilot.press(*"/mode lm", "enter")
        await send(pilot, "hello")
        await pilot.press("f4")  # an LM reply has no attention
        assert "no seq2seq reply yet" in str(app.screen.query_one("#no-attention", Static).render())
        assert "Attention weights" in {c.title for c in app.get_system_commands(app.screen)}


async def test_beam_setting_in_the_panel(make_session):
    s = make_session(seq2seq=True)
    app = ChatApp(s, cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        beam = app.query_one("#set-beam", Input)
        assert beam.value == "0" and not beam.disabled
        beam.value = "x"
        await pilot.pause()
        assert beam.has_class("-invalid")
        beam.value = "3"
        await pilot.pause()
        assert s.beam == 3 and not beam.has_class("-invalid")
        await send(pilot, "hello there")
        want = [t.id for t in s.seq2seq.reply(ChatState(), "hello there", s.settings, beam=3)]
        assert want and [t.id for t in s.last_tokens] == want
    plain = make_session()
    app = ChatApp(plain, cursor_blink=False)
    async with app.run_test(size=SIZE):
        assert app.query_one("#set-beam", Input).disabled


async def test_reset_save_and_load_carry_the_seq2seq_memory(make_session, data_dir):
    s = make_session(seq2seq=True)
    app = ChatApp(s, cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "hello there")
        saved, transcript = s.chat_state.copy(), list(to_json(s.transcript))
        await pilot.press("ctrl+s")
        app.screen.query_one(Input).value = "memory"
        await pilot.press("enter")
        await pilot.pause()
        await send(pilot, "what do you think?")
        assert not np.array_equal(s.chat_state.h, saved.h)
        await pilot.press("ctrl+o")
        assert isinstance(app.screen, LoadScreen)
        await pilot.press("enter")
        await pilot.pause()
        np.testing.assert_array_equal(s.chat_state.h, saved.h)
        np.testing.assert_array_equal(s.chat_state.c, saved.c)
        assert s.chat_state.transcript == saved.transcript and to_json(s.transcript) == transcript
        assert [b.who for b in app.query(Bubble)] == ["you", "seq2seq"]
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert s.chat_state.h is None and not app.query(Bubble)
