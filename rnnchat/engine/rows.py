"""Sampling many rows of the LM together: one matrix product per layer per step, each row its own draws.

`decode_rows` samples every row from its (logits, state) until <eot>, its max tokens or a stop sequence; rows
that finish drop out of the batch. It serves ranked reply candidates (`engine.ranking`), batch generation
(`engine.batch`) and, with a `Guide`, classifier-free guidance (also in the single stream of
`engine.conversation`).

A row's result does not depend on the other rows of its batch, bit for bit: every row gets the numbers a
product of exactly 8 rows gives it. OpenBLAS rounds a row of a matrix product by the product's row count: GEMV
for one row, and with 0.3.31's Haswell kernels bands of row counts (rows of 16 or more also by their place),
while a product of exactly 8 rows gives each row the same numbers wherever it sits and whatever its neighbours
(measured for every product shape of the shipped and the test LM). Its SkylakeX kernels give a row the same
numbers in a product of any 2-64 rows (the shipped LM, 1 and 2 threads), so there one product is enough:
`step_rows` checks that the first time it meets each row count at each BLAS thread count (on random rows, run
both ways) and takes one product from then on where the bits agreed, blocks of 8 elsewhere (the last one padded
with copies of its first row).
`prefill_rows` feeds each row alone, as two copies of itself (its products then depend on its own length only).
Batch size, resume and the split over Ray workers (`batch_ray`, one BLAS thread each) then cannot change a line.
The thread count itself can: with the Haswell kernels an 8-row block of the shipped LM rounds some rows
differently on 1 and 2 threads, so a local run on 2 threads and a Ray run may differ in the last bits of a
probability. A block of 8 costs about what one row does (its products read the weights once either way); 16
rows in two blocks cost ~1.4x one product of 16 rows (a step 4.3 against 3.0 ms for the shipped LM, 2-core VM).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from rnnchat.models.lm import LayerStates, LMDecoder
from rnnchat.runtime import blas_threads
from rnnchat.sampling import RowSampler, SamplingSettings, StopWatch, ban_first, sample_rows
from rnnchat.text import Vocab


MAX_KEPT_STEPS = 256  # keep_states: at most this many steps of states are kept (then none: memory stays bounded)


@dataclass
class Decoded:
    """One row's sampled tokens: ids, their probabilities and text pieces (as `StopWatch` shows them, <eom> a
    new line), and `finished`: the row ended on <eot> (not on max tokens or a stop sequence)."""

    ids: list[int]
    probs: list[float]
    pieces: list[str]
    finished: bool
    logprob: float = 0.0  # with_logprobs: sum of log p(token) under the model (not the sampling distribution)
    lm_logprob: float = 0.0  # with_logprobs: the same under the LM's own logits, before `adjust` (the cache)
    # keep_states: (len(ids), H) the top layer's state after each id, <eot> included (rows finished on <eot>)
    states: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def text(self) -> str:
        return "".join(self.pieces)


BLOCK = 8  # rows per product whose bits every row keeps (see the module docstring)
# the most rows `step_rows` runs as one product, where that gives them their block bits: guided candidates (2N
# rows) then read the weights once a step
ONE_PRODUCT = 64

# per decoder: (row count, BLAS threads) -> does one product give every row its block bits (`_one_product`)
_one_product_ok: "weakref.WeakKeyDictionary[LMDecoder, dict[tuple[int, tuple[int, ...]], bool]]" = \
    weakref.WeakKeyDictionary()


def _rows(state: LayerStates, rows) -> LayerStates:
    return [(h[rows], c[rows]) for h, c in state]


def _join(parts: list[tuple[np.ndarray, LayerStates]], n: int) -> tuple[np.ndarray, LayerStates]:
    """The first n rows of consecutive (logits, state) parts, as one."""
    logits = np.concatenate([p[0] for p in parts])[:n]
    layers = range(len(parts[0][1]))
    return logits, [(np.concatenate([p[1][k][0] for p in parts])[:n], np.concatenate([p[1][k][1] for p in parts])[:n])
                    for k in layers]


def step_rows(decoder: LMDecoder, ids: np.ndarray, state: LayerStates) -> tuple[np.ndarray, LayerStates]:
    """`decoder.step` whose result for a row does not depend on the other rows: the bits of a BLOCK-row product."""
    n = len(ids)
    if n > ONE_PRODUCT:
        return _join([step_rows(decoder, ids[s:s + ONE_PRODUCT], _rows(state, slice(s, s + ONE_PRODUCT)))
                      for s in range(0, n, ONE_PRODUCT)], n)
    if n == BLOCK or n > 1 and (threads := blas_threads()) and _one_product(decoder, n, threads):
        return decoder.step(ids, state)
    return _step_blocks(decoder, ids, state)


def _one_product(decoder: LMDecoder, n: int, threads: tuple[int, ...]) -> bool:
    """Does one product of n rows give every row its block bits (on these BLAS threads)? Checked the first time
    on random rows (the caller's may hide a difference: a zero state makes the first layer's product exact),
    then kept. (The thread count is read before the product runs; nothing in rnnchat changes it meanwhile.)"""
    seen = _one_product_ok.get(decoder)
    if seen is None:  # (not `setdefault`: that makes a weak reference and a dict at every step)
        seen = _one_product_ok[decoder] = {}
    if (n, threads) not in seen:
        rng = np.random.default_rng(n)
        ids = rng.integers(0, decoder.vocab_size, n)
        state = [tuple(rng.standard_normal((n, a.shape[1])).astype(a.dtype) for a in layer)
                 for layer in decoder.initial_state(1)]
        one, blocks = decoder.step(ids, state), _step_blocks(decoder, ids, state)
        seen[(n, threads)] = one[0].tobytes() == blocks[0].tobytes() and all(
            a.tobytes() == b.tobytes() for x, y in zip(one[1], blocks[1]) for a, b in zip(x, y))
    return seen[(n, threads)]


def _step_blocks(decoder: LMDecoder, ids: np.ndarray, state: LayerStates) -> tuple[np.ndarray, LayerStates]:
    """`decoder.step` on blocks of exactly BLOCK rows, the last one filled with copies of row 0."""
    n = len(ids)
    if n % BLOCK:
        take = np.concatenate([np.arange(n), np.zeros(BLOCK - n % BLOCK, np.int64)])
        ids, state = ids[take], _rows(state, take)
    if len(ids) == BLOCK:  # one product per layer, no concatenation
        logits, new = decoder.step(ids, state)
        return logits[:n], _rows(new, slice(0, n))
    return _join([decoder.step(ids[s:s + BLOCK], _rows(state, slice(s, s + BLOCK)))
                  for s in range(0, len(ids), BLOCK)], n)


def prefill_rows(decoder: LMDecoder, ids: np.ndarray, state: LayerStates,
                 mask: np.ndarray) -> tuple[np.ndarray, LayerStates]:
    """`decoder.prefill` of (B, T) right-padded ids, each row fed alone (its real tokens, as two copies of itself:
    the GEMM path), so its result does not depend on the other rows or on the batch's padding."""
    logits, rows = [], []
    for r in range(len(ids)):
        n, two_state = int(mask[r].sum()), _rows(state, [r, r])
        if n:
            lg, st = decoder.prefill(np.repeat(ids[r:r + 1, :n], 2, axis=0), two_state, np.ones((2, n), mask.dtype))
        else:  # nothing to feed: the logits of the state as it is (as a batched prefill gives a padded row)
            lg, st = decoder.logits(two_state[-1][0]), two_state
        logits.append(lg[:1])
        rows.append(_rows(st, slice(0, 1)))
    return np.concatenate(logits), [(np.concatenate([s[k][0] for s in rows]), np.concatenate([s[k][1] for s in rows]))
                                    for k in range(len(state))]


