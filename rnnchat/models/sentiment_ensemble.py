"""Several sentiment classifiers as one, and the sentiment checkpoint (one model or an ensemble).

`SentimentEnsemble` averages the probabilities and scores of `SentimentModel`s that share one vocabulary
(separately trained members); it has the same predict / incremental / checkpoint interface. The label is the
argmax of the mean probabilities.

Live use (`zero_state` / `advance` / `readout`, one token at a time): members of one shape (embedding, hidden
size, layers, pooling; seeds and weights differ) are stacked into (M, ...) arrays when the ensemble is put in
eval mode, so a step of all M members is one batched product per weight matrix and one pass of each
element-wise operation, instead of M of each: at these sizes each NumPy call costs about as much as its
arithmetic, so this is ~M times fewer calls per token (a mid-text edit re-runs every token after it). Members
of different shapes step one by one. Either way the result equals `predict` up to float rounding.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rnnchat.checkpoint import load_vocab_model, save_checkpoint
from rnnchat.models.sentiment import LiveState, SentimentConfig, SentimentModel, steps_one_by_one
from rnnchat.models.sentiment_qrnn import StackedQRNN
from rnnchat.models.sentiment_result import mean_in_order, softmax
from rnnchat.models.sentiment_segments import join_states
from rnnchat.models.sentiment_tokens import TokenReader
from rnnchat.text import Vocab


def sentiment_spec(config: dict) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes a checkpoint of this architecture (one model or an ensemble) must hold."""
    if "members" in config:
        members = config["members"]
        if not isinstance(members, list) or not members or not all(isinstance(m, dict) for m in members):
            raise ValueError("members must be a non-empty list of member configs")
        spec: dict[str, tuple[int, ...]] = {}
        for i, m in enumerate(members):
            if "members" in m:  # build_sentiment makes every member a single model
                raise ValueError(f"member {i} is itself an ensemble (members must be single models)")
            if m.get("vocab_size") != config.get("vocab_size"):
                raise ValueError(f"member {i} has vocab_size {m.get('vocab_size')!r}, the ensemble "
                                 f"{config.get('vocab_size')!r} (members share one vocabulary)")
            spec |= {f"{member_prefix(i)}{k}": v for k, v in sentiment_spec(m).items()}
        return spec
    c = SentimentConfig.from_dict(config)
    spec = {"embed.W": (c.vocab_size, c.embed + c.lexicon)}
    if c.subwords:
        spec["ngrams.W"] = (c.subwords, c.embed)
    for i in range(c.layers):
        d_in = c.embed + c.lexicon if i == 0 else c.hidden
        if c.cell == "qrnn":
            spec |= {f"qrnn{i}.W": (c.window * d_in, 3 * c.hidden), f"qrnn{i}.b": (3 * c.hidden,)}
        else:
            spec |= {f"lstm{i}.Wx": (d_in, 4 * c.hidden), f"lstm{i}.Wh": (c.hidden, 4 * c.hidden),
                     f"lstm{i}.b": (4 * c.hidden,)}
    F = c.feature_size
    return spec | {"cls.W": (F, 3), "cls.b": (3,), "score.W": (F, 1), "score.b": (1,)}


def member_prefix(i: int) -> str:
    return f"m{i}."


# The stacked live state: per layer (h, c) as (M, H), the running max and sum (M, H) and the token count.
StackedState = tuple[tuple[tuple[np.ndarray, np.ndarray], ...], np.ndarray, np.ndarray, int]


