"""The seq2seq chat model for a UI: a conversation's memory (`ChatState`, saveable as plain arrays) and replies
streamed token by token with their probabilities and attention over the user's words (`Seq2SeqChat`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from rnnchat.models.seq2seq import Seq2Seq
from rnnchat.models.seq2seq_decode import Seq2SeqDecoder, StepOut


# -- turns -------------------------------------------------------------------------------------------------------
def chat_turn_ids(messages: Sequence[str], vocab) -> list[int]:
    """A turn as ids: each message's tokens followed by <eom> (as the language model writes turns)."""
    ids: list[int] = []
    for msg in messages:
        ids += vocab.encode(msg)
        ids.append(vocab.eom_id)
    return ids


def chat_source_ids(turn: list[int], vocab, max_src: int) -> list[int]:
    """A turn as an encoder input: its last max_src - 1 tokens, then <eot> (never empty)."""
    return (turn[-(max_src - 1):] if max_src > 1 else []) + [vocab.eot_id]


@dataclass(frozen=True)
class ReplyToken:
    """One token of a chat reply: id, token, the text piece to append, its probability under the sampling
    distribution, and the decoder's attention (S,) over `source` (this turn's encoder tokens, in order)."""

    id: int
    token: str
    text: str
    prob: float
    attention: np.ndarray | None
    source: tuple[str, ...]


@dataclass
class ChatState:
    """A conversation's memory: the decoder state the last exchange left (None = a fresh conversation)."""

    h: np.ndarray | None = None
    c: np.ndarray | None = None
    transcript: list[dict] = field(default_factory=list)

    def copy(self) -> "ChatState":
        return ChatState(None if self.h is None else self.h.copy(), None if self.c is None else self.c.copy(),
                         [dict(t) for t in self.transcript])

    def reset(self) -> None:
        self.h = self.c = None
        self.transcript.clear()


class Seq2SeqChat:
    """The seq2seq chat model for a UI: `reply(state, user_text, settings, cancel)` streams `ReplyToken`s and
    leaves in `state` the decoder state after the reply, from which the next turn's encoder starts.

    However the stream ends (<eot>, max_tokens, a stop sequence, `cancel` set from another thread, the consumer
    stopping early), `state` ends as the decoder state after the emitted tokens, and the turn is added to
    `state.transcript`. Inference is pure NumPy over the weights: several conversations may run in threads.
    """

    def __init__(self, model: Seq2Seq, vocab, max_src: int = 40, header: dict | None = None):
        self.model, self.vocab, self.max_src = model, vocab, max_src
        self.header = header or {}
        self.decoder = Seq2SeqDecoder(model)

    @classmethod
    def load(cls, path=None) -> "Seq2SeqChat":
        from rnnchat.train.seq2seq import default_checkpoint, load_seq2seq
        model, vocab, header = load_seq2seq(path or default_checkpoint("chat"))
        if header.get("task") != "chat":
            raise ValueError(f"{path}: not a chat model (task {header.get('task')!r})")
        return cls(model, vocab, header["decoding"].get("max_src", 40), header)

    def new_state(self) -> ChatState:
        return ChatState()

    def source(self, user_text: str) -> list[int]:
        messages = [m for m in user_text.split("\n") if m.strip()] or [""]
        return chat_source_ids(chat_turn_ids(messages, self.vocab), self.vocab, self.max_src)

    def reply(self, state: ChatState, user_text: str, settings, cancel: threading.Event | None = None
              ) -> Iterator[ReplyToken]:
        from rnnchat.engine.sampling import skip_ids
        from rnnchat.text import Detokenizer
        vocab, dec = self.vocab, self.decoder
        banned = skip_ids(settings, vocab)  # SettingsError before anything changes
        src = self.source(user_text)
        source = tuple(vocab.ids_to_tokens(src))
        enc = dec.encode([src], None if state.h is None else (state.h, state.c))
        eot = vocab.eot_id
        final = enc.state  # nothing generated yet: the memory holds the user's turn
        last: StepOut | None = None
        detok, text = Detokenizer(), ""
        specials = {vocab.pad_id, vocab.unk_id, vocab.eom_id, eot}
        try:
            for out in dec.stream(enc, eot, eot, settings, banned, np.random.default_rng(settings.seed), cancel,
                                  observe=[i for i in src if i not in specials]):
                if out.id == eot:
                    final, last = out.state, None
                    break
                last = out
                tok = vocab.itos[out.id]
                if out.id == vocab.eom_id:
                    piece = "\n"
                    detok.reset()
                else:
                    piece = detok.push(tok)
                text += piece
                yield ReplyToken(out.id, tok, piece, out.prob, out.attention, source)
                if settings.stop and any(text.endswith(s) for s in settings.stop):
                    break
        finally:
            if last is not None:  # feed the last emitted token so the memory includes it
                _, final, _ = dec.step(np.array([last.id]), last.state, enc)
            state.h, state.c = (np.array(s) for s in final)
            state.transcript.append({"user": user_text, "reply": text.strip("\n")})
