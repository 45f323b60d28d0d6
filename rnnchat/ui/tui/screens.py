"""Modal screens of the chat app: help, the last reply's token probabilities and attention, save and load."""

from __future__ import annotations

from collections.abc import Collection

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import ScrollableContainer, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList, Static

from rnnchat.engine.tokens import Token
from rnnchat.engine.ranking import RankWeights
from rnnchat.session.commands import COMMAND_HELP
from rnnchat.session.replies import RankedReply
from rnnchat.session.store import NAME_RE, SessionError, Store
from rnnchat.session.transcript import MODE_TITLES, Mode
from rnnchat.ui.render import NO_ATTENTION, AttentionGrid, attention_grid, on_screen

KEYS = (
    ("Enter", "send the message"), ("Shift+Enter", "new line (also Ctrl+J)"), ("Esc", "stop the reply mid-stream"),
    ("Ctrl+R", "reset memory (new conversation)"), ("Ctrl+S", "save the conversation"),
    ("Ctrl+O", "load a conversation"), ("Ctrl+E", "export the transcript"), ("F2", "next mode"),
    ("F3", "last reply by token probability"),
    ("F4", "last reply's attention (seq2seq)"), ("F5", "last reply's ranked candidates"),
    ("Ctrl+G", "regenerate the last reply"), ("F6", "copy the last reply"), ("Up / Down", "earlier messages"),
    ("Tab", "message box / settings"), ("Ctrl+P", "command palette"),
    ("F1 / ?", "this help"), ("Ctrl+Q", "quit"),
)


class Dialog(ModalScreen):
    """A modal panel closed with Esc; its notes are plain text, as the app's (they quote names and errors)."""

    BINDINGS = [Binding("escape", "dismiss", "Close")]

    def notify(self, message: str, *, markup: bool = False, **kw) -> None:
        super().notify(message, markup=markup, **kw)


class HelpScreen(Dialog):
    BINDINGS = [Binding("f1,question_mark,q", "dismiss", "Close", show=False)]

    def compose(self) -> ComposeResult:
        modes = "\n".join(f"{m.value:<10}{MODE_TITLES[m]}" for m in Mode)
        with VerticalScroll(classes="dialog", id="help"):
            yield Label("Keys", classes="dialog-title")
            yield Static(two_columns(KEYS))
            yield Label("Slash commands (type them in the message box)", classes="dialog-title")
            yield Static(two_columns(COMMAND_HELP))
            yield Label("Modes", classes="dialog-title")
            yield Static(modes)
            yield Static(Text("The conversation's memory (the LSTM state) carries across turns and is saved after "
                              "every reply; `rnnchat chat --fresh` starts a new one.", style="dim"))


def two_columns(rows: tuple[tuple[str, str], ...]) -> Table:
    """(key, what) pairs laid out in two columns of pairs."""
    table = Table.grid(padding=(0, 1))
    half = (len(rows) + 1) // 2
    for left, right in zip(rows[:half], rows[half:] + (("", ""),)):
        table.add_row(Text(left[0], style="bold"), left[1], Text(right[0], style="bold"), right[1])
    return table


def prob_colour(p: float) -> str:
    """Red (unlikely) through yellow to green (likely)."""
    r, g = (255, int(510 * p)) if p < 0.5 else (int(510 * (1 - p)), 255)
    return f"rgb({r},{g},60)"


def tokens_text(tokens: list[Token]) -> Text:
    text = Text()
    for tok in tokens:
        piece = on_screen(tok.text or f" {tok.token}")  # <eot> has no text: show the token itself
        text.append(piece, style=f"black on {prob_colour(tok.prob)}")
    return text


class TokensScreen(Dialog):
    """The last reply with each token's background coloured by its sampling probability."""

    BINDINGS = [Binding("f3", "dismiss", "Close", show=False)]

    def __init__(self, tokens: list[Token]):
        super().__init__()
        self.tokens = tokens

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog", id="tokens"):
            yield Label("Last reply by token probability", classes="dialog-title")
            if not self.tokens:
                yield Static("no reply yet")
                return
            yield Static(tokens_text(self.tokens), id="token-view")
            probs = [t.prob for t in self.tokens]
            yield Static(Text.assemble("probability ", *((f" {p:.2f} ", f"black on {prob_colour(p)}")
                                                         for p in (0.0, 0.25, 0.5, 0.75, 1.0))))
            yield Static(f"{len(probs)} tokens, mean p {sum(probs) / len(probs):.2f}, min p {min(probs):.2f}")


