"""UI-independent chat glue shared by the Textual app and the REPL: modes, settings, replies, memory, files.

Threading: `respond` is a generator meant to be driven by one worker thread; while it runs, nothing else may
touch the session (the UIs refuse reset/save/load/send until the reply is finished or stopped). Sentiment
(`mood`) runs on the UI thread only.

Files: a conversation is the LM conversation's `.npz` (`engine.conversation`); a responder with its own memory
(the seq2seq model) adds its arrays as `seq2seq.<name>` and its JSON part as the header's `seq2seq` entry.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import platformdirs

from rnnchat.checkpoint import CheckpointError, load_checkpoint
from rnnchat.engine.conversation import Token
from rnnchat.engine.engine import Engine
from rnnchat.engine.sampling import SamplingSettings, SettingsError, skip_ids, skip_ids_as_words
from rnnchat.text import EOM, EOT, Detokenizer, tokenize

LAST = "last"  # the autosaved conversation, restored on start
MEMORY_KEY = "seq2seq"  # a responder's memory in a conversation file: header entry and array name prefix
NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
SETTING_COMMANDS = {"temp": "temperature", "topk": "top_k", "topp": "top_p", "max": "max_tokens", "beam": "beam"}
MAX_BEAM = 16
COMMAND_HELP = (
    ("/temp 0.7", "temperature (0 = greedy)"), ("/topk 40", "top-k (0 = off)"), ("/topp 0.9", "top-p (1 = off)"),
    ("/max 60", "max tokens per reply"), ("/skip WORD", "never say WORD (/skip: clear)"),
    ("/beam 4", "seq2seq beam width (0 = off)"),
    ("/mode chat|lm|continue", "switch mode"), ("/reset", "forget the conversation"),
    ("/save NAME", "save the conversation"), ("/load NAME", "load one (/load: list)"),
    ("/help", "this help"), ("/quit", "leave"),
)


class SessionError(Exception):
    """A user-facing problem (missing model, unavailable mode, bad name or command)."""


class Mode(str, Enum):
    CHAT = "chat"          # the seq2seq chat model
    LM = "lm"              # chat with the language model (turns separated by <eom> <eot>)
    CONTINUE = "continue"  # the language model extends the text


MODE_TITLES = {Mode.CHAT: "seq2seq chat", Mode.LM: "LM chat", Mode.CONTINUE: "continue text"}


class SentimentLike(Protocol):
    """What the UIs need from a live sentiment classifier: `set_text(text)` -> object with .label, .score."""

    def set_text(self, text: str) -> Any: ...


class Responder(Protocol):
    """A chat model other than the LM (the seq2seq model): streams a reply to `text` given the transcript."""

    def stream(self, transcript: list[dict], text: str, settings: SamplingSettings,
               cancel: threading.Event) -> Iterator[Token]: ...


@runtime_checkable
class Memory(Protocol):
    """A responder's own conversation memory: reset, saved and loaded with the session's conversation."""

    def reset(self) -> None: ...

    def save_memory(self) -> tuple[dict[str, np.ndarray], dict]:
        """Plain arrays and a JSON-able dict."""

    def read_memory(self, arrays: dict[str, np.ndarray], meta: dict | None) -> Any:
        """Validate saved memory (meta None: the file has none) without using it; ValueError if unusable."""

    def use_memory(self, memory: Any) -> None: ...


@dataclass(frozen=True)
class Mood:
    label: str    # negative | neutral | positive
    score: float  # in [-1, 1]

    def as_dict(self) -> dict:
        return {"label": self.label, "score": round(self.score, 4)}

    @classmethod
    def from_dict(cls, d: dict | None) -> "Mood | None":
        return None if not d else cls(str(d["label"]), float(d["score"]))


@dataclass(frozen=True)
class ReplyStats:
    tokens: int
    seconds: float
    stopped: bool
    save_error: str | None = None

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


def score_bar(score: float, cells: int = 5, fill: str = "█") -> tuple[str, str]:
    """The (left, right) halves of a bar centred on 0 and filled towards the score's side ([-1, 1])."""
    n = round(min(abs(score), 1.0) * cells)
    blank = " " * cells
    return (" " * (cells - n) + fill * n, blank) if score < 0 else (blank, fill * n + " " * (cells - n))


def default_name() -> str:
    """A name for a saved conversation: the local date and time."""
    return time.strftime("%Y%m%d-%H%M%S")


