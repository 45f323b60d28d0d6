"""A conversation's transcript as typed turns, and its checked conversion from and to the JSON in a file.

A file's transcript is a list of {"role": "user", "text", "mode", "sentiment": {"label", "score"} | null} and
{"role": "assistant", "text", "mode", "stopped", "sentiment"} objects, each with an optional "time" (ISO 8601,
UTC, when it was said; files from before timestamps have none) and an assistant's optional "sentiment" (its
reply scored once whole; files from before that have none). `from_json` refuses anything else with a
`TranscriptError` that says what is wrong, so a damaged or hand-edited file is never half loaded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum

from rnnchat.models.sentiment_result import LABELS, Sentiment


class Mode(str, Enum):
    CHAT = "chat"          # the seq2seq chat model
    LM = "lm"              # chat with the language model (turns separated by <eom> <eot>)
    CONTINUE = "continue"  # the language model extends the text


MODE_TITLES = {Mode.CHAT: "seq2seq chat", Mode.LM: "LM chat", Mode.CONTINUE: "continue text"}
MAX_TURNS = 100_000          # more is not a conversation a file of ours holds
MAX_TEXT = 16 * 2**20        # characters in one turn


class TranscriptError(ValueError):
    """A transcript that cannot be used; the message names the entry and the problem."""


@dataclass(frozen=True)
class Turn:
    role: str                          # "user" | "assistant"
    text: str
    mode: Mode
    sentiment: Sentiment | None = None  # the message as scored when it was sent (a reply: once it was whole)
    stopped: bool = False               # an assistant reply cut short by the user
    time: str | None = None             # when it was said: ISO 8601 in UTC

    def to_json(self) -> dict:
        stamp = {} if self.time is None else {"time": self.time}
        mood = None if self.sentiment is None else {"label": self.sentiment.label,
                                                    "score": round(self.sentiment.score, 4)}
        if self.role == "user":
            return {"role": "user", "text": self.text, "mode": self.mode.value, "sentiment": mood, **stamp}
        return {"role": "assistant", "text": self.text, "mode": self.mode.value, "stopped": self.stopped,
                **({"sentiment": mood} if mood else {}), **stamp}


def now() -> str:
    """The time stamp of a turn said now."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _turn(i: int, d: object) -> Turn:
    def bad(why: str) -> TranscriptError:
        return TranscriptError(f"transcript entry {i}: {why}")

    if not isinstance(d, dict):
        raise bad(f"not an object ({type(d).__name__})")
    role, text, mode = d.get("role"), d.get("text"), d.get("mode", "lm")
    if role not in ("user", "assistant"):
        raise bad(f"role must be 'user' or 'assistant', not {role!r}")
    if not isinstance(text, str) or len(text) > MAX_TEXT:
        raise bad("text must be a string" + ("" if not isinstance(text, str) else f" of <= {MAX_TEXT} characters"))
    try:
        mode = Mode(mode)
    except ValueError:
        raise bad(f"unknown mode {mode!r}") from None
    stamp = d.get("time")
    if stamp is not None:
        try:
            if not isinstance(stamp, str) or len(stamp) > 40:
                raise ValueError
            datetime.fromisoformat(stamp)
        except ValueError:
            raise bad(f"time must be an ISO 8601 date and time, not {str(stamp)[:40]!r}") from None
    stopped = d.get("stopped", False)
    if role == "assistant" and not isinstance(stopped, bool):
        raise bad("'stopped' must be true or false")
    mood = d.get("sentiment")
    if mood is not None and not (
            isinstance(mood, dict) and mood.get("label") in LABELS and isinstance(mood.get("score"), (int, float))
            and not isinstance(mood.get("score"), bool) and math.isfinite(mood["score"]) and -1 <= mood["score"] <= 1):
        raise bad("sentiment must be {'label': negative|neutral|positive, 'score': a number in [-1, 1]}")
    sentiment = None if mood is None else Sentiment(mood["label"], float(mood["score"]))
    return Turn(role, text, mode, sentiment=sentiment, stopped=role == "assistant" and stopped, time=stamp)


def from_json(entries: object) -> list[Turn]:
    """The typed transcript of a file's JSON (absent: empty); TranscriptError names the first bad entry."""
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise TranscriptError(f"transcript must be a list, not {type(entries).__name__}")
    if len(entries) > MAX_TURNS:
        raise TranscriptError(f"transcript has {len(entries)} entries (at most {MAX_TURNS})")
    return [_turn(i, d) for i, d in enumerate(entries)]


def to_json(turns: list[Turn]) -> list[dict]:
    return [t.to_json() for t in turns]
