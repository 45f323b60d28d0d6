"""The app with ranked replies (issue 14): the best candidate appears whole, F5 lists the candidates with their
score terms, Ctrl+G (or /retry) replaces the reply by the next candidate."""

import pytest
from textual.widgets import Static

from rnnchat.session.transcript import Mode
from rnnchat.ui.tui.app import ChatApp
from rnnchat.ui.tui.screens import CandidatesScreen, candidates_table
from rnnchat.ui.tui.widgets import Bubble, StreamText
from tests.ui.test_app import send

pytestmark = pytest.mark.asyncio
SIZE = (110, 32)


async def test_ranked_reply_candidates_view_and_regenerate(make_session):
    s = make_session()
    s.set_mode(Mode.LM)
    s.set_candidates(4)
    app = ChatApp(s, cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        assert app.query_one("#set-candidates").value == "4"
        await send(pilot, "hello there")
        shown = app.query(StreamText).last().text
        ranked = s.last_reply.ranked
        assert shown == ranked[0].text + "\n" or shown == ranked[0].text
        await pilot.press("f5")
        assert isinstance(app.screen, CandidatesScreen)
        assert app.screen.query("#candidates-table") and candidates_table(s.last_reply).row_count == 4
        await pilot.press("f5")
        assert not isinstance(app.screen, CandidatesScreen)
        await pilot.press("ctrl+g")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert len(app.query(Bubble)) == 2  # the reply was replaced, not added
        assert app.query(StreamText).last().text.strip() == ranked[1].text.strip()
        await pilot.press(*"/retry", "enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.query(StreamText).last().text.strip() == ranked[2].text.strip()
        assert [t.role for t in s.transcript] == ["user", "assistant"]


async def test_candidates_view_without_a_ranked_reply_says_how(make_session):
    app = ChatApp(make_session(), cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f5")
        assert "/candidates 16" in str(app.screen.query_one("#no-candidates", Static).render())
        await pilot.press("escape", "ctrl+g")
        await pilot.pause()
        assert not app.query(Bubble)
