"""Sequence-to-sequence model: LSTM encoder -> LSTM decoder with attention, trained with teacher forcing.

Architecture (every part optional where noted, see `Seq2SeqConfig`):

* encoder: Embedding -> Dropout -> LSTM over the source (masked). `bidirectional` adds a second LSTM that reads
  each sequence from its last real token; outputs and final states of both directions are concatenated, so the
  decoder width is `Hd = hidden * (2 if bidirectional else 1)`. `reverse` feeds the source tokens in reverse
  order (padding stays on the right; attention weights are reported in the original order).
* decoder: Embedding -> Dropout [-> concat "peek"] -> LSTM(Hd) starting from the encoder's final (h, c).
  `peeky` concatenates the encoder summary (its final h) to the decoder input at every step and to the output
  features. `attention` ("dot" or "general", Luong) attends from each decoder output over all encoder outputs;
  the context is concatenated to the output features.
* output: features [h; context; peek] -> Dropout -> (optional `proj`: Linear + tanh, Luong's attentional
  hidden layer) -> Linear to the target vocabulary, or (`tie`) the shared source/target embedding transposed.

Sequences: source ids with a mask; decoder input `[bos] + target`, decoder output `target + [eos]`; for the
chat model bos = eos = `<eot>`. Loss: mean cross-entropy over real target positions (`<pad>` = 0 ignored).

State carry (the chat model's conversation memory): the encoder can start from any (h, c) of width Hd, and
`train_chain` runs several consecutive exchanges, feeding each decoder's final state (after the last real
decoder input) into the next exchange's encoder, with backpropagation through the whole chain. Only the rows
still active at an exchange are computed; the others carry their state unchanged (gradient passes through).

Training uses the `rnnchat.nn` layers (batch-major, whole sequences). Layers keep forward caches on
themselves, so a chain snapshots each exchange's caches (`vars(layer)`, shallow) after the forward and restores
them before that exchange's backward. Output-layer gradients are taken right after each forward, so the
(N, T, V) logits of only one exchange exist at a time.

Inference lives in `seq2seq_decode` (`Seq2SeqDecoder`), the chat wrapper in `seq2seq_chat` (`Seq2SeqChat`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from dataclasses import asdict, dataclass, fields

import numpy as np

from rnnchat.checkpoint import CheckpointError, load_vocab_model, save_checkpoint
from rnnchat.data.batches import Exchange
from rnnchat.nn import LSTM, Attention, Dropout, Embedding, Linear, ParamSet, SoftmaxCrossEntropy, TiedOutput
from rnnchat.text import Vocab

LSTMState = tuple[np.ndarray, np.ndarray]  # (h, c), each (N, Hd)
ATTENTION = ("none", "dot", "general")


# -- configuration ---------------------------------------------------------------------------------------------
@dataclass
class Seq2SeqConfig:
    src_vocab: int
    tgt_vocab: int
    embed: int = 64
    hidden: int = 128            # per encoder direction
    bidirectional: bool = False
    reverse: bool = False
    peeky: bool = False
    attention: str = "dot"       # "none", "dot" or "general"
    proj: int = 0                # attentional hidden layer size (Linear + tanh before the output); 0 = none
    tie: bool = False            # one embedding for source, target and output (needs proj == embed)
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.attention not in ATTENTION:
            raise ValueError(f"attention must be one of {ATTENTION}, got {self.attention!r}")
        if self.tie and (self.src_vocab != self.tgt_vocab or self.proj != self.embed):
            raise ValueError("tie needs src_vocab == tgt_vocab and proj == embed")
        if min(self.src_vocab, self.tgt_vocab, self.embed, self.hidden) < 1 or self.proj < 0:
            raise ValueError("sizes must be positive")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def dec_hidden(self) -> int:
        return self.hidden * (2 if self.bidirectional else 1)

    @property
    def feature_size(self) -> int:
        return self.dec_hidden * (1 + (self.attention != "none") + self.peeky)

    @property
    def variant(self) -> str:
        """Short human name: e.g. 'bi+reversed+peeky+attention(dot)'."""
        parts = [p for p, on in (("bi", self.bidirectional), ("reversed", self.reverse), ("peeky", self.peeky))
                 if on]
        if self.attention != "none":
            parts.append(f"attention({self.attention})")
        return "+".join(parts) or "plain"

    @classmethod
    def from_dict(cls, d: dict) -> "Seq2SeqConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_dict(self) -> dict:
        return asdict(self)


def seq2seq_spec(config: dict) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes a checkpoint of this architecture must hold."""
    c = Seq2SeqConfig.from_dict(config)
    E, H, Hd, V = c.embed, c.hidden, c.dec_hidden, c.tgt_vocab
    spec = {"src_embed.W": (c.src_vocab, E)}
    if not c.tie:
        spec["tgt_embed.W"] = (V, E)
    spec |= {"enc.Wx": (E, 4 * H), "enc.Wh": (H, 4 * H), "enc.b": (4 * H,)}
    if c.bidirectional:
        spec |= {"enc_bwd.Wx": (E, 4 * H), "enc_bwd.Wh": (H, 4 * H), "enc_bwd.b": (4 * H,)}
    spec |= {"dec.Wx": (E + Hd * c.peeky, 4 * Hd), "dec.Wh": (Hd, 4 * Hd), "dec.b": (4 * Hd,)}
    if c.attention == "general":
        spec["attn.W"] = (Hd, Hd)
    d_out = c.feature_size
    if c.proj:
        spec |= {"proj.W": (d_out, c.proj), "proj.b": (c.proj,)}
        d_out = c.proj
    if not c.tie:
        spec["out.W"] = (d_out, V)
    spec["out.b"] = (V,)
    return spec