@dataclass
class Guide:
    """Classifier-free guidance (Sanchez et al. 2023, "Stay on Topic with Classifier-Free Guidance"): every row
    also runs from a fresh state over the same sampled tokens, and draws from
    z + w * (log softmax(z) - log softmax(z_fresh)): words the conversation or prompt made likelier gain, words
    that are likely whatever was said lose (the anti-LM term of Li et al. 2016, applied at every token).
    The ends of a message and a turn (`plain`: <eom>, <eot>) keep the model's own probabilities, and the
    guided words share the rest: where a reply ends is the model's call (a fresh state almost never ends a turn
    at once, so guided, every chat reply would be empty). A row of weight 0 draws from its logits unchanged.
    `weights` (B,), `logits` (B, V) and `state` are the fresh stream's, one row per decoded row."""

    weights: np.ndarray
    logits: np.ndarray
    state: LayerStates
    plain: tuple[int, ...] = ()

    def apply(self, logits: np.ndarray) -> np.ndarray:
        """The logits to draw from (a new array, in the logits' dtype), given the decoded rows' own.

        With lp = log softmax(z), lq = log softmax(z_fresh): the words get (1 + w) lp - w lq renormalised to the
        mass the ends leave. The softmax constants cancel in that renormalisation, so the words' logits are
        u = (1 + w) z - w z_fresh shifted by one constant per row, and only two sums of exponentials are needed
        (of z, of u over the words): on the logits' scale, the ends keep z exactly."""
        w = self.weights[:, None]
        dt = logits.dtype
        lse = _row_lse(logits)                                            # (B,) float64
        u = (1 + w).astype(dt) * logits - w.astype(dt) * self.logits.astype(dt)  # banned words (-inf) stay -inf
        ends = list(self.plain)
        u[:, ends] = -np.inf
        with np.errstate(divide="ignore"):
            p_end = np.exp(logits[:, ends].astype(np.float64) - lse[:, None]).sum(axis=1)
            shift = np.log(np.maximum(1.0 - p_end, 1e-30)) + lse - _row_lse(u)
        out = u + shift[:, None].astype(dt)
        out[:, ends] = logits[:, ends]
        return np.where(w == 0, logits, out)

    def rows(self, keep: np.ndarray) -> "Guide":
        return Guide(self.weights[keep], self.logits[keep], [(h[keep], c[keep]) for h, c in self.state], self.plain)


