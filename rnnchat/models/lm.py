"""The LSTM language model: Embedding -> Dropout -> stacked LSTM -> Dropout -> Linear tied to the embedding.

Training can add the AWD-LSTM regularisers (Merity, Keskar & Socher 2017) through `LMRegularisation`: locked
dropout, weight drop on the recurrent weights, embedding (word) dropout, activation regularisation (AR) and
temporal AR (TAR). None of them changes what the weights mean: inference and checkpoints are the same.
"""

from __future__ import annotations

import threading
from pathlib import Path
from dataclasses import asdict, dataclass

import numpy as np

from rnnchat.checkpoint import load_vocab_model, save_checkpoint
from rnnchat.nn import LSTM, Dropout, Embedding, ParamSet, SoftmaxCrossEntropy, TiedOutput
from rnnchat.nn.layers import LockedDropout, WordDropout, transposed
from rnnchat.nn.recurrent import lstm_cell
from rnnchat.text import Vocab

LayerStates = list[tuple[np.ndarray, np.ndarray]]  # one (h, c) per layer, each (N, H)


@dataclass
class LMConfig:
    vocab_size: int
    hidden: int = 512
    layers: int = 2
    dropout: float = 0.3

    @classmethod
    def from_dict(cls, d: dict) -> "LMConfig":
        return cls(**{k: d[k] for k in ("vocab_size", "hidden", "layers", "dropout")})


MAX_LAYERS, MAX_HIDDEN = 64, 8192


def validate_config(c: LMConfig) -> None:
    """Refuse configs no model can have (ValueError), before anything is allocated."""
    ints = {"vocab_size": (4, 10 ** 7), "hidden": (1, MAX_HIDDEN), "layers": (1, MAX_LAYERS)}
    for name, (lo, hi) in ints.items():
        v = getattr(c, name)
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ValueError(f"config {name} must be an integer in [{lo}, {hi}], got {v!r}")
    if isinstance(c.dropout, bool) or not isinstance(c.dropout, (int, float)) or not 0 <= c.dropout < 1:
        raise ValueError(f"config dropout must be a number in [0, 1), got {c.dropout!r}")


