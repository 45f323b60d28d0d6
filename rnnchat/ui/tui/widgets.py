"""Widgets of the chat app: streamed text, message bubbles, the sentiment indicator, the mood sparkline."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

from rich.cells import cell_len
from rich.segment import Segment
from rich.text import Text
from textual.containers import Vertical, VerticalScroll
from textual.geometry import Region, Size
from textual.strip import Strip
from textual.widget import Widget
from textual import events
from textual.message import Message
from textual.widgets import Sparkline, Static, TextArea

from rnnchat.models.sentiment_result import Sentiment
from rnnchat.ui.history import Recall
from rnnchat.ui.render import on_screen, score_bar

_CHUNK = re.compile(r"([^\S\n]*)(\S+)")  # spaces (not newlines) and the word after them


def wrap(text: str, start: int, width: int) -> list[tuple[int, int]]:
    """(start, end) offsets of the lines of text[start:], greedily word-wrapped to `width` cells.

    Lines before the last one never change when text is appended, so wrapping again from the start of the
    last line gives the same lines as wrapping the whole text (what `StreamText.append` relies on).
    """
    width, lines, pos = max(width, 1), [], start
    while True:
        nl = text.find("\n", pos)
        end = len(text) if nl < 0 else nl
        line_start, used = pos, 0
        for m in _CHUNK.finditer(text, pos, end):
            a, b = m.span()
            w = cell_len(text[a:b])
            if used and used + w > width:  # the word starts the next line, without its spaces
                lines.append((line_start, a))
                line_start, used, a = m.start(2), 0, m.start(2)
                w = cell_len(text[a:b])
            if used + w <= width:
                used += w
                continue
            for i in range(a, b):  # a word longer than the line is folded
                cw = cell_len(text[i])
                if used and used + cw > width:
                    lines.append((line_start, i))
                    line_start, used = i, 0
                used += cw
        lines.append((line_start, end))
        if nl < 0:
            return lines
        pos = nl + 1


class StreamText(Widget):
    """Word-wrapped text that grows at its end.

    `append` re-wraps only the last line and repaints only the changed lines, so a long reply costs the same
    per token as a short one. A new line needs a layout (the bubble grows and the log scrolls: the whole log is
    painted again, ~5-20 ms here), and while it lays out (or paints) the app's thread holds the GIL the decoding
    thread waits for, so at most one layout per `LAYOUT_S` is made while text streams in (the line appears with
    the next one); `finish` lays out at once. With the app's 20 updates a second, a 200-token LM reply streams
    at 0.79-0.86x the session's own rate (`bench/ui_latency.py --stream-only`, four runs; 30 updates and a
    layout per 0.2 s: 0.72-0.74x the same day).
    An optional `prefix` (the user's text in continue mode) is drawn in the `stream-text--prefix` style. Text is
    kept as shown (`on_screen`: control characters visible).
    """

    LAYOUT_S = 0.5

    COMPONENT_CLASSES = {"stream-text--prefix"}
    DEFAULT_CSS = """
    StreamText { height: auto; }
    StreamText > .stream-text--prefix { color: $text-muted; }
    """

    def __init__(self, text: str = "", prefix: str = "", *, id: str | None = None, classes: str | None = None):
        super().__init__(id=id, classes=classes)
        prefix, text = on_screen(prefix), on_screen(text)
        self._all, self._prefix = prefix + text, len(prefix)
        self._width, self._lines = -1, [(0, 0)]
        self._laid_out, self._layout_due = 0.0, False  # when the last layout was asked for; one is scheduled

    @property
    def text(self) -> str:
        """The text after the prefix (what was appended)."""
        return self._all[self._prefix:]

    def append(self, piece: str) -> None:
        piece = on_screen(piece)
        if not piece:
            return
        n, shown = len(self._lines), self._shown()
        self._all += piece
        if self._width < 0:
            return self.refresh(layout=True)
        self._lines[n - 1:] = wrap(self._all, self._lines[-1][0], self._width)
        self.refresh(Region(0, self.styles.gutter.top + n - 1, self.outer_size.width, 1))
        if self._shown() == shown or self._layout_due:
            return
        wait = self.LAYOUT_S - (time.monotonic() - self._laid_out)
        if wait <= 0:
            self.finish()
        else:
            self._layout_due = True
            self.set_timer(wait, self.finish)

    def finish(self) -> None:
        """Lay out now for every line appended so far (the end of a reply)."""
        self._laid_out, self._layout_due = time.monotonic(), False
        self.refresh(layout=True)

    def _wrapped(self, width: int) -> list[tuple[int, int]]:
        if width != self._width:
            self._width, self._lines = width, wrap(self._all, 0, width)
        return self._lines

    def _shown(self) -> int:
        """Lines to show: no empty last line after a final "\n" (it appears when text follows)."""
        lines = self._lines
        return len(lines) - (len(lines) > 1 and lines[-1][0] == len(self._all))

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        self._wrapped(width)
        return self._shown()

    def render_line(self, y: int) -> Strip:
        width, style = self.size.width, self.rich_style
        lines = self._wrapped(width)
        if y >= len(lines):
            return Strip.blank(width, style)
        a, b = lines[y]
        cut = min(max(self._prefix, a), b)
        prefix_style = style + self.get_component_rich_style("stream-text--prefix", partial=True)
        segments = [Segment(self._all[a:cut], prefix_style), Segment(self._all[cut:b], style)]
        return Strip([s for s in segments if s.text]).adjust_cell_length(width, style)


def mood_text(mood: Sentiment | None, unavailable: bool = False) -> Text:
    """'label [bar] +0.62', the bar filled from its centre towards the score's side."""
    if unavailable:
        return Text("sentiment: unavailable", style="dim")
    if mood is None:
        return Text("sentiment: -", style="dim")
    left, right = score_bar(mood.score)
    return Text.assemble(f"{mood.label:<8} ", ("▕", "dim"), left, ("│", "dim"), right, ("▏", "dim"),
                         f" {mood.score:+.2f}")


def badge(mood: Sentiment | None) -> Text:
    return Text(f" {mood.label} {mood.score:+.2f} ", style=f"reverse {MOOD_COLOURS[mood.label]}") if mood else Text()


MOOD_COLOURS = {"negative": "red", "neutral": "yellow", "positive": "green"}


class SentimentIndicator(Static):
    """The live sentiment of the text being typed: label, score bar, colour (CSS classes -negative etc.)."""

    def __init__(self, available: bool, *, id: str | None = None):
        super().__init__(mood_text(None, not available), id=id)
        self.available, self.mood = available, None

    def show(self, mood: Sentiment | None) -> None:
        if not self.available or mood == self.mood:
            return
        self.mood = mood
        self.set_classes("-" + mood.label if mood else "")
        self.update(mood_text(mood))


class Bubble(Vertical):
    """One message: a header line (who, sentiment badge, notes) and its body."""

    def __init__(self, who: str, body: Widget, mood: Sentiment | None = None, *, note: str = "", classes: str = ""):
        super().__init__(classes=f"bubble {classes}")
        self.who, self.mood, self.body, self.note = who, mood, body, note

    def compose(self):
        yield Static(self._header(self.note), classes="bubble-header")
        yield self.body

    def _header(self, note: str) -> Text:
        text = Text.assemble((self.who, "bold"), " ", badge(self.mood))
        return text.append(f" {note}", style="dim") if note else text

    def set_note(self, note: str) -> None:
        self.note = note
        self.query_one(".bubble-header", Static).update(self._header(note))

    def set_mood(self, mood: Sentiment | None) -> None:
        """The badge of a message scored once it is whole (a reply)."""
        self.mood = mood
        self.set_note(self.note)


class ChatLog(VerticalScroll):
    """The conversation: stays scrolled to the bottom while it grows, unless the user scrolled up.

    It shows at most `MAX_BUBBLES` messages (the newest); a line at the top counts the earlier ones, which
    stay in the transcript and its saved file. (Thousands of widgets made start-up and every message slow.)
    """

    MAX_BUBBLES = 200

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.earlier = 0  # messages not shown before the first one shown
        self._shown: list[Widget] = []  # the message widgets shown, oldest first
        self._note: Static | None = None  # the "N earlier messages not shown" line

    def on_mount(self) -> None:
        self.anchor()

    def show_all(self, bubbles: list[Widget]) -> None:
        """Replace the content with the newest MAX_BUBBLES of `bubbles`."""
        self.remove_children()
        self.earlier = max(0, len(bubbles) - self.MAX_BUBBLES)
        self._shown = bubbles[-self.MAX_BUBBLES:]
        # no fixed id: the old note may still be mounted until remove_children() completes
        self._note = Static(self._hidden_text(self.earlier), classes="earlier") if self.earlier else None
        self.mount_all(([self._note] if self._note else []) + self._shown)

    def add(self, bubble: Widget) -> None:
        """Append a message, dropping the oldest one shown past MAX_BUBBLES."""
        self.mount(bubble)
        self._shown = [*self._shown, bubble]
        if len(self._shown) <= self.MAX_BUBBLES:
            return
        self._shown.pop(0).remove()
        self.earlier += 1
        if self._note is None:
            self._note = Static(self._hidden_text(self.earlier), classes="earlier")
            self.mount(self._note, before=0)
        else:
            self._note.update(self._hidden_text(self.earlier))

    def remove_last(self) -> None:
        if self._shown:
            self._shown.pop().remove()

    @staticmethod
    def _hidden_text(n: int) -> str:
        return f"({n:,} earlier message(s) not shown; all are kept in the saved conversation)"


class MoodLine(Vertical):
    """The mood of both sides: the mean score of the user's messages and of the bot's replies, each with a
    sparkline of its trend (Textual's Sparkline scales to the data's own range, so it needs two messages to say
    anything)."""

    def compose(self):
        yield Static("mood: -", id="mood-label")
        yield Sparkline([], id="mood-spark")
        yield Static("bot: -", id="mood-bot-label")
        yield Sparkline([], id="mood-spark-bot")

    def show(self, scores: list[float], bot: Sequence[float] = ()) -> None:
        sides = (("mood", scores, "message", "messages"), ("bot", list(bot), "reply", "replies"))
        for (who, values, one, many), (label, spark) in zip(sides, (("#mood-label", "#mood-spark"),
                                                                     ("#mood-bot-label", "#mood-spark-bot"))):
            self.query_one(spark, Sparkline).data = values if len(values) > 1 else []
            n = len(values)
            self.query_one(label, Static).update(f"{who}: -" if not n else
                                                 f"{who}: {sum(values) / n:+.2f} over {n} {one if n == 1 else many}")


class MessageInput(TextArea):
    """The message box: Enter sends, Shift+Enter or Ctrl+J starts a new line (the box grows to a few lines; as in
    oterm), Up on the first line and Down on the last recall earlier messages (`recall`, shared with the REPL's
    history file)."""

    class Submitted(Message):
        """Enter was pressed: send `value`."""

        def __init__(self, box: "MessageInput", value: str):
            super().__init__()
            self.box, self.value = box, value

    def __init__(self, recall: Recall, **kwargs):
        super().__init__(soft_wrap=True, tab_behavior="focus", highlight_cursor_line=False, compact=True, **kwargs)
        self.recall = recall

    @property
    def value(self) -> str:
        return self.text

    @value.setter
    def value(self, text: str) -> None:
        self.load_text(text)
        self.move_cursor(self.document.end)

    async def _on_key(self, event: events.Key) -> None:
        # the rows as shown (a long line wraps): Up and Down move within the text until its first or last one
        row, last = self.wrapped_document.location_to_offset(self.cursor_location).y, self.wrapped_document.height - 1
        if event.key == "enter":
            self.post_message(self.Submitted(self, self.text))
        elif event.key in ("shift+enter", "ctrl+j"):
            self.insert("\n")
        elif event.key == "up" and row == 0:
            if (text := self.recall.up(self.text)) is not None:
                self.value = text
        elif event.key == "down" and row == last:
            if (text := self.recall.down()) is not None:
                self.value = text
        else:
            await super()._on_key(event)
            return
        event.stop()
        event.prevent_default()