class StackedMembers:
    """Frozen copies of M alike members' weights as (M, ...) arrays, stepped together.

    The sigmoid gates' columns of the copies are pre-scaled by 1/2 (exact in floating point), so one tanh
    over all 4H pre-activations gives tanh(z/2) for i|f|o (sigmoid(z) = tanh(z/2)/2 + 1/2) and tanh(z) for g:
    fewer NumPy calls per token, which is what a step costs at these sizes.
    """

    def __init__(self, members: list[SentimentModel]):
        c = members[0].config
        self.H, self.layers, self.pools, self.M = c.hidden, c.layers, c.pools, len(members)
        self.dtype = members[0].dtype
        half = np.ones(4 * c.hidden, self.dtype)
        half[:3 * c.hidden] = 0.5
        shift = np.zeros(4 * c.hidden, self.dtype)
        shift[:3 * c.hidden] = 0.5
        self.gate_scale, self.gate_shift = half, shift  # tanh(z/2) / 2 + 1/2 = sigmoid(z) on i|f|o; g as it is
        self.E = [m.embed.params["W"] for m in members]  # looked up per member: no copy of the big tables
        self.members = members if c.subwords else None  # then each member composes its input vectors
        self.models = members
        self.Wx = [np.stack([m.lstms[i].params["Wx"] for m in members]) * half for i in range(c.layers)]
        self.Wh = [np.stack([m.lstms[i].params["Wh"] for m in members]) * half for i in range(c.layers)]
        self.b = [np.stack([m.lstms[i].params["b"] for m in members])[:, None] * half for i in range(c.layers)]
        # both heads in one product: (M, F, 3 class logits + 1 score)
        self.head_W = np.stack([np.concatenate([m.cls.params["W"], m.score.params["W"]], axis=1) for m in members])
        self.head_b = np.stack([np.concatenate([m.cls.params["b"], m.score.params["b"]]) for m in members])

    @staticmethod
    def alike(members: list[SentimentModel]) -> bool:
        keys = ("vocab_size", "embed", "hidden", "layers", "pool", "lexicon", "subwords", "cell")
        same = len({tuple(getattr(m.config, k) for k in keys) for m in members}) == 1
        return same and members[0].config.cell == "lstm"

    def zero_state(self) -> StackedState:
        M, H = self.M, self.H
        layers = tuple((np.zeros((M, H), self.dtype), np.zeros((M, H), self.dtype)) for _ in range(self.layers))
        return layers, np.full((M, H), -np.inf, self.dtype), np.zeros((M, H), self.dtype), 0

    def advance(self, state: StackedState, token_id: int) -> StackedState:
        return self.steps(state, [token_id])[-1]

    def steps(self, state: StackedState, ids: Sequence[int]) -> list[StackedState]:
        """The states after each of `ids` (pure). Each layer's input product runs once for all the tokens; a
        single token runs as two copies of itself, so every token's numbers are the same however the tokens
        are split into calls (OpenBLAS's one-row kernel rounds differently from its many-row one)."""
        layers, mx, sm, k = state
        H, T, M = self.H, len(ids), self.M
        if not T:
            return []
        rows = list(ids) if T > 1 else [ids[0], ids[0]]
        x = np.empty((M, len(rows), self.E[0].shape[1]), self.dtype)
        words, bags = rows, None
        if self.members is not None:  # the members share one reader: the run's n-gram rows are found once
            reader, run = self.members[0].reader, np.asarray(rows, np.int64)
            words, (where, *bags) = reader.words(run), reader.distinct_bags(run)
        for i, E in enumerate(self.E):
            np.take(E, words, axis=0, out=x[i])
            if bags is not None:
                x[i] += self.members[i].ngrams.lookup(*bags)[where]  # as SentimentModel.vectors adds them
        hs_all, cs_all = [], []
        for Wx, Wh, b, (h, c) in zip(self.Wx, self.Wh, self.b, layers):
            A = np.matmul(x, Wx)  # (M, T', 4H): the input products of all steps
            A += b
            A = np.ascontiguousarray(A.transpose(1, 0, 2))  # (T', M, 4H): each step's slab contiguous
            hs, cs = [], []  # one (M, H) array per step: a kept state holds only its own
            rec = np.empty((M, 1, 4 * H), self.dtype)
            for t in range(T):
                a = A[t]
                np.matmul(h[:, None], Wh, out=rec)
                a += rec[:, 0]
                np.tanh(a, out=a)  # tanh(z/2) on i|f|o, tanh(z) on g
                a *= self.gate_scale  # whole contiguous rows: cheaper than the strided i|f|o slices
                a += self.gate_shift
                c = a[:, H:2 * H] * c
                c += a[:, :H] * a[:, 3 * H:]
                h = np.tanh(c)
                h *= a[:, 2 * H:3 * H]
                hs.append(h)
                cs.append(c)
            hs_all.append(hs)
            cs_all.append(cs)
            if len(hs_all) < self.layers:
                x = np.stack(hs if T > 1 else hs * 2, axis=1)  # (M, T', H): the next layer's input
        out = []
        for t, top in enumerate(hs_all[-1]):  # the running pools, token by token (as the batch sums them)
            mx = np.maximum(mx, top)
            sm = sm + top
            out.append((tuple((hs[t], cs[t]) for hs, cs in zip(hs_all, cs_all)), mx, sm, k + t + 1))
        return out

    def advance_many(self, state: StackedState, ids: Sequence[int]) -> StackedState:
        """The state after all of `ids`, each member through its batched LSTMs (`SentimentModel.advance_many`)."""
        return self.stack([m.advance_many(s, ids) for m, s in zip(self.models, self.unstack(state))])

    join = staticmethod(join_states)  # the same arithmetic on (M, H) arrays

    def readout(self, state: StackedState) -> tuple[np.ndarray, float]:
        layers, mx, sm, k = state
        feats = {"last": layers[-1][0], "max": mx if k else np.zeros_like(mx), "mean": sm / max(k, 1)}
        f = np.concatenate([feats[p] for p in self.pools], axis=1)[:, None]  # (M, 1, F)
        out = np.matmul(f, self.head_W)[:, 0] + self.head_b  # (M, 4)
        logits, scores = out[:, :3], np.tanh(out[:, 3])
        probs = softmax(logits.astype(np.float64))
        return mean_in_order(list(probs)), float(mean_in_order([np.float64(s) for s in scores]))

    def stack(self, states: Sequence[LiveState]) -> StackedState:
        """The members' own states as one stacked state."""
        layers = tuple((np.stack([s[0][i][0] for s in states]), np.stack([s[0][i][1] for s in states]))
                       for i in range(self.layers))
        return layers, np.stack([s[1] for s in states]), np.stack([s[2] for s in states]), states[0][3]

    def unstack(self, state: StackedState) -> list[LiveState]:
        layers, mx, sm, k = state
        return [(tuple((h[j], c[j]) for h, c in layers), mx[j], sm[j], k) for j in range(self.M)]


