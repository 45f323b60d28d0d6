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

Inference (`Seq2SeqDecoder`) is pure functions of the weights (no layer caches, no shared buffers: safe from
several threads): batch encoding, one decoder step, greedy, sampling with the engine's `SamplingSettings`
(`sample_rows`), beam search with length normalisation, and a token stream for chat. Every generated token comes
with its attention weights over the source.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from rnnchat.nn import LSTM, Attention, Dropout, Embedding, Linear, ParamSet, SoftmaxCrossEntropy, TiedOutput
from rnnchat.nn.recurrent import lstm_cell

State = tuple[np.ndarray, np.ndarray]  # (h, c), each (N, Hd)
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


# -- batches of exchanges --------------------------------------------------------------------------------------
@dataclass
class Exchange:
    """One source -> target step for some rows of a batch (padded arrays; see `make_exchange`)."""

    rows: np.ndarray        # (n,) rows of the batch (of chains) this exchange belongs to
    src: np.ndarray         # (n, S) int64 source ids, right-padded with 0
    src_mask: np.ndarray    # (n, S) float32
    tgt_in: np.ndarray      # (n, T) decoder inputs: bos + target
    tgt_out: np.ndarray     # (n, T) decoder targets: target + eos, 0 at padding
    tgt_mask: np.ndarray    # (n, T) float32

    @property
    def n_targets(self) -> int:
        return int(self.tgt_mask.sum())


