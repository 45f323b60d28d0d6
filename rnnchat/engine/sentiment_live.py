"""Live sentiment of the text being typed: one `set_text` call per keystroke, only the changed part re-run.

The text is kept as segments: with a model that restarts after each sentence (or clause) end, one segment
per sentence; with any other model the whole text is one segment. A segment's states depend on its own
tokens only (it starts from the zero state), and the text's state is the left fold of the segments' final
states (`model.join`: the pools over all of them, the last segment's recurrent state).

On a new text the token list is compared with the previous one: the longest common prefix and suffix are
kept. Only the tokens from the first change to the end of the segment it lies in are run (from the state
kept at the change); the segments of the unchanged suffix are reused as they are, and the fold is redone
from the first changed segment (a few element-wise operations per segment). Typing a character changes only
the last, still-being-typed token (one step); a space adds nothing; backspace re-runs nothing or one token;
an edit in the middle of a paragraph re-runs the rest of its sentence with a restarting model, and the rest
of the text without one.

Because a segment's state after k tokens depends only on those k tokens and each step is the same
deterministic computation, the result is identical (bit for bit) to classifying the whole text from
scratch with a fresh `LiveSentiment`, and equal up to float rounding to the batched `predict`. The model
is one `SentimentModel` or a `SentimentEnsemble` (its state is the members' states).

Memory stays bounded for long texts: states are kept for every token among the last `DENSE` ones (where
typing edits) and, before them, at every `STRIDE`-th token of a segment and at each segment's end; an edit
further back re-runs from the nearest kept state before it (at most `STRIDE` extra steps). The states kept for
long are compacted (`model.compact`: a QRNN's state otherwise shares the arrays of its whole run of tokens).
"""

from __future__ import annotations

from bisect import bisect_right
from pathlib import Path

from rnnchat import paths
from rnnchat.models.sentiment_result import Sentiment
from rnnchat.models.sentiment_ensemble import Classifier, load_sentiment
from rnnchat.models.sentiment_segments import ends_at
from rnnchat.text import ChunkTokenizer, Vocab


DENSE, STRIDE = 256, 256


def _common_prefix(a: list[str], b: list[str]) -> int:
    n = min(len(a), len(b))
    if n and a[: n - 1] == b[: n - 1]:  # the usual keystroke: everything but the last token agrees
        return n if a[n - 1] == b[n - 1] else n - 1
    k = 0
    while k < n and a[k] == b[k]:
        k += 1
    return k


def _common_suffix(a: list[str], b: list[str], limit: int) -> int:
    """The longest j <= limit with a[-j:] == b[-j:] (binary search over slice comparisons: C speed)."""
    if limit <= 0 or a[-1] != b[-1]:  # typing at the end: the last token differs
        return 0
    lo, hi = 0, limit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[len(a) - mid:] == b[len(b) - mid:]:
            lo = mid
        else:
            hi = mid - 1
    return lo


class _Segment:
    """A run of tokens stepped from the zero state: its length and the states kept after j of its tokens."""

    __slots__ = ("n", "states")

    def __init__(self, n: int, states: dict[int, object]):
        self.n, self.states = n, states  # states[n] (the final one) is always kept; j = 0 is the zero state

    @property
    def final(self):
        return self.states[self.n]