def fresh_guide(decoder: LMDecoder, vocab: Vocab, weights: list[float]) -> Guide | None:
    """A guide for rows with these weights (None when all are 0), its rows in the state a conversation starts
    from (<eot> fed from zeros)."""
    if not any(weights):
        return None
    logits, state = step_rows(decoder, np.full(len(weights), vocab.eot_id), decoder.initial_state(len(weights)))
    return Guide(np.asarray(weights, np.float64), logits, state, vocab.end_ids)


def step_guided(decoder: LMDecoder, ids: np.ndarray, state: LayerStates,
                guide: Guide | None) -> tuple[np.ndarray, LayerStates]:
    """`step_rows` of the decoded rows and, with a guide, of its fresh rows in the same product per layer (the
    weights are read once for 2B rows); the guide's logits and state advance in place."""
    if guide is None:
        return step_rows(decoder, ids, state)
    k = len(ids)
    both = [(np.concatenate([h, gh]), np.concatenate([c, gc])) for (h, c), (gh, gc) in zip(state, guide.state)]
    out, both = step_rows(decoder, np.concatenate([ids, ids]), both)
    guide.logits, guide.state = out[k:], [(h[k:], c[k:]) for h, c in both]
    return out[:k], [(h[:k], c[:k]) for h, c in both]


def _row_lse(z: np.ndarray) -> np.ndarray:
    """(B,) log sum exp of each row (exponentials in z's dtype, their sum in float64); a row of -inf gives -inf."""
    top = z.max(axis=1)
    top = np.where(np.isfinite(top), top, 0.0).astype(z.dtype)
    with np.errstate(divide="ignore"):
        return np.log(np.exp(z - top[:, None]).sum(axis=1, dtype=np.float64)) + top