def reverse_rows(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Reverse the real tokens of each right-padded row (padding stays on the right). Its own inverse."""
    L = mask.sum(axis=1).astype(np.int64)[:, None]
    t = np.arange(ids.shape[1])[None, :]
    return np.take_along_axis(ids, np.where(t < L, L - 1 - t, t), axis=1)


# -- the trainable model ---------------------------------------------------------------------------------------
class _AccumulatedParams(ParamSet):
    """ParamSet whose `grads()` are buffers the model accumulates into (over the exchanges of a chain)."""

    def __init__(self, layers):
        layers = list(layers)
        super().__init__(layers)
        self.acc = [np.zeros_like(p) for p in self.params]
        index = {id(p): i for i, p in enumerate(self.params)}
        self.slots = {id(layer): [(k, index[id(p)]) for k, p in layer.params.items()] for _, layer in layers}

    def zero(self) -> None:
        for a in self.acc:
            a.fill(0)

    def add(self, *layers) -> None:
        for layer in layers:
            for key, i in self.slots.get(id(layer), ()):
                self.acc[i] += layer.grads[key]

    def scale(self, s: float) -> None:
        for a in self.acc:
            a *= s

    def grads(self) -> list[np.ndarray]:
        return self.acc


@dataclass
class _Tape:
    """What one exchange's backward needs: the layers' caches and the gradient of the output features."""

    caches: list[dict]
    dfeat: np.ndarray
    rows: np.ndarray
    src_mask: np.ndarray


class Seq2Seq:
    """The trainable encoder-decoder (see the module docstring)."""

    def __init__(self, config: Seq2SeqConfig, *, seed: int = 0, dtype=np.float32):
        self.config = c = config
        self.dtype = np.dtype(dtype)
        self.rng = np.random.default_rng(seed)
        rng = self.rng
        E, H, Hd = c.embed, c.hidden, c.dec_hidden
        self.src_embed = Embedding(c.src_vocab, E, rng=rng, dtype=dtype)
        self.tgt_embed = Embedding(c.tgt_vocab, E, rng=rng, dtype=dtype)
        if c.tie:
            self.tgt_embed.params["W"] = self.src_embed.params["W"]
        self.enc = LSTM(E, H, rng=rng, dtype=dtype, stateful=True)
        self.enc_bwd = LSTM(E, H, rng=rng, dtype=dtype, stateful=True) if c.bidirectional else None
        self.dec = LSTM(E + Hd * c.peeky, Hd, rng=rng, dtype=dtype, stateful=True)
        for lstm in (self.enc, self.enc_bwd, self.dec):
            if lstm is not None:  # forget-gate bias 1: gradients survive longer sequences early in training
                lstm.params["b"][lstm.hidden:2 * lstm.hidden] = 1.0
        self.attn = None
        if c.attention != "none":
            self.attn = Attention(Hd, c.attention, rng=rng, dtype=dtype)
        self.proj = Linear(c.feature_size, c.proj, rng=rng, dtype=dtype) if c.proj else None
        self.out = TiedOutput(self.tgt_embed) if c.tie else Linear(c.proj or c.feature_size, c.tgt_vocab, rng=rng,
                                                                    dtype=dtype)
        self.drop_src = Dropout(c.dropout, rng=rng)
        self.drop_tgt = Dropout(c.dropout, rng=rng)
        self.drop_out = Dropout(c.dropout, rng=rng)
        self.loss_fn = SoftmaxCrossEntropy(ignore_index=0)
        named = [("src_embed", self.src_embed), ("tgt_embed", self.tgt_embed), ("enc", self.enc),
                 ("enc_bwd", self.enc_bwd), ("dec", self.dec), ("attn", self.attn), ("proj", self.proj),
                 ("out", self.out)]
        self.params = _AccumulatedParams([(n, l) for n, l in named if l is not None])
        self._tape_layers = [l for l in (self.src_embed, self.tgt_embed, self.drop_src, self.drop_tgt, self.enc,
                                         self.enc_bwd, self.dec, self.attn) if l is not None]
        self.carry: LSTMState | None = None   # state carried between training windows (chat), detached

    # -- state / modes ---------------------------------------------------------------------------------------
    def train(self, mode: bool = True) -> None:
        for d in (self.drop_src, self.drop_tgt, self.drop_out):
            d.training = mode

    def zero_state(self, n: int) -> LSTMState:
        Hd = self.config.dec_hidden
        return np.zeros((n, Hd), self.dtype), np.zeros((n, Hd), self.dtype)

    def reset_state(self) -> None:
        self.carry = None

    @property
    def state(self) -> list[LSTMState] | None:
        """The carried chat state in the Trainer's format (a one-layer list), so resume restores it."""
        return None if self.carry is None else [self.carry]

    @state.setter
    def state(self, value: list[LSTMState] | None) -> None:
        self.carry = None if not value else tuple(np.asarray(s, self.dtype) for s in value[0])

    # -- one exchange ----------------------------------------------------------------------------------------
    def _encode(self, src: np.ndarray, mask: np.ndarray, state0: LSTMState) -> tuple[np.ndarray, LSTMState]:
        c, H = self.config, self.config.hidden
        if c.reverse:
            src = reverse_rows(src, mask)
        x = self.drop_src.forward(self.src_embed.forward(src))
        h0, c0 = state0
        if not c.bidirectional:
            enc_out = self.enc.forward(x, mask, state=(h0, c0))
            return enc_out, self.enc.state
        hf = self.enc.forward(x, mask, state=(h0[:, :H], c0[:, :H]))
        hb = self.enc_bwd.forward(x[:, ::-1], mask[:, ::-1], state=(h0[:, H:], c0[:, H:]))
        enc_out = np.concatenate([hf, hb[:, ::-1]], axis=-1)
        (fh, fc), (bh, bc) = self.enc.state, self.enc_bwd.state
        return enc_out, (np.concatenate([fh, bh], axis=1), np.concatenate([fc, bc], axis=1))

    def _features(self, ex: Exchange, state0: LSTMState) -> tuple[np.ndarray, LSTMState]:
        """Forward up to the output features (N, T, F); returns them and the decoder's final state."""
        c = self.config
        enc_out, (hT, cT) = self._encode(ex.src, ex.src_mask, state0)
        e = self.drop_tgt.forward(self.tgt_embed.forward(ex.tgt_in))
        N, T = ex.tgt_in.shape
        peek = np.broadcast_to(hT[:, None, :], (N, T, hT.shape[1])) if c.peeky else None
        hs = self.dec.forward(e if peek is None else np.concatenate([e, peek], axis=-1), ex.tgt_mask,
                              state=(hT, cT))
        feats = [hs]
        if self.attn is not None:
            feats.append(self.attn.forward(hs, enc_out, ex.src_mask)[0])
        if peek is not None:
            feats.append(peek)
        f = feats[0] if len(feats) == 1 else np.concatenate(feats, axis=-1)
        return f, self.dec.state

    def _real(self, f: np.ndarray, ex: Exchange) -> tuple[np.ndarray, np.ndarray]:
        """Features and targets of the real target positions only, as 2-D rows (padding costs no output work;
        2-D products are also much faster than NumPy's batched 3-D @ 2-D)."""
        sel = np.flatnonzero(ex.tgt_mask.ravel() > 0)
        return self.drop_out.forward(f.reshape(-1, f.shape[-1])[sel]), ex.tgt_out.ravel()[sel]

    def _logits(self, f: np.ndarray) -> np.ndarray:
        if self.proj is not None:
            z = self.proj.forward(f)
            np.tanh(z, out=z)
            self._z = z
            f = z
        return self.out.forward(f)

    def _logits_backward(self, dlogits: np.ndarray) -> np.ndarray:
        d = self.out.backward(dlogits)
        if self.proj is not None:
            d *= 1 - self._z * self._z
            d = self.proj.backward(d)
        return self.drop_out.backward(d)

    def _backward_exchange(self, tape: _Tape, dfinal: LSTMState | None) -> LSTMState:
        """Backward of one exchange (its caches restored) given the gradient of its decoder's final state."""
        c, H, Hd, E = self.config, self.config.hidden, self.config.dec_hidden, self.config.embed
        df = tape.dfeat
        dhs = np.array(df[..., :Hd])
        k = Hd
        if self.attn is not None:
            ddec, denc = self.attn.backward(df[..., k:k + Hd])
            dhs += ddec
            k += Hd
        else:
            denc = np.zeros(df.shape[:1] + (tape.src_mask.shape[1], Hd), df.dtype)
        dx = self.dec.backward(dhs, dfinal)
        dhT, dcT = (np.array(s) for s in self.dec.dstate)
        if c.peeky:
            dhT += dx[..., E:].sum(axis=1) + df[..., k:k + Hd].sum(axis=1)
            dx = dx[..., :E]
        self.tgt_embed.backward(self.drop_tgt.backward(dx))
        if c.bidirectional:
            dxs = self.enc.backward(denc[..., :H], (dhT[:, :H], dcT[:, :H]))
            dxs += self.enc_bwd.backward(denc[:, ::-1, H:], (dhT[:, H:], dcT[:, H:]))[:, ::-1]
            (fh, fc), (bh, bc) = self.enc.dstate, self.enc_bwd.dstate
            d0 = (np.concatenate([fh, bh], axis=1), np.concatenate([fc, bc], axis=1))
        else:
            dxs = self.enc.backward(denc, (dhT, dcT))
            d0 = tuple(np.array(s) for s in self.enc.dstate)
        self.src_embed.backward(self.drop_src.backward(dxs))
        self.params.add(self.src_embed, self.tgt_embed, self.enc, self.enc_bwd, self.dec, self.attn)
        return d0

    # -- chains of exchanges ---------------------------------------------------------------------------------
    def train_chain(self, exchanges: Sequence[Exchange], state0: LSTMState | None = None,
                    batch: int | None = None) -> tuple[float, int, LSTMState]:
        """Forward + backward over consecutive exchanges with the state carried (BPTT through the chain).

        `state0`: (B, Hd) initial states of the B rows (zeros if None); each exchange covers `ex.rows` of them.
        Gradients of the mean loss over all target tokens land in `self.params.grads()`.
        Returns (mean loss, target tokens, final states (B, Hd), detached).
        """
        B = batch if batch is not None else (state0[0].shape[0] if state0 is not None else
                                              1 + max(int(ex.rows.max()) for ex in exchanges))
        state = self.zero_state(B) if state0 is None else tuple(np.array(s, self.dtype) for s in state0)
        self.params.zero()
        tapes: list[_Tape] = []
        total, count = 0.0, 0
        for ex in exchanges:
            rows = ex.rows
            f, (hT, cT) = self._features(ex, (state[0][rows], state[1][rows]))
            f2, targets = self._real(f, ex)
            loss, n = self.loss_fn.forward(self._logits(f2), targets)
            dlogits = self.loss_fn.backward()
            dlogits *= n  # gradient of the summed loss; divided by the chain's total at the end
            dfeat = np.zeros(f.shape, f.dtype)  # C order: the reshape below is a view
            dfeat.reshape(-1, f.shape[-1])[ex.tgt_mask.ravel() > 0] = self._logits_backward(dlogits)
            self.params.add(self.proj, self.out)
            tapes.append(_Tape([dict(vars(l)) for l in self._tape_layers], dfeat, rows, ex.src_mask))
            state = (state[0].copy(), state[1].copy())
            state[0][rows], state[1][rows] = hT, cT
            total += loss * n
            count += n
        dstate: LSTMState | None = None
        for tape in reversed(tapes):
            for layer, cache in zip(self._tape_layers, tape.caches):
                vars(layer).update(cache)
            dfinal = None if dstate is None else (dstate[0][tape.rows], dstate[1][tape.rows])
            d0 = self._backward_exchange(tape, dfinal)
            if dstate is None:
                dstate = self.zero_state(B)
            dstate[0][tape.rows], dstate[1][tape.rows] = d0
        self.params.scale(1.0 / max(count, 1))
        return total / max(count, 1), count, state

    def chain_loss(self, exchanges: Sequence[Exchange], carry: bool = True, state0: LSTMState | None = None,
                   batch: int | None = None) -> tuple[float, int, list[tuple[float, int]]]:
        """Loss without gradients: (mean over all targets, targets, per-exchange (summed loss, targets)).

        carry=False starts every exchange from the zero state (the "fresh" baseline of the chat model).
        """
        B = batch if batch is not None else (state0[0].shape[0] if state0 is not None else
                                              1 + max(int(ex.rows.max()) for ex in exchanges))
        state = self.zero_state(B) if state0 is None else state0
        total, count, per = 0.0, 0, []
        for ex in exchanges:
            rows = ex.rows
            s0 = (state[0][rows], state[1][rows]) if carry else self.zero_state(len(rows))
            f, (hT, cT) = self._features(ex, s0)
            loss, n = self.loss_fn.forward(*self._real_logits(f, ex))
            state = (state[0].copy(), state[1].copy())
            state[0][rows], state[1][rows] = hT, cT
            total += loss * n
            count += n
            per.append((loss * n, n))
        return total / max(count, 1), count, per

    def logits(self, ex: Exchange, state0: LSTMState | None = None) -> np.ndarray:
        """Teacher-forced logits (N, T, V) of one exchange (for tests and inspection)."""
        f, _ = self._features(ex, state0 if state0 is not None else self.zero_state(len(ex.rows)))
        N, T, F = f.shape
        return self._logits(self.drop_out.forward(f.reshape(N * T, F))).reshape(N, T, -1)

    def _real_logits(self, f: np.ndarray, ex: Exchange) -> tuple[np.ndarray, np.ndarray]:
        f2, targets = self._real(f, ex)
        return self._logits(f2), targets

    # -- checkpoint arrays -------------------------------------------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        return self.params.named()

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.params.load(arrays)

    def header_config(self) -> dict:
        return self.config.to_dict()


# -- checkpoints -----------------------------------------------------------------------------------------------
MODEL_KIND = "seq2seq"


def save_seq2seq(model: Seq2Seq, vocab: Vocab, path: Path, *, task: str, metrics: dict, corpus: dict,
                 decoding: dict, extra: dict | None = None, float16: bool = False) -> None:
    header = {"model": MODEL_KIND, "config": model.header_config(), "vocab": vocab.to_list(), "corpus": corpus,
              "metrics": metrics, "task": task, "decoding": decoding, **(extra or {})}
    save_checkpoint(path, model.arrays(), header, float16=float16)


def load_seq2seq(path: Path | str) -> tuple[Seq2Seq, Vocab, dict]:
    """Load and validate a seq2seq checkpoint: (model in eval mode, vocabulary, header)."""
    model, vocab, header = load_vocab_model(path, MODEL_KIND, seq2seq_spec,
                                            lambda c: Seq2Seq(Seq2SeqConfig.from_dict(c)),
                                            sizes=("src_vocab", "tgt_vocab"))
    dec = header.get("decoding")
    if not isinstance(dec, dict) or not all(isinstance(dec.get(k), int) and 0 <= dec[k] < len(vocab)
                                            for k in ("bos", "eos")):
        raise CheckpointError(f"{path}: header has no valid decoding.bos / decoding.eos")
    return model, vocab, header
