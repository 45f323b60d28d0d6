"""Wrappers over recurrent layers: a bidirectional pair and a stack with dropout between layers (textbook layers,
gradient-checked in tests/nn/test_gradients.py; the seq2seq encoder runs its own bidirectional pass)."""

from __future__ import annotations

import numpy as np

from rnnchat.nn.layers import Dropout, Layer
from rnnchat.nn.recurrent import Recurrent


class Bidirectional(Layer):
    """Runs a forward and a backward copy of a recurrent layer and concatenates outputs to (N, T, 2H).

    With a mask, the backward direction reads each sequence from its last real token: flipping the padded
    batch puts the padding first, where the mask keeps the zero initial state.
    """

    def __init__(self, fwd: Recurrent, bwd: Recurrent):
        self.fwd, self.bwd = fwd, bwd
        self.params = {**{f"fwd.{k}": v for k, v in fwd.params.items()},
                       **{f"bwd.{k}": v for k, v in bwd.params.items()}}
        self.grads = {}

    @property
    def layers(self) -> dict[str, Recurrent]:
        return {"fwd": self.fwd, "bwd": self.bwd}

    def forward(self, x: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        hf = self.fwd.forward(x, mask)
        hb = self.bwd.forward(x[:, ::-1], None if mask is None else mask[:, ::-1])
        return np.concatenate([hf, hb[:, ::-1]], axis=-1)

    @property
    def state(self) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
        return self.fwd.state, self.bwd.state

    def backward(self, dhs: np.ndarray) -> np.ndarray:
        H = self.fwd.hidden
        dx = self.fwd.backward(dhs[..., :H])
        dx += self.bwd.backward(dhs[:, ::-1, H:])[:, ::-1]
        self.grads = {**{f"fwd.{k}": v for k, v in self.fwd.grads.items()},
                      **{f"bwd.{k}": v for k, v in self.bwd.grads.items()}}
        return dx


class Stack(Layer):
    """Stacked recurrent layers with inverted dropout between them (not along time)."""

    def __init__(self, layers: list[Recurrent], dropout: float, *, rng: np.random.Generator):
        self.layers = layers
        self.drops = [Dropout(dropout, rng=rng) for _ in layers[1:]]
        self.params, self.grads = {}, {}

    def forward(self, x: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        h = self.layers[0].forward(x, mask)
        for drop, layer in zip(self.drops, self.layers[1:]):
            h = layer.forward(drop.forward(h), mask)
        return h

    def backward(self, dh: np.ndarray) -> np.ndarray:
        for drop, layer in zip(reversed(self.drops), reversed(self.layers[1:])):
            dh = drop.backward(layer.backward(dh))
        return self.layers[0].backward(dh)

    def train(self, mode: bool = True) -> None:
        for d in self.drops:
            d.training = mode
