"""`rnnchat repl`: a line REPL (prompt_toolkit) with streamed replies and a live sentiment toolbar.

Ctrl+C stops a reply (the memory keeps exactly the tokens printed) or clears the line; Ctrl+D exits.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TextIO

from prompt_toolkit import PromptSession
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.input import Input
from prompt_toolkit.key_binding import KeyBindings
from prompt_toolkit.output import Output

from rnnchat.control_chars import visible
from rnnchat.runtime import decode_threads
from rnnchat.sampling import SettingsError
from rnnchat.session.commands import COMMAND_HELP
from rnnchat.session.session import ChatSession, ReplyStats
from rnnchat.session.store import SessionError
from rnnchat.session.transcript import MODE_TITLES, Mode
from rnnchat.ui.history import append_history, without_lone_surrogates
from rnnchat.ui.render import attention_grid, attention_text, score_bar

MOOD_STYLES = {"negative": "bg:ansired fg:ansiwhite", "neutral": "bg:ansiyellow fg:ansiblack",
               "positive": "bg:ansigreen fg:ansiblack"}
PROMPTS = {Mode.CHAT: "you> ", Mode.LM: "you> ", Mode.CONTINUE: "text> "}
REPLY_PREFIX = {Mode.CHAT: "seq2seq> ", Mode.LM: "rnnchat> "}  # continue mode prints the user's text instead
class Utf8FileHistory(FileHistory):
    """prompt_toolkit's history file, written as `append_history` writes it: a line holding a lone surrogate, or
    a file that became unwritable (a full disk, a folder in its place) raised inside the prompt, which then
    stopped after every line ("Unhandled exception ... Press ENTER"). A failed write calls `on_fail` once; the
    history goes on in memory."""

    def __init__(self, filename: str, on_fail: Callable[[str], None]):
        super().__init__(filename)
        self.on_fail, self.failed = on_fail, False

    def store_string(self, string: str) -> None:
        if not self.failed and not append_history(Path(self.filename), string):
            self.failed = True
            self.on_fail(f"input history not saved: {self.filename} cannot be written")
REPL_HELP = COMMAND_HELP[:-2] + (("/attention", "last seq2seq reply's attention over your words"),) + COMMAND_HELP[-2:]


class Repl:
    """The read-eval-print loop over a `ChatSession`; `input`/`output` are for tests (pipe input, dummy output)."""

    def __init__(self, session: ChatSession, notes: Sequence[str] = (), *, input: Input | None = None,
                 output: Output | None = None, out: TextIO | None = None, lines: TextIO | None = None):
        """lines: read plain lines from this stream (stdin that is a file or a pipe) instead of prompting."""
        self.session, self.notes, self.out, self.lines = session, list(notes), out or sys.stdout, lines
        self._block = False  # the last input was a """ block
        self.prompt = None if lines is not None else PromptSession(
            history=self._history(session.directory / "repl_history"), bottom_toolbar=self.toolbar, input=input,
            output=output, key_bindings=_newline_keys())

    def _history(self, path: Path) -> History:
        """The history file, or history in memory (with a note) where the file cannot be written: a failing
        FileHistory would make prompt_toolkit stop after every line ("Unhandled exception ... Press ENTER")."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            usable = (path.is_file() and os.access(path, os.R_OK | os.W_OK)) or (
                not path.exists() and not path.is_symlink() and os.access(path.parent, os.W_OK | os.X_OK))
        except OSError:
            usable = False
        if usable:
            return Utf8FileHistory(str(path), self._print)
        self.notes.append(f"input history not saved: {path} cannot be written")
        return InMemoryHistory()

    def toolbar(self) -> FormattedText:
        """Mode, settings and the live sentiment of the line being typed (re-rendered on every keystroke)."""
        s = self.session
        beam = f" beam {s.beam}" if s.mode is Mode.CHAT and s.beam else ""
        parts = [("", f" {MODE_TITLES[s.mode]} | temp {s.settings.temperature:g} top-k {s.settings.top_k} "
                      f"top-p {s.settings.top_p:g}{beam} | ")]
        text = self.prompt.default_buffer.text
        if s.sentiment is None:
            return FormattedText(parts + [("", "sentiment: unavailable ")])
        mood = None if text.startswith("/") else s.mood(text)
        if mood is None:
            return FormattedText(parts + [("", "sentiment: - ")])
        left, right = score_bar(mood.score, fill="#")
        return FormattedText(parts + [(MOOD_STYLES[mood.label], f" {mood.label} {mood.score:+.2f} "),
                                      ("", f" [{left}|{right}] ")])

    def run(self) -> int:
        """Prompt until /quit or Ctrl+D; returns the exit code."""
        for note in self.notes:
            self._print(f"note: {note}")
        self._print("rnnchat repl: /help for commands, Ctrl+C stops a reply, Ctrl+D exits")
        while True:
            try:
                line = self._read()
            except KeyboardInterrupt:
                if self.lines is not None:  # no prompt to come back to: a script interrupted
                    return 130
                continue
            except EOFError:
                return 0
            if self._block:  # a block is a message, even one that starts with "/"
                if text := self.session.message_text(line):
                    self.reply(text)
            elif not self.handle(line):
                return 0

    def _read(self) -> str:
        """The next message (EOFError at the end). A line starting with \"\"\" opens a block that runs to a line
        ending with \"\"\" (as `ollama run` reads them); Alt+Enter also starts a new line in a typed message.
        Piped lines are echoed after the prompt, as typed ones are."""
        first = self._line(PROMPTS[self.session.mode])
        self._block = first.lstrip().startswith(BLOCK)
        if not self._block:
            return first
        text = first.lstrip()[len(BLOCK):]
        parts = []
        while not text.rstrip().endswith(BLOCK):
            parts.append(text)
            try:
                text = self._line("... ")
            except EOFError:  # an unclosed block at the end of input: send what there is
                return "\n".join(parts)
        parts.append(text.rstrip()[:-len(BLOCK)])
        return "\n".join(parts).strip("\n")

    def _line(self, prompt: str) -> str:
        if self.lines is None:  # bad terminal bytes become U+FFFD, as in piped input
            return without_lone_surrogates(self.prompt.prompt(prompt))
        line = self.lines.readline()
        if not line:
            raise EOFError
        line = line.rstrip("\r\n")
        self._print(prompt + line)
        return line

    def handle(self, line: str) -> bool:
        """Run one input line; False means quit."""
        text = line.strip()
        if text.startswith("/"):
            return self.command(text)
        if text := self.session.message_text(line):
            self.reply(text)
        return True

    def command(self, text: str) -> bool:
        name = text[1:].split(maxsplit=1)[0] if len(text) > 1 else ""
        if name in ("quit", "exit"):
            return False
        if name == "help":
            self._print("\n".join(f"  {cmd:<24}{what}" for cmd, what in REPL_HELP))
            return True
        if name == "attention":
            self._print(attention_text(attention_grid(self.session.last_tokens)))
            return True
        if name == "retry":
            self.reply(None)
            return True
        try:
            self._print(self.session.command(text))
        except (SessionError, SettingsError, OSError) as e:
            self._print(f"error: {e}")
        return True

    def reply(self, text: str | None) -> ReplyStats | None:
        """Stream the reply to `text` (None: regenerate the last reply); Ctrl+C (SIGINT) stops it and the REPL
        goes on."""
        s = self.session
        if reason := s.unavailable(s.mode):
            self._print(f"error: {reason}")
            return None
        if text is None and s.last_reply is None:
            self._print("error: nothing to regenerate: send a message first (chat modes)")
            return None
        cancel, errors, tail = threading.Event(), [], ""
        if text is None:
            tokens, prefix = s.regenerate(cancel), REPLY_PREFIX.get(s.last_reply.mode, "")
        else:
            tokens, prefix = s.respond(text, cancel, s.mood(text)), REPLY_PREFIX.get(s.mode, text)
        self.out.write(visible(prefix))
        with sigint_sets(cancel), decode_threads(s.candidates):
            try:
                for tok in tokens:
                    self.out.write(visible(tok.text))
                    self.out.flush()
                    tail = tok.text or tail
            except (SessionError, SettingsError) as e:
                errors.append(str(e))
        stats = s.last_stats
        if not tail.endswith("\n"):
            self._print("")
        for problem in errors + ([stats.save_error] if stats and stats.save_error else []):
            self._print(f"error: {problem}")
        if stats:
            stopped = ", stopped" if stats.stopped else ""
            mood = "" if (m := s.last_reply_mood) is None else f", mood {m.label} {m.score:+.2f}"
            self._print(f"[{stats.tokens} tokens, {stats.tokens_per_s:.1f} tok/s{stopped}{mood}]")
        return stats

    def _print(self, text: str) -> None:
        self.out.write(visible(text) + "\n")  # (escape sequences from a loaded conversation are shown, not obeyed)
        self.out.flush()


BLOCK = '"""'


def _newline_keys() -> KeyBindings:
    """Alt+Enter (Esc then Enter) inserts a new line in the message; Enter sends it."""
    keys = KeyBindings()

    @keys.add("escape", "enter")
    def _(event) -> None:
        event.current_buffer.insert_text("\n")
    return keys


@contextlib.contextmanager
def sigint_sets(event: threading.Event) -> Iterator[None]:
    """While active (in the main thread), Ctrl+C sets `event` instead of raising KeyboardInterrupt, so a
    reply stops between two tokens and never in the middle of a model step."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: event.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run_repl(session: ChatSession, notes: Sequence[str] = ()) -> int:
    """The REPL on the terminal; with stdin a file or a pipe, its lines run one by one (UTF-8, bad bytes
    replaced) and the REPL ends at its end."""
    if sys.stdin is None or not sys.stdin.isatty():
        if sys.stdin is None:
            return Repl(session, notes, lines=io.StringIO()).run()
        lines = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8-sig", errors="replace")
        return Repl(session, notes, lines=lines).run()
    return Repl(session, notes).run()
