"""The Textual app driven by the Pilot: typing, sentiment, streaming, stopping, memory keys, modes, settings."""

import asyncio
import threading
from contextlib import closing

import pytest
from textual.widgets import Input, OptionList, RadioButton, Static

from rnnchat.session.transcript import to_json
from rnnchat.ui.tui.app import ChatApp, ReplyTokens
from rnnchat.ui.tui.screens import HelpScreen, LoadScreen, SaveScreen, TokensScreen
from rnnchat.ui.tui.widgets import Bubble, ChatLog, MessageInput, SentimentIndicator, StreamText

pytestmark = pytest.mark.asyncio
SIZE = (110, 32)


def gate_stream(session, after: int) -> tuple[threading.Event, threading.Event]:
    """Make the reply pause after `after` tokens (`reached` is set) until `gate` is set (the worker waits)."""
    reached, gate, real = threading.Event(), threading.Event(), session.conv.stream

    def stream(*args, **kwargs):
        with closing(real(*args, **kwargs)) as tokens:
            for i, tok in enumerate(tokens, 1):
                yield tok
                if i == after:
                    reached.set()
                    gate.wait(30)
    session.conv.stream = stream
    return reached, gate


async def wait_until(pilot, condition, steps: int = 500):
    for _ in range(steps):
        if condition():
            return
        await pilot.pause(0.01)
    raise AssertionError("condition not reached")


async def queue_behind_a_reply(pilot, reached: threading.Event, messages: tuple[str, ...]):
    """Send "hello", wait until its (gated) reply streams, then type and send `messages` behind it."""
    await pilot.press(*"hello", "enter")
    await wait_until(pilot, lambda: reached.is_set())
    for text in messages:
        await pilot.press(*text, "enter")


