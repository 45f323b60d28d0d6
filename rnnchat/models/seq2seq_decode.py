"""Seq2seq inference: pure functions of a model's weights (no layer caches, no shared buffers: safe from several
threads). Batch encoding, one decoder step, greedy, sampling with the engine's `SamplingSettings`
(`sample_rows`), beam search with length normalisation, and a token stream for chat. Every generated token comes
with its attention weights over the source (in the source's original order, also for reversed encoders).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from rnnchat.data.batches import pad
from rnnchat.models.seq2seq import LSTMState, Seq2Seq, reverse_rows
from rnnchat.nn.recurrent import lstm_cell
from rnnchat.sampling import RowSampler, StopWatch, sample_rows
from rnnchat.text import Vocab


# -- encoder ---------------------------------------------------------------------------------------------------
def _lstm_run(x: np.ndarray, mask: np.ndarray, state: LSTMState, Wx, Wh, b) -> tuple[np.ndarray, LSTMState]:
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
class EncodedSource:
    """Encoder outputs for a batch of sources, ready for decoding."""

    enc: np.ndarray           # (N, S, Hd) encoder outputs (in encoder order)
    keys: np.ndarray          # (N, S, Hd) attention keys (enc, or enc W^T for "general")
    mask: np.ndarray          # (N, S)
    state: LSTMState              # encoder final state = decoder initial state
    peek: np.ndarray | None   # (N, Hd) for peeky decoders
    lengths: np.ndarray       # (N,) real source lengths
    reversed: bool

    def rows(self, idx: np.ndarray) -> "EncodedSource":
        """The encodings of some rows (repeats allowed: beam search)."""
        return EncodedSource(self.enc[idx], self.keys[idx], self.mask[idx], (self.state[0][idx], self.state[1][idx]),
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
    state: LSTMState


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

    def zero_state(self, n: int = 1) -> LSTMState:
        return np.zeros((n, self.Hd), self.dtype), np.zeros((n, self.Hd), self.dtype)

    # -- encoder ---------------------------------------------------------------------------------------------
    def encode(self, sources: Sequence[Sequence[int]], state: LSTMState | None = None) -> EncodedSource:
        """Encode id sequences (each non-empty) starting from `state` ((N, Hd) pair; zeros if None)."""
        src, mask = pad(sources)
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
        return EncodedSource(enc, keys, mask, final, final[0] if c.peeky else None, mask.sum(axis=1).astype(np.int64),
                       c.reverse)

    # -- decoder ---------------------------------------------------------------------------------------------
    def step(self, ids: np.ndarray, state: LSTMState, enc: EncodedSource) -> tuple[np.ndarray, LSTMState, np.ndarray | None]:
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

    def greedy(self, enc: EncodedSource, bos: int, eos: int, max_len: int, banned: Sequence[int] = (0,)
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

    def sample(self, enc: EncodedSource, bos: int, eos: int, settings, banned: np.ndarray, *,
               vocab: Vocab | None = None, seeds: Sequence[int | None] | None = None,
               cancel: threading.Event | None = None) -> list[Hypothesis]:
        """Sampling with `SamplingSettings` (temperature, top-k, top-p, repetition penalty, skip, stop, max_tokens,
        seed) via `sample_rows`; one seeded `RowSampler` per row. Stop sequences are matched on each row's text
        (`vocab`: needed only when settings.stop is set). A set `cancel` ends every row after the step in
        progress (unfinished)."""
        N = enc.enc.shape[0]
        if seeds is None:
            seeds = [None if settings.seed is None else settings.seed + r for r in range(N)]
        samplers = [RowSampler(settings, banned, np.random.default_rng(s)) for s in seeds]
        ids = np.full(N, bos, np.int64)
        state = enc.state
        hyps = [Hypothesis([], [], None) for _ in range(N)]
        watches = [StopWatch(settings.stop, vocab) for _ in range(N)] if settings.stop and vocab is not None else None
        atts: list[list[np.ndarray]] = [[] for _ in range(N)]
        live = np.flatnonzero(np.ones(N, bool))
        sub = enc
        for _ in range(settings.max_tokens):
            if cancel is not None and cancel.is_set():
                break
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
                if watches is not None:
                    watches[r].push(tid)
                    if watches[r].hit:
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

    def beam(self, enc: EncodedSource, bos: int, eos: int, max_len: int, width: int = 5, length_penalty: float = 1.0,
             banned: Sequence[int] = (0,), n_best: int | None = None,
             cancel: threading.Event | None = None) -> list[Hypothesis]:
        """Beam search for ONE source (enc of batch 1). Finished hypotheses are ranked by
        logprob / len ** length_penalty (len counts eos; 0 = no normalisation). Returns the best first.
        `cancel` set: stops after the current step and ranks what it has, as if max_len were reached."""
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
            if cancel is not None and cancel.is_set() and t > 0:
                break
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

    def stream(self, enc: EncodedSource, bos: int, eos: int, settings, banned: np.ndarray,
               rng: np.random.Generator | None = None, cancel: threading.Event | None = None,
               observe: Sequence[int] = ()) -> Iterator[StepOut]:
        """Sample one source (batch 1) token by token. Each yielded StepOut carries the decoder state after
        feeding everything before it; the state after the last token is fed lazily (see `Seq2SeqChat`)."""
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