HEAT = ((0.0, (24, 26, 48)), (0.35, (110, 40, 120)), (0.7, (225, 95, 45)), (1.0, (255, 235, 110)))


def heat_colour(x: float) -> str:
    """Dark blue (0) through purple and orange to light yellow (1)."""
    x = min(max(x, 0.0), 1.0)
    for (a, ca), (b, cb) in zip(HEAT, HEAT[1:]):
        if x <= b:
            t = (x - a) / (b - a)
            return "rgb({},{},{})".format(*(round(u + t * (v - u)) for u, v in zip(ca, cb)))
    return "rgb({},{},{})".format(*HEAT[-1][1])


def heat_style(x: float) -> str:
    """A heat-map cell: its colour, with text readable on it."""
    return f"{'black' if x > 0.55 else 'white'} on {heat_colour(x)}"


def heat_map(grid: AttentionGrid) -> Table:
    """The attention grid as a table: each cell the weight in percent, shaded relative to the grid's largest."""
    table = Table(box=None, padding=(0, 1, 0, 0), show_edge=False, pad_edge=False)
    table.add_column("", justify="right", style="bold", no_wrap=True)
    for word in grid.source:
        table.add_column(word, justify="center", no_wrap=True, min_width=3,
                         header_style="dim" if word.startswith("<") else "bold")
    for token, row in zip(grid.tokens, grid.weights):
        table.add_row(token, *(Text(f"{round(100 * w)}", style=heat_style(w / grid.top)) for w in row))
    return table


class AttentionScreen(Dialog):
    """The seq2seq model's attention over the user's words for each token of the last reply (a heat map)."""

    BINDINGS = [Binding("f4", "dismiss", "Close", show=False)]

    def __init__(self, tokens: list[Token]):
        super().__init__()
        self.grid = attention_grid(tokens)

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog", id="attention"):
            yield Label("Last reply: attention over your words", classes="dialog-title")
            if self.grid is None:
                yield Static(NO_ATTENTION, id="no-attention")
                return
            with ScrollableContainer(id="attention-scroll"):
                yield Static(heat_map(self.grid), id="attention-grid")
            top = self.grid.top
            yield Static(Text.assemble("weight % ", *((f" {round(100 * x * top)} ", heat_style(x))
                                                      for x in (0.0, 0.25, 0.5, 0.75, 1.0))))
            yield Static("Each row: where the decoder looked when it chose that token (the row sums to 100).",
                         classes="dim")


TERMS = (("responder", "resp"), ("pmi", "pmi"), ("pmi_mean", "pmi/t"), ("backward", "back"), ("judge", "judge"),
         ("unfinished", "cut"), ("repeat", "rep"), ("empty", "empty"))


def candidates_table(reply: RankedReply) -> Table:
    """The ranked candidates, best first: score, its terms (each weighted into the score) and the text."""
    table = Table(box=None, padding=(0, 1, 0, 0), show_edge=False, pad_edge=False)
    for title in ("", "score", *(t for _, t in TERMS)):
        table.add_column(title, justify="right", no_wrap=True)
    table.add_column("reply", overflow="fold")
    for i, c in enumerate(reply.ranked):
        mark = "▶" if i == reply.shown else ""
        table.add_row(mark, f"{c.score:+.2f}", *(f"{v:+.2f}" if (v := c.terms.get(k, 0.0)) else "·" for k, _ in TERMS),
                      Text(on_screen(c.text) or "(empty)", style="bold" if i == reply.shown else ""))
    return table


