"""Teacher-forced log-probabilities of candidate replies, batched: the building block of reply ranking.

* `lm_reply_logprobs(decoder, vocab, context_ids, replies)`: log p(reply + <eot> | context) under the language
  model, for N replies at once. The context is fed once (batch 1) from the state the engine's `Conversation`
  starts from (a turn boundary: `<eot>` fed from zeros), then its state is broadcast to N rows and the padded
  replies run through the LSTM together; logits are computed only at real reply positions.
* `seq2seq_reply_logprobs(model, vocab, sources, targets)`: log p(target + eos | source) under a `Seq2Seq`
  (bos = eos = `<eot>`, as the chat model and its backward scorer are trained), one source for every target
  (the forward chat model: message -> candidate replies) or one per target (the backward model: candidate
  replies -> the message they would answer).

Both are exact sums of log-softmax probabilities, computed in float64 from the models' logits, and gradient
free. `token_counts(replies)` gives the number of scored tokens per reply (its ids plus the closing token).

    from rnnchat.models.lm import LMDecoder, load_lm
    lm, vocab, _ = load_lm("rnnchat/checkpoints/lm.npz")
    scores = lm_reply_logprobs(LMDecoder(lm), vocab, conversation_ids(turns, vocab), [turn_ids(r, vocab) ...])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rnnchat.data.batches import make_exchange, pad
from rnnchat.models.lm import LanguageModel, LayerStates, LMDecoder
from rnnchat.models.seq2seq import LSTMState, Seq2Seq
from rnnchat.nn.recurrent import lstm_cell
from rnnchat.text import Vocab

LOGIT_ROWS = 4096  # real positions projected to the vocabulary at a time (bounds the (rows, V) logits)


def token_counts(replies: Sequence[Sequence[int]]) -> np.ndarray:
    """(N,) tokens each reply is scored on: its ids plus the closing <eot> / eos."""
    return np.array([len(r) + 1 for r in replies], np.int64)


def _target_logprobs(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """logits (R, V), targets (R,) -> log softmax(logits)[r, targets[r]] (R,) as float64, computed in the
    logits' own precision (float32 for the shipped models: half the cost of a float64 pass over R x V)."""
    top = logits.max(axis=1, keepdims=True)
    z = logits - top
    lse = np.log(np.exp(z, out=z).sum(axis=1, dtype=np.float64))
    picked = (logits[np.arange(len(targets)), targets] - top[:, 0]).astype(np.float64)
    return picked - lse


# -- language model ----------------------------------------------------------------------------------------
def _lstm_outputs(xw: np.ndarray, Wh: np.ndarray, h: np.ndarray, c: np.ndarray, active: np.ndarray) -> np.ndarray:
    """One LSTM layer over input products xw (N, T, 4H) (bias included) from (h, c) (N, H) -> outputs (N, T, H).

    active (T,): how many rows are still running at each step (rows sorted longest first): the rows that have
    ended are not computed (their later outputs are 0)."""
    N, T, _ = xw.shape
    H = Wh.shape[0]
    out = np.zeros((N, T, H), np.result_type(xw, h))
    for t in range(T):
        n = int(active[t])
        h, c = h[:n], c[:n]
        a = h @ Wh
        a += xw[:n, t]
        h, c = lstm_cell(a, c, H)
        out[:n, t] = h
    return out


def _lm_outputs(dec: LMDecoder, ids: np.ndarray, state: LayerStates, lengths: np.ndarray | None = None
                ) -> np.ndarray:
    """Last-layer LSTM outputs (N, T, H) for (N, T) ids from `state` (pure). With lengths (N,), each row runs
    only over its first lengths[i] ids (the outputs past them are 0); without, every step of every row runs."""
    N, T = ids.shape
    H = dec.hidden
    lengths = np.full(N, T) if lengths is None else np.asarray(lengths).astype(np.int64)
    order = np.argsort(-lengths, kind="stable")                      # longest first: the running rows lead
    active = (lengths[order][None, :] > np.arange(T)[:, None]).sum(axis=1)
    ids = ids[order]
    state = [(h[order], c[order]) for h, c in state]
    out = _lstm_outputs(dec.input_table[ids], dec.Wh0, *state[0], active)  # the first layer's input: a lookup
    real = lengths[order][:, None] > np.arange(T)[None, :]              # (N, T): the steps each row runs
    for W, b, (h, c) in zip(dec.W, dec.b, state[1:]):                # W (2H, 4H) = [Wx; Wh]
        xw = np.zeros((N, T, W.shape[1]), out.dtype)
        xw[real] = out[real] @ W[:H]                                  # input products of real steps only
        xw += b
        out = _lstm_outputs(xw, W[H:], h, c, active)
    back = np.empty_like(order)
    back[order] = np.arange(N)
    return out[back]