def _pad(seqs: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    L = max((len(s) for s in seqs), default=0)
    ids = np.zeros((len(seqs), L), np.int64)
    mask = np.zeros((len(seqs), L), np.float32)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = s
        mask[i, :len(s)] = 1
    return ids, mask


def make_exchange(src: Sequence[Sequence[int]], tgt: Sequence[Sequence[int]], bos: int, eos: int,
                  rows: np.ndarray | None = None) -> Exchange:
    """Pad sources and targets; decoder input is [bos] + tgt, decoder output tgt + [eos]. Sources need >= 1 id."""
    if any(len(s) == 0 for s in src):
        raise ValueError("every source needs at least one token (attention over nothing is undefined)")
    s, sm = _pad(src)
    ti, tm = _pad([[bos, *t] for t in tgt])
    to, _ = _pad([[*t, eos] for t in tgt])
    rows = np.arange(len(src)) if rows is None else np.asarray(rows, np.int64)
    return Exchange(rows, s, sm, ti, to, tm)


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
        self.carry: State | None = None   # state carried between training windows (chat), detached

    # -- state / modes ---------------------------------------------------------------------------------------
    def train(self, mode: bool = True) -> None:
        for d in (self.drop_src, self.drop_tgt, self.drop_out):
            d.training = mode

    def zero_state(self, n: int) -> State:
        Hd = self.config.dec_hidden
        return np.zeros((n, Hd), self.dtype), np.zeros((n, Hd), self.dtype)

    def reset_state(self) -> None:
        self.carry = None

    @property
    def state(self) -> list[State] | None:
        """The carried chat state in the Trainer's format (a one-layer list), so resume restores it."""
        return None if self.carry is None else [self.carry]

    @state.setter
    def state(self, value: list[State] | None) -> None:
        self.carry = None if not value else tuple(np.asarray(s, self.dtype) for s in value[0])

    # -- one exchange ----------------------------------------------------------------------------------------
    def _encode(self, src: np.ndarray, mask: np.ndarray, state0: State) -> tuple[np.ndarray, State]:
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

    def _features(self, ex: Exchange, state0: State) -> tuple[np.ndarray, State]:
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

    def _backward_exchange(self, tape: _Tape, dfinal: State | None) -> State:
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
    def train_chain(self, exchanges: Sequence[Exchange], state0: State | None = None,
                    batch: int | None = None) -> tuple[float, int, State]:
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
        dstate: State | None = None
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

    def chain_loss(self, exchanges: Sequence[Exchange], carry: bool = True, state0: State | None = None,
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

    def logits(self, ex: Exchange, state0: State | None = None) -> np.ndarray:
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


# -- inference -------------------------------------------------------------------------------------------------
def _lstm_run(x: np.ndarray, mask: np.ndarray, state: State, Wx, Wh, b) -> tuple[np.ndarray, State]:
    """A masked LSTM over (N, S, D), pure: outputs (N, S, H), final (h, c). Padded steps carry the state."""
    N, S, _ = x.shape
    H = Wh.shape[0]
    xw = x @ Wx
    xw += b
    h, c = state
    hs = np.empty((N, S, H), xw.dtype)
    for t in range(S):
        a = xw[:, t] + h @ Wh
        h_new, c_new = lstm_cell(a, c, H)
        m = mask[:, t:t + 1] > 0
        h, c = np.where(m, h_new, h), np.where(m, c_new, c)
        hs[:, t] = h
    return hs, (h, c)


@dataclass
class Encoded:
    """Encoder outputs for a batch of sources, ready for decoding."""

    enc: np.ndarray           # (N, S, Hd) encoder outputs (in encoder order)
    keys: np.ndarray          # (N, S, Hd) attention keys (enc, or enc W^T for "general")
    mask: np.ndarray          # (N, S)
    state: State              # encoder final state = decoder initial state
    peek: np.ndarray | None   # (N, Hd) for peeky decoders
    lengths: np.ndarray       # (N,) real source lengths
    reversed: bool

    def rows(self, idx: np.ndarray) -> "Encoded":
        """The encodings of some rows (repeats allowed: beam search)."""
        return Encoded(self.enc[idx], self.keys[idx], self.mask[idx], (self.state[0][idx], self.state[1][idx]),
                       None if self.peek is None else self.peek[idx], self.lengths[idx], self.reversed)

    def source_order(self, w: np.ndarray, row_lengths: np.ndarray | None = None) -> np.ndarray:
        """Attention weights (n, S) over encoder positions -> over the source tokens in their original order."""
        if not self.reversed:
            return w
        L = (self.lengths if row_lengths is None else row_lengths)[:, None]
        t = np.arange(w.shape[1])[None, :]
        return np.take_along_axis(w, np.where(t < L, L - 1 - t, t), axis=1)


@dataclass
class Hypothesis:
    """A generated sequence (eos not included in `ids`), per-token probabilities and attention."""

    ids: list[int]
    probs: list[float]                    # probability of each emitted token (and of eos, last, if finished)
    attention: np.ndarray | None          # (len(probs), S) weights over the source tokens, original order
    logprob: float = 0.0                  # sum of log-probabilities (model distribution) incl. eos
    finished: bool = False
    score: float = 0.0                    # beam: logprob / len ** length_penalty


@dataclass(frozen=True)
class StepOut:
    """One streamed token: id, probability under the sampling distribution, attention (S,), state after it."""

    id: int
    prob: float
    attention: np.ndarray | None
    state: State


class Seq2SeqDecoder:
    """Inference over a model's weights (read at construction; build a new one after further training)."""

    def __init__(self, model: Seq2Seq):
        self.config = c = model.config
        self.E_src = model.src_embed.params["W"]
        self.E_tgt = model.tgt_embed.params["W"]
        self.enc_w = (model.enc.params["Wx"], model.enc.params["Wh"], model.enc.params["b"])
        self.enc_bwd_w = None if model.enc_bwd is None else (
            model.enc_bwd.params["Wx"], model.enc_bwd.params["Wh"], model.enc_bwd.params["b"])
        d = model.dec.params
        self.dec_W = np.ascontiguousarray(np.concatenate([d["Wx"], d["Wh"]], axis=0))
        self.dec_b = d["b"]
        self.attn_W = None if model.attn is None else model.attn.params.get("W")
        self.proj = None if model.proj is None else (model.proj.params["W"], model.proj.params["b"])
        self.out_W = model.out.params["W"].T if c.tie else model.out.params["W"]
        self.out_b = model.out.params["b"]
        self.dtype = model.dtype
        self.Hd = c.dec_hidden

    def zero_state(self, n: int = 1) -> State:
        return np.zeros((n, self.Hd), self.dtype), np.zeros((n, self.Hd), self.dtype)

    # -- encoder ---------------------------------------------------------------------------------------------
    def encode(self, sources: Sequence[Sequence[int]], state: State | None = None) -> Encoded:
        """Encode id sequences (each non-empty) starting from `state` ((N, Hd) pair; zeros if None)."""
        src, mask = _pad(sources)
        if mask.shape[1] == 0 or (mask.sum(axis=1) == 0).any():
            raise ValueError("every source needs at least one token")
        c, H, N = self.config, self.config.hidden, len(sources)
        if c.reverse:
            src = reverse_rows(src, mask)
        x = self.E_src[src]
        h0, c0 = state if state is not None else self.zero_state(N)
        if c.bidirectional:
            hf, (fh, fc) = _lstm_run(x, mask, (h0[:, :H], c0[:, :H]), *self.enc_w)
            hb, (bh, bc) = _lstm_run(x[:, ::-1], mask[:, ::-1], (h0[:, H:], c0[:, H:]), *self.enc_bwd_w)
            enc = np.concatenate([hf, hb[:, ::-1]], axis=-1)
            final = (np.concatenate([fh, bh], axis=1), np.concatenate([fc, bc], axis=1))
        else:
            enc, final = _lstm_run(x, mask, (h0, c0), *self.enc_w)
        keys = enc @ self.attn_W.T if self.attn_W is not None else enc
        return Encoded(enc, keys, mask, final, final[0] if c.peeky else None, mask.sum(axis=1).astype(np.int64),
                       c.reverse)

    # -- decoder ---------------------------------------------------------------------------------------------
    def step(self, ids: np.ndarray, state: State, enc: Encoded) -> tuple[np.ndarray, State, np.ndarray | None]:
        """Feed ids (N,) from `state` -> logits (N, V), the new state, attention (N, S) in encoder order."""
        x = self.E_tgt[ids]
        if enc.peek is not None:
            x = np.concatenate([x, enc.peek], axis=1)
        h, c = state
        a = np.concatenate([x, h], axis=1) @ self.dec_W
        a += self.dec_b
        h, c = lstm_cell(a, c, self.Hd)
        feats, w = [h], None
        if self.config.attention != "none":
            scores = np.einsum("nd,nsd->ns", h, enc.keys)
            scores = np.where(enc.mask > 0, scores, -np.inf)
            scores -= scores.max(axis=1, keepdims=True)
            w = np.exp(scores)
            w /= w.sum(axis=1, keepdims=True)
            feats.append(np.einsum("ns,nsd->nd", w, enc.enc))
        if enc.peek is not None:
            feats.append(enc.peek)
        f = feats[0] if len(feats) == 1 else np.concatenate(feats, axis=1)
        if self.proj is not None:
            f = np.tanh(f @ self.proj[0] + self.proj[1])
        logits = f @ self.out_W
        logits += self.out_b
        return logits, (h, c), w

    def greedy(self, enc: Encoded, bos: int, eos: int, max_len: int, banned: Sequence[int] = (0,)
               ) -> list[Hypothesis]:
        """Argmax decoding of a batch (banned ids never chosen); stops per row at eos or max_len tokens."""
        N = enc.enc.shape[0]
        ids = np.full(N, bos, np.int64)
        state = enc.state
        hyps = [Hypothesis([], [], None) for _ in range(N)]
        atts: list[list[np.ndarray]] = [[] for _ in range(N)]
        live = np.ones(N, bool)
        banned = np.asarray(banned, np.int64)
        for _ in range(max_len):
            logits, state, w = self.step(ids, state, enc)
            logits[:, banned] = -np.inf
            logp = _log_softmax(logits)
            ids = np.argmax(logp, axis=1)
            w = None if w is None else enc.source_order(w)
            for r in np.flatnonzero(live):
                tid, lp = int(ids[r]), float(logp[r, ids[r]])
                hyp = hyps[r]
                hyp.probs.append(float(np.exp(lp)))
                hyp.logprob += lp
                if w is not None:
                    atts[r].append(w[r])
                if tid == eos:
                    hyp.finished = True
                    live[r] = False
                else:
                    hyp.ids.append(tid)
            if not live.any():
                break
        for hyp, a in zip(hyps, atts):
            hyp.attention = np.array(a) if a else None
            hyp.score = hyp.logprob
        return hyps

    def sample(self, enc: Encoded, bos: int, eos: int, settings, banned: np.ndarray, *,
               text_of: Callable[[list[int]], str] | None = None, seeds: Sequence[int | None] | None = None
               ) -> list[Hypothesis]:
        """Sampling with `SamplingSettings` (temperature, top-k, top-p, repetition penalty, skip, stop, max_tokens,
        seed) via the engine's `sample_rows`; one seeded `RowSampler` per row. Stop sequences are matched on
        `text_of(ids)` (needed only when settings.stop is set)."""
        from rnnchat.engine.sampling import RowSampler, sample_rows
        N = enc.enc.shape[0]
        if seeds is None:
            seeds = [None if settings.seed is None else settings.seed + r for r in range(N)]
        samplers = [RowSampler(settings, banned, np.random.default_rng(s)) for s in seeds]
        ids = np.full(N, bos, np.int64)
        state = enc.state
        hyps = [Hypothesis([], [], None) for _ in range(N)]
        atts: list[list[np.ndarray]] = [[] for _ in range(N)]
        live = np.flatnonzero(np.ones(N, bool))
        sub = enc
        for _ in range(settings.max_tokens):
            logits, state, w = self.step(ids, state, sub)
            logp = _log_softmax(logits.copy())
            picked, probs = sample_rows(logits, [samplers[r] for r in live])
            w = None if w is None else sub.source_order(w)
            keep = []
            for j, r in enumerate(live):
                tid = int(picked[j])
                hyp = hyps[r]
                hyp.probs.append(float(probs[j]))
                hyp.logprob += float(logp[j, tid])
                if w is not None:
                    atts[r].append(w[j])
                if tid == eos:
                    hyp.finished = True
                    continue
                hyp.ids.append(tid)
                if settings.stop and text_of is not None and any(text_of(hyp.ids).endswith(s)
                                                                 for s in settings.stop):
                    continue
                keep.append(j)
            if not keep:
                break
            keep = np.asarray(keep)
            live, ids = live[keep], picked[keep]
            state = (state[0][keep], state[1][keep])
            sub = sub.rows(keep)
        for hyp, a in zip(hyps, atts):
            hyp.attention = np.array(a) if a else None
            hyp.score = hyp.logprob
        return hyps

    def beam(self, enc: Encoded, bos: int, eos: int, max_len: int, width: int = 5, length_penalty: float = 1.0,
             banned: Sequence[int] = (0,), n_best: int | None = None) -> list[Hypothesis]:
        """Beam search for ONE source (enc of batch 1). Finished hypotheses are ranked by
        logprob / len ** length_penalty (len counts eos; 0 = no normalisation). Returns the best first."""
        if enc.enc.shape[0] != 1:
            raise ValueError("beam search decodes one source at a time")
        if width < 1:
            raise ValueError("beam width must be >= 1")
        V = self.out_b.shape[0]
        banned = np.asarray(banned, np.int64)
        norm = (lambda lp, n: lp / n ** length_penalty) if length_penalty else (lambda lp, n: lp)
        beams: list[Hypothesis] = [Hypothesis([], [], None)]
        atts: list[list[np.ndarray]] = [[]]
        ids = np.array([bos], np.int64)
        state = enc.state
        finished: list[Hypothesis] = []
        for t in range(max_len):
            sub = enc.rows(np.zeros(len(beams), np.int64))
            logits, state, w = self.step(ids, state, sub)
            logits[:, banned] = -np.inf
            logp = _log_softmax(logits)
            w = None if w is None else sub.source_order(w)
            total = np.array([b.logprob for b in beams])[:, None] + logp
            flat = total.ravel()
            k = min(2 * width, flat.size)
            top = np.argpartition(-flat, k - 1)[:k]
            top = top[np.argsort(-flat[top], kind="stable")]
            new_beams, new_atts, src_rows, new_ids = [], [], [], []
            for f in top:
                b, tid = divmod(int(f), V)
                if not np.isfinite(flat[f]):
                    break
                old = beams[b]
                hyp = Hypothesis(list(old.ids), old.probs + [float(np.exp(logp[b, tid]))], None,
                                 float(flat[f]))
                a = atts[b] + ([w[b]] if w is not None else [])
                if tid == eos:
                    hyp.finished = True
                    hyp.attention = np.array(a) if a else None
                    hyp.score = norm(hyp.logprob, len(hyp.probs))
                    finished.append(hyp)
                else:
                    hyp.ids.append(tid)
                    new_beams.append(hyp)
                    new_atts.append(a)
                    src_rows.append(b)
                    new_ids.append(tid)
                if len(new_beams) == width:
                    break
            if not new_beams or len(finished) >= width and _cannot_improve(finished, new_beams, width, norm,
                                                                           max_len, length_penalty):
                beams = []
                break
            beams, atts = new_beams, new_atts
            rows = np.asarray(src_rows)
            state = (state[0][rows], state[1][rows])
            ids = np.asarray(new_ids, np.int64)
        for hyp, a in zip(beams, atts):  # unfinished at max_len
            hyp.attention = np.array(a) if a else None
            hyp.score = norm(hyp.logprob, max(len(hyp.probs), 1))
            finished.append(hyp)
        finished.sort(key=lambda h: -h.score)
        return finished[: n_best or width]

    def stream(self, enc: Encoded, bos: int, eos: int, settings, banned: np.ndarray,
               rng: np.random.Generator | None = None, cancel: threading.Event | None = None,
               observe: Sequence[int] = ()) -> Iterator[StepOut]:
        """Sample one source (batch 1) token by token. Each yielded StepOut carries the decoder state after
        feeding everything before it; the state after the last token is fed lazily (see `Seq2SeqChat`)."""
        from rnnchat.engine.sampling import RowSampler, sample_rows
        sampler = RowSampler(settings, banned, rng)
        sampler.observe(observe)
        ids = np.array([bos], np.int64)
        state = enc.state
        for _ in range(settings.max_tokens):
            if cancel is not None and cancel.is_set():
                return
            logits, state, w = self.step(ids, state, enc)
            picked, probs = sample_rows(logits, [sampler])
            tid = int(picked[0])
            yield StepOut(tid, float(probs[0]), None if w is None else enc.source_order(w)[0], state)
            if tid == eos:
                return
            ids = picked


def _cannot_improve(finished, live, width, norm, max_len, alpha) -> bool:
    """True when no live beam can beat the width-th best finished hypothesis.

    Log-probabilities only decrease as a hypothesis grows; with length normalisation (alpha > 0) a longer
    hypothesis divides its (negative) logprob by a larger length, so the best score a live beam can still reach
    is at most its current logprob over the largest length it can reach (max_len + 1 with eos).
    """
    kth = sorted((h.score for h in finished), reverse=True)[width - 1]
    best_live = max(h.logprob for h in live)
    bound = norm(best_live, max_len + 1) if alpha else best_live
    return bound < kth


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    z -= np.log(np.exp(z).sum(axis=1, keepdims=True))
    return z


# -- chat ------------------------------------------------------------------------------------------------------
def chat_turn_ids(messages: Sequence[str], vocab) -> list[int]:
    """A turn as ids: each message's tokens followed by <eom> (as the language model writes turns)."""
    ids: list[int] = []
    for msg in messages:
        ids += vocab.encode(msg)
        ids.append(vocab.eom_id)
    return ids


def chat_source_ids(turn: list[int], vocab, max_src: int) -> list[int]:
    """A turn as an encoder input: its last max_src - 1 tokens, then <eot> (never empty)."""
    return (turn[-(max_src - 1):] if max_src > 1 else []) + [vocab.eot_id]


@dataclass(frozen=True)
class ReplyToken:
    """One token of a chat reply: id, token, the text piece to append, its probability under the sampling
    distribution, and the decoder's attention (S,) over `source` (this turn's encoder tokens, in order)."""

    id: int
    token: str
    text: str
    prob: float
    attention: np.ndarray | None
    source: tuple[str, ...]


@dataclass
class ChatState:
    """A conversation's memory: the decoder state the last exchange left (None = a fresh conversation)."""

    h: np.ndarray | None = None
    c: np.ndarray | None = None
    transcript: list[dict] = field(default_factory=list)

    def copy(self) -> "ChatState":
        return ChatState(None if self.h is None else self.h.copy(), None if self.c is None else self.c.copy(),
                         [dict(t) for t in self.transcript])

    def reset(self) -> None:
        self.h = self.c = None
        self.transcript.clear()


class Seq2SeqChat:
    """The seq2seq chat model for a UI: `reply(state, user_text, settings, cancel)` streams `ReplyToken`s and
    leaves in `state` the decoder state after the reply, from which the next turn's encoder starts.

    However the stream ends (<eot>, max_tokens, a stop sequence, `cancel` set from another thread, the consumer
    stopping early), `state` ends as the decoder state after the emitted tokens, and the turn is added to
    `state.transcript`. Inference is pure NumPy over the weights: several conversations may run in threads.
    """

    def __init__(self, model: Seq2Seq, vocab, max_src: int = 40, header: dict | None = None):
        self.model, self.vocab, self.max_src = model, vocab, max_src
        self.header = header or {}
        self.decoder = Seq2SeqDecoder(model)

    @classmethod
    def load(cls, path=None) -> "Seq2SeqChat":
        from rnnchat.train.seq2seq import default_checkpoint, load_seq2seq
        model, vocab, header = load_seq2seq(path or default_checkpoint("chat"))
        if header.get("task") != "chat":
            raise ValueError(f"{path}: not a chat model (task {header.get('task')!r})")
        return cls(model, vocab, header["decoding"].get("max_src", 40), header)

    def new_state(self) -> ChatState:
        return ChatState()

    def source(self, user_text: str) -> list[int]:
        messages = [m for m in user_text.split("\n") if m.strip()] or [""]
        return chat_source_ids(chat_turn_ids(messages, self.vocab), self.vocab, self.max_src)

    def reply(self, state: ChatState, user_text: str, settings, cancel: threading.Event | None = None
              ) -> Iterator[ReplyToken]:
        from rnnchat.engine.sampling import skip_ids
        from rnnchat.text import Detokenizer
        vocab, dec = self.vocab, self.decoder
        banned = skip_ids(settings, vocab)  # SettingsError before anything changes
        src = self.source(user_text)
        source = tuple(vocab.ids_to_tokens(src))
        enc = dec.encode([src], None if state.h is None else (state.h, state.c))
        eot = vocab.eot_id
        final = enc.state  # nothing generated yet: the memory holds the user's turn
        last: StepOut | None = None
        detok, text = Detokenizer(), ""
        specials = {vocab.pad_id, vocab.unk_id, vocab.eom_id, eot}
        try:
            for out in dec.stream(enc, eot, eot, settings, banned, np.random.default_rng(settings.seed), cancel,
                                  observe=[i for i in src if i not in specials]):
                if out.id == eot:
                    final, last = out.state, None
                    break
                last = out
                tok = vocab.itos[out.id]
                if out.id == vocab.eom_id:
                    piece = "\n"
                    detok.reset()
                else:
                    piece = detok.push(tok)
                text += piece
                yield ReplyToken(out.id, tok, piece, out.prob, out.attention, source)
                if settings.stop and any(text.endswith(s) for s in settings.stop):
                    break
        finally:
            if last is not None:  # feed the last emitted token so the memory includes it
                _, final, _ = dec.step(np.array([last.id]), last.state, enc)
            state.h, state.c = (np.array(s) for s in final)
            state.transcript.append({"user": user_text, "reply": text.strip("\n")})