def data_dir() -> Path:
    """Where conversations and the REPL history live: $RNNCHAT_DATA_DIR, else the user's data directory."""
    return Path(os.environ.get("RNNCHAT_DATA_DIR") or platformdirs.user_data_dir("rnnchat"))


def load_sentiment(path: Path | None) -> tuple[SentimentLike | None, str]:
    """The live sentiment classifier, or (None, why it is unavailable)."""
    try:
        from rnnchat.sentiment_live import LiveSentiment
        from rnnchat.train.sentiment import DEFAULT_CHECKPOINT
    except ImportError as e:
        return None, f"sentiment code not available ({e})"
    path = Path(path or DEFAULT_CHECKPOINT)
    if not path.exists():
        return None, f"no sentiment model at {path}"
    try:
        return LiveSentiment.from_checkpoint(path), ""
    except (CheckpointError, OSError, ValueError) as e:
        return None, str(e)


class ChatSession:
    """One conversation with the models, its sampling settings and its files."""

    def __init__(self, engine: Engine, sentiment: SentimentLike | None = None, *, sentiment_note: str = "",
                 seq2seq: Responder | None = None, seq2seq_note: str = "", settings: SamplingSettings | None = None,
                 directory: Path | None = None, clock: Callable[[], float] = time.perf_counter):
        self.engine, self.sentiment, self.seq2seq, self.clock = engine, sentiment, seq2seq, clock
        self.sentiment_note = sentiment_note if sentiment is None else ""
        self.seq2seq_note = seq2seq_note if seq2seq is None else ""
        self.conv = engine.conversation()
        self.settings = settings or SamplingSettings()
        skip_ids(self.settings, engine.vocab)  # unknown skip words fail now, not at the first reply
        self.directory = directory or data_dir()
        self.mode = Mode.LM if seq2seq is None else Mode.CHAT
        self.last_tokens: list[Token] = []
        self.last_stats: ReplyStats | None = None

    # -- modes and settings ----------------------------------------------------------------------------------
    def unavailable(self, mode: Mode) -> str | None:
        """Why `mode` cannot be used, or None."""
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

    def update_settings(self, **changes: Any) -> None:
        """Apply setting changes (validated, skip words against the vocabulary); SettingsError if invalid."""
        new = self.settings.with_(**changes)
        skip_ids(new, self.engine.vocab)
        self.settings = new

    @property
    def beam(self) -> int:
        """Beam width of seq2seq chat replies (0 = sampled with the settings)."""
        return getattr(self.seq2seq, "beam", 0)

    def set_beam(self, width: int) -> None:
        """Reply in seq2seq chat mode by beam search of this width (0 = sample); SettingsError if not possible."""
        if not 0 <= width <= MAX_BEAM:
            raise SettingsError(f"beam width must be in [0, {MAX_BEAM}] (0 = sample), got {width}")
        if width == self.beam:
            return
        if not hasattr(self.seq2seq, "beam"):
            raise SettingsError("beam search needs the seq2seq chat model")
        self.seq2seq.beam = width

    def set_setting(self, name: str, text: str) -> None:
        """Set one setting from user text: temperature, top_k, top_p, max_tokens, skip (words, comma/space) or
        beam."""
        parse = {"temperature": float, "top_p": float, "top_k": int, "max_tokens": int, "beam": int,
                 "skip": lambda t: tuple(w for w in re.split(r"[,\s]+", t) if w)}
        if name not in parse:
            raise SettingsError(f"unknown setting {name!r}")
        try:
            value = parse[name](text.strip())
        except ValueError:
            raise SettingsError(f"{name.replace('_', '-')}: not a number: {text.strip()!r}") from None
        if name == "beam":
            self.set_beam(value)
        else:
            self.update_settings(**{name: value})

    def describe_settings(self) -> str:
        s = self.settings
        beam = f", beam {self.beam}" if self.seq2seq is not None else ""
        return (f"temperature {s.temperature:g}, top-k {s.top_k}, top-p {s.top_p:g}, max tokens {s.max_tokens}, "
                f"skip {', '.join(s.skip) or '-'}{beam}")

    def command(self, line: str) -> str:
        """Run a slash command other than /help and /quit (the UIs' own); returns a message to show.

        SessionError or SettingsError for a bad command or value.
        """
        name, _, arg = line.strip().lstrip("/").partition(" ")
        arg = arg.strip()
        if name in SETTING_COMMANDS:
            if not arg:
                return self.describe_settings()
            self.set_setting(SETTING_COMMANDS[name], arg)
            return self.describe_settings()
        if name == "skip":
            self.update_settings(skip=tuple(dict.fromkeys(self.settings.skip + tuple(arg.split()))) if arg else ())
            return self.describe_settings()
        if name == "mode":
            if arg:
                self.set_mode(arg)
            return f"mode: {MODE_TITLES[self.mode]}"
        if name == "reset":
            self.reset()
            return "memory reset: new conversation"
        if name == "save":
            return f"saved to {self.save(arg or default_name())}"
        if name == "load":
            if not arg:
                return "saved conversations: " + (", ".join(self.saved_names()) or "none")
            note = self.load(arg)
            return f"loaded {arg!r}" + (f"; {note}" if note else "")
        raise SessionError(f"unknown command /{name}: /help lists the commands")

    # -- sentiment -------------------------------------------------------------------------------------------
    def mood(self, text: str) -> Mood | None:
        """Sentiment of `text` (incremental: call it on every keystroke); None if unavailable or empty."""
        if self.sentiment is None or not text.strip():
            return None
        result = self.sentiment.set_text(text)
        return Mood(str(result.label), float(result.score))

    def moods(self) -> list[float]:
        """Scores of the user's messages so far (the mood of the conversation)."""
        return [m["sentiment"]["score"] for m in self.conv.transcript if m["role"] == "user" and m.get("sentiment")]

    # -- replies ---------------------------------------------------------------------------------------------
    def respond(self, text: str, cancel: threading.Event | None = None, mood: Mood | None = None) -> Iterator[Token]:
        """Feed the user's `text` as the mode requires and yield the reply's tokens as they are sampled.

        Stops on <eot>, max tokens or `cancel`; the memory then holds exactly the tokens yielded. The user's
        message and the reply are added to the transcript and the conversation is autosaved.
        """
        mode = self.mode
        if reason := self.unavailable(mode):
            raise SessionError(reason)
        cancel = cancel or threading.Event()
        settings = self.settings
        if settings.seed is not None:  # reproducible, but not the same draws every turn
            settings = settings.with_(seed=settings.seed + sum(m["role"] == "assistant" for m in self.conv.transcript))
        self.conv.transcript.append({"role": "user", "text": text, "mode": mode.value,
                                     "sentiment": mood.as_dict() if mood else None})
        shown: list[Token] = []
        t0 = self.clock()
        try:
            for tok in self._tokens(mode, text, settings, cancel):
                shown.append(tok)
                yield tok
        finally:
            seconds = self.clock() - t0
            self.conv.transcript.append({"role": "assistant", "text": "".join(t.text for t in shown),
                                         "mode": mode.value, "stopped": cancel.is_set()})
            self.last_tokens = shown
            self.last_stats = ReplyStats(len(shown), seconds, cancel.is_set(), self._autosave_error())

    def _tokens(self, mode: Mode, text: str, settings: SamplingSettings, cancel: threading.Event) -> Iterator[Token]:
        vocab = self.engine.vocab
        if mode is Mode.CHAT:
            # "#N" skip items name the LM's token ids (what `generate --json` shows); the seq2seq model has its
            # own vocabulary, so it gets the words
            source = self.seq2seq.stream(self.conv.transcript[:-1], text, skip_ids_as_words(settings, vocab), cancel)
        elif mode is Mode.LM:
            self._close_turn()
            self.conv.feed(text, end_turn=True)
            source = self.conv.stream(settings, cancel, stop_ids=(vocab.eot_id,))
        else:
            self.conv.feed(text)
            source = self._continued(text, self.conv.stream(settings, cancel, stop_ids=(vocab.eot_id,)))
        with contextlib.closing(source):
            yield from source

    def _close_turn(self) -> None:
        """End a reply that was cut short (stopped, max tokens) so the user's message starts a new turn."""
        h, vocab = self.conv.history, self.engine.vocab
        if h and h[-1] != vocab.eot_id:
            self.conv.feed_ids(([] if h[-1] == vocab.eom_id else [vocab.eom_id]) + [vocab.eot_id])

    @staticmethod
    def _continued(text: str, tokens: Iterator[Token]) -> Iterator[Token]:
        """Re-detokenize a continuation after `text` (spacing and capitals as if it were one text)."""
        detok = Detokenizer()
        for t in tokenize(text):
            detok.push(t)
        with contextlib.closing(tokens):
            for tok in tokens:
                if tok.token == EOM:
                    detok.reset()
                    yield tok
                else:
                    yield tok if tok.token == EOT else dataclasses.replace(tok, text=detok.push(tok.token))

    # -- memory and files ------------------------------------------------------------------------------------
    @property
    def memory(self) -> Memory | None:
        """The responder's own memory, if it has one."""
        return self.seq2seq if isinstance(self.seq2seq, Memory) else None

    def reset(self) -> None:
        """Forget the conversation ((h, c), history, transcript, the seq2seq memory) and autosave the empty one."""
        self.conv.reset()
        if self.memory is not None:
            self.memory.reset()
        self.last_tokens, self.last_stats = [], None
        self.autosave()

    def path(self, name: str) -> Path:
        if name == LAST:
            return self.directory / f"{LAST}.npz"
        if not NAME_RE.fullmatch(name):
            raise SessionError(f"bad conversation name {name!r}: use letters, digits, '_', '-' and '.'")
        return self.directory / "conversations" / f"{name}.npz"

    def save(self, name: str) -> Path:
        """Save the conversation (and the seq2seq memory) under `name`, in one atomic write."""
        path = self.path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays, header = {}, {}
        if self.memory is not None:
            memory, meta = self.memory.save_memory()
            arrays = {f"{MEMORY_KEY}.{k}": v for k, v in memory.items()}
            header = {MEMORY_KEY: meta}
        self.conv.save(path, arrays, header)
        return path

    def load(self, name: str) -> str | None:
        """Replace the conversation with a saved one (it becomes the one restored on start).

        Returns a note when the seq2seq memory in the file cannot be used (saved with another chat model, or
        damaged): the LM conversation and transcript are loaded and the seq2seq memory starts fresh.
        """
        path = self.path(name)
        if not path.exists():
            raise SessionError(f"no saved conversation named {name!r}")
        try:
            self.conv.load(path)
        except CheckpointError as e:
            raise SessionError(str(e)) from None
        note = None
        if self.memory is not None:
            try:
                memory = self._read_memory(path)
            except (ValueError, CheckpointError) as e:
                memory, note = None, f"seq2seq memory not restored ({e}); it starts fresh"
            if memory is None:
                self.memory.reset()
            else:
                self.memory.use_memory(memory)
        self.last_tokens, self.last_stats = [], None
        if name != LAST:
            self.autosave()
        return note

    def _read_memory(self, path: Path) -> Any:
        """The responder's memory saved in a conversation file, validated (ValueError if unusable)."""
        arrays, header = load_checkpoint(path, model="conversation")
        prefix = MEMORY_KEY + "."
        mine = {k.removeprefix(prefix): a for k, a in arrays.items() if k.startswith(prefix)}
        return self.memory.read_memory(mine, header.get(MEMORY_KEY))

    def saved_names(self) -> list[str]:
        """Saved conversations, newest first."""
        files = (self.directory / "conversations").glob("*.npz")
        return [p.stem for p in sorted(files, key=lambda p: p.stat().st_mtime, reverse=True)]

    def autosave(self) -> None:
        self.save(LAST)

    def _autosave_error(self) -> str | None:
        try:
            self.autosave()
        except OSError as e:
            return f"could not autosave the conversation: {e}"
        return None

    def restore(self) -> str | None:
        """Load the autosaved conversation if there is one; returns a note if it could not be restored."""
        if not self.path(LAST).exists():
            return None
        try:
            return self.load(LAST)
        except SessionError as e:
            return f"could not restore the last conversation ({e}); starting a new one"


def open_session(lm_path: Path, sentiment_path: Path | None, settings: SamplingSettings,
                 fresh: bool = False, seq2seq_path: Path | None = None) -> tuple[ChatSession, list[str]]:
    """Load the models and (unless `fresh`) the last conversation; returns the session and notes to show.

    Without a usable seq2seq chat model (default: the shipped one) the chat mode is unavailable, with a note.
    SessionError if the LM is missing, SettingsError for skip words outside its vocabulary.
    """
    from rnnchat.seq2seq_responder import load_responder
    if not Path(lm_path).exists():
        raise SessionError(f"no language model at {lm_path}; train one with `rnnchat train lm`")
    sentiment, note = load_sentiment(sentiment_path)
    seq2seq, seq2seq_note = load_responder(seq2seq_path)
    session = ChatSession(Engine(lm_path), sentiment, sentiment_note=note, seq2seq=seq2seq,
                          seq2seq_note=seq2seq_note, settings=settings)
    notes = [f"sentiment: unavailable ({note})"] if sentiment is None else []
    if seq2seq is None:
        notes.append(f"seq2seq chat: unavailable ({seq2seq_note})")
    if not fresh and (problem := session.restore()):
        notes.append(problem)
    return session, notes
