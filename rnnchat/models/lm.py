"""The LSTM language model: Embedding -> Dropout -> stacked LSTM -> Dropout -> Linear tied to the embedding."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from rnnchat.nn import LSTM, Dropout, Embedding, ParamSet, SoftmaxCrossEntropy, TiedOutput

State = list[tuple[np.ndarray, np.ndarray]]  # one (h, c) per layer, each (N, H)


@dataclass
class LMConfig:
    vocab_size: int
    hidden: int = 512
    layers: int = 2
    dropout: float = 0.3

    @classmethod
    def from_dict(cls, d: dict) -> "LMConfig":
        return cls(**{k: d[k] for k in ("vocab_size", "hidden", "layers", "dropout")})


def lm_spec(config: dict) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes a checkpoint of this architecture must hold."""
    c = LMConfig.from_dict(config)
    V, H = c.vocab_size, c.hidden
    spec = {"embed.W": (V, H), "out.b": (V,)}
    for i in range(c.layers):
        spec |= {f"lstm{i}.Wx": (H, 4 * H), f"lstm{i}.Wh": (H, 4 * H), f"lstm{i}.b": (4 * H,)}
    return spec


class LanguageModel:
    """Stateful word-level LSTM LM with tied input/output embeddings (embedding size == hidden size)."""

    def __init__(self, config: LMConfig, *, seed: int = 0, dtype=np.float32):
        self.config = config
        self.rng = np.random.default_rng(seed)
        V, H = config.vocab_size, config.hidden
        self.embed = Embedding(V, H, rng=self.rng, dtype=dtype)
        self.lstms = [LSTM(H, H, rng=self.rng, dtype=dtype, stateful=True) for _ in range(config.layers)]
        self.drops = [Dropout(config.dropout, rng=self.rng) for _ in range(config.layers + 1)]
        self.out = TiedOutput(self.embed)
        self.loss_fn = SoftmaxCrossEntropy(ignore_index=None)
        named = [("embed", self.embed)] + [(f"lstm{i}", l) for i, l in enumerate(self.lstms)] + [("out", self.out)]
        self.params = ParamSet(named)

    # -- state ---------------------------------------------------------------------------------------------
    @property
    def state(self) -> State | None:
        if self.lstms[0].state is None:
            return None
        return [l.state for l in self.lstms]

    @state.setter
    def state(self, state: State | None) -> None:
        for i, l in enumerate(self.lstms):
            l.state = None if state is None else state[i]

    def reset_state(self) -> None:
        self.state = None

    def train(self, mode: bool = True) -> None:
        for d in self.drops:
            d.training = mode

    # -- whole sequences ----------------------------------------------------------------------------------
    def forward(self, ids: np.ndarray) -> np.ndarray:
        """ids (N, T) -> logits (N, T, V); advances the carried state."""
        h = self.drops[0].forward(self.embed.forward(ids))
        for lstm, drop in zip(self.lstms, self.drops[1:]):
            h = drop.forward(lstm.forward(h))
        return self.out.forward(h)

    def backward(self, dlogits: np.ndarray) -> None:
        dh = self.out.backward(dlogits)
        for lstm, drop in zip(reversed(self.lstms), reversed(self.drops[1:])):
            dh = lstm.backward(drop.backward(dh))
        self.embed.backward(self.drops[0].backward(dh))

    def loss(self, ids: np.ndarray, targets: np.ndarray) -> tuple[float, int]:
        """Mean next-token cross-entropy (no gradient); advances the state."""
        return self.loss_fn.forward(self.forward(ids), targets)

    def train_step(self, ids: np.ndarray, targets: np.ndarray) -> tuple[float, int]:
        """Forward + backward; gradients land in `self.params.grads()`."""
        loss, count = self.loss(ids, targets)
        self.backward(self.loss_fn.backward())
        return loss, count

    # -- checkpoint arrays -----------------------------------------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        return self.params.named()

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.params.load(arrays)

    def header_config(self) -> dict:
        return asdict(self.config)
