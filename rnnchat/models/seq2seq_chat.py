"""The seq2seq chat model for a UI: a conversation's memory (`ChatState`, saveable as plain arrays) and replies
streamed token by token with their probabilities and attention over the user's words (`Seq2SeqChat`).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from rnnchat.models.seq2seq import Seq2Seq
from rnnchat.models.seq2seq_decode import Encoded, Seq2SeqDecoder, StepOut


# -- turns -----------------------------------------------------------------------------------------------------
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


class StateError(ValueError):
    """Saved chat memory that cannot be used (malformed, or from another model); the message says why."""


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

    def to_arrays(self) -> tuple[dict[str, np.ndarray], dict]:
        """Plain arrays ("h", "c"; none for a fresh state) and a JSON-able dict (the transcript)."""
        arrays = {} if self.h is None else {"h": np.array(self.h), "c": np.array(self.c)}
        return arrays, {"transcript": [dict(t) for t in self.transcript]}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], meta: Mapping, hidden: int,
                    dtype: np.dtype = np.dtype(np.float32)) -> "ChatState":
        """The inverse of `to_arrays`, validated: no arrays (fresh) or "h" and "c", each a finite float (1, hidden)
        array; a transcript of {"user": str, "reply": str}. StateError names the problem."""
        if set(arrays) not in (set(), {"h", "c"}):
            raise StateError(f"chat memory needs arrays 'h' and 'c' (or none), not {sorted(arrays)}")
        state = {}
        for name, a in arrays.items():
            if not isinstance(a, np.ndarray) or a.dtype.kind != "f" or a.shape != (1, hidden):
                raise StateError(f"chat memory {name!r} must be a float array of shape (1, {hidden}), not "
                                 f"{getattr(a, 'dtype', type(a).__name__)} {getattr(a, 'shape', '')}")
            if not np.isfinite(a).all():
                raise StateError(f"chat memory {name!r} contains NaN or inf")
            state[name] = np.array(a, dtype)
        transcript = meta.get("transcript") if isinstance(meta, Mapping) else None
        if not isinstance(transcript, list) or not all(
                isinstance(t, dict) and set(t) == {"user", "reply"} and all(isinstance(v, str) for v in t.values())
                for t in transcript):
            raise StateError("chat memory transcript must be a list of {'user': text, 'reply': text}")
        return cls(state.get("h"), state.get("c"), [dict(t) for t in transcript])


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
        ident = json.dumps([model.header_config(), vocab.to_list()], sort_keys=True)
        self.model_id = hashlib.sha256(ident.encode()).hexdigest()[:16]

    @classmethod
    def load(cls, path=None) -> "Seq2SeqChat":
        from rnnchat.train.seq2seq import default_checkpoint, load_seq2seq
        model, vocab, header = load_seq2seq(path or default_checkpoint("chat"))
        if header.get("task") != "chat":
            raise ValueError(f"{path}: not a chat model (task {header.get('task')!r})")
        return cls(model, vocab, header["decoding"].get("max_src", 40), header)

    def new_state(self) -> ChatState:
        return ChatState()

    # -- saving a conversation's memory ----------------------------------------------------------------------
    def export_state(self, state: ChatState) -> tuple[dict[str, np.ndarray], dict]:
        """`state` as plain arrays and a JSON-able dict that names this model (see `import_state`)."""
        arrays, meta = state.to_arrays()
        return arrays, {"model_id": self.model_id, **meta}

    def import_state(self, arrays: Mapping[str, np.ndarray], meta: Mapping) -> ChatState:
        """A state saved by `export_state` with this model (same architecture and vocabulary), validated.
        StateError if it was saved with another model or is malformed."""
        if not isinstance(meta, Mapping) or meta.get("model_id") != self.model_id:
            raise StateError("this conversation's seq2seq memory was saved with a different seq2seq model")
        return ChatState.from_arrays(arrays, meta, self.decoder.Hd, self.model.dtype)

    # -- replies ---------------------------------------------------------------------------------------------
    def source(self, user_text: str) -> list[int]:
        messages = [m for m in user_text.split("\n") if m.strip()] or [""]
        return chat_source_ids(chat_turn_ids(messages, self.vocab), self.vocab, self.max_src)

    def reply(self, state: ChatState, user_text: str, settings, cancel: threading.Event | None = None,
              beam: int = 0) -> Iterator[ReplyToken]:
        """Stream the reply to `user_text` (see the class docstring).

        beam = 0 samples with `settings`; beam = k > 0 streams the best hypothesis of a length-normalised beam
        search of width k (skip words, max_tokens and stop sequences apply; the sampling knobs and the seed do
        not; each token's `prob` is then its probability under the model).
        """
        from rnnchat.engine.sampling import skip_ids
        from rnnchat.text import Detokenizer
        if beam < 0:
            raise ValueError(f"beam width must be >= 0 (0 = sample), got {beam}")
        vocab, dec = self.vocab, self.decoder
        # the settings' skip words were checked against the LM's vocabulary (the session's); a word this model's
        # vocabulary does not hold cannot be said, so it is not an error here
        banned = skip_ids(settings, vocab, strict=False)
        src = self.source(user_text)
        source = tuple(vocab.ids_to_tokens(src))
        enc = dec.encode([src], None if state.h is None else (state.h, state.c))
        eot = vocab.eot_id
        if beam:
            steps = self._beam_steps(enc, beam, settings.max_tokens, banned, cancel)
        else:
            specials = {vocab.pad_id, vocab.unk_id, vocab.eom_id, eot}
            steps = dec.stream(enc, eot, eot, settings, banned, np.random.default_rng(settings.seed), cancel,
                               observe=[i for i in src if i not in specials])
        final = enc.state  # nothing generated yet: the memory holds the user's turn
        last: StepOut | None = None
        detok, text = Detokenizer(), ""
        try:
            for out in steps:
                if out.id == eot:
                    final, last = out.state, None
                    break
                last = out
                tok = vocab.itos[out.id]
                piece = detok.push_generated(tok)
                text += piece
                yield ReplyToken(out.id, tok, piece, out.prob, out.attention, source)
                if settings.stop and any(text.endswith(s) for s in settings.stop):
                    break
        finally:
            steps.close()
            if last is not None:  # feed the last emitted token so the memory includes it
                _, final, _ = dec.step(np.array([last.id]), last.state, enc)
            state.h, state.c = (np.array(s) for s in final)
            state.transcript.append({"user": user_text, "reply": text.strip("\n")})

    def _beam_steps(self, enc: Encoded, width: int, max_len: int, banned: np.ndarray,
                    cancel: threading.Event | None) -> Iterator[StepOut]:
        """The best beam hypothesis as a stream like `Seq2SeqDecoder.stream` (states by replaying its tokens)."""
        if cancel is not None and cancel.is_set():
            return
        dec, eot = self.decoder, self.vocab.eot_id
        best = dec.beam(enc, eot, eot, max_len, width=width, length_penalty=1.0, banned=banned, n_best=1,
                        cancel=cancel)[0]
        state, prev = enc.state, eot
        for i, tid in enumerate(best.ids + [eot] * best.finished):
            if cancel is not None and cancel.is_set():
                return
            _, state, _ = dec.step(np.array([prev]), state, enc)
            yield StepOut(tid, best.probs[i], None if best.attention is None else best.attention[i], state)
            prev = tid