def lm_spec(config: dict) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes a checkpoint of this architecture must hold."""
    c = LMConfig.from_dict(config)
    validate_config(c)
    V, H = c.vocab_size, c.hidden
    spec = {"embed.W": (V, H), "out.b": (V,)}
    for i in range(c.layers):
        spec |= {f"lstm{i}.Wx": (H, 4 * H), f"lstm{i}.Wh": (H, 4 * H), f"lstm{i}.b": (4 * H,)}
    return spec


@dataclass
class LMRegularisation:
    """Training-only regularisers (AWD-LSTM); all off by default."""
    locked: bool = False       # one dropout mask per sequence (the same at every step) instead of per step
    weight_drop: float = 0.0   # DropConnect on each LSTM's recurrent weights Wh, one mask per batch
    embed_drop: float = 0.0    # whole words dropped from the embedding lookup, one mask per batch
    ar: float = 0.0            # + ar * mean(dropped last-layer output ** 2)
    tar: float = 0.0           # + tar * mean((h_t - h_{t-1}) ** 2) over the last layer's raw output


class LanguageModel:
    """Stateful LSTM LM (word- or char-level tokens) with tied input/output embeddings (embedding size == hidden size)."""

    def __init__(self, config: LMConfig, *, seed: int = 0, dtype=np.float32, init: bool = True,
                 reg: LMRegularisation | None = None):
        """init=False leaves the weights at zero (for loading a checkpoint: skips the random draws)."""
        self.config = config
        self.reg = reg or LMRegularisation()
        self.rng = np.random.default_rng(seed)
        V, H = config.vocab_size, config.hidden
        init_rng = self.rng if init else None
        self.embed = Embedding(V, H, rng=init_rng, dtype=dtype)
        self.lstms = [LSTM(H, H, rng=init_rng, dtype=dtype, stateful=True, weight_drop=self.reg.weight_drop,
                           drop_rng=self.rng) for _ in range(config.layers)]
        drop = LockedDropout if self.reg.locked else Dropout
        self.drops = [drop(config.dropout, rng=self.rng) for _ in range(config.layers + 1)]
        self.word_drop = WordDropout(self.reg.embed_drop, V, rng=self.rng)
        self.out = TiedOutput(self.embed)
        self.loss_fn = SoftmaxCrossEntropy(ignore_index=None)
        named = [("embed", self.embed)] + [(f"lstm{i}", l) for i, l in enumerate(self.lstms)] + [("out", self.out)]
        self.params = ParamSet(named)
        self.training = True
        self._top: tuple[np.ndarray, np.ndarray] | None = None  # last layer's (raw, dropped) output, for AR/TAR
        self.top_hidden: np.ndarray | None = None
        self._logits_buf: np.ndarray | None = None

    # -- state ---------------------------------------------------------------------------------------------
    @property
    def state(self) -> LayerStates | None:
        if self.lstms[0].state is None:
            return None
        return [l.state for l in self.lstms]

    @state.setter
    def state(self, state: LayerStates | None) -> None:
        for i, l in enumerate(self.lstms):
            l.state = None if state is None else state[i]

    def reset_state(self) -> None:
        self.state = None

    def train(self, mode: bool = True) -> None:
        self.training = mode
        for layer in [*self.drops, self.word_drop, *self.lstms]:
            layer.training = mode

    # -- whole sequences ----------------------------------------------------------------------------------
    # Internally everything runs time-major, so the output projection is one contiguous (T*N, H) x (H, V)
    # GEMM (a batch-major view would make NumPy loop over N small products, at half the speed).
    def _logits(self, ids: np.ndarray, reuse: bool = False) -> np.ndarray:
        """ids (N, T) -> logits (T*N, V), rows in time-major order; advances the carried state.

        reuse=True writes into a buffer kept between calls (the training loss consumes it at once).
        """
        N, T = ids.shape
        h = self.drops[0].forward(self.word_drop.forward(self.embed.forward(ids.T), ids.T))  # (T, N, H)
        for lstm, drop in zip(self.lstms, self.drops[1:]):
            raw = lstm.forward(h.transpose(1, 0, 2)).transpose(1, 0, 2)
            h = drop.forward(raw)
        self.top_hidden = raw  # (T, N, H): the last layer's states, for the conversation cache
        self._top = (raw, h) if self.training and (self.reg.ar or self.reg.tar) else None
        self._shape = (T, N)
        out = None
        if reuse:
            shape = (T * N, self.config.vocab_size)
            if self._logits_buf is None or self._logits_buf.shape != shape:
                self._logits_buf = np.empty(shape, h.dtype)
            out = self._logits_buf
        return self.out.forward(h.reshape(T * N, -1), out=out)

    def forward(self, ids: np.ndarray) -> np.ndarray:
        """ids (N, T) -> logits (N, T, V); advances the carried state."""
        N, T = ids.shape
        return self._logits(ids).reshape(T, N, -1).transpose(1, 0, 2)

    def backward(self, dlogits: np.ndarray) -> None:
        """dlogits (T*N, V) in the time-major row order of `loss` (what `loss_fn.backward()` returns)."""
        T, N = self._shape
        if dlogits.shape != (T * N, self.config.vocab_size):  # e.g. batch-major (N, T, V), like `forward`'s output
            raise ValueError(f"dlogits must be time-major ({T * N}, {self.config.vocab_size}), not {dlogits.shape}")
        dh = self.out.backward(dlogits).reshape(T, N, -1)
        for k, (lstm, drop) in enumerate(zip(reversed(self.lstms), reversed(self.drops[1:]))):
            dh = self._top_backward(dh) if k == 0 else drop.backward(dh)
            dh = lstm.backward(dh.transpose(1, 0, 2)).transpose(1, 0, 2)
        self.embed.backward(self.word_drop.backward(self.drops[0].backward(dh)))

    def regulariser_loss(self) -> float:
        """AR + TAR of the last training forward pass (0 when they are off or in eval)."""
        if self._top is None:
            return 0.0
        raw, h = self._top
        return float(self.reg.ar * np.mean(h * h) + self.reg.tar * np.mean(np.square(raw[1:] - raw[:-1])))

    def _top_backward(self, dh: np.ndarray) -> np.ndarray:
        """Through the last dropout, adding the AR and TAR gradients: dh (T, N, H) of the dropped output ->
        gradient of the last LSTM's raw output."""
        if self._top is None:
            return self.drops[-1].backward(dh)
        raw, h = self._top
        dh = self.drops[-1].backward(dh + (2 * self.reg.ar / h.size) * h)
        if raw.shape[0] > 1 and self.reg.tar:
            diff = raw[1:] - raw[:-1]
            diff *= 2 * self.reg.tar / diff.size
            dh[1:] += diff
            dh[:-1] -= diff
        return dh

    def loss(self, ids: np.ndarray, targets: np.ndarray) -> tuple[float, int]:
        """Mean next-token cross-entropy of (N, T) ids against (N, T) targets; advances the state."""
        return self.loss_fn.forward(self._logits(ids, reuse=True), targets.T)

    def train_step(self, ids: np.ndarray, targets: np.ndarray) -> tuple[float, int]:
        """Forward + backward of the loss plus `regulariser_loss()`; gradients land in `self.params.grads()`.
        Returns the cross-entropy alone (what perplexity reports)."""
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