class CandidatesScreen(Dialog):
    """The last reply's candidates with their score terms: why the shown one won."""

    BINDINGS = [Binding("f5", "dismiss", "Close", show=False)]

    def __init__(self, reply: RankedReply | None, weights: RankWeights):
        super().__init__()
        self.reply, self.weights = reply, weights

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog", id="candidates"):
            yield Label("Last reply: the candidates, best first", classes="dialog-title")
            if self.reply is None or not self.reply.ranked:
                yield Static("no ranked reply yet: with /candidates 16 (or the side panel) each reply is chosen "
                             "from 16 candidates", id="no-candidates")
                return
            yield Static(candidates_table(self.reply), id="candidates-table")
            w = self.weights
            yield Static("score = " + " + ".join(f"{getattr(w, k):g}*{t}" for k, t in TERMS) + "   (resp = "
                         "log p(reply | chat) per token; pmi = log p(reply | chat) - log p(reply), pmi/t per token; "
                         "back = log p(your message | reply) per token; judge = P(sensible) + P(specific) by the "
                         "reply judge; cut, rep, empty: -1 when so; ▶ shown; "
                         "Ctrl+G shows the next)", classes="dim")


class SaveScreen(Dialog):
    """Asks for a name; dismisses with it (or None)."""

    def __init__(self, default: str, existing: Collection[str] = ()):
        super().__init__()
        self.default, self.existing = default, set(existing)
        self._confirmed: str | None = None  # an existing name the user was warned about

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="save"):
            yield Label("Save the conversation as", classes="dialog-title")
            yield Input(self.default, id="save-name", restrict=r"[A-Za-z0-9_.-]*", max_length=64)
            yield Static("Enter saves, Esc cancels", classes="dim")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        name = event.value
        if not NAME_RE.fullmatch(name):
            self.notify("use letters, digits, '_', '-' and '.'", severity="warning")
        elif name in self.existing and self._confirmed != name:
            self._confirmed = name
            self.notify(f"{name!r} exists: Enter again replaces it, or type another name", severity="warning")
        else:
            self.dismiss(name)


class LoadScreen(Dialog):
    """Lists the saved conversations (newest first); dismisses with the chosen name (or None).

    Delete (pressed twice) deletes the highlighted one and F2 renames it, through `store` (the session's
    `Store`); errors are notifications and change nothing.
    """

    BINDINGS = [Binding("delete", "delete", "Delete"), Binding("f2", "rename", "Rename")]

    def __init__(self, names: list[str], store: Store | None = None):
        super().__init__()
        self.names, self.store = list(names), store
        self._armed: str | None = None  # the name a first Delete asked about
        self._renaming: str | None = None

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="load"):
            yield Label("Load a conversation", classes="dialog-title")
            yield OptionList(*self.names, id="load-list")
            yield Input(id="rename", restrict=r"[A-Za-z0-9_.-]*", max_length=64, classes="hidden")
            keys = ", Del deletes, F2 renames" if self.store is not None else ""
            yield Static(f"Enter loads{keys}, Esc cancels", classes="dim")

    def _highlighted(self) -> str | None:
        index = self.query_one(OptionList).highlighted
        return None if index is None or not self.names else self.names[index]

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.names[event.option_index])

    def action_delete(self) -> None:
        name = self._highlighted()
        if self.store is None or name is None:
            return
        if self._armed != name:
            self._armed = name
            self.notify(f"Del again deletes {name!r}", severity="warning")
            return
        try:
            self.store.delete(name)
        except (SessionError, OSError) as e:
            self.notify(str(e), severity="error")
            return
        self._armed = None
        self._refresh(self.store.names())
        self.notify(f"deleted {name!r}")

    def action_rename(self) -> None:
        name = self._highlighted()
        if self.store is None or name is None:
            return
        field = self.query_one("#rename", Input)
        field.value, self._renaming = name, name
        field.remove_class("hidden")
        field.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        old, new = self._renaming, event.value
        try:
            self.store.rename(old, new)
        except (SessionError, OSError) as e:
            self.notify(str(e), severity="error")
            return
        event.input.add_class("hidden")
        self._refresh(self.store.names())
        self.query_one(OptionList).focus()
        self.notify(f"renamed {old!r} to {new!r}")

    def _refresh(self, names: list[str]) -> None:
        self.names = names
        options = self.query_one(OptionList)
        options.clear_options()
        options.add_options(names)
        if not names:
            self.dismiss(None)
        else:
            options.highlighted = 0