def decode_rows(decoder: LMDecoder, vocab: Vocab, logits: np.ndarray, state, rows: list[RowSampler],
                settings: list[SamplingSettings], with_logprobs: bool = False, enough: int | None = None,
                adjust: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
                guide: Guide | None = None, not_first: tuple[int, ...] = (), keep_states: bool = False,
                cancel: threading.Event | None = None) -> list[Decoded]:
    """Sample every row from its (logits (B, V), state) until <eot>, its max tokens or a stop sequence.

    Rows advance together, one matrix product per layer per step; rows that finish drop out of the batch, and
    what a row draws does not depend on the other rows (`step_rows`).
    with_logprobs: also sum each row's log-probabilities under the model (what reply ranking scores).
    enough: stop once this many rows have finished on <eot>; the rows still running end there, unfinished.
    adjust: (logits (B, V), top-layer states (B, H)) -> the logits to sample from and score (the conversation
    cache's mixture); applied before everything else at each step.
    guide: draw under classifier-free guidance (`Guide`, one row per row).
    not_first: ids no row may draw first (a chat reply that opens with <eot> would be empty), banned after
    `adjust` and the guide. `with_logprobs` sums the model's own log-probabilities all the same (what the
    reply ranking scores, as its teacher-forced scores do).
    keep_states: also keep each row's top-layer states (`Decoded.states`; what the reply judge reads, so it need
    not run the rows again). A row that ends on <eot> is fed it once more, after the loop, in one step.
    cancel: set from another thread, the rows still running end after the step in progress, unfinished.
    """
    B = len(rows)
    out_ids: list[list[int]] = [[] for _ in range(B)]
    out_probs: list[list[float]] = [[] for _ in range(B)]
    out_pieces: list[list[str]] = [[] for _ in range(B)]
    max_tokens = np.array([s.max_tokens for s in settings])  # counts down: tokens each row may still add
    watches = [StopWatch(s.stop, vocab) for s in settings]
    finished = [False] * B
    logprob, lm_logprob = np.zeros(B), np.zeros(B)
    active = np.flatnonzero(max_tokens > 0)
    logits, state = logits[active], [(h[active], c[active]) for h, c in state]
    if guide is not None:
        guide = guide.rows(active)
    first = True  # every row draws its first token in the first step
    tops: list[tuple[np.ndarray, np.ndarray]] = []  # keep_states: (rows, their top states) after each step
    ended: dict[int, LayerStates] = {}  # keep_states: a row finished on <eot> -> its state before <eot>
    while active.size:
        if with_logprobs and adjust is not None:  # the LM's own log-probabilities, before the cache mixes in
            lm_z, lm_logz = logits, _row_lse(logits)  # (`adjust` returns a new array: these stay as they are)
        if adjust is not None:
            logits = adjust(logits, state[-1][0])
        if with_logprobs:  # log-softmax of the model's logits, before sampling changes them
            z = logits.copy()  # in the logits' precision
            logz = _row_lse(z)
            if adjust is None:
                lm_z, lm_logz = z, logz
        if guide is not None:
            logits = guide.apply(logits)
        if first and not_first:  # (`logits` is ours here: the rows were picked out with an index array)
            for r, j in enumerate(active):
                ban_first(logits[r:r + 1], not_first, rows[j].banned)
        first = False
        ids, probs = sample_rows(logits, [rows[j] for j in active])
        if with_logprobs:
            logprob[active] += z[np.arange(len(ids)), ids] - logz
            lm_logprob[active] += lm_z[np.arange(len(ids)), ids] - lm_logz
        max_tokens[active] -= 1
        keep = (ids != vocab.eot_id) & (max_tokens[active] > 0)
        for k, (j, tid, p) in enumerate(zip(active.tolist(), ids.tolist(), probs.tolist())):
            out_ids[j].append(tid)
            out_probs[j].append(p)
            out_pieces[j].append(watches[j].push(tid))
            finished[j] = tid == vocab.eot_id
            if watches[j].hit:
                keep[k] = False
        if keep_states:
            ended.update({j: [(h[k:k + 1], c[k:k + 1]) for h, c in state]
                          for k, j in enumerate(active.tolist()) if finished[j]})
        if not keep.any() or (enough is not None and sum(finished) >= enough) or (cancel and cancel.is_set()):
            break
        if not keep.all():  # rows that finished drop out of the batch
            ids, state, active = ids[keep], [(h[keep], c[keep]) for h, c in state], active[keep]
            if guide is not None:
                guide = guide.rows(keep)
        logits, state = step_guided(decoder, ids, state, guide)
        if keep_states and len(tops) == MAX_KEPT_STEPS:  # replies this long are read again by whoever needs them
            keep_states, tops, ended = False, [], {}
        if keep_states:
            tops.append((active, state[-1][0].copy()))  # (a copy: with a guide it is a view of twice the rows)
    out = [Decoded(out_ids[j], out_probs[j], out_pieces[j], finished[j], float(logprob[j]), float(lm_logprob[j]))
           for j in range(B)]
    if keep_states and ended:
        _keep_states(decoder, vocab, out, tops, ended)
    return out


def _keep_states(decoder: LMDecoder, vocab: Vocab, out: list[Decoded], tops: list[tuple[np.ndarray, np.ndarray]],
                 ended: dict[int, LayerStates]) -> None:
    """Fill `states` of the rows that ended on <eot>: their top states after each step, then after <eot>."""
    rows = list(ended)
    layers = zip(*(ended[j] for j in rows))
    state = [(np.concatenate([h for h, _ in layer]), np.concatenate([c for _, c in layer])) for layer in layers]
    _, state = step_rows(decoder, np.full(len(rows), vocab.eot_id), state)
    steps: dict[int, list[np.ndarray]] = {j: [] for j in rows}
    for active, top in tops:
        for k, j in enumerate(active.tolist()):
            if j in steps:
                steps[j].append(top[k])
    for k, j in enumerate(rows):
        out[j].states = np.stack([*steps[j], state[-1][0][k]])