class LMDecoder:
    """Inference over explicit state: prompt prefill (one GEMM per chunk) and single-token steps.

    The first layer's input product is looked up: `E @ Wx + b` is precomputed once for the whole vocabulary
    (V x 4H), so a step reads one row of it instead of all of Wx; every later layer's step is one fused
    product [x, h] @ [Wx; Wh]. The output product reads a contiguous copy of the tied embedding's transpose
    (H x V): OpenBLAS runs a batch of rows through it ~20% faster than through the transposed view.
    Nothing here allocates V-sized arrays except the logits themselves.
    """

    def __init__(self, model: LanguageModel, prefill_chunk: int = 256):
        self.model = model
        self.vocab_size, self.hidden = model.config.vocab_size, model.config.hidden
        self.E = model.embed.params["W"]
        self.E_T = transposed(self.E)  # (H, V)
        self.out_b = model.out.params["b"]
        first = model.lstms[0].params
        self.input_table = self.E @ first["Wx"]  # (V, 4H): ~0.1 s and 4 x the embedding's memory, once
        self.input_table += first["b"]
        self.Wh0 = first["Wh"]
        self.W = [np.ascontiguousarray(np.concatenate([l.params["Wx"], l.params["Wh"]], axis=0))
                  for l in model.lstms[1:]]
        self.b = [l.params["b"] for l in model.lstms[1:]]
        self.prefill_chunk = prefill_chunk
        self._prefill_lock = threading.Lock()  # prefill runs through the model's layer objects (shared buffers)

    def logits(self, h: np.ndarray) -> np.ndarray:
        """The top layer's state (B, H) -> next-token logits (B, V)."""
        logits = h @ self.E_T
        logits += self.out_b
        return logits

    def initial_state(self, batch: int = 1) -> LayerStates:
        H = self.hidden
        return [(np.zeros((batch, H), np.float32), np.zeros((batch, H), np.float32)) for _ in self.model.lstms]

    def step(self, ids: np.ndarray, state: LayerStates) -> tuple[np.ndarray, LayerStates]:
        """ids (B,) -> logits (B, V) and the new state (the input state is not modified)."""
        H = self.hidden
        h, c = state[0]
        a = h @ self.Wh0
        a += self.input_table[ids]
        x, c = lstm_cell(a, c, H)
        new_state = [(x, c)]
        for W, b, (h, c) in zip(self.W, self.b, state[1:]):
            a = np.concatenate([x, h], axis=1) @ W
            a += b
            x, c = lstm_cell(a, c, H)
            new_state.append((x, c))
        return self.logits(x), new_state

    def prefill(self, ids: np.ndarray, state: LayerStates, mask: np.ndarray | None = None) -> tuple[np.ndarray, LayerStates]:
        """Feed (B, T) ids (right-padded, with a (B, T) mask) -> logits after each row's last real token, state.

        Long prompts go through in chunks, so memory stays bounded and the cost is linear in length.
        """
        logits, state, _ = self._prefill(ids, state, mask, keep_hidden=False)
        return logits, state

    def prefill_hidden(self, ids: np.ndarray, state: LayerStates, mask: np.ndarray | None = None
                       ) -> tuple[np.ndarray, LayerStates, np.ndarray]:
        """`prefill`, also returning the top layer's state after every fed token: (B, T, H)."""
        return self._prefill(ids, state, mask, keep_hidden=True)

    def _prefill(self, ids: np.ndarray, state: LayerStates, mask: np.ndarray | None, keep_hidden: bool):
        B, T = ids.shape
        if T == 0:
            raise ValueError("prefill needs at least one token")
        with self._prefill_lock:
            state, hidden = self._prefill_locked(ids, state, mask, keep_hidden)
        return self.logits(state[-1][0]), state, hidden

    def _prefill_locked(self, ids: np.ndarray, state: LayerStates, mask: np.ndarray | None, keep_hidden: bool
                        ) -> tuple[LayerStates, np.ndarray | None]:
        T = ids.shape[1]
        hidden = []
        for start in range(0, T, self.prefill_chunk):
            chunk = slice(start, start + self.prefill_chunk)
            x = self.E[ids[:, chunk]]
            m = None if mask is None else mask[:, chunk]
            new_state = []
            for lstm, s in zip(self.model.lstms, state):
                x = lstm.forward(x, m, state=s)
                new_state.append(lstm.state)
            state = new_state
            if keep_hidden:
                hidden.append(x.copy())  # x is a view of the layer's buffer, which the next chunk reuses
        return state, np.concatenate(hidden, axis=1) if keep_hidden else None


# -- checkpoints -----------------------------------------------------------------------------------------------
def save_lm(model: LanguageModel, vocab: Vocab, path: Path | str, metrics: dict, corpus: dict | None = None,
            extra: dict | None = None, float16: bool = True) -> None:
    header = {"model": "lm", "config": model.header_config(), "vocab": vocab.to_list(), "corpus": corpus or {},
              "metrics": metrics, **({"vocab_level": vocab.level} if vocab.level != "word" else {}), **(extra or {})}
    save_checkpoint(path, model.arrays(), header, float16=float16)


def load_lm(path: Path | str) -> tuple[LanguageModel, Vocab, dict]:
    """(model in eval mode, vocabulary, header); every array is checked against the config."""
    return load_vocab_model(path, "lm", lm_spec, lambda c: LanguageModel(LMConfig.from_dict(c), init=False))