async def send(pilot, text: str):
    await pilot.click("#prompt")
    await pilot.press(*text, "enter")
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def test_typing_updates_the_indicator_on_every_keystroke(make_session):
    s = make_session()
    app = ChatApp(s, cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        indicator = app.query_one(SentimentIndicator)
        await pilot.press(*"i hate")
        assert indicator.mood.label == "negative" and indicator.has_class("-negative")
        assert s.sentiment.calls == ["i", "i ", "i h", "i ha", "i hat", "i hate"]
        await pilot.press(*" good great")
        assert indicator.mood.label == "positive" and indicator.has_class("-positive")
        assert "+0.50" in str(indicator.render())


async def test_send_streams_the_reply_and_keeps_a_badge(make_session):
    s = make_session()
    batches = []
    app = ChatApp(s, cursor_blink=False)
    async with app.run_test(size=SIZE, message_hook=lambda m: batches.append(m) if isinstance(m, ReplyTokens)
                            else None) as pilot:
        await send(pilot, "i love the dog")
        user, rep = app.query(Bubble)
        assert user.mood.label == "positive" and "positive +0.50" in str(user.query_one(".bubble-header").render())
        assert app.query_one("#prompt", MessageInput).value == ""
        shown = rep.query_one(StreamText).text
        assert shown and shown == to_json(s.transcript)[-1]["text"] == "".join(t.text for t in s.last_tokens)
        assert sum(len(b.tokens) for b in batches) == len(s.last_tokens) and batches
        speed = str(app.query_one("#speed", Static).render())
        assert speed == f"{len(s.last_tokens)} tokens, {len(s.last_tokens) / 0.25:.1f} tok/s"
        assert "mood: +0.50 over 1 message" in str(app.query_one("#mood-label", Static).render())
        # the reply is scored too: its badge, the transcript and the bot's mood line
        assert s.transcript[-1].sentiment == s.text_mood(shown) is not None
        mood = s.transcript[-1].sentiment
        assert f"{mood.label} {mood.score:+.2f}" in str(rep.query_one(".bubble-header").render())
        assert f"bot: {s.transcript[-1].sentiment.score:+.2f} over 1 reply" in str(
            app.query_one("#mood-bot-label", Static).render())


async def test_escape_stops_mid_reply_and_memory_holds_only_the_tokens_shown(make_session, engine):
    s = make_session(max_tokens=40, skip=("#3",))
    reached, gate = gate_stream(s, after=4)
    v = engine.vocab
    app = ChatApp(s, cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(*"hello", "enter")
        await wait_until(pilot, lambda: reached.is_set() and app._streamed > 0)
        assert app.generating
        await pilot.press(*"good")  # typing is not blocked while the reply is being generated
        assert app.query_one("#prompt", MessageInput).value == "good"
        assert app.query_one(SentimentIndicator).mood.label == "positive"
        await pilot.press("enter")  # a second message is queued behind the reply
        assert app.query_one("#prompt", MessageInput).value == "" and app._queued == ["good"]
        await pilot.press("escape")  # stops the reply; the queued message comes back into the box, unsent
        assert app.query_one("#prompt", MessageInput).value == "good" and not app._queued
        gate.set()
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert s.last_stats.stopped and len(s.last_tokens) == 4
        shown = app.query(StreamText).last().text
        assert shown == "".join(t.text for t in s.last_tokens)
        assert s.conv.history == v.encode("hello") + [v.eom_id, v.eot_id] + [t.id for t in s.last_tokens]
        assert "(stopped)" in str(app.query(Bubble).last().query_one(".bubble-header").render())
        assert not app.generating


async def test_messages_typed_while_a_reply_streams_are_sent_in_order_after_it(make_session):
    """Issue 20, item 10: of 15 quick messages two vanished or merged; now each is queued and answered."""
    s = make_session(max_tokens=6)
    reached, gate = gate_stream(s, after=1)
    app = ChatApp(s, cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        await queue_behind_a_reply(pilot, reached, ("one", "two", "three"))
        assert app._queued == ["one", "two", "three"] and app.query_one("#prompt", MessageInput).value == ""
        gate.set()
        await wait_until(pilot, lambda: not app.generating and not app._queued and
                         [t.text for t in s.transcript if t.role == "user"] == ["hello", "one", "two", "three"]
                         and len(s.transcript) == 8)
        assert [t.role for t in s.transcript] == ["user", "assistant"] * 4


async def test_quitting_mid_reply_stops_it_and_saves_what_was_shown(make_session, data_dir):
    s = make_session(max_tokens=40, skip=("#3",))
    reached, gate = gate_stream(s, after=2)
    app = ChatApp(s, cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(*"hello", "enter")
        await wait_until(pilot, reached.is_set)
        await pilot.press("ctrl+q")
        gate.set()
    for _ in range(1000):  # the generation thread outlives the app by at most one token
        if s.last_stats:
            break
        await asyncio.sleep(0.01)
    assert s.last_stats.stopped and s.last_stats.tokens == 2
    saved = make_session()
    saved.restore()
    assert saved.conv.history == s.conv.history


async def test_quitting_with_queued_messages_asks_first(make_session, data_dir):
    """Ctrl+Q dropped messages queued behind a streaming reply without a word."""
    s = make_session(max_tokens=40)
    reached, gate = gate_stream(s, after=1)
    app = ChatApp(s, cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(*"hello", "enter")
        await wait_until(pilot, reached.is_set)
        await pilot.press(*"queued one", "enter", "ctrl+q")
        await pilot.pause()
        assert app.is_running and app._queued == ["queued one"]
        assert any("not sent yet" in str(n.message) for n in app._notifications)
        app._queued.clear()  # (as if sent) then another is queued: the warning is due again
        await pilot.press(*"queued two", "enter", "ctrl+q")
        await pilot.pause()
        assert app.is_running and app._queued == ["queued two"]
        await pilot.press("ctrl+q")
        gate.set()
        await pilot.pause()
        assert not app.is_running


async def test_reset_save_and_load_keys(make_session, data_dir):
    s = make_session()
    app = ChatApp(s, cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "hello there")
        first = list(to_json(s.transcript))
        await pilot.press("ctrl+s")
        assert isinstance(app.screen, SaveScreen)
        field = app.screen.query_one(Input)
        field.value = "greeting"
        await pilot.press("enter")
        await pilot.pause()
        assert (data_dir / "conversations" / "greeting.npz").exists()
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert s.conv.history == [] and not app.query(Bubble)
        await pilot.press("ctrl+o")
        assert isinstance(app.screen, LoadScreen)
        await pilot.press("enter")  # the first (newest) entry
        await pilot.pause()
        assert to_json(s.transcript) == first and len(app.query(Bubble)) == 2
        assert app.query(StreamText).last().text == first[-1]["text"]


async def test_chat_follows_the_reply_unless_the_user_scrolled_up(make_session):
    s = make_session(max_tokens=60, skip=("#3",))
    app = ChatApp(s, cursor_blink=False)
    async with app.run_test(size=(110, 16)) as pilot:
        log = app.query_one("#chat")
        for text in ("hello", "i like cats"):
            await send(pilot, text)
        assert log.max_scroll_y > 0 and log.scroll_y == log.max_scroll_y
        log.scroll_home(animate=False)  # what scrolling up does: the anchor is released
        await pilot.pause()
        await send(pilot, "and dogs")
        assert log.scroll_y == 0 < log.max_scroll_y


async def test_last_conversation_is_restored_on_start(make_session):
    s = make_session()
    list(s.respond("i like dogs"))
    restored = make_session()
    assert restored.restore() is None
    app = ChatApp(restored, cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        bubbles = app.query(Bubble)
        assert [b.who for b in bubbles] == ["you", "rnnchat"]
        assert bubbles.last().query_one(StreamText).text == to_json(s.transcript)[-1]["text"]


async def test_modes_seq2seq_disabled_and_continue_appends_to_the_text(make_session):
    s = make_session(skip=("#2", "#3"), max_tokens=5)
    app = ChatApp(s, cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        assert app.query_one("#mode-chat", RadioButton).disabled
        assert "seq2seq model not available" in str(app.query_one(".unavailable", Static).render())
        await pilot.press("f2")
        assert s.mode.value == "continue" and app.query_one("#mode-continue", RadioButton).value
        await send(pilot, "I like the")
        bubble = app.query(Bubble).last()
        view = bubble.query_one(StreamText)
        assert bubble.who == "continue" and view._all == "I like the" + view.text and view.text.startswith(" ")
        await pilot.press("f2")
        assert s.mode.value == "lm"


async def test_settings_panel_and_slash_commands(make_session):
    s = make_session()
    app = ChatApp(s, cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        temp = app.query_one("#set-temperature", Input)
        await pilot.click("#set-temperature")
        temp.value = "0.3"
        await pilot.pause()
        assert s.settings.temperature == 0.3
        skip = app.query_one("#set-skip", Input)
        skip.value = "zebra"
        await pilot.pause()
        assert skip.has_class("-invalid") and "cannot skip" in str(app.query_one("#settings-error").render())
        skip.value = "cat"
        await pilot.pause()
        assert s.settings.skip == ("cat",) and not app.query_one("#settings-error").display
        await pilot.click("#prompt")
        await pilot.press(*"/topk 5", "enter")
        assert s.settings.top_k == 5 and app.query_one("#set-top_k", Input).value == "5"
        await pilot.press(*"/mode continue", "enter")
        assert app.query_one("#mode-continue", RadioButton).value


async def test_help_tokens_and_command_palette(make_session):
    s = make_session()
    app = ChatApp(s, cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        await send(pilot, "hello")
        await pilot.press("f3")
        assert isinstance(app.screen, TokensScreen)
        view = str(app.screen.query_one("#token-view", Static).render())
        assert view == "".join(t.text or f" {t.token}" for t in s.last_tokens)
        await pilot.press("escape")
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert {"Stop reply", "Reset memory", "Save conversation", "Load conversation", "Mode: LM chat",
                "Token probabilities", "Help"} <= titles
        assert "Mode: seq2seq chat" not in titles


async def test_without_a_sentiment_model_the_indicator_says_unavailable(make_session):
    s = make_session(sentiment=False)
    app = ChatApp(s, cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(*"i love it")
        assert str(app.query_one(SentimentIndicator).render()) == "sentiment: unavailable"
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.query(Bubble).first().mood is None


async def test_load_screen_lists_saved_conversations(make_session):
    s = make_session()
    s.save("b")
    app = ChatApp(s, cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+o")
        assert app.screen.query_one(OptionList).option_count == 1
        await pilot.press("escape")
        assert not isinstance(app.screen, LoadScreen)


async def test_a_long_transcript_shows_only_the_newest_messages(make_session, monkeypatch):
    """Issue 20, item 9: 2,000 transcript entries took 14 s to start and 6 s per message: the log now holds at
    most MAX_BUBBLES widgets, with a count of the earlier messages (all kept in the transcript)."""
    from rnnchat.session.transcript import Mode, Turn

    monkeypatch.setattr(ChatLog, "MAX_BUBBLES", 10)
    s = make_session(max_tokens=3)
    s.transcript = [Turn(role, f"message {i}", Mode.LM) for i in range(300) for role in ("user", "assistant")]
    app = ChatApp(s, cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert len(app.query(Bubble)) == 10
        assert "590 earlier message(s) not shown" in str(app.query_one(".earlier", Static).render())
        await send(pilot, "hello")
        assert len(app.query(Bubble)) == 10 and len(s.transcript) == 602
        assert "592 earlier" in str(app.query_one(".earlier", Static).render())
        assert app.query(Bubble).last().has_class("reply")
        app.query_one(ChatLog).show_all([Bubble("you", Static("x")) for _ in range(30)])  # twice, no DuplicateIds
        app.query_one(ChatLog).show_all([Bubble("you", Static("y")) for _ in range(30)])
        await pilot.pause()
        assert len(app.query(Bubble)) == 10 and len(app.query(".earlier")) == 1


async def test_reset_keeps_the_conversation_and_the_load_screen_renames_and_deletes(make_session, data_dir):
    """Issue 15, item 6: Ctrl+R used to autosave the empty conversation over the last one. Now the previous
    conversation is kept under a dated name; the load screen renames (F2) and deletes (Del twice) them."""
    s = make_session()
    app = ChatApp(s, cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "hello there")
        said = list(to_json(s.transcript))
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert s.transcript == [] and not app.query(Bubble)
        [kept] = s.saved_names()
        assert kept.startswith("reset-")
        await pilot.press("ctrl+o")
        assert isinstance(app.screen, LoadScreen)
        await pilot.press("f2")
        field = app.screen.query_one("#rename", Input)
        field.value = "greeting"
        await pilot.press("enter")
        await pilot.pause()
        assert s.saved_names() == ["greeting"] and isinstance(app.screen, LoadScreen)
        await pilot.press("enter")  # loads it
        await pilot.pause()
        assert list(to_json(s.transcript)) == said
        s.save("spare")
        await pilot.press("ctrl+o")
        await pilot.press("delete")  # armed: nothing deleted yet
        assert set(s.saved_names()) == {"greeting", "spare"}
        await pilot.press("delete")
        await pilot.pause()
        assert len(s.saved_names()) == 1


async def test_ctrl_e_exports_the_transcript(make_session, data_dir):
    s = make_session()
    app = ChatApp(s, cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "hello there")
        await pilot.press("ctrl+e")
        await pilot.pause()
        [written] = (data_dir / "exports").glob("rnnchat-*.md")
        text = written.read_text()
        assert "**you** · LM chat" in text and "> hello there" in text


async def test_up_and_down_recall_messages_shared_with_the_repl_and_f6_copies_the_reply(make_session, data_dir):
    from rnnchat.ui.history import append_history
    data_dir.mkdir(parents=True, exist_ok=True)
    append_history(data_dir / "repl_history", "typed in the repl")
    s = make_session()
    app = ChatApp(s, cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "hello there")
        prompt = app.query_one("#prompt", MessageInput)
        await pilot.press(*"draft")
        await pilot.press("up")
        assert prompt.value == "hello there"
        await pilot.press("up")
        assert prompt.value == "typed in the repl"
        await pilot.press("down", "down")
        assert prompt.value == "draft"  # back to what was being typed
        await pilot.press("f6")
        assert app.clipboard == [t.text for t in s.transcript if t.role == "assistant"][-1].strip()
    from prompt_toolkit.history import FileHistory
    assert list(FileHistory(str(data_dir / "repl_history")).load_history_strings())[:2] == [
        "hello there", "typed in the repl"]  # the app writes what the REPL reads


async def test_a_history_file_that_cannot_be_written_is_said_once(make_session, data_dir):
    """The REPL said so; the app went on silently, so Up after a restart recalled nothing."""
    (data_dir / "repl_history").mkdir(parents=True)  # a folder where the file goes: it cannot be appended to
    s = make_session()
    app = ChatApp(s, cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "one")
        await send(pilot, "two")
        notes = [str(n.message) for n in app._notifications if "input history not saved" in str(n.message)]
        assert len(notes) == 1 and "repl_history" in notes[0]
        await pilot.press("up")
        assert app.query_one("#prompt", MessageInput).value == "two"  # still recalled in this run


async def test_multi_line_messages_with_shift_enter_or_ctrl_j(make_session):
    """Issue 15, item 5: Shift+Enter or Ctrl+J start a new line in the message; Enter sends the whole of it."""
    s = make_session()
    app = ChatApp(s, cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        box = app.query_one("#prompt", MessageInput)
        await pilot.click("#prompt")
        await pilot.press(*"first", "shift+enter", *"second", "ctrl+j", *"third")
        assert box.value == "first\nsecond\nthird" and box.document.line_count == 3
        await pilot.press("up")  # on a later line: moves the cursor, recalls nothing
        assert box.value == "first\nsecond\nthird"
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert [t.text for t in s.transcript if t.role == "user"] == ["first\nsecond\nthird"] and box.value == ""


@pytest.mark.parametrize("size", [(70, 24), (40, 10), (12, 5)])
async def test_a_narrow_terminal_hides_the_panels_instead_of_crashing(make_session, size):
    """At 70 columns or fewer the side panel and the sentiment box left the message box no width at all, and
    Rich's wrap of its placeholder failed (ValueError): the app crashed at start or on a resize."""
    s = make_session()
    app = ChatApp(s, cursor_blink=False)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        assert app.query_one("#side").display is False
        assert app.query_one(SentimentIndicator).display is (size[0] >= 60)
        assert app.query_one(MessageInput).content_region.width > 0
        await send(pilot, "hello there")
        assert [t.role for t in s.transcript] == ["user", "assistant"]
        await pilot.resize_terminal(*SIZE)
        await pilot.pause()
        assert app.query_one("#side").display is True and app.query_one(SentimentIndicator).display is True
        await pilot.resize_terminal(*size)  # and back, mid-session
        await pilot.press(*"abc")
        await pilot.pause()
        assert app.return_code is None and app.query_one(MessageInput).text == "abc"


async def test_escape_sequences_in_a_loaded_conversation_are_shown_not_obeyed(make_session):
    """A conversation holding ESC [2J (clear the screen) or ESC ]0; (retitle the window), from a paste in the
    REPL or a file, wrote them raw to the terminal when the app showed it."""
    s = make_session()
    s.prime("clear \x1b[2J\tnow", "title \x1b]0;pwned\x07")
    s.autosave()
    restored = make_session()
    assert restored.restore() is None
    app = ChatApp(restored, cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        user, reply = app.query(Bubble)
        shown = str(user.query(Static).last().content), reply.query_one(StreamText).text
        assert shown == ("clear \\x1b[2J    now", "title \\x1b]0;pwned\\x07")
        view = reply.query_one(StreamText)
        lines = [view.render_line(y).text for y in range(view.size.height)]
        assert "title \\x1b]0;pwned\\x07" in "".join(lines) and "\x1b" not in "".join(lines)
