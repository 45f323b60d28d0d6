"""A conversation's memory with the language model: carried (h, c), feeding text, streaming tokens, fork/save/load.

State invariant: `state` is the model state after exactly the tokens in `history` (the prompt tokens fed and
the tokens emitted by streams), and `logits` are the next-token logits in that state. A stream feeds each
token it emitted before drawing the next one, and on early stop (consumer breaks, `cancel` set from another
thread, stop sequence, max tokens) feeds the last emitted token, so the invariant holds however it ends.

With cache settings (the LM header's val-tuned `cache_settings`, given while the cache is on), the conversation
also keeps a continuous cache (`rnnchat.models.lm_cache`): each fed token is stored with the top-layer state it
followed, and streams sample from the model mixed with the cache (while `settings.cache` is on). It is saved and
forked with the memory; without settings nothing of it is kept or written.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from rnnchat.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from rnnchat.engine.rows import Guide, fresh_guide, step_guided
from rnnchat.engine.tokens import Token
from rnnchat.models.lm import LMDecoder
from rnnchat.models.lm_cache import CacheSettings, ConversationCache
from rnnchat.sampling import RowSampler, SamplingSettings, StopWatch, ban_first, sample_rows, skip_ids
from rnnchat.text import Vocab, closing_ids

FEED_CHUNK = 4096  # tokens encoded and fed per chunk for very long inputs


class SavedWithOtherModel(CheckpointError):
    """A saved conversation that is sound but belongs to another language model (its memory fits only that one)."""


class Conversation:
    """One conversation's memory and its generation."""

    def __init__(self, decoder: LMDecoder, vocab: Vocab, model_id: str = "",
                 cache: CacheSettings | None = None):
        self.decoder, self.vocab, self.model_id = decoder, vocab, model_id
        self.cache = None if cache is None else ConversationCache(decoder.hidden, decoder.vocab_size, cache)
        self.reset()

    # -- memory ----------------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget everything: the state after a turn boundary (<eot>) from zeros."""
        self.history: list[int] = []
        self.logits, self.state = self.decoder.step(np.array([self.vocab.eot_id]), self.decoder.initial_state(1))
        if self.cache is not None:
            self.cache.clear()

    def fork(self) -> "Conversation":
        """An independent copy that continues from the same memory."""
        other = Conversation.__new__(Conversation)
        other.decoder, other.vocab, other.model_id = self.decoder, self.vocab, self.model_id
        other.history = list(self.history)
        other.logits = self.logits.copy()
        other.state = [(h.copy(), c.copy()) for h, c in self.state]
        other.cache = None if self.cache is None else self.cache.copy()
        return other

    def use_cache(self, settings: CacheSettings | None) -> None:
        """Start keeping the LM cache from here (an empty one), or stop and drop it (None)."""
        if settings is None:
            self.cache = None
        elif self.cache is None or self.cache.settings != settings:
            self.cache = ConversationCache(self.decoder.hidden, self.decoder.vocab_size, settings)

    def next_logits(self, settings: SamplingSettings) -> np.ndarray:
        """(1, V) logits to sample the next token from: the model's, mixed with the cache when it is on."""
        if self.cache is None or not settings.cache:
            return self.logits.copy()
        return self.cache.mix(self.logits, self.state[-1][0])

    # -- input -----------------------------------------------------------------------------------------------
    def feed_ids(self, ids: list[int], cancel: threading.Event | None = None) -> int:
        """Advance the memory over `ids`, FEED_CHUNK at a time; returns how many were fed (all, unless `cancel`
        was set: then it stops at a chunk's end)."""
        for start in range(0, len(ids), FEED_CHUNK):
            if cancel is not None and cancel.is_set():
                return start
            chunk = np.asarray(ids[start: start + FEED_CHUNK], np.int64)[None]
            if self.cache is None:
                self.logits, self.state = self.decoder.prefill(chunk, self.state)
            else:
                before = self.state[-1][0]
                self.logits, self.state, hidden = self.decoder.prefill_hidden(chunk, self.state)
                self.cache.add(np.concatenate([before, hidden[0, :-1]]), chunk[0])
            self.history += chunk[0].tolist()
        return len(ids)

    def feed(self, text: str, end_turn: bool = False, cancel: threading.Event | None = None) -> int:
        """Advance the memory over `text` (any length); with end_turn, close it as a message and a turn.

        Returns the number of tokens fed. Very long text is encoded and fed in pieces (bounded memory). A set
        `cancel` stops the reading (within FEED_CHUNK tokens, ~1 s): the memory holds the part read, closed as
        the message it was when end_turn (a paste of 100k words takes ~20 s to read; Esc stops it).
        """
        n, last = 0, None
        for start in range(0, len(text), 200_000):
            if cancel is not None and cancel.is_set():
                break
            ids = self.vocab.encode(text[start: start + 200_000])  # (a word cut at a piece border splits in two)
            fed = self.feed_ids(ids, cancel)
            n, last = n + fed, (ids[fed - 1] if fed else last)
        if end_turn:
            close = closing_ids(last, self.vocab)
            self.feed_ids(close)
            n += len(close)
        return n

    def close_turn(self) -> None:
        """End a reply that was cut short (stopped, max tokens) so that what is fed next starts a new turn."""
        if self.history:
            self.feed_ids(closing_ids(self.history[-1], self.vocab))

    # -- output ----------------------------------------------------------------------------------------------
    def stream(self, settings: SamplingSettings, cancel: threading.Event | None = None,
               stop_ids: tuple[int, ...] = (), rng: np.random.Generator | None = None,
               not_first: tuple[int, ...] = ()) -> Iterator[Token]:
        """Yield sampled tokens one at a time (see the module docstring for the state invariant).

        not_first: ids the first token may not be (a chat reply that opens with <eot> would be empty).
        With `settings.guidance`, tokens are drawn under classifier-free guidance (`engine.rows.Guide`).
        """
        sampler = RowSampler(settings, skip_ids(settings, self.vocab), rng)
        sampler.observe(self.history[-settings.repeat_last_n:] if settings.repeat_last_n else [])
        watch = StopWatch(settings.stop, self.vocab)
        guide = fresh_guide(self.decoder, self.vocab, [settings.guidance])
        pending: int | None = None
        try:
            for step in range(settings.max_tokens):
                if pending is not None:
                    self._advance(pending, guide)
                    pending = None
                if cancel is not None and cancel.is_set():
                    return
                logits = self.next_logits(settings)
                if guide is not None:
                    logits = guide.apply(logits)
                if step == 0:
                    ban_first(logits, not_first, sampler.banned)
                ids, probs = sample_rows(logits, [sampler])
                tid = int(ids[0])
                pending = tid
                piece = watch.push(tid)
                yield Token(tid, self.vocab.itos[tid], piece, float(probs[0]))
                if tid in stop_ids or watch.hit:
                    return
        finally:
            if pending is not None:
                self._advance(pending, guide)

    def _advance(self, tid: int, guide: Guide | None = None) -> None:
        if self.cache is not None:
            self.cache.add(self.state[-1][0], [tid])
        if guide is None:
            self.logits, self.state = self.decoder.step(np.array([tid]), self.state)
        else:
            self.logits, self.state = step_guided(self.decoder, np.array([tid]), self.state, guide)
        self.history.append(tid)

    # -- persistence -----------------------------------------------------------------------------------------
    def save(self, path: Path | str, extra_arrays: dict[str, np.ndarray] | None = None,
             extra_header: dict | None = None) -> None:
        """Atomically write the memory (temp file, fsync, rename), with `extra_arrays` and `extra_header` entries
        (the transcript, another model's memory) in the same write; they may not replace ours."""
        arrays = {"logits": self.logits, "history": np.asarray(self.history, np.int32)}
        if self.cache is not None:
            arrays |= self.cache.arrays()
        for i, (h, c) in enumerate(self.state):
            arrays[f"h{i}"], arrays[f"c{i}"] = h, c
        header = {"model": "conversation", "config": self._config(), "vocab": [], "corpus": {}, "metrics": {},
                  "model_id": self.model_id}
        extra_arrays, extra_header = extra_arrays or {}, extra_header or {}
        if clash := (set(extra_arrays) & set(arrays)) | (set(extra_header) & set(header)):
            raise ValueError(f"extra conversation entries would replace {sorted(clash)}")
        save_checkpoint(path, arrays | extra_arrays, header | extra_header)

    def load(self, path: Path | str) -> None:
        """Replace this conversation's memory with a saved one (refused if saved with another model)."""
        arrays, header = load_checkpoint(path, None, model="conversation")
        self.load_arrays(path, arrays, header)

    def load_arrays(self, path: Path | str, arrays: dict[str, np.ndarray], header: dict) -> None:
        """`load` of a file already read (`path` names it in errors); nothing changes unless all of it is valid."""
        cfg = self._config()
        if header.get("config") != cfg or header.get("model_id") != self.model_id:
            raise SavedWithOtherModel(f"{path}: this conversation was saved with a different model")
        expected = {"logits": (1, cfg["vocab_size"])}
        for i in range(cfg["layers"]):
            expected[f"h{i}"] = expected[f"c{i}"] = (1, cfg["hidden"])
        for name, shape in expected.items():
            if name not in arrays or arrays[name].shape != shape:
                raise CheckpointError(f"{path}: conversation array {name!r} is missing or has the wrong shape")
            if arrays[name].dtype.kind != "f" or not np.isfinite(arrays[name]).all():
                raise CheckpointError(f"{path}: conversation array {name!r} must hold finite floats")
        history = arrays.get("history")
        if (history is None or history.ndim != 1 or history.dtype.kind not in "iu"
                or (history.size and not 0 <= history.min() <= history.max() < cfg["vocab_size"])):
            raise CheckpointError(f"{path}: conversation history is missing or holds ids outside the vocabulary")
        self.logits = arrays["logits"]
        self.state = [(arrays[f"h{i}"], arrays[f"c{i}"]) for i in range(cfg["layers"])]
        self.history = history.astype(int).tolist()
        if self.cache is not None:
            self.cache.load_arrays(arrays)  # a file saved without a cache (or another size) starts it empty

    def _config(self) -> dict:
        return {"vocab_size": self.decoder.vocab_size, "hidden": self.decoder.hidden, "layers": len(self.decoder.model.lstms)}