def lm_context_state(dec: LMDecoder, vocab: Vocab, context_ids: Sequence[int]) -> tuple[LayerStates, int]:
    """The state before the context's last token, and that token: <eot> then `context_ids`, fed from zeros.

    The last token is held back so the first reply token's logits come from the batched pass.
    """
    prefix = [vocab.eot_id, *context_ids]
    state = dec.initial_state(1)
    if len(prefix) > 1:
        _, state = dec.prefill(np.asarray(prefix[:-1], np.int64)[None], state)
    return state, prefix[-1]


def lm_reply_logprobs(decoder_or_model: LMDecoder | LanguageModel, vocab: Vocab, context_ids: Sequence[int],
                      replies: Sequence[Sequence[int]]) -> np.ndarray:
    """(N,) sum over each reply's tokens and its closing <eot> of log p(token | context, reply so far).

    context_ids: the conversation so far, each turn closed by <eot> (`conversation_ids`), read after the turn
    boundary every conversation starts from (empty: the fresh state). replies: each turn's ids (`turn_ids`:
    messages each followed by <eom>), without the <eot>, which is added and scored.
    Pass an `LMDecoder` to reuse it (building one from a model costs a (V, 4H) product).
    """
    dec = decoder_or_model if isinstance(decoder_or_model, LMDecoder) else LMDecoder(decoder_or_model)
    N = len(replies)
    if N == 0:
        return np.zeros(0)
    state, last = lm_context_state(dec, vocab, context_ids)
    scored = [[*r, vocab.eot_id] for r in replies]
    targets, mask = pad(scored)                                         # (N, T)
    inputs = np.concatenate([np.full((N, 1), last, np.int64), targets[:, :-1]], axis=1)
    rows_state = [(np.repeat(h, N, axis=0), np.repeat(c, N, axis=0)) for h, c in state]
    out = _lm_outputs(dec, inputs, rows_state, mask.sum(axis=1))        # (N, T, H)
    sel = np.flatnonzero(mask.ravel() > 0)
    hidden, tgt, row = out.reshape(-1, dec.hidden)[sel], targets.ravel()[sel], sel // targets.shape[1]
    lp = np.empty(len(sel))
    for start in range(0, len(sel), LOGIT_ROWS):
        part = slice(start, start + LOGIT_ROWS)
        lp[part] = _target_logprobs(dec.logits(hidden[part]), tgt[part])  # (R, V) logits at a time
    return np.bincount(row, weights=lp, minlength=N)


# -- seq2seq -----------------------------------------------------------------------------------------------
def seq2seq_reply_logprobs(model: Seq2Seq, vocab: Vocab, sources: Sequence[int] | Sequence[Sequence[int]],
                           targets: Sequence[Sequence[int]], state0: LSTMState | None = None,
                           batch: int = 256) -> np.ndarray:
    """(N,) log p(target + <eot> | source) for each target, decoder started from <eot>.

    sources: one source (a list of ids) for every target, or one per target; each non-empty (e.g.
    `source_ids`). state0: the encoder's initial (h, c), (1, Hd) or (N, Hd); zeros if None. The model must be
    in eval mode (dropout off). Runs in batches of `batch` rows through the model's layers (not thread-safe).
    """
    if model.drop_out.training:
        raise ValueError("scoring needs the model in eval mode (model.train(False))")
    N = len(targets)
    one = len(sources) > 0 and isinstance(sources[0], (int, np.integer))
    srcs = [list(sources)] * N if one else [list(s) for s in sources]
    if len(srcs) != N:
        raise ValueError(f"{len(srcs)} sources for {N} targets")
    if state0 is not None:
        state0 = tuple(np.ascontiguousarray(np.broadcast_to(s, (N, s.shape[1]))) for s in state0)
    eot = vocab.eot_id
    out = np.zeros(N)
    for start in range(0, N, batch):
        part = slice(start, start + batch)
        ex = make_exchange(srcs[part], targets[part], eot, eot)
        n = len(ex.rows)
        s0 = model.zero_state(n) if state0 is None else (state0[0][part], state0[1][part])
        f, _ = model._features(ex, s0)                                  # (n, T, F)
        logits, tgt = model._real_logits(f, ex)                         # (R, V), (R,): real positions only
        row = np.flatnonzero(ex.tgt_mask.ravel() > 0) // ex.tgt_mask.shape[1]
        out[part] = np.bincount(row, weights=_target_logprobs(logits, tgt), minlength=n)
    return out
