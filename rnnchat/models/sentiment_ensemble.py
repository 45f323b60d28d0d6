"""Several sentiment classifiers as one, and the sentiment checkpoint (one model or an ensemble).

`SentimentEnsemble` averages the probabilities and scores of `SentimentModel`s that share one vocabulary
(separately trained members); it has the same predict / incremental / checkpoint interface. The label is the
argmax of the mean probabilities.

Live use (`zero_state` / `steps` / `readout`): members of one shape are stepped together when the ensemble is
put in eval mode (`rnnchat.models.sentiment_stacked.StackedMembers` for LSTMs,
`rnnchat.models.sentiment_qrnn.StackedQRNN` for QRNNs); members of different shapes step one by one. Either way
the result equals `predict` up to float rounding.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rnnchat.checkpoint import load_vocab_model, save_checkpoint
from rnnchat.models.sentiment import SentimentConfig, SentimentModel
from rnnchat.models.sentiment_qrnn import StackedQRNN, compact
from rnnchat.models.sentiment_result import mean_in_order
from rnnchat.models.sentiment_stacked import StackedMembers
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
        self.stacked: StackedMembers | StackedQRNN | None = None
        self.training = False
        readers = {id(m.reader): m.reader for m in members if m.has_vocab}
        if len(readers) > 1 or (readers and not all(m.has_vocab for m in members)):  # e.g. loaded one by one
            if len({tuple(r.vocab.itos) for r in readers.values()}) != 1:
                raise ValueError("an ensemble's members must share one vocabulary")
            self.set_vocab(next(iter(readers.values())).vocab)  # one reader for all: an unseen word, one id
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
        """One reader for all members: an unseen word gets one id, the same for each. (The stacked live path is
        made again: a QRNN's keeps gate rows per token id.)"""
        reader = TokenReader(vocab, self.members[0].config.subwords)
        for m in self.members:
            m.set_vocab(vocab, reader)
        self.stacked = None
        self.train(self.training)

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
        out = []
        for i in ids:  # members of different shapes: each steps on its own
            state = self.advance(state, i)
            out.append(state)
        return out

    def advance_many(self, state, ids: Sequence[int]):
        if self.stacked is not None:
            return self.stacked.advance_many(state, ids)
        return tuple(m.advance_many(s, ids) for m, s in zip(self.members, state))

    def join(self, state, segment):
        if self.stacked is not None:
            return self.stacked.join(state, segment)
        return tuple(m.join(s, g) for m, s, g in zip(self.members, state, segment))

    compact = staticmethod(compact)  # a state kept for long holds only its own numbers

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
