"""Many-to-one LSTM sentiment classifier: Embedding -> stacked LSTM (masked) -> pooling -> two heads.

Heads: a 3-class softmax (negative / neutral / positive) and a score tanh(Linear) in [-1, 1].
Labels come from the human mean rating r in [-4, 4]: r <= -0.5 negative, r >= 0.5 positive, else
neutral; the score target is r / 4. Loss = CE + score_weight * MSE (both means over the batch).

Pooling (config ``pool``, "+"-joined): ``last`` (final hidden state), ``max`` and ``mean`` (over the
real steps of the last layer's outputs). All three can be computed left to right one token at a
time, which is what ``rnnchat.engine.sentiment_live`` relies on: the incremental path (``zero_state`` /
``advance`` / ``readout``) gives the same numbers as the batched ``forward``.

An empty text has no steps: its pooled features are all zero (h = 0, max = 0, mean = 0).

With ``restart`` ("sentence" or "clause") the LSTMs start again from the zero state after each sentence (or
clause) end, while the pooling covers the whole text (``rnnchat.models.sentiment_segments``); the table of
which ids end a segment comes from the vocabulary (``set_vocab``, which loading a checkpoint calls).

With ``lexicon`` the embedding has one more column that training never changes: each token's rating in a
human-rated lexicon (VADER's, / 4; 0 for words it lacks), so the LSTM reads what the raters said of a word
next to what it learnt, and words it never saw in training still carry their rating.

With ``subwords`` (a number of hashed n-gram rows, fastText style) a token's input is its embedding row plus the
mean of its character n-grams' rows, and a token the vocabulary lacks reads as <unk> plus its n-grams
(``rnnchat.models.sentiment_tokens``: the `TokenReader` that `set_vocab` makes gives every token its id).

With ``cell="qrnn"`` the recurrence is a QRNN (``rnnchat.nn.qrnn``: gates from the last ``window`` tokens
only, an element-wise memory), whose live path (``rnnchat.models.sentiment_qrnn``) re-runs the rest of a text
after an edit without a matrix product per token.

The ensemble, the checkpoint's spec (one model or members "m0.", "m1.", ...), loading and saving are
``rnnchat.models.sentiment_ensemble``'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from functools import partial

import numpy as np

from rnnchat.models.sentiment_qrnn import StackedQRNN, compact
from rnnchat.models.sentiment_result import softmax
from rnnchat.models.sentiment_segments import RESTARTS, Segments, join_states, segment_ends
from rnnchat.models.sentiment_stacked import StackedMembers
from rnnchat.models.sentiment_tokens import TokenReader
from rnnchat.nn import LSTM, QRNN, Dropout, Embedding, EmbeddingBag, Linear, ParamSet
from rnnchat.nn.layers import sum_rows
from rnnchat.text import Vocab

POOLS = ("last", "max", "mean")
CELLS = ("lstm", "qrnn")


@dataclass
class SentimentConfig:
    vocab_size: int
    embed: int = 128
    hidden: int = 256
    layers: int = 1
    dropout: float = 0.5          # on embeddings, between layers and on the pooled features
    word_dropout: float = 0.1     # training only: a token is replaced by <unk> with this probability
    pool: str = "last+max+mean"
    score_weight: float = 1.0     # lambda in CE + lambda * MSE
    lexicon: bool = False         # a fixed extra input per token: its lexicon rating / 4 (`set_lexicon`)
    restart: str = "none"         # "sentence" / "clause": the recurrence restarts after each one ends
    subwords: int = 0             # hashed character n-gram rows added to each token's vector (0: none)
    cell: str = "lstm"            # "lstm" or "qrnn" (gates from the inputs only: a live edit re-runs in µs)
    window: int = 2               # qrnn: the gates read this many tokens (the current one and those before)

    def __post_init__(self):
        if self.cell not in CELLS or (self.cell == "qrnn" and self.layers != 1):  # live: gate rows per token
            raise ValueError(f"cell must be one of {CELLS} (qrnn with one layer), got {self.cell!r}")
        if self.restart not in RESTARTS:
            raise ValueError(f"restart must be one of {RESTARTS}, got {self.restart!r}")
        if self.subwords < 0 or (self.subwords and self.lexicon):
            raise ValueError(f"subwords must be >= 0 and not used with the lexicon column, got {self.subwords}")
        parts = self.pool.split("+")
        if not parts or any(p not in POOLS for p in parts) or len(set(parts)) != len(parts):
            raise ValueError(f"pool must be a '+'-joined subset of {POOLS}, got {self.pool!r}")

    @property
    def pools(self) -> list[str]:
        return self.pool.split("+")

    @property
    def feature_size(self) -> int:
        return self.hidden * len(self.pools)

    @classmethod
    def from_dict(cls, d: dict) -> "SentimentConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


# The incremental state after k tokens: per layer (h, c) (a QRNN's also holds the window's ids), then the
# running max and sum of the last layer's outputs, and k. Arrays are (1, H): a model runs as a stack of one.
LiveState = tuple[tuple[tuple, ...], np.ndarray, np.ndarray, int]


class SentimentModel:
    """The classifier. Batch-major ids (N, T) with a (N, T) mask of real tokens (right padding)."""

    def __init__(self, config: SentimentConfig, *, seed: int = 0, dtype=np.float32):
        self.config = c = config
        self.dtype = np.dtype(dtype)
        self.rng = np.random.default_rng(seed)
        self.embed = Embedding(c.vocab_size, c.embed + c.lexicon, rng=self.rng, dtype=dtype)
        if c.lexicon:
            self.embed.params["W"][:, -1] = 0  # no rating until `set_lexicon`
        cell = LSTM if c.cell == "lstm" else partial(QRNN, window=c.window)
        self.cells = [cell(c.embed + c.lexicon if i == 0 else c.hidden, c.hidden, rng=self.rng, dtype=dtype)
                      for i in range(c.layers)]
        for layer in self.cells:  # forget-gate bias 1: remember by default (i|f|o|g, or z|f|o for the QRNN)
            layer.params["b"][c.hidden:2 * c.hidden] = 1.0
        self.drops = [Dropout(c.dropout, rng=self.rng) for _ in range(c.layers + 1)]
        self.cls = Linear(c.feature_size, 3, rng=self.rng, dtype=dtype)
        self.score = Linear(c.feature_size, 1, rng=self.rng, dtype=dtype)
        self.ngrams = EmbeddingBag(c.subwords, c.embed, rng=self.rng, dtype=dtype) if c.subwords else None
        self.frozen_embedding = False
        self._ends: np.ndarray | None = None  # (V,) bool: ids that end a segment (`set_vocab`)
        self._reader: TokenReader | None = None
        self._live_path: StackedMembers | StackedQRNN | None = None  # made in eval mode, from the weights
        self._build_params()
        self.training = True

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    def _build_params(self) -> None:
        named = [] if self.frozen_embedding else [("embed", self.embed)]
        named += [("ngrams", self.ngrams)] if self.ngrams is not None else []
        named += [(f"{self.config.cell}{i}", l) for i, l in enumerate(self.cells)]
        self.params = ParamSet(named + [("cls", self.cls), ("score", self.score)])

    def set_vocab(self, vocab: Vocab, reader: TokenReader | None = None) -> None:
        """The reader of tokens (`reader`, shared by an ensemble's members, or a new one) and which ids end a
        sentence / clause (needed when the config restarts; harmless otherwise)."""
        if len(vocab) != self.config.vocab_size:
            raise ValueError(f"vocabulary of {len(vocab)} for a model of {self.config.vocab_size}")
        reader = reader or TokenReader(vocab, self.config.subwords)
        if reader.vocab is not vocab or reader.buckets != self.config.subwords:
            raise ValueError(f"a reader of {reader.buckets} subword rows for a model of {self.config.subwords}")
        self._ends = segment_ends(vocab.itos, self.config.restart)
        self._reader = reader
        self._live_path = None  # its gate rows are kept per token id

    @property
    def has_vocab(self) -> bool:
        return self._reader is not None

    @property
    def reader(self) -> TokenReader:
        """Tokens -> this model's ids (`set_vocab` makes it; loading a checkpoint calls set_vocab)."""
        if self._reader is None:
            raise ValueError("the classifier needs set_vocab(vocab) before it reads text")
        return self._reader

    @property
    def segment_ends(self) -> np.ndarray | None:
        """(V,) bool: the ids after which the recurrence restarts; None for a model that never restarts."""
        if self.config.restart != "none" and self._ends is None:
            raise ValueError(f"a model with restart={self.config.restart!r} needs set_vocab(vocab) first")
        return self._ends

    def _segments(self, ids: np.ndarray, mask: np.ndarray) -> Segments | None:
        ends = self.segment_ends
        return None if ends is None or ids.shape[1] == 0 else Segments(ids, mask, ends)

    def set_lexicon(self, ratings: np.ndarray) -> None:
        """The fixed lexicon column: one value per vocabulary entry (a rating / 4, 0 for words it lacks)."""
        if not self.config.lexicon or ratings.shape != (self.config.vocab_size,):
            raise ValueError(f"set_lexicon needs config lexicon=True and {self.config.vocab_size} ratings")
        self.embed.params["W"][:, -1] = ratings
        self._live_path = None

    def freeze_embedding(self) -> None:
        """Keep the embedding fixed (e.g. taken from the LM): it leaves `params` and gets no gradient."""
        self.frozen_embedding = True
        self._build_params()

    # -- trainer protocol ------------------------------------------------------------------------------
    def train(self, mode: bool = True) -> None:
        self.training = mode
        for d in self.drops:
            d.training = mode
        if mode:  # the weights will change: the live path's copies of them are made again in eval mode
            self._live_path = None

    def reset_state(self) -> None:
        """Nothing is carried between batches (each sentence starts from the zero state)."""

    # -- batched forward / backward ---------------------------------------------------------------------
    def forward(self, ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """ids, mask (N, T) -> (class logits (N, 3), scores (N,) in [-1, 1])."""
        mask = np.asarray(mask, self.dtype)
        words = self.reader.words(ids) if self.ngrams is not None else ids  # a form's word is <unk>
        segs = self._segments(words, mask)  # the segment ends are read before word dropout
        if self.training and self.config.word_dropout > 0:  # a dropped word keeps its n-grams
            drop = (self.rng.random(ids.shape) < self.config.word_dropout) & (mask > 0)
            words = np.where(drop, 1, words)  # <unk> is id 1
        N, T = ids.shape
        if segs is not None:
            ids, words = segs.rows(ids), segs.rows(words)
        run_mask = mask if segs is None else segs.mask
        h = self.drops[0].forward(self._embed(ids, words))
        for i, layer in enumerate(self.cells):
            if i:
                h = self.drops[i].forward(h)
            h = layer.forward(h, run_mask)  # (N, T, H), or (S, T', H) for segment rows
        if segs is not None:
            h = segs.to_batch(h)
        self._segs = segs
        self._hs, self._mask = h, mask
        counts = mask.sum(axis=1)  # (N,)
        self._counts = counts
        self._last = np.maximum(counts - 1, 0).astype(np.int64)  # each text's last real step
        feats = []
        for pool in self.config.pools:
            if pool == "last":  # a padded step carries the state; a segment row's padding is 0
                feats.append(h[np.arange(N), self._last] if T else np.zeros((N, self.config.hidden), self.dtype))
            elif pool == "max":
                if T:
                    masked = np.where(mask[:, :, None] > 0, h, -np.inf)
                    self._argmax = masked.argmax(axis=1)  # (N, H)
                    mx = np.take_along_axis(h, self._argmax[:, None, :], axis=1)[:, 0]
                    mx = np.where(counts[:, None] > 0, mx, 0).astype(self.dtype)
                else:
                    mx = np.zeros((N, self.config.hidden), self.dtype)
                feats.append(mx)
            else:  # mean
                s = (h * mask[:, :, None]).sum(axis=1)
                feats.append(s / np.maximum(counts, 1)[:, None])
        f = self.drops[-1].forward(np.concatenate(feats, axis=1))
        logits = self.cls.forward(f)
        scores = np.tanh(self.score.forward(f)[:, 0])
        self._scores = scores
        return logits, scores

    def backward(self, dlogits: np.ndarray, dscores: np.ndarray) -> None:
        """Gradients of the loss w.r.t. the logits (N, 3) and the scores (N,) -> params' grads."""
        dpre = (dscores * (1 - self._scores ** 2))[:, None]
        df = self.cls.backward(dlogits) + self.score.backward(dpre.astype(self.dtype))
        df = self.drops[-1].backward(df)
        h, mask, counts = self._hs, self._mask, self._counts
        N, T, H = h.shape
        dh = np.zeros_like(h)
        for k, pool in enumerate(self.config.pools):
            d = df[:, k * H:(k + 1) * H]
            if T == 0:
                continue
            if pool == "last":
                dh[np.arange(N), self._last] += d
            elif pool == "max":
                d = np.where(counts[:, None] > 0, d, 0)
                rows = np.arange(N)[:, None]
                cols = np.arange(H)[None, :]
                np.add.at(dh, (rows, self._argmax, cols), d)
            else:
                dh += (d / np.maximum(counts, 1)[:, None])[:, None, :] * mask[:, :, None]
        if self._segs is not None:
            dh = self._segs.to_segments(dh)
        for i in reversed(range(len(self.cells))):
            dh = self.cells[i].backward(dh)
            if i:
                dh = self.drops[i].backward(dh)
        dx = self.drops[0].backward(dh)
        if not self.frozen_embedding:
            self.embed.backward(dx)
            if self.config.lexicon:
                self.embed.grads["W"][:, -1] = 0  # the lexicon column is data, not a weight
        if self.ngrams is not None:  # each distinct id's gradient, then its n-grams' share
            inverse, n = self._bag_of
            per_id = sum_rows(inverse, dx.reshape(len(inverse), -1), np.zeros((n, dx.shape[-1]), dx.dtype))
            self.ngrams.backward(per_id)

    def _embed(self, ids: np.ndarray, words: np.ndarray) -> np.ndarray:
        """(N, T) ids and their words -> input vectors (N, T, D): a word's row, plus its n-grams' mean."""
        x = self.embed.forward(words)
        if self.ngrams is None:
            return x
        where, offsets, rows = self.reader.distinct_bags(ids)
        self._bag_of = (where, len(offsets) - 1)
        return x + self.ngrams.forward(offsets, rows)[where].reshape(x.shape)

    def vectors(self, ids: Sequence[int]) -> np.ndarray:
        """The input vectors (T, D) of a run of ids, for the live path (pure; as `_embed` computes them)."""
        ids = np.asarray(ids, np.int64)
        W = self.embed.params["W"]
        if self.ngrams is None:
            return W[ids]
        where, offsets, rows = self.reader.distinct_bags(ids)
        return W[self.reader.words(ids)] + self.ngrams.lookup(offsets, rows)[where]

    def loss(self, ids: np.ndarray, mask: np.ndarray, labels: np.ndarray, targets: np.ndarray,
             *, grad: bool = False) -> tuple[float, int]:
        """Mean CE(labels) + score_weight * mean (score - targets)^2 over the batch; with `grad`, backward.
        `labels`: class ids (N,), or class probabilities (N, 3) (a teacher's: `rnnchat.train.sentiment_distill`)."""
        logits, scores = self.forward(ids, mask)
        N = len(labels)
        p = softmax(logits.astype(np.float64))
        q = labels if labels.ndim == 2 else np.eye(3)[labels]
        ce = -(q * np.log(p + 1e-300)).sum(axis=1).mean()
        err = scores.astype(np.float64) - targets
        lam = self.config.score_weight
        loss = float(ce + lam * np.mean(err ** 2))
        if grad:
            dlogits = (p - q) / N
            dscores = 2 * lam * err / N
            self.backward(dlogits.astype(self.dtype), dscores.astype(self.dtype))
        return loss, N

    def train_step(self, ids, mask, labels, targets) -> tuple[float, int]:
        return self.loss(ids, mask, labels, targets, grad=True)

    def predict(self, ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities (N, 3), scores (N,)) with dropout off."""
        mode = self.training
        self.train(False)
        try:
            logits, scores = self.forward(ids, mask)
        finally:
            self.train(mode)
        return softmax(logits.astype(np.float64)), scores.astype(np.float64)

    # -- incremental, one token at a time -------------------------------------------------------------
    def _live(self) -> "StackedMembers | StackedQRNN":
        """This model's live path: a stack of one (`sentiment_stacked` for an LSTM, `sentiment_qrnn` for a
        QRNN). It holds copies and products of the weights (and the QRNN's, rows per token id), so it is made
        again after training, loading, `set_vocab` and `set_lexicon`."""
        path = self._live_path  # read once: another thread may drop it meanwhile
        if path is None or self.training:
            path = (StackedQRNN if self.config.cell == "qrnn" else StackedMembers)([self])
            if not self.training:  # (in training the weights may change between calls: nothing is kept)
                self._live_path = path
        return path

    def zero_state(self) -> LiveState:
        return self._live().zero_state()

    def advance(self, state: LiveState, token_id: int) -> LiveState:
        """The state after one more token (pure: `state` is not modified). Dropout never applies."""
        return self._live().advance(state, token_id)

    def steps(self, state: LiveState, ids: Sequence[int]) -> list[LiveState]:
        """The states after each of `ids` (the live path's runs of tokens)."""
        return self._live().steps(state, ids)

    def advance_many(self, state: LiveState, ids: Sequence[int]) -> LiveState:
        """The state after all of `ids`, a chunk at a time: linear time, bounded memory, any length of text."""
        return self._live().advance_many(state, ids)

    join = staticmethod(join_states)
    compact = staticmethod(compact)  # a state kept for long holds only its own numbers

    def readout(self, state: LiveState) -> tuple[np.ndarray, float]:
        """(probabilities (3,), score) for the text whose tokens led to `state`."""
        return self._live().readout(state)

    # -- checkpoint arrays ----------------------------------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        return {"embed.W": self.embed.params["W"], **self.params.named()}

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        np.copyto(self.embed.params["W"], arrays["embed.W"].astype(self.dtype, copy=False))
        self.params.load(arrays)
        self._live_path = None

    def header_config(self) -> dict:
        return asdict(self.config)
