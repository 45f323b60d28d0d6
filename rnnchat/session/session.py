"""UI-independent chat logic shared by the Textual app and the REPL: modes, settings, replies, memory.

Threading: `respond` is a generator meant to be driven by one worker thread; while it runs, nothing else may
touch the session (the UIs refuse reset/save/load/send until the reply is finished or stopped). Sentiment
(`mood`) runs on the UI thread only. Files: `session.store`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from rnnchat import paths
from rnnchat.engine.conversation import Conversation
from rnnchat.engine.engine import Engine
from rnnchat.engine.ranking import Ranker, check_candidates
from rnnchat.engine.seq2seq_chat import ChatState, Seq2SeqChat
from rnnchat.engine.tokens import Token, continued
from rnnchat.models.sentiment_result import Sentiment
from rnnchat.sampling import SamplingSettings, SettingsError, skip_ids, skip_ids_as_words
from rnnchat.session import commands, replies
from rnnchat.session.config import DEFAULT_MODE
from rnnchat.session.store import LAST, OtherModelsConversation, SessionError, Store
from rnnchat.session.transcript import Mode, Turn, now

MAX_BEAM = 16


class SentimentLike(Protocol):
    """What the session needs from a sentiment classifier: `set_text(text)` (incremental, on every keystroke)
    and `classify(text)` (from scratch, leaving the incremental state alone), each -> object with .label, .score."""

    def set_text(self, text: str) -> Any: ...

    def classify(self, text: str) -> Any: ...


@dataclass(frozen=True)
class ReplyStats:
    tokens: int
    seconds: float
    stopped: bool
    save_error: str | None = None

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


MAX_MOOD_CHARS = 20_000


class ChatSession:
    """One conversation with the models, its sampling settings and its files."""

    def __init__(self, engine: Engine, sentiment: SentimentLike | None = None, *, sentiment_note: str = "",
                 seq2seq: Seq2SeqChat | None = None, seq2seq_note: str = "", settings: SamplingSettings | None = None,
                 directory: Path | None = None, clock: Callable[[], float] = time.perf_counter,
                 ranker: Ranker | None = None, candidates: int = 1, mode: Mode = DEFAULT_MODE):
        self.engine, self.sentiment, self.seq2seq, self.clock = engine, sentiment, seq2seq, clock
        self.sentiment_note = sentiment_note if sentiment is None else ""
        self.seq2seq_note = seq2seq_note if seq2seq is None else ""
        self.settings = settings or SamplingSettings()
        self.conv = engine.conversation(cache=self.settings.cache)
        self.chat_state = ChatState()  # the seq2seq model's memory of this conversation
        self.transcript: list[Turn] = []
        skip_ids(self.settings, engine.vocab)  # unknown skip words fail now, not at the first reply
        self.store = Store(directory or paths.data_dir())
        self.directory = self.store.directory
        self.mode = self.fallback_mode
        self.set_mode(self.mode if mode is DEFAULT_MODE and self.unavailable(mode) else mode)
        self.beam = 0  # beam width of seq2seq chat replies (0 = sampled with the settings)
        self.last_tokens: list[Token] = []
        self.last_stats: ReplyStats | None = None
        self.autosave_blocked: str | None = None  # why `last` must not be written (an unreadable one is there)
        self.autosave_off = False  # another process autosaves into this data directory (said once, at start)
        self.ranker = ranker or Ranker(engine.decoder, engine.vocab)
        self.candidates = check_candidates(candidates)  # replies made per message and ranked (1 = streamed)
        self.last_reply: replies.RankedReply | None = None  # what the last reply was made from (regenerate)

    # -- modes and settings ----------------------------------------------------------------------------------
    @property
    def fallback_mode(self) -> Mode:
        """The mode to be in when the one asked for is unavailable: LM chat, or continue where the LM cannot chat."""
        return Mode.CONTINUE if self.engine.chat_problem else Mode.LM

    def unavailable(self, mode: Mode) -> str | None:
        """Why `mode` cannot be used, or None."""
        if mode is Mode.LM:
            return self.engine.chat_problem
        if mode is not Mode.CHAT or self.seq2seq is not None:
            return None
        return "seq2seq model not available" + (f" ({self.seq2seq_note})" if self.seq2seq_note else "")

    def set_mode(self, mode: Mode | str) -> None:
        try:
            mode = Mode(mode)
        except ValueError:
            raise SessionError(f"unknown mode {mode!r}: use {', '.join(m.value for m in Mode)}") from None
        if reason := self.unavailable(mode):
            raise SessionError(reason)
        self.mode = mode

    def message_text(self, typed: str) -> str:
        """What of a typed message is sent ("" for nothing): stripped of surrounding white space, except where a
        char-level model continues it, which sees every character ("def " goes on otherwise than "def")."""
        if not typed.strip():
            return ""
        return typed if self.mode is Mode.CONTINUE and self.engine.vocab.level == "char" else typed.strip()

    def update_settings(self, **changes: Any) -> None:
        """Apply setting changes (validated, skip words against the vocabulary); SettingsError if invalid."""
        new = self.settings.with_(**changes)
        skip_ids(new, self.engine.vocab)
        self.settings = new
        if "cache" in changes:  # the cache is kept only while it is on (it starts empty when turned on)
            self.conv.use_cache(self.engine.cache_settings if new.cache else None)

    def set_beam(self, width: int) -> None:
        """Reply in seq2seq chat mode by beam search of this width (0 = sample); SettingsError if not possible."""
        if not 0 <= width <= MAX_BEAM:
            raise SettingsError(f"beam width must be in [0, {MAX_BEAM}] (0 = sample), got {width}")
        if width and self.seq2seq is None:
            raise SettingsError("beam search needs the seq2seq chat model")
        self.beam = width

    def set_candidates(self, n: int) -> None:
        """Make n replies per message and show the best ranked one (1 = one sample, streamed)."""
        self.candidates = check_candidates(n)

    def set_setting(self, name: str, text: str) -> None:
        commands.set_setting(self, name, text)

    def describe_settings(self) -> str:
        s = self.settings
        beam = f", beam {self.beam}" if self.seq2seq is not None else ""
        cache = f", cache {'on' if s.cache else 'off'}" if self.engine.cache_settings is not None else ""
        empty = " (every reply is empty)" if s.max_tokens == 0 else ""
        return (f"temperature {s.temperature:g}, top-k {s.top_k}, top-p {s.top_p:g}, max tokens {s.max_tokens}"
                f"{empty}, guidance {s.guidance:g}, skip {', '.join(s.skip) or '-'}{beam}, "
                f"candidates {self.candidates}{cache}")

    def command(self, line: str) -> str:
        """Run a slash command other than /help and /quit (see `session.commands`)."""
        return commands.run(self, line)

    # -- sentiment -------------------------------------------------------------------------------------------
    def mood(self, text: str) -> Sentiment | None:
        """Sentiment of `text` (incremental: call it on every keystroke); None if unavailable, empty or longer
        than MAX_MOOD_CHARS (a pasted book would take the classifier ~40 s per MB: too slow to be live)."""
        return self._scored(text, live=True)

    def text_mood(self, text: str) -> Sentiment | None:
        """Sentiment of a finished text (a reply), from scratch: the typing state is left alone, so it may run on
        the reply's worker thread while the user types (the classifier's reader of unseen words is locked). None as
        for `mood`."""
        return self._scored(text, live=False)

    def _scored(self, text: str, live: bool) -> Sentiment | None:
        if self.sentiment is None or not text.strip() or len(text) > MAX_MOOD_CHARS:
            return None
        result = (self.sentiment.set_text if live else self.sentiment.classify)(text)
        return Sentiment(str(result.label), float(result.score))

    @property
    def last_reply_mood(self) -> Sentiment | None:
        """The mood of the last reply (or continuation), if the transcript ends with one."""
        last = self.transcript[-1] if self.transcript else None
        return last.sentiment if last is not None and last.role == "assistant" else None

    def moods(self, role: str = "user") -> list[float]:
        """Scores of the user's messages (or the bot's replies, role "assistant") so far."""
        return [t.sentiment.score for t in self.transcript if t.role == role and t.sentiment]

    def _reply_turn(self, text: str, mode: Mode, stopped: bool) -> Turn:
        return Turn("assistant", text, mode, sentiment=self.text_mood(text), stopped=stopped, time=now())

    # -- replies ---------------------------------------------------------------------------------------------
    def respond(self, text: str, cancel: threading.Event | None = None,
                mood: Sentiment | None = None) -> Iterator[Token]:
        """Feed the user's `text` as the mode requires and yield the reply's tokens as they are sampled.

        Stops on <eot>, max tokens or `cancel`; the memory then holds exactly the tokens yielded. A `cancel`
        while a long message is still being read stops the reading: the memory holds the part read, the reply is
        empty and there is nothing to regenerate. The user's message and the reply are added to the transcript
        and the conversation is autosaved.
        """
        mode = self.mode
        if reason := self.unavailable(mode):
            raise SessionError(reason)
        cancel = cancel or threading.Event()
        settings = self.settings
        if settings.seed is not None:  # reproducible, but not the same draws every turn
            settings = settings.with_(seed=settings.seed + sum(t.role == "assistant" for t in self.transcript))
        self.transcript.append(Turn("user", text, mode, sentiment=mood, time=now()))
        shown: list[Token] = []
        t0 = self.clock()
        try:
            for tok in self._tokens(mode, text, settings, cancel):
                shown.append(tok)
                yield tok
        finally:
            seconds = self.clock() - t0
            self.transcript.append(self._reply_turn("".join(t.text for t in shown), mode, cancel.is_set()))
            self.last_tokens = shown
            self.last_stats = ReplyStats(len(shown), seconds, cancel.is_set(), self._autosave_error())

    def _tokens(self, mode: Mode, text: str, settings: SamplingSettings, cancel: threading.Event) -> Iterator[Token]:
        vocab = self.engine.vocab
        self.last_reply = None
        beam = self.beam if mode is Mode.CHAT else 0
        if mode is Mode.CHAT:
            # "#N" skip items name the LM's token ids (what `generate --json` shows); the seq2seq model has its
            # own vocabulary, so it gets the words
            settings = skip_ids_as_words(settings, vocab)
        if mode is not Mode.CONTINUE and self.candidates > 1 and not beam:
            yield from self._ranked(mode, text, settings, cancel)
            return
        if mode is Mode.CHAT:
            before = replies.RankedReply(mode, text, settings, 1, self.conv, self.chat_state.copy(), None, [])
            source = self.seq2seq.reply(self.chat_state, text, settings, cancel, beam=beam)
        elif mode is Mode.LM:
            self.conv.close_turn()
            self.conv.feed(text, end_turn=True, cancel=cancel)
            if cancel.is_set():  # stopped while the message was read, as in _ranked
                return
            before = replies.RankedReply(mode, text, settings, 1, self.conv.fork(), self.chat_state, None, [])
            source = self.conv.stream(settings, cancel, stop_ids=(vocab.eot_id,), not_first=vocab.end_ids)
        else:
            self.conv.feed(text, cancel=cancel)
            source = continued(text, self.conv.stream(settings, cancel, stop_ids=(vocab.eot_id,)), vocab)
        try:
            with contextlib.closing(source):
                yield from source
        finally:
            if mode is not Mode.CONTINUE and not beam:  # regenerate draws again from the memory before it
                self.last_reply = before

    def _ranked(self, mode: Mode, text: str, settings: SamplingSettings, cancel: threading.Event) -> Iterator[Token]:
        """The best of `candidates` replies (seq2seq chat, or LM chat), shown at once when ranked."""
        if mode is Mode.LM:
            self.conv.close_turn()
            self.conv.feed(text, end_turn=True, cancel=cancel)
        if cancel.is_set():  # stopped while the message was read: no candidates are made
            return
        reply = replies.make(mode, text, settings, self.candidates, self.conv, self.seq2seq, self.chat_state,
                             self.ranker, self._recent_replies(), cancel)
        self.last_reply = reply
        if not cancel.is_set():
            yield from replies.play(reply, self.seq2seq, self._keep)

    def _keep(self, conv: Conversation | None, chat_state: ChatState | None) -> None:
        """The memory after a ranked reply was shown (see `replies.play`)."""
        if conv is not None:  # (a regenerated reply's memory is from before it: the cache follows the setting now)
            self.conv = conv
            conv.use_cache(self.engine.cache_settings if self.settings.cache else None)
        if chat_state is not None:
            self.chat_state = chat_state

    def _recent_replies(self, k: int = 3) -> list[str]:
        return [t.text for t in self.transcript if t.role == "assistant"][-k:]

    def prime(self, user: str, reply: str) -> None:
        """Add a past exchange to the conversation as if it had been said (both memories and the transcript):
        a script's earlier turns, or a conversation read from a file."""
        self.conv.close_turn()
        self.conv.feed(user, end_turn=True)
        self.conv.feed(reply, end_turn=True)
        if self.seq2seq is not None:
            self.seq2seq.prime(self.chat_state, user, reply)
        self.transcript += [Turn("user", user, self.mode, sentiment=self.text_mood(user), time=now()),
                            self._reply_turn(reply, self.mode, False)]
        self.last_reply = None

    def regenerate(self, cancel: threading.Event | None = None) -> Iterator[Token]:
        """Replace the last reply by the next ranked candidate, or a fresh draw once they are used up; the
        memory then holds exactly the reply shown (the replaced one is forgotten). SessionError if there is no
        reply to replace (none yet, or the last one was a continuation or a beam search)."""
        reply = self.last_reply
        if reply is None or not self.transcript or self.transcript[-1].role != "assistant":
            raise SessionError("nothing to regenerate: the last message has no chat reply to replace")
        cancel = cancel or threading.Event()
        self.transcript.pop()
        reply = self.last_reply = replies.redraw(reply, self.seq2seq, self.ranker, self._recent_replies(), cancel)
        shown: list[Token] = []
        t0 = self.clock()
        try:
            if not cancel.is_set():
                for tok in replies.play(reply, self.seq2seq, self._keep):
                    shown.append(tok)
                    yield tok
        finally:
            self.transcript.append(self._reply_turn("".join(t.text for t in shown), reply.mode, cancel.is_set()))
            self.last_tokens = shown
            self.last_stats = ReplyStats(len(shown), self.clock() - t0, cancel.is_set(), self._autosave_error())

    # -- memory and files ------------------------------------------------------------------------------------
    def reset(self, force: bool = False) -> str | None:
        """Start a new conversation: forget (h, c), history, transcript and the seq2seq memory, and autosave the
        empty one. A conversation with any message is first kept under a dated name (`/load` lists it), so a
        reset never loses one; returns that name (None when there was nothing to keep). If it cannot be kept
        (a read-only or full disk), SessionError and nothing is reset, unless `force` (`/reset -f`)."""
        kept = None
        if self.transcript or self.conv.history:
            kept = self.store.free_name("reset")
            try:
                self.save(kept, replace=False)
            except (OSError, SessionError) as e:
                if not force:
                    raise SessionError(f"the conversation could not be kept ({e}), so nothing was reset; "
                                       f"/reset -f (or Ctrl+R again) resets anyway") from None
                kept = None
        self.conv.reset()
        self.chat_state, self.transcript, self.last_reply = ChatState(), [], None
        self.last_tokens, self.last_stats = [], None
        self.autosave()
        return kept

    def path(self, name: str) -> Path:
        return self.store.path(name)

    def save(self, name: str, replace: bool = True) -> Path:
        """Save the conversation (and the seq2seq memory) under `name`, in one atomic write (replace=False:
        refuse a name in use). Not as "last": that is the autosave, which the next reply writes over."""
        if name == LAST:
            raise SessionError(f"{LAST!r} is the autosaved conversation (the next reply replaces it): save under "
                               f"another name")
        return self._write(name, replace)

    def _write(self, name: str, replace: bool = True) -> Path:
        settings = {"mode": self.mode.value, "candidates": self.candidates, "sampling": self.settings.to_dict()}
        return self.store.write(name, self.conv, self.transcript, self.seq2seq, self.chat_state, replace, settings)

    def load(self, name: str) -> str | None:
        """Replace the conversation with a saved one (it becomes the one restored on start).

        Returns a note when the seq2seq memory in the file cannot be used (saved with another chat model, or
        damaged): the LM conversation and transcript are loaded and the seq2seq memory starts fresh.
        """
        loaded = self.store.read(name, self.engine.conversation(cache=self.settings.cache), self.seq2seq)
        self.conv, self.transcript = loaded.conv, loaded.transcript
        self.chat_state, self.last_reply = loaded.chat_state or ChatState(), None
        self.last_tokens, self.last_stats = [], None
        if name != LAST:
            self.autosave()
        return loaded.note

    def saved_names(self) -> list[str]:
        """Saved conversations, newest first."""
        return self.store.names()

    def autosave(self) -> None:
        if self.autosave_blocked:
            raise SessionError(self.autosave_blocked)
        if not self.autosave_off:
            self._write(LAST)

    def _autosave_error(self) -> str | None:
        try:
            self.autosave()
        except (OSError, SessionError) as e:
            return f"could not autosave the conversation: {e}"
        return None

    def restore(self) -> str | None:
        """Load the autosaved conversation if there is one; returns a note if it could not be restored."""
        if not self.path(LAST).exists():
            return None
        try:
            return self.load(LAST)
        except OtherModelsConversation:  # sound: kept where /load lists it, for a start with that model
            try:
                name = self.store.keep_last("other-model")
            except OSError as move:
                self.autosave_blocked = f"{self.path(LAST)} was saved with another model and could not be kept"
                return f"the last conversation was saved with another model and could not be kept aside " \
                       f"({move.strerror or move}), so autosave is off"
            return f"the last conversation was saved with another model: kept as {name!r} (start with that model " \
                   f"and /load it); starting a new one"
        except SessionError as e:
            try:
                kept = f"it was moved to {self.store.set_aside(LAST)}"
            except OSError as move:  # then nothing may be written over it
                self.autosave_blocked = f"{self.path(LAST)} could not be restored nor moved aside"
                kept = f"it could not be moved aside ({move.strerror or move}), so autosave is off"
            return f"could not restore the last conversation ({e}); {kept}; starting a new one"

