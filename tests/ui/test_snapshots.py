"""Snapshots of the main screen after a seeded reply, of the help screen and of the attention view after a seq2seq
reply (fixed size, no cursor blink).

Update after an intended change of the look: `pytest tests/ui/test_snapshots.py --snapshot-update`.
"""

from rnnchat.ui.tui.app import ChatApp

SIZE = (100, 30)


def test_main_screen_after_a_reply(make_session, snap_compare):
    async def chat(pilot):
        await pilot.press(*"i love the movie", "enter")
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.press(*"i hate")

    assert snap_compare(ChatApp(make_session(), cursor_blink=False), terminal_size=SIZE, run_before=chat)


def test_main_screen_in_a_narrow_terminal(make_session, snap_compare):
    """70 columns (a split pane): no side panel, the sentiment box beside a usable message box."""
    async def chat(pilot):
        await pilot.press(*"i love the movie", "enter")
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.press(*"i hate")

    assert snap_compare(ChatApp(make_session(), cursor_blink=False), terminal_size=(70, 24), run_before=chat)


def test_help_screen(make_session, snap_compare):
    assert snap_compare(ChatApp(make_session(), cursor_blink=False), terminal_size=SIZE, press=["f1"])


def test_attention_screen_after_a_seq2seq_reply(make_session, snap_compare):
    async def chat(pilot):
        await pilot.press(*"i love the movie", "enter")
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.press("f4")

    assert snap_compare(ChatApp(make_session(seq2seq=True), cursor_blink=False), terminal_size=SIZE,
                        run_before=chat)


def test_candidates_screen_after_a_ranked_reply(make_session, snap_compare):
    from rnnchat.session.transcript import Mode

    def session():
        s = make_session()
        s.set_mode(Mode.LM)
        s.set_candidates(4)
        return s

    async def chat(pilot):
        await pilot.press(*"i love the movie", "enter")
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.press("f5")

    assert snap_compare(ChatApp(session(), cursor_blink=False), terminal_size=SIZE, run_before=chat)
