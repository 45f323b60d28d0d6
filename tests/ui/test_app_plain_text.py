"""What the user types reaches the app's notes and error lines as plain text, never as Textual markup ("[/" in
a setting or a slash command was a MarkupError that closed the app, "[v2]" vanished from a file name, and
"[@click=app.quit]" made a link that ran an action), and a forced reset needs its warning just before it."""

import pytest
from textual.widgets import Input, Static

from rnnchat.session.store import SessionError
from rnnchat.ui.tui.app import ChatApp
from tests.ui.test_app import SIZE, send

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
        await pilot.press("ctrl+r")  # right after its warning: resets anyway
        await pilot.pause()
        assert s.transcript == []
