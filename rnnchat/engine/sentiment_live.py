"""Live sentiment of the text being typed: one `set_text` call per keystroke, O(1) model steps each.

`LiveSentiment` keeps the token list of the previous call and the model state after every one of its
tokens (the state at each word boundary). A new text is tokenized, compared with the previous tokens,
and only the tokens after the longest common prefix are run, starting from the state saved at the
end of that prefix. Typing a character changes only the last, still-being-typed token (one step);
a space adds nothing; backspace or an edit in the middle re-runs only from the first changed token.

Because the state after k tokens depends only on those k tokens, and each step is the same
deterministic computation, the result is identical (bit for bit) to classifying the whole text from
scratch with a fresh `LiveSentiment`, and equal up to float rounding to the batched
`predict`. The model is one `SentimentModel` or a `SentimentEnsemble` (its state is the members' states;
each keystroke runs one step per member).

Tokenizing and comparing the token lists is linear in the text but runs at C speed; the model work
per keystroke is constant.

Memory stays bounded for long texts: states are kept for every one of the last `DENSE` tokens (where typing
edits) and for every `STRIDE`-th token before them; an edit further back re-runs from the nearest kept state
before it (at most `STRIDE` extra steps).
"""

from __future__ import annotations

from pathlib import Path

from rnnchat import paths
from rnnchat.models.sentiment import Sentiment, token_id
from rnnchat.models.sentiment_ensemble import Classifier, load_sentiment
from rnnchat.text import Vocab, tokenize


DENSE, STRIDE = 256, 256


def _common_prefix(a: list[str], b: list[str]) -> int:
    n = min(len(a), len(b))
    if n and a[: n - 1] == b[: n - 1]:  # the usual keystroke: everything but the last token agrees
        return n if a[n - 1] == b[n - 1] else n - 1
    k = 0
    while k < n and a[k] == b[k]:
        k += 1
    return k


class LiveSentiment:
    """Incremental classifier of the current input text (call `set_text` on every keystroke)."""

    def __init__(self, model: Classifier, vocab: Vocab):
        if model.vocab_size != len(vocab):
            raise ValueError(f"model vocab_size {model.vocab_size} != vocabulary length {len(vocab)}")
        self.model, self.vocab = model, vocab
        model.train(False)
        self.reset()

    @classmethod
    def from_checkpoint(cls, path: Path | str | None = None) -> "LiveSentiment":
        model, vocab, _ = load_sentiment(path or paths.sentiment_checkpoint())
        return cls(model, vocab)

    def reset(self) -> None:
        """Forget the previous text (the next call starts from the empty text)."""
        self._tokens: list[str] = []
        self._states: dict[int, object] = {0: self.model.zero_state()}  # k -> the state after k tokens
        self._result: Sentiment | None = None
        self.steps_run = 0  # model steps run by the last set_text (for tests and benchmarks)

    @property
    def tokens(self) -> list[str]:
        return list(self._tokens)

    def set_text(self, text: str) -> Sentiment:
        """Classify the full current text, reusing the states of its unchanged leading tokens."""
        tokens = tokenize(text)
        k = _common_prefix(self._tokens, tokens)
        if k == len(tokens) == len(self._tokens) and self._result is not None:
            self.steps_run = 0
            return self._result  # same tokens (e.g. a space was typed)
        n, old_n = len(tokens), len(self._tokens)
        for pos in range(old_n, k, -1):  # states past the common prefix (the keystroke path: one or none)
            self._states.pop(pos, None)
        start = k
        while start not in self._states:  # the last kept state within the common prefix
            start -= 1
        vocab, advance = self.vocab, self.model.advance
        state = self._states[start]
        for pos in range(start, n):
            state = advance(state, token_id(vocab, tokens[pos]))
            if (pos + 1) % STRIDE == 0 or pos + 1 > n - DENSE:
                self._states[pos + 1] = state
        # off-stride states kept before this call lie in (old_n - DENSE, old_n]: those now behind the tail go
        for pos in range(max(1, old_n - DENSE + 1), n - DENSE + 1):
            if pos % STRIDE:
                self._states.pop(pos, None)
        self.steps_run = n - start
        self._tokens = tokens
        probs, score = self.model.readout(state)
        self._result = Sentiment.of(probs, score, n)
        return self._result

    def classify(self, text: str) -> Sentiment:
        """From scratch, without touching the incremental state."""
        return LiveSentiment(self.model, self.vocab).set_text(text)
