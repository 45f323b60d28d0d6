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
from rnnchat.models.sentiment import (LiveState, SentimentConfig, SentimentModel, member_prefix, sentiment_spec,
                                      softmax)
from rnnchat.text import Vocab

# The stacked live state: per layer (h, c) as (M, H), the running max and sum (M, H) and the token count.
StackedState = tuple[tuple[tuple[np.ndarray, np.ndarray], ...], np.ndarray, np.ndarray, int]


class StackedMembers:
    """Frozen copies of M alike members' weights as (M, ...) arrays, stepped together."""

    def __init__(self, members: list[SentimentModel]):
        c = members[0].config
        self.H, self.layers, self.pools, self.M = c.hidden, c.layers, c.pools, len(members)
        self.dtype = members[0].dtype
        self.E = [m.embed.params["W"] for m in members]  # looked up per member: no copy of the big tables
        self.Wx = [np.stack([m.lstms[i].params["Wx"] for m in members]) for i in range(c.layers)]
        self.Wh = [np.stack([m.lstms[i].params["Wh"] for m in members]) for i in range(c.layers)]
        self.b = [np.stack([m.lstms[i].params["b"] for m in members]) for i in range(c.layers)]
        self.cls_W = np.stack([m.cls.params["W"] for m in members])      # (M, F, 3)
        self.cls_b = np.stack([m.cls.params["b"] for m in members])      # (M, 3)
        self.score_W = np.stack([m.score.params["W"] for m in members])  # (M, F, 1)
        self.score_b = np.stack([m.score.params["b"] for m in members])  # (M, 1)

    @staticmethod
    def alike(members: list[SentimentModel]) -> bool:
        keys = ("vocab_size", "embed", "hidden", "layers", "pool", "lexicon")
        return len({tuple(getattr(m.config, k) for k in keys) for m in members}) == 1

    def zero_state(self) -> StackedState:
        M, H = self.M, self.H
        layers = tuple((np.zeros((M, H), self.dtype), np.zeros((M, H), self.dtype)) for _ in range(self.layers))
        return layers, np.full((M, H), -np.inf, self.dtype), np.zeros((M, H), self.dtype), 0

    def advance(self, state: StackedState, token_id: int) -> StackedState:
        """All members one token further (pure), with the same arithmetic as `SentimentModel.advance`."""
        layers, mx, sm, k = state
        H = self.H
        x = np.stack([E[token_id] for E in self.E])[:, None]  # (M, 1, D)
        new_layers = []
        for Wx, Wh, b, (h, c) in zip(self.Wx, self.Wh, self.b, layers):
            a = np.matmul(x, Wx)[:, 0]  # (M, 4H)
            a += np.matmul(h[:, None], Wh)[:, 0]
            a += b
            s = a[:, :3 * H]
            s *= 0.5  # sigmoid via tanh, as the batched LSTM computes it
            np.tanh(s, out=s)
            s *= 0.5
            s += 0.5
            g = np.tanh(a[:, 3 * H:])
            c = a[:, H:2 * H] * c
            c += a[:, :H] * g
            h = a[:, 2 * H:3 * H] * np.tanh(c)
            new_layers.append((h, c))
            x = h[:, None]
        top = new_layers[-1][0]
        return tuple(new_layers), np.maximum(mx, top), sm + top, k + 1

    def readout(self, state: StackedState) -> tuple[np.ndarray, float]:
        layers, mx, sm, k = state
        feats = {"last": layers[-1][0], "max": mx if k else np.zeros_like(mx), "mean": sm / max(k, 1)}
        f = np.concatenate([feats[p] for p in self.pools], axis=1)[:, None]  # (M, 1, F)
        logits = np.matmul(f, self.cls_W)[:, 0] + self.cls_b
        scores = np.tanh(np.matmul(f, self.score_W)[:, 0, 0] + self.score_b[:, 0])
        probs = softmax(logits.astype(np.float64))
        return _mean(list(probs)), float(_mean([np.float64(s) for s in scores]))

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
        self.members = list(members)
        self.stacked: StackedMembers | None = None
        self.training = False
        self.train(False)

    @classmethod
    def from_config(cls, config: dict) -> "SentimentEnsemble":
        return cls([SentimentModel(SentimentConfig.from_dict(m)) for m in config["members"]])

    @property
    def vocab_size(self) -> int:
        return self.members[0].config.vocab_size

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

    def predict(self, ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mean probabilities (N, 3), mean scores (N,)) with dropout off."""
        out = [m.predict(ids, mask) for m in self.members]
        return _mean([p for p, _ in out]), _mean([s for _, s in out])

    # -- live ---------------------------------------------------------------------------------------------
    def zero_state(self):
        if self.stacked is not None:
            return self.stacked.zero_state()
        return tuple(m.zero_state() for m in self.members)

    def advance(self, state, token_id: int):
        if self.stacked is not None:
            return self.stacked.advance(state, token_id)
        return tuple(m.advance(s, token_id) for m, s in zip(self.members, state))

    def advance_many(self, state, ids: Sequence[int]):
        if self.stacked is not None:
            states = self.stacked.unstack(state)
            return self.stacked.stack([m.advance_many(s, ids) for m, s in zip(self.members, states)])
        return tuple(m.advance_many(s, ids) for m, s in zip(self.members, state))

    def readout(self, state) -> tuple[np.ndarray, float]:
        if self.stacked is not None:
            return self.stacked.readout(state)
        out = [m.readout(s) for m, s in zip(self.members, state)]
        return _mean([p for p, _ in out]), float(_mean([np.float64(s) for _, s in out]))

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


def _mean(values: list[np.ndarray]) -> np.ndarray:
    """The mean in a fixed order (sum left to right, then divide), the same for batched and live use."""
    total = values[0].astype(np.float64, copy=True)
    for v in values[1:]:
        total += v
    return total / len(values)


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
    return load_vocab_model(path, "sentiment", sentiment_spec, build_sentiment)