class SentimentEnsemble:
    """Several SentimentModels over one vocabulary: probabilities and scores are the members' means."""

    def __init__(self, members: list[SentimentModel]):
        sizes = {m.config.vocab_size for m in members}
        if len(sizes) != 1:
            raise ValueError(f"an ensemble needs at least one member and one vocabulary size, got {sorted(sizes)}")
        if len({m.config.restart for m in members}) != 1:
            raise ValueError("an ensemble's members must share one restart rule (they share the live segments)")
        if len({m.config.subwords for m in members}) != 1:
            raise ValueError("an ensemble's members must share one subword table size (they read tokens alike)")
        self.members = list(members)
        readers = {id(m.reader): m.reader for m in members if m.has_vocab}
        if len(readers) > 1 or (readers and not all(m.has_vocab for m in members)):  # e.g. loaded one by one
            if len({tuple(r.vocab.itos) for r in readers.values()}) != 1:
                raise ValueError("an ensemble's members must share one vocabulary")
            self.set_vocab(next(iter(readers.values())).vocab)  # one reader for all: an unseen word, one id
        self.stacked: StackedMembers | StackedQRNN | None = None
        self.training = False
        self.train(False)

    @classmethod
    def from_config(cls, config: dict) -> "SentimentEnsemble":
        return cls([SentimentModel(SentimentConfig.from_dict(m)) for m in config["members"]])

    @property
    def vocab_size(self) -> int:
        return self.members[0].config.vocab_size

    @property
    def segment_ends(self) -> np.ndarray | None:
        """The members' table of segment-ending ids (they share one vocabulary and restart rule)."""
        return self.members[0].segment_ends

    def set_vocab(self, vocab: Vocab) -> None:
        """One reader for all members: an unseen word gets one id, the same for each."""
        reader = TokenReader(vocab, self.members[0].config.subwords)
        for m in self.members:
            m.set_vocab(vocab, reader)

    @property
    def has_vocab(self) -> bool:
        return all(m.has_vocab for m in self.members)

    @property
    def reader(self) -> TokenReader:
        return self.members[0].reader

    def train(self, mode: bool = True) -> None:
        """Training mode (the live path's stacked copy of the weights is dropped), or eval mode (it is made, once:
        every `LiveSentiment` puts its model in eval mode)."""
        self.training = mode
        for m in self.members:
            m.train(mode)
        if mode:
            self.stacked = None
        elif self.stacked is None and StackedMembers.alike(self.members):
            self.stacked = StackedMembers(self.members)
        elif self.stacked is None and StackedQRNN.alike(self.members):
            self.stacked = StackedQRNN(self.members)

    def predict(self, ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mean probabilities (N, 3), mean scores (N,)) with dropout off."""
        out = [m.predict(ids, mask) for m in self.members]
        return mean_in_order([p for p, _ in out]), mean_in_order([s for _, s in out])

    # -- live ---------------------------------------------------------------------------------------------
    def zero_state(self):
        if self.stacked is not None:
            return self.stacked.zero_state()
        return tuple(m.zero_state() for m in self.members)

    def advance(self, state, token_id: int):
        if self.stacked is not None:
            return self.stacked.advance(state, token_id)
        return tuple(m.advance(s, token_id) for m, s in zip(self.members, state))

    def steps(self, state, ids: Sequence[int]) -> list:
        """The states after each of `ids` (the live path's runs of tokens)."""
        if self.stacked is not None:
            return self.stacked.steps(state, ids)
        return steps_one_by_one(self.advance, state, ids)

    def advance_many(self, state, ids: Sequence[int]):
        if self.stacked is not None:
            return self.stacked.advance_many(state, ids)
        return tuple(m.advance_many(s, ids) for m, s in zip(self.members, state))

    def join(self, state, segment):
        if self.stacked is not None:
            return self.stacked.join(state, segment)
        return tuple(m.join(s, g) for m, s, g in zip(self.members, state, segment))

    def readout(self, state) -> tuple[np.ndarray, float]:
        if self.stacked is not None:
            return self.stacked.readout(state)
        out = [m.readout(s) for m, s in zip(self.members, state)]
        return mean_in_order([p for p, _ in out]), float(mean_in_order([np.float64(s) for _, s in out]))

    # -- checkpoint arrays --------------------------------------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        return {f"{member_prefix(i)}{k}": v for i, m in enumerate(self.members) for k, v in m.arrays().items()}

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        for i, m in enumerate(self.members):
            prefix = member_prefix(i)
            m.load_arrays({k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)})
        self.stacked = None
        self.train(self.training)  # a stacked copy of the new weights

    def header_config(self) -> dict:
        return {"vocab_size": self.vocab_size, "members": [m.header_config() for m in self.members]}


Classifier = SentimentModel | SentimentEnsemble  # what checkpoints load as; both predict and run live


def build_sentiment(config: dict) -> Classifier:
    """An (untrained) model for a checkpoint config: one model, or an ensemble when it lists members."""
    if "members" in config:
        return SentimentEnsemble.from_config(config)
    return SentimentModel(SentimentConfig.from_dict(config))


# -- checkpoints -----------------------------------------------------------------------------------------------
def save_sentiment(model: Classifier, vocab: Vocab, path: Path | str, metrics: dict, corpus: dict | None = None,
                   extra: dict | None = None, float16: bool = True) -> None:
    header = {"model": "sentiment", "config": model.header_config(), "vocab": vocab.to_list(),
              "corpus": corpus or {}, "metrics": metrics, **(extra or {})}
    save_checkpoint(path, model.arrays(), header, float16=float16)


def load_sentiment(path: Path | str) -> tuple[Classifier, Vocab, dict]:
    """(model or ensemble in eval mode, vocabulary, header); every array is checked against the config."""
    model, vocab, header = load_vocab_model(path, "sentiment", sentiment_spec, build_sentiment)
    model.set_vocab(vocab)
    return model, vocab, header
