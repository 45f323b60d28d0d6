"""The seq2seq chat model for a conversation: its memory (`ChatState`, saved as plain arrays with the session's
conversation) and replies streamed token by token with their probabilities and attention over the user's words.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rnnchat.engine.ranking import Candidate, row_seeds
from rnnchat.engine.tokens import Token
from rnnchat.models.seq2seq import Seq2Seq, load_seq2seq
from rnnchat.models.seq2seq_decode import EncodedSource, Seq2SeqDecoder, StepOut
from rnnchat.paths import seq2seq_checkpoint
from rnnchat.sampling import StopWatch, skip_ids
from rnnchat.text import source_ids, turn_ids


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

def max_src_of(path: Path | str, header: dict) -> int:
    """The header's `decoding.max_src` (source tokens kept), checked: a positive integer (ValueError otherwise,
    at load, not at the first reply)."""
    decoding = header.get("decoding")
    max_src = decoding.get("max_src", 40) if isinstance(decoding, dict) else None
    if isinstance(max_src, bool) or not isinstance(max_src, int) or max_src < 1:
        raise ValueError(f"{path}: decoding.max_src must be a positive integer, not {max_src!r}")
    return max_src


class Seq2SeqChat:
    """The loaded seq2seq chat model: `reply(state, user_text, settings, cancel)` streams `Token`s (with their
    attention) and leaves in `state` the decoder state after the reply, from which the next turn's encoder starts.

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
    def load(cls, path: Path | str | None = None) -> "Seq2SeqChat":
        path = path or seq2seq_checkpoint("chat")
        model, vocab, header = load_seq2seq(path)
        if header.get("task") != "chat":
            raise ValueError(f"{path}: not a chat model (task {header.get('task')!r})")
        return cls(model, vocab, max_src_of(path, header), header)

    # -- a conversation's memory in a file -------------------------------------------------------------------
    def save_memory(self, state: ChatState) -> tuple[dict[str, np.ndarray], dict]:
        """`state` as plain arrays ("h", "c"; none for a fresh state) and a JSON-able dict naming this model."""
        arrays = {} if state.h is None else {"h": np.array(state.h), "c": np.array(state.c)}
        return arrays, {"model_id": self.model_id, "transcript": [dict(t) for t in state.transcript]}

    def read_memory(self, arrays: Mapping[str, np.ndarray], meta: Mapping | None) -> ChatState:
        """A memory saved by `save_memory` with this model (same architecture and vocabulary), validated; no
        arrays and no meta (an older file): a fresh memory. StateError if from another model or malformed."""
        if meta is None and not arrays:
            return ChatState()
        if not isinstance(meta, Mapping) or meta.get("model_id") != self.model_id:
            raise StateError("this conversation's seq2seq memory was saved with a different seq2seq model")
        if set(arrays) not in (set(), {"h", "c"}):
            raise StateError(f"chat memory needs arrays 'h' and 'c' (or none), not {sorted(arrays)}")
        hidden, state = self.decoder.Hd, {}
        for name, a in arrays.items():
            if not isinstance(a, np.ndarray) or a.dtype.kind != "f" or a.shape != (1, hidden):
                raise StateError(f"chat memory {name!r} must be a float array of shape (1, {hidden}), not "
                                 f"{getattr(a, 'dtype', type(a).__name__)} {getattr(a, 'shape', '')}")
            if not np.isfinite(a).all():
                raise StateError(f"chat memory {name!r} contains NaN or inf")
            state[name] = np.array(a, self.model.dtype)
        transcript = meta.get("transcript")
        if not isinstance(transcript, list) or not all(
                isinstance(t, dict) and set(t) == {"user", "reply"} and all(isinstance(v, str) for v in t.values())
                for t in transcript):
            raise StateError("chat memory transcript must be a list of {'user': text, 'reply': text}")
        return ChatState(state.get("h"), state.get("c"), [dict(t) for t in transcript])

    # -- replies ---------------------------------------------------------------------------------------------
    def source(self, user_text: str) -> list[int]:
        messages = [m for m in user_text.split("\n") if m.strip()] or [""]
        return source_ids(turn_ids(messages, self.vocab), self.vocab, self.max_src)

    def reply(self, state: ChatState, user_text: str, settings, cancel: threading.Event | None = None,
              beam: int = 0) -> Iterator[Token]:
        """Stream the reply to `user_text` (see the class docstring).

        beam = 0 samples with `settings`; beam = k > 0 streams the best hypothesis of a length-normalised beam
        search of width k (skip words, max_tokens and stop sequences apply; the sampling knobs and the seed do
        not; each token's `prob` is then its probability under the model).
        """
        if beam < 0:
            raise ValueError(f"beam width must be >= 0 (0 = sample), got {beam}")
        vocab, dec = self.vocab, self.decoder
        banned, src, source, enc = self._turn(state, user_text, settings)
        eot = vocab.eot_id
        if beam:
            steps = self._beam_steps(enc, beam, settings.max_tokens, banned, cancel)
        else:
            specials = {vocab.pad_id, vocab.unk_id, vocab.eom_id, eot}
            steps = dec.stream(enc, eot, eot, settings, banned, np.random.default_rng(settings.seed), cancel,
                               observe=[i for i in src if i not in specials])
        final = enc.state  # nothing generated yet: the memory holds the user's turn
        last: StepOut | None = None
        watch = StopWatch(settings.stop, vocab)
        try:
            for out in steps:
                if out.id == eot:
                    final, last = out.state, None
                    break
                last = out
                piece = watch.push(out.id)
                yield Token(out.id, vocab.itos[out.id], piece, out.prob, out.attention, source)
                if watch.hit:
                    break
        finally:
            steps.close()
            if last is not None:  # feed the last emitted token so the memory includes it
                _, final, _ = dec.step(np.array([last.id]), last.state, enc)
            state.h, state.c = (np.array(s) for s in final)
            state.transcript.append({"user": user_text, "reply": watch.text.strip("\n")})

    # -- many candidates (reply ranking) ---------------------------------------------------------------------
    def candidates(self, state: ChatState, user_text: str, settings, n: int, cancel: threading.Event | None = None
                   ) -> tuple[list[Candidate], EncodedSource]:
        """N replies to `user_text` sampled together (state unchanged; `commit` the chosen one); a set `cancel`
        ends them after the step in progress."""
        vocab, dec = self.vocab, self.decoder
        banned, _, source, enc = self._turn(state, user_text, settings)
        eot = vocab.eot_id
        hyps = dec.sample(enc.rows(np.zeros(n, np.int64)), eot, eot, settings, banned, vocab=vocab,
                          seeds=row_seeds(settings.seed, n), cancel=cancel)
        out = []
        for h in hyps:
            watch = StopWatch((), vocab)
            att = h.attention
            tokens = [Token(tid, vocab.itos[tid], watch.push(tid), p, None if att is None else att[k], source)
                      for k, (tid, p) in enumerate(zip(h.ids, h.probs))]
            out.append(Candidate(tokens, list(h.ids), h.finished, h.logprob))
        return out, enc

    def commit(self, state: ChatState, user_text: str, enc: EncodedSource, chosen: Candidate) -> None:
        """Leave in `state` the memory after `chosen` (as if it had been streamed): the decoder state after
        <eot> and the reply's tokens, and the exchange in the transcript."""
        self._remember(state, enc, chosen.ids, user_text, chosen.text)

    def prime(self, state: ChatState, user_text: str, reply_text: str) -> None:
        """Add an exchange that was not made by this model (teacher-forced) to the memory in `state`."""
        enc = self.decoder.encode([self.source(user_text)], None if state.h is None else (state.h, state.c))
        reply = turn_ids([m for m in reply_text.split("\n") if m.strip()] or [""], self.vocab)  # as generated
        self._remember(state, enc, reply, user_text, reply_text)

    def _turn(self, state: ChatState, user_text: str, settings) -> tuple[np.ndarray, list[int], tuple[str, ...],
                                                                          EncodedSource]:
        """(banned ids, source ids, source tokens, the turn encoded from the memory) for a reply to user_text."""
        # the settings' skip words were checked against the LM's vocabulary (the session's); a word this model's
        # vocabulary does not hold cannot be said, so it is not an error here
        banned = skip_ids(settings, self.vocab, strict=False)
        src = self.source(user_text)
        enc = self.decoder.encode([src], None if state.h is None else (state.h, state.c))
        return banned, src, tuple(self.vocab.ids_to_tokens(src)), enc

    def _remember(self, state: ChatState, enc: EncodedSource, reply: list[int], user_text: str, text: str) -> None:
        """The memory after a reply: the decoder state after <eot> and the reply's ids, and the exchange."""
        st = enc.state
        for tid in [self.vocab.eot_id, *reply]:
            _, st, _ = self.decoder.step(np.array([tid]), st, enc)
        state.h, state.c = (np.array(x) for x in st)
        state.transcript.append({"user": user_text, "reply": text})

    def _beam_steps(self, enc: EncodedSource, width: int, max_len: int, banned: np.ndarray,
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
