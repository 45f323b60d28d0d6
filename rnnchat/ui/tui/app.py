"""`rnnchat chat`: the Textual chat app (streaming replies, live sentiment, modes, settings, memory)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from functools import partial

from rich.text import Text
from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Label, RadioButton, RadioSet, Static, TextArea

from rnnchat.runtime import decode_threads
from rnnchat.engine.tokens import Token
from rnnchat.session.session import ChatSession
from rnnchat.session.store import SessionError
from rnnchat.session.transcript import MODE_TITLES, Mode, Turn
from rnnchat.sampling import SettingsError
from rnnchat.ui.tui.screens import AttentionScreen, CandidatesScreen, HelpScreen, TokensScreen
from rnnchat.ui.history import Recall, without_lone_surrogates
from rnnchat.ui.render import on_screen
from rnnchat.ui.tui.conversation_actions import ConversationActions
from rnnchat.ui.tui.widgets import Bubble, ChatLog, MessageInput, MoodLine, SentimentIndicator, StreamText

FLUSH_S = 1 / 20  # tokens reach the screen in batches, at most 20 updates a second (see StreamText on why)
SETTINGS = (("temperature", "temperature"), ("top_k", "top-k"), ("top_p", "top-p"), ("max_tokens", "max tokens"),
            ("skip", "skip words"), ("beam", "beam"), ("candidates", "candidates"))
WHO = {Mode.CHAT: "seq2seq", Mode.LM: "rnnchat", Mode.CONTINUE: "continue"}


def stopped_note(reply: Turn | None) -> str:
    return "(stopped)" if reply is not None and reply.stopped else ""


class ReplyTokens(Message):
    """A batch of sampled tokens, from the generation thread."""

    def __init__(self, tokens: list[Token]):
        super().__init__()
        self.tokens = tokens


class ReplyDone(Message):
    """The reply ended (finished, stopped, or failed with `error`)."""

    def __init__(self, error: str | None = None):
        super().__init__()
        self.error = error


class ChatApp(ConversationActions, App):
    """Chat with the models; the conversation's memory carries across turns and is saved after each reply."""

    CSS_PATH = "app.tcss"
    TITLE = "rnnchat"
    # Below 90 columns the side panel (32) and the sentiment box (34) would leave the message box too little
    # room, below 60 the box alone: app.tcss hides them (Screen classes).
    HORIZONTAL_BREAKPOINTS = [(0, "-tiny"), (60, "-narrow"), (90, "-wide")]
    BINDINGS = [
        Binding("escape", "stop", "Stop"),
        Binding("ctrl+r", "reset", "Reset"),
        Binding("ctrl+s", "save", "Save"),
        Binding("ctrl+o", "load", "Load"),
        # over the message box's own ctrl+e (end of line: End does it) and f6 (select line)
        Binding("ctrl+e", "export", "Export", show=False, priority=True),
        Binding("f6", "copy_reply", "Copy", show=False, priority=True),
        Binding("f1", "help", "Help"),
        Binding("f2", "next_mode", "Mode"),
        Binding("f3", "tokens", "Probs"),
        Binding("f4", "attention", "Attention"),
        Binding("f5", "candidates", "Candidates"),
        Binding("ctrl+g", "retry", "Retry"),
        Binding("question_mark", "help", "Help", show=False),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    def __init__(self, session: ChatSession, notes: Sequence[str] = (), *, cursor_blink: bool = True):
        super().__init__()
        self.session, self.notes, self.blink = session, list(notes), cursor_blink
        self.generating = False
        self._cancel = threading.Event()
        self._view: StreamText | None = None
        self._bubble: Bubble | None = None
        self._streamed = 0
        self._queued: list[str] = []  # messages typed while a reply was streaming, sent in order after it
        self._quit_armed = False  # a quit met queued messages: a second Ctrl+Q quits
        self._reset_armed: tuple | None = None  # a reset failed: the conversation a second Ctrl+R would reset
        self._recall = Recall.from_file(session.directory / "repl_history")  # shared with the REPL (its format)

    def notify(self, message: str, *, markup: bool = False, **kw) -> None:
        """Plain text: notes quote typed words and paths ("[/" in one was a MarkupError that closed the app)."""
        super().notify(message, markup=markup, **kw)

    # -- layout ----------------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        s = self.session
        yield Header()
        with Horizontal(id="body"):
            with Vertical(id="main"):
                yield ChatLog(id="chat")
                with Horizontal(id="input-row"):
                    yield MessageInput(self._recall, placeholder="Message, or /help (Shift+Enter or Ctrl+J: new "
                                                                 "line; Up: earlier ones)", id="prompt")
                    yield SentimentIndicator(s.sentiment is not None, id="indicator")
            with VerticalScroll(id="side"):
                yield Label("Mode", classes="side-title")
                with RadioSet(id="modes"):
                    for m in Mode:
                        yield RadioButton(MODE_TITLES[m], value=m is s.mode, id=f"mode-{m.value}",
                                          disabled=s.unavailable(m) is not None)
                for m in Mode:
                    if reason := s.unavailable(m):
                        yield Static(reason, classes="unavailable")
                yield Label("Sampling", classes="side-title")
                for name, title in SETTINGS:
                    with Horizontal(classes="setting-row"):
                        yield Label(title, classes="setting-label")
                        yield Input(self._setting_text(name), id=f"set-{name}", classes="setting",
                                    placeholder="none" if name == "skip" else "",
                                    disabled=name == "beam" and s.unavailable(Mode.CHAT) is not None)
                yield Static("", id="settings-error")
                yield Label("Last reply", classes="side-title")
                yield Static("-", id="speed")
                yield MoodLine(id="mood")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = MODE_TITLES[self.session.mode]
        for field in [*self.query(Input), *self.query(MessageInput)]:
            field.cursor_blink = self.blink
        self._prompt = self.query_one("#prompt", MessageInput)
        self._indicator = self.query_one(SentimentIndicator)
        self._render_transcript()
        self._prompt.focus()
        for note in self.notes:
            self.notify(note, severity="warning", timeout=8)

    def _setting_text(self, name: str) -> str:
        if name in ("beam", "candidates"):
            return str(getattr(self.session, name))
        value = getattr(self.session.settings, name)
        return ", ".join(value) if name == "skip" else f"{value:g}"

    def _render_transcript(self) -> None:
        """Rebuild the chat pane from the session's transcript (on start, reset and load)."""
        log = self.query_one(ChatLog)
        entries, bubbles = self.session.transcript, []
        for i, m in enumerate(entries):
            if m.role == "user" and m.mode is Mode.CONTINUE:
                reply = entries[i + 1] if i + 1 < len(entries) else None
                bubbles.append(Bubble(WHO[m.mode], StreamText(reply.text if reply else "", prefix=m.text),
                                      m.sentiment, note=stopped_note(reply), classes="continue"))
            elif m.role == "user":
                bubbles.append(Bubble("you", Static(Text(on_screen(m.text))), m.sentiment, classes="user"))
            elif m.mode is not Mode.CONTINUE:
                bubbles.append(Bubble(WHO[m.mode], StreamText(m.text), m.sentiment, note=stopped_note(m),
                                      classes="reply"))
        log.show_all(bubbles)
        self._show_stats()

    def _show_stats(self) -> None:
        stats = self.session.last_stats
        speed = "-" if stats is None else f"{stats.tokens} tokens, {stats.tokens_per_s:.1f} tok/s"
        self.query_one("#speed", Static).update(speed)
        self.query_one(MoodLine).show(self.session.moods(), self.session.moods("assistant"))

    # -- typing and sending ----------------------------------------------------------------------------------
    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        if event.text_area.id == "prompt":
            self._indicator.show(self.session.mood(event.text_area.text))

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id and event.input.id.startswith("set-"):
            self._apply_setting(event.input)

    def _apply_setting(self, field: Input) -> None:
        error = self.query_one("#settings-error", Static)
        try:
            self.session.set_setting(field.id.removeprefix("set-"), field.value)
        except SettingsError as e:
            field.add_class("-invalid")
            error.update(Text(str(e)))  # (it quotes what was typed: not markup)
            error.display = True
            return
        field.remove_class("-invalid")
        if not self.query(".setting.-invalid"):
            error.display = False

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._prompt.focus()  # Enter in a setting: back to the message box

    def on_message_input_submitted(self, event: MessageInput.Submitted) -> None:
        text = self.session.message_text(without_lone_surrogates(event.value))  # (no file could hold one)
        if not text:
            return
        self._prompt.value = ""
        if not self._recall.add(text):  # (said once; then kept in memory only)
            self.notify(f"input history not saved: {self._recall.unsaved} cannot be written", severity="warning")
        if self.generating:  # typed ahead: sent in order once the reply streaming now is done, never lost
            self._queued.append(text)
            self._quit_armed = False  # a new message queued: Ctrl+Q warns again
            self.notify(f"queued ({len(self._queued)}): sent when this reply is done (Esc: stop, and keep it here)")
            return
        self._submit(text)

    def _submit(self, text: str) -> None:
        if text.startswith("/"):
            self._command(text)
        else:
            self.send(text)

    def send(self, text: str) -> None:
        """Show the user's message and stream the reply into a new bubble."""
        s = self.session
        if reason := s.unavailable(s.mode):
            self.notify(reason, severity="error")
            return
        mood, log = s.mood(text), self.query_one(ChatLog)
        if s.mode is Mode.CONTINUE:
            self._view = StreamText(prefix=text)
            self._bubble = Bubble(WHO[s.mode], self._view, mood, classes="continue")
        else:
            log.add(Bubble("you", Static(Text(on_screen(text))), mood, classes="user"))
            self._view = StreamText()
            self._bubble = Bubble(WHO[s.mode], self._view, classes="reply")
        log.add(self._bubble)
        self._start(partial(s.respond, text, mood=mood))

    def _start(self, reply) -> None:
        """Run `reply(cancel)` (a token stream) in the worker thread into the current bubble."""
        s = self.session
        self._cancel, self._streamed, self.generating = threading.Event(), 0, True
        ranked = s.candidates > 1 and s.mode is not Mode.CONTINUE
        # ranked replies appear whole once made: until then the bubble shows a loading indicator, not a replay
        self._bubble.loading = ranked
        self.query_one("#speed", Static).update(f"making {s.candidates} candidates..." if ranked
                                                else "generating...")
        self._generate(reply, self._cancel)

    @work(thread=True, exclusive=True, group="reply")
    def _generate(self, reply, cancel: threading.Event) -> None:
        batch: list[Token] = []
        last, error = 0.0, None
        try:
            with decode_threads(self.session.candidates):
                for tok in reply(cancel):
                    batch.append(tok)
                    if time.monotonic() - last >= FLUSH_S:
                        self.post_message(ReplyTokens(batch))
                        batch, last = [], time.monotonic()
        except (SessionError, SettingsError) as e:
            error = str(e)
        finally:
            if batch:
                self.post_message(ReplyTokens(batch))
            self.post_message(ReplyDone(error))

    def on_reply_tokens(self, message: ReplyTokens) -> None:
        # while a reply streams, the decode thread waits for the GIL whenever this thread lays out or paints:
        # only the reply's text may change the layout (a new line), the counter is painted in place
        if self._bubble.loading:
            self._bubble.loading = False
        self._view.append("".join(t.text for t in message.tokens))
        self._streamed += len(message.tokens)
        self.query_one("#speed", Static).update(f"generating... {self._streamed} tokens", layout=False)

    def on_reply_done(self, message: ReplyDone) -> None:
        self.generating = False
        self._bubble.loading = False
        self._view.finish()
        stats = self.session.last_stats
        if message.error:
            self.notify(message.error, severity="error")
        if stats and stats.stopped:
            self._bubble.set_note("(stopped)")
        if "continue" not in self._bubble.classes and (mood := self.session.last_reply_mood) is not None:
            self._bubble.set_mood(mood)  # the reply's own mood, scored once it is whole (a continuation's bubble
            # shows the user's text and its mood; the bubble's kind, not the mode: F2 may have changed that)
        if stats and stats.save_error:
            self.notify(stats.save_error, severity="error")
        self._show_stats()
        while self._queued and not self.generating:
            self._submit(self._queued.pop(0))

    def _command(self, line: str) -> None:
        name = line[1:].split(maxsplit=1)[0] if len(line) > 1 else ""
        if name == "help":
            return self.action_help()
        if name == "quit":
            return self.action_quit()
        if name == "retry":
            return self.action_retry()
        try:
            message = self.session.command(line)
        except (SessionError, SettingsError, OSError) as e:
            self.notify(str(e), severity="error")
            return
        self._sync_panel()
        if name in ("reset", "load"):
            self._render_transcript()
        self.notify(message)

    def _sync_panel(self) -> None:
        """Show the session's settings and mode in the side panel (after a slash command)."""
        for name, _ in SETTINGS:
            self.query_one(f"#set-{name}", Input).value = self._setting_text(name)
        self.query_one(f"#mode-{self.session.mode.value}", RadioButton).value = True
        self.sub_title = MODE_TITLES[self.session.mode]

    # -- modes -----------------------------------------------------------------------------------------------
    def on_radio_set_changed(self, event: RadioSet.Changed) -> None:
        self.set_mode(Mode(event.pressed.id.removeprefix("mode-")))

    def set_mode(self, mode: Mode) -> None:
        try:
            self.session.set_mode(mode)
        except SessionError as e:
            self.notify(str(e), severity="error")
            return
        self.query_one(f"#mode-{mode.value}", RadioButton).value = True
        self.sub_title = MODE_TITLES[mode]

    def action_next_mode(self) -> None:
        modes = [m for m in Mode if self.session.unavailable(m) is None]
        self.set_mode(modes[(modes.index(self.session.mode) + 1) % len(modes)])

    # -- actions ---------------------------------------------------------------------------------------------
    def exit(self, *args, **kwargs) -> None:
        self._cancel.set()  # a reply being written stops at its next token (and is saved) instead of finishing
        super().exit(*args, **kwargs)

    def action_stop(self) -> None:
        """Stop the reply (the memory keeps exactly the tokens shown); messages queued behind it are not sent: the
        first goes back into an empty message box, Up recalls each of them (they were joined into one line,
        slash commands and all). Otherwise back to the message box."""
        if self.generating:
            self._cancel.set()
            left, self._queued = list(self._queued), []  # (each one is in the input history already)
            if left and not self._prompt.value.strip():
                self._prompt.value = left.pop(0)
            if left:
                self.notify(f"{len(left)} queued message(s) not sent: Up recalls them")
        else:
            self._prompt.focus()

    def _idle(self, what: str) -> bool:
        if self.generating:
            self.notify(f"a reply is streaming: stop it (Esc) before you {what}", severity="warning")
        return not self.generating

    def action_retry(self) -> None:
        """Replace the last reply by the next ranked candidate (or a fresh draw)."""
        if not self._idle("regenerate"):
            return
        s, log = self.session, self.query_one(ChatLog)
        bubbles = log.query(Bubble)
        if s.last_reply is None or not bubbles or "reply" not in bubbles.last().classes:
            self.notify("nothing to regenerate: send a message first (chat modes)", severity="warning")
            return
        log.remove_last()
        self._view = StreamText()
        self._bubble = Bubble(WHO[s.last_reply.mode], self._view, classes="reply")
        log.add(self._bubble)
        self._start(s.regenerate)

    def action_candidates(self) -> None:
        if not isinstance(self.screen, CandidatesScreen):
            self.push_screen(CandidatesScreen(self.session.last_reply, self.session.ranker.weights))

    def action_tokens(self) -> None:
        if not isinstance(self.screen, TokensScreen):
            self.push_screen(TokensScreen(list(self.session.last_tokens)))

    def action_attention(self) -> None:
        if not isinstance(self.screen, AttentionScreen):
            self.push_screen(AttentionScreen(list(self.session.last_tokens)))

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Stop reply", "Stop the reply being written (Esc)", self.action_stop)
        yield SystemCommand("Reset memory", "Forget the conversation, start a new one (Ctrl+R)", self.action_reset)
        yield SystemCommand("Save conversation", "Save the conversation under a name (Ctrl+S)", self.action_save)
        yield SystemCommand("Load conversation", "Load a saved conversation (Ctrl+O)", self.action_load)
        yield SystemCommand("Copy last reply", "The last reply to the clipboard (F6)", self.action_copy_reply)
        yield SystemCommand("Export transcript", "The conversation as Markdown in exports/ (Ctrl+E)",
                            self.action_export)
        for m in Mode:
            if self.session.unavailable(m) is None:
                yield SystemCommand(f"Mode: {MODE_TITLES[m]}", f"Switch to {m.value} mode (F2 cycles)",
                                    partial(self.set_mode, m))
        yield SystemCommand("Token probabilities", "The last reply coloured by probability (F3)", self.action_tokens)
        yield SystemCommand("Attention weights", "What the seq2seq model looked at in your words, per reply token "
                            "(F4)", self.action_attention)
        yield SystemCommand("Candidates", "The last reply's candidates and why the shown one won (F5)",
                            self.action_candidates)
        yield SystemCommand("Regenerate", "Replace the last reply by the next candidate (Ctrl+G, /retry)",
                            self.action_retry)
        yield SystemCommand("Help", "Keys, slash commands and modes (F1)", self.action_help)
