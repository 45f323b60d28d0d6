"""Word wrap for streamed text: appending re-wraps only the last line and gives the same lines as from scratch."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.cells import cell_len
from textual.app import App

from rnnchat.models.sentiment_result import Sentiment as Mood
from rnnchat.ui.render import score_bar
from rnnchat.ui.tui.widgets import StreamText, mood_text, wrap

pieces = st.lists(st.text(alphabet=st.sampled_from("ab cd\n世 "), max_size=6), max_size=25)


@settings(max_examples=300, deadline=None)
@given(pieces, st.integers(1, 12))
def test_incremental_wrap_equals_wrap_from_scratch(parts, width):
    text, lines = "", [(0, 0)]
    for p in parts:
        text += p
        lines[-1:] = wrap(text, lines[-1][0], width)
    assert lines == wrap(text, 0, width)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab cd\n世 "), max_size=80), st.integers(2, 12))
def test_wrapped_lines_fit_and_keep_every_word(text, width):
    lines = wrap(text, 0, width)
    for a, b in lines:
        assert cell_len(text[a:b].rstrip()) <= width
    assert "".join(text[a:b] for a, b in lines).replace(" ", "") == text.replace(" ", "").replace("\n", "")


def test_wrap_breaks_at_spaces_and_newlines():
    text = "hello world foo\nbar"
    assert [text[a:b] for a, b in wrap(text, 0, 11)] == ["hello world", "foo", "bar"]
    text = "abcdefgh"
    assert [text[a:b] for a, b in wrap(text, 0, 3)] == ["abc", "def", "gh"]


class One(App):
    def compose(self):
        yield StreamText(prefix="I like", id="s")


@pytest.mark.asyncio
async def test_append_repaints_only_the_last_line_and_lays_out_new_lines_at_most_every_layout_s():
    app = One()
    async with app.run_test(size=(20, 5)) as pilot:
        s = app.query_one(StreamText)
        calls = []
        real = s.refresh
        s.refresh = lambda *regions, **kw: calls.append((regions, kw)) or real(*regions, **kw)
        s.append(" the")
        assert calls == [((calls[0][0][0],), {})] and calls[0][0][0].height == 1
        calls.clear()
        s.append(" movie very much")  # wraps: the line count changes
        assert calls[-1][1].get("layout") is True
        await pilot.pause()
        assert s.size.height == 2 and s.text == " the movie very much"
        s.append("\n")  # a message break at the end adds no empty line until text follows it
        await pilot.pause()
        assert s.size.height == 2
        s.LAYOUT_S = 30.0  # a new line within LAYOUT_S of the last layout waits for the timer (or `finish`)
        s.finish()
        await pilot.pause()
        calls.clear()
        s.append("Yes and a long line that wraps twice")
        assert not any(kw.get("layout") for _, kw in calls)
        await pilot.pause()
        assert s.size.height == 2
        s.finish()  # the end of a reply: laid out at once
        await pilot.pause()
        grown = s.size.height
        assert grown > 2 and grown == s.get_content_height(s.size, s.size, s.size.width)  # every line shown
        s.LAYOUT_S = 0.05  # the timer lays the next new line out
        s.finish()
        await pilot.pause()
        s.append(" and here comes another line")
        await pilot.pause(0.5)
        assert s.size.height == s.get_content_height(s.size, s.size, s.size.width) > grown


def test_mood_text_and_bar():
    assert str(mood_text(None, unavailable=True)) == "sentiment: unavailable"
    assert score_bar(-0.4) == ("   ██", "     ")
    assert score_bar(1.0) == ("     ", "█████")
    assert "positive" in str(mood_text(Mood("positive", 0.6))) and "+0.60" in str(mood_text(Mood("positive", 0.6)))
