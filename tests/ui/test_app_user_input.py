"""What the user types: it reaches the app's notes and error lines as plain text, never as Textual markup ("[/"
in a setting or a slash command was a MarkupError that closed the app, "[v2]" vanished from a file name, and
"[@click=app.quit]" made a link that ran an action); messages queued behind a stopped reply stay one message
each; a forced reset needs its warning just before it."""

import pytest
from textual.widgets import Input, Static

from rnnchat.session.store import SessionError
from rnnchat.ui.tui.app import ChatApp
from rnnchat.ui.tui.widgets import MessageInput
from tests.ui.test_app import SIZE, gate_stream, queue_behind_a_reply, send, wait_until

pytestmark = pytest.mark.asyncio


@pytest.mark.parametrize("field", ["temperature", "max_tokens", "candidates", "skip"])
async def test_markup_typed_into_a_setting_is_shown_as_typed(make_session, field):
    app = ChatApp(make_session(), cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        app.query_one(f"#set-{field}", Input).focus()
        await pilot.press("end", *["backspace"] * 8, "left_square_bracket", "slash")
        await pilot.pause()
        assert app.is_running and app.query_one(f"#set-{field}", Input).has_class("-invalid")
        assert "[/" in str(app.query_one("#settings-error", Static).render())


async def test_markup_in_slash_commands_is_shown_as_typed(make_session, data_dir, tmp_path):
    app = ChatApp(make_session(), cursor_blink=False)
    async with app.run_test(size=SIZE, notifications=True) as pilot:  # (toasts rendered, as on a terminal)
        await send(pilot, "hello there")
        out = tmp_path / "notes[v2].md"
        for command, said in (("/mode [/]", "[/]"), ("/temp [/red]", "[/red]"), ("/load a[/b]", "a[/b]"),
                              ("/mode [@click=app.quit]x[/]", "[@click=app.quit]x[/]"), (f"/export {out}", str(out))):
            await pilot.press(*command, "enter")
            await pilot.pause(0.2)
            assert app.is_running and any(said in str(t.render()) for t in app.screen.query("Toast"))
        assert out.exists()


async def test_a_forced_reset_must_follow_its_warning(make_session, monkeypatch):
    """After a reset that could not keep the conversation, Ctrl+R stayed armed: a press a conversation later
    reset without a new warning, and the empty one was autosaved over the last (adversarial finding)."""
    s = make_session()
    real = s.reset

    def reset(force=False):  # keeping the old conversation fails (as on a full disk) unless forced
        if not force:
            raise SessionError("the conversation could not be kept (disk full), so nothing was reset; "
                               "/reset -f (or Ctrl+R again) resets anyway")
        return real(force=True)
    monkeypatch.setattr(s, "reset", reset)
    app = ChatApp(s, cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "hello there")
        await pilot.press("ctrl+r")  # refused, armed
        await pilot.pause()
        await send(pilot, "and more")
        await pilot.press("ctrl+r")  # a message came between: refused again, not forced
        await pilot.pause()
        assert [t.text for t in s.transcript if t.role == "user"] == ["hello there", "and more"]
        await pilot.press("ctrl+g")  # another action between (a retry): no longer armed (review finding)
        await app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert [t.text for t in s.transcript if t.role == "user"] == ["hello there", "and more"]
        await pilot.press("ctrl+r")  # right after its warning: resets anyway
        await pilot.pause()
        assert s.transcript == []


async def test_messages_queued_behind_a_stopped_reply_stay_one_message_each(make_session):
    """Esc joined them into one line ("/save mine line one\nline two"), commands and all (adversarial)."""
    s = make_session(max_tokens=40)
    reached, gate = gate_stream(s, after=2)
    app = ChatApp(s, cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        await queue_behind_a_reply(pilot, reached, ("/save mine", "line one"))
        await pilot.press("escape")
        box = app.query_one("#prompt", MessageInput)
        assert box.value == "/save mine" and not app._queued
        gate.set()
        await app.workers.wait_for_complete()
        await pilot.pause()
        box.value = ""
        await pilot.press("up")
        assert box.value == "line one"  # the other one, recalled whole
        assert [t.text for t in s.transcript if t.role == "user"] == ["hello"]


@pytest.mark.parametrize("start, reply_badge", [("lm", True), ("continue", False)])
async def test_f2_while_a_reply_streams_leaves_its_bubble_as_it_began(make_session, start, reply_badge):
    """The finished bubble's badge followed the mode switched to: an LM reply switched to continue got no mood,
    a continuation switched to LM showed the continuation's mood instead of the user's (adversarial)."""
    from rnnchat.ui.tui.widgets import Bubble
    s = make_session(max_tokens=6)
    s.set_mode(start)
    reached, gate = gate_stream(s, after=1)
    app = ChatApp(s, cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        app._prompt.value = "i love good great things"
        await pilot.press("enter")
        await wait_until(pilot, reached.is_set)
        await pilot.press("f2")
        gate.set()
        await app.workers.wait_for_complete()
        await pilot.pause()
        bubble = app.query(Bubble).last()
        user_mood = s.transcript[0].sentiment
        if reply_badge:
            assert bubble.mood is not None and bubble.mood == s.last_reply_mood
        else:
            assert bubble.mood is not None and bubble.mood == user_mood


async def test_up_in_a_long_wrapped_message_moves_within_it(make_session):
    """Up on the last row of a one-line message wrapped over several rows replaced it by an earlier message."""
    app = ChatApp(make_session(max_tokens=3), cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "an earlier message")
        box = app.query_one("#prompt", MessageInput)
        long = "this is a long paragraph that I am editing carefully " * 4
        box.value = long
        await pilot.pause()
        assert box.wrapped_document.height > 1
        await pilot.press("up")
        assert box.value == long  # the cursor moved up a row
        for _ in range(box.wrapped_document.height):
            await pilot.press("up")
        assert box.value == "an earlier message"  # from its first row: the history