class LiveSentiment:
    """Incremental classifier of the current input text (call `set_text` on every keystroke)."""

    def __init__(self, model: Classifier, vocab: Vocab):
        if model.vocab_size != len(vocab):
            raise ValueError(f"model vocab_size {model.vocab_size} != vocabulary length {len(vocab)}")
        if not model.has_vocab:  # a model built in code rather than loaded
            model.set_vocab(vocab)
        self.model, self.vocab, self.reader = model, vocab, model.reader
        if self.reader.vocab is not vocab and self.reader.vocab.itos != vocab.itos:
            raise ValueError("the model reads another vocabulary (load both from one checkpoint)")
        model.train(False)
        self._ends = model.segment_ends  # (V,) bool, or None: the model never restarts
        self._is_end: dict[str, bool] = {}
        self._tokenize = ChunkTokenizer()  # tokenize's tokens, re-tokenizing only the chunks not seen before
        self.reset()

    @classmethod
    def from_checkpoint(cls, path: Path | str | None = None) -> "LiveSentiment":
        model, vocab, _ = load_sentiment(path or paths.sentiment_checkpoint())
        return cls(model, vocab)

    def reset(self) -> None:
        """Forget the previous text (the next call starts from the empty text)."""
        self._tokens: list[str] = []
        self._starts: list[int] = []          # each segment's first token
        self._segs: list[_Segment] = []
        self._zero = self.model.zero_state()
        self._folds: list[object] = [self._zero]  # _folds[i]: the state of segments [0, i)
        self._result: Sentiment | None = None
        self.steps_run = 0  # model steps run by the last set_text (for tests and benchmarks)

    @property
    def tokens(self) -> list[str]:
        return list(self._tokens)

    def kept_states(self) -> int:
        """How many states are kept (memory is bounded by DENSE + the text's length / STRIDE + its segments)."""
        return sum(len(s.states) for s in self._segs)

    def _ends_segment(self, token: str) -> bool:
        if self._ends is None:
            return False
        end = self._is_end.get(token)
        if end is None:
            if len(self._is_end) > 100_000:  # a memo, not a second vocabulary
                self._is_end.clear()
            end = self._is_end[token] = ends_at(self._ends, self.reader.token_id(token))
        return end

    def set_text(self, text: str) -> Sentiment:
        """Classify the full current text, reusing the states of its unchanged leading and trailing tokens."""
        tokens, old = self._tokenize(text), self._tokens
        n, old_n = len(tokens), len(old)
        k = _common_prefix(old, tokens)
        if k == n == old_n and self._result is not None:
            self.steps_run = 0
            return self._result  # same tokens (e.g. a space was typed)
        j = _common_suffix(old, tokens, min(n, old_n) - k)
        # a: the first segment that changes; it keeps its first `keep` tokens (and their kept states)
        a = bisect_right(self._starts, k - 1) - 1 if k else 0
        if k and self._ends_segment(old[k - 1]):
            a += 1  # the change starts a new segment
        keep = k - self._starts[a] if a < len(self._segs) else 0
        # c: the first old segment reused whole: inside the common suffix, after a segment end in the new text
        c = bisect_right(self._starts, old_n - j - 1) if j else len(self._segs)
        if c < len(self._segs) and self._starts[c] == old_n - j and n - j > 0 \
                and not self._ends_segment(tokens[n - j - 1]):
            c += 1
        shift = n - old_n
        stop = self._starts[c] + shift if c < len(self._segs) else n
        states: dict[int, object] = {}
        resume = 0
        if keep:  # segment a is not reused (c > a): its states up to the change go on
            states = self._segs[a].states
            resume = keep
            while resume and resume not in states:  # the last kept state within the common prefix
                resume -= 1
            for i in range(resume + 1, self._segs[a].n + 1):
                states.pop(i, None)
        new_starts: list[int] = [k - keep]
        new_segs: list[_Segment] = []
        state = states[resume] if resume else self._zero
        length = resume
        token_id, ends = self.reader.token_id, self._ends_segment
        pos = k - keep + resume
        while pos < stop:  # runs of at most DENSE tokens, none past a segment end: [pos, piece_end)
            piece_end, closed = pos, False
            if self._ends is None:  # one segment: no token to test
                piece_end = min(stop, pos + DENSE)
            while piece_end < stop and piece_end - pos < DENSE and not closed:
                closed = ends(tokens[piece_end])
                piece_end += 1
            run = self.model.steps(state, [token_id(t) for t in tokens[pos:piece_end]])
            for i, st in enumerate(run, length + 1):
                if i % STRIDE == 0:  # kept for long: its own numbers only
                    states[i] = self.model.compact(st)
                elif pos + i - length > n - DENSE:
                    states[i] = st
            length += len(run)
            state = run[-1]
            pos = piece_end
            if closed and pos < stop:  # a segment ends inside the re-run: the next token starts a new one
                states[length] = state = self.model.compact(state)
                new_segs.append(_Segment(length, states))
                new_starts.append(pos)
                states, state, length = {}, self._zero, 0
        steps = stop - (k - keep + resume)
        if length:
            states[length] = self.model.compact(state)
            new_segs.append(_Segment(length, states))
        else:
            new_starts.pop()
        tail_starts = [s + shift for s in self._starts[c:]]
        self._starts = self._starts[:a] + new_starts + tail_starts
        self._segs = self._segs[:a] + new_segs + self._segs[c:]
        self._tokens = tokens
        self._refold(a)
        self._thin(old_n, n, k - keep + resume)
        self.steps_run = steps
        probs, score = self.model.readout(self._folds[-1])
        self._result = Sentiment.of(probs, score, n)
        return self._result

    def _refold(self, a: int) -> None:
        """Redo the text's state from segment a on (the folds before it are unchanged)."""
        del self._folds[a + 1:]
        join, state = self.model.join, self._folds[a]
        for seg in self._segs[a:]:
            state = join(state, seg.final)
            self._folds.append(state)

    def _thin(self, old_n: int, n: int, limit: int) -> None:
        """Drop the off-stride states of tokens that left the dense tail, (old_n - DENSE, n - DENSE], before
        `limit` (the states from there on were just made under the new text's rule)."""
        lo, hi = max(0, old_n - DENSE), min(n - DENSE, limit)
        if hi <= lo:
            return
        i = max(bisect_right(self._starts, lo) - 1, 0)
        while i < len(self._segs) and self._starts[i] < hi:
            seg, start = self._segs[i], self._starts[i]
            for pos in range(max(lo, start) + 1, min(hi, start + seg.n) + 1):
                local = pos - start
                if local % STRIDE and local != seg.n:
                    seg.states.pop(local, None)
            i += 1

    def classify(self, text: str) -> Sentiment:
        """From scratch, without touching the incremental state."""
        return LiveSentiment(self.model, self.vocab).set_text(text)
