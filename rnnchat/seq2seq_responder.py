"""The seq2seq chat model as a `chat_session.Responder`: one conversation's memory (a `ChatState`: reset, saved and
loaded with the session's conversation) and replies as engine `Token`s that also carry their attention over the
user's words."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rnnchat.checkpoint import CheckpointError
from rnnchat.engine.conversation import Token
from rnnchat.engine.sampling import SamplingSettings
from rnnchat.models.seq2seq_chat import ChatState, Seq2SeqChat


@dataclass(frozen=True)
class AttendedToken(Token):
    """A reply token with the decoder's attention (S,) over `source`: the user's turn as encoder tokens."""

    attention: np.ndarray | None = field(default=None, compare=False)
    source: tuple[str, ...] = ()


class Seq2SeqResponder:
    """Replies from a `Seq2SeqChat` carrying one conversation's memory; `beam` > 0 replies by beam search."""

    def __init__(self, chat: Seq2SeqChat, beam: int = 0):
        self.chat, self.beam = chat, beam
        self.state = chat.new_state()

    def stream(self, transcript: list[dict], text: str, settings: SamplingSettings,
               cancel: threading.Event) -> Iterator[AttendedToken]:
        """The reply to `text`; the conversation so far is in the memory (`transcript` is not needed)."""
        replies = self.chat.reply(self.state, text, settings, cancel, beam=self.beam)
        with contextlib.closing(replies):
            for t in replies:
                yield AttendedToken(t.id, t.token, t.text, t.prob, t.attention, t.source)

    # -- memory (chat_session.Memory) --------------------------------------------------------------------------
    def reset(self) -> None:
        self.state = self.chat.new_state()

    def save_memory(self) -> tuple[dict[str, np.ndarray], dict]:
        return self.chat.export_state(self.state)

    def read_memory(self, arrays: dict[str, np.ndarray], meta: dict | None) -> ChatState:
        """Saved memory, validated (StateError); no arrays and no meta (an older file): a fresh memory."""
        if meta is None and not arrays:
            return self.chat.new_state()
        return self.chat.import_state(arrays, meta or {})

    def use_memory(self, memory: ChatState) -> None:
        self.state = memory


def load_responder(path: Path | None = None) -> tuple[Seq2SeqResponder | None, str]:
    """The responder on the seq2seq chat checkpoint (default: the shipped one), or (None, why it is unavailable)."""
    from rnnchat.train.seq2seq import default_checkpoint
    path = Path(path or default_checkpoint("chat"))
    if not path.exists():
        return None, f"no seq2seq chat model at {path}"
    try:
        return Seq2SeqResponder(Seq2SeqChat.load(path)), ""
    except (CheckpointError, OSError, ValueError) as e:
        return None, str(e)
