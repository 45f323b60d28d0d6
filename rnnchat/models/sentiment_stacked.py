"""The live path of LSTM sentiment members: M alike members (M may be 1) stepped together.

Members of one shape (embedding, hidden size, layers, pooling; seeds and weights differ) are stacked into
(M, ...) arrays, so a step of all M members is one batched product per weight matrix and one pass of each
element-wise operation, instead of M of each: at these sizes each NumPy call costs about as much as its
arithmetic, so this is ~M times fewer calls per token (a mid-text edit re-runs every token after it). A single
`SentimentModel` runs live as a stack of one. The result equals the batched `predict` up to float rounding.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rnnchat.models.sentiment_result import mean_in_order, softmax
from rnnchat.models.sentiment_segments import join_states


# The stacked live state: per layer (h, c) as (M, H), the running max and sum (M, H) and the token count.
StackedState = tuple[tuple[tuple[np.ndarray, np.ndarray], ...], np.ndarray, np.ndarray, int]


class StackedMembers:
    """Frozen copies of M alike members' weights as (M, ...) arrays, stepped together.

    The sigmoid gates' columns of the copies are pre-scaled by 1/2 (exact in floating point), so one tanh
    over all 4H pre-activations gives tanh(z/2) for i|f|o (sigmoid(z) = tanh(z/2)/2 + 1/2) and tanh(z) for g:
    fewer NumPy calls per token, which is what a step costs at these sizes.
    """

    def __init__(self, members: list):
        c = members[0].config
        self.H, self.layers, self.pools, self.M = c.hidden, c.layers, c.pools, len(members)
        self.dtype = members[0].dtype
        half = np.ones(4 * c.hidden, self.dtype)
        half[:3 * c.hidden] = 0.5
        shift = np.zeros(4 * c.hidden, self.dtype)
        shift[:3 * c.hidden] = 0.5
        self.gate_scale, self.gate_shift = half, shift  # tanh(z/2) / 2 + 1/2 = sigmoid(z) on i|f|o; g as it is
        self.E = [m.embed.params["W"] for m in members]  # looked up per member: no copy of the big tables
        self.members = members if c.subwords else None  # then each member composes its input vectors
        self.Wx = [np.stack([m.cells[i].params["Wx"] for m in members]) * half for i in range(c.layers)]
        self.Wh = [np.stack([m.cells[i].params["Wh"] for m in members]) * half for i in range(c.layers)]
        self.b = [np.stack([m.cells[i].params["b"] for m in members])[:, None] * half for i in range(c.layers)]
        # both heads in one product: (M, F, 3 class logits + 1 score)
        self.head_W = np.stack([np.concatenate([m.cls.params["W"], m.score.params["W"]], axis=1) for m in members])
        self.head_b = np.stack([np.concatenate([m.cls.params["b"], m.score.params["b"]]) for m in members])

    @staticmethod
    def alike(members: list) -> bool:
        keys = ("vocab_size", "embed", "hidden", "layers", "pool", "lexicon", "subwords", "cell")
        same = len({tuple(getattr(m.config, k) for k in keys) for m in members}) == 1
        return same and members[0].config.cell == "lstm"

    def zero_state(self) -> StackedState:
        M, H = self.M, self.H
        layers = tuple((np.zeros((M, H), self.dtype), np.zeros((M, H), self.dtype)) for _ in range(self.layers))
        return layers, np.full((M, H), -np.inf, self.dtype), np.zeros((M, H), self.dtype), 0

    def advance(self, state: StackedState, token_id: int) -> StackedState:
        return self.steps(state, [token_id])[-1]

    def steps(self, state: StackedState, ids: Sequence[int]) -> list[StackedState]:
        """The states after each of `ids` (pure). Each layer's input products run in one call for all the
        tokens, a one-row product per token, so every token's numbers are the same however the tokens are
        split into calls (OpenBLAS rounds a row of a many-row product by its row count for some sizes)."""
        layers, mx, sm, k = state
        H, T, M = self.H, len(ids), self.M
        if not T:
            return []
        x = np.empty((M, T, self.E[0].shape[1]), self.dtype)
        words, bags = ids, None
        if self.members is not None:  # the members share one reader: the run's n-gram rows are found once
            reader, run = self.members[0].reader, np.asarray(ids, np.int64)
            words, (where, *bags) = reader.words(run), reader.distinct_bags(run)
        for i, E in enumerate(self.E):
            np.take(E, words, axis=0, out=x[i])
            if bags is not None:
                x[i] += self.members[i].ngrams.lookup(*bags)[where]  # as SentimentModel.vectors adds them
        hs_all, cs_all = [], []
        for Wx, Wh, b, (h, c) in zip(self.Wx, self.Wh, self.b, layers):
            A = np.matmul(x[:, :, None], Wx[:, None])[:, :, 0]  # (M, T, 4H): each step's input product
            A += b
            A = np.ascontiguousarray(A.transpose(1, 0, 2))  # (T, M, 4H): each step's slab contiguous
            hs, cs = [], []  # one (M, H) array per step: a kept state holds only its own
            rec = np.empty((M, 1, 4 * H), self.dtype)
            for t in range(T):
                a = A[t]
                np.matmul(h[:, None], Wh, out=rec)
                a += rec[:, 0]
                np.tanh(a, out=a)  # tanh(z/2) on i|f|o, tanh(z) on g
                a *= self.gate_scale  # whole contiguous rows: cheaper than the strided i|f|o slices
                a += self.gate_shift
                c = a[:, H:2 * H] * c
                c += a[:, :H] * a[:, 3 * H:]
                h = np.tanh(c)
                h *= a[:, 2 * H:3 * H]
                hs.append(h)
                cs.append(c)
            hs_all.append(hs)
            cs_all.append(cs)
            if len(hs_all) < self.layers:
                x = np.stack(hs, axis=1)  # (M, T, H): the next layer's input
        out = []
        for t, top in enumerate(hs_all[-1]):  # the running pools, token by token (as the batch sums them)
            mx = np.maximum(mx, top)
            sm = sm + top
            out.append((tuple((hs[t], cs[t]) for hs, cs in zip(hs_all, cs_all)), mx, sm, k + t + 1))
        return out

    def advance_many(self, state: StackedState, ids: Sequence[int], chunk: int = 1024) -> StackedState:
        """The state after all of `ids`, `chunk` tokens at a time (memory bounded for texts of any length)."""
        for start in range(0, len(ids), chunk):
            state = self.steps(state, ids[start:start + chunk])[-1]
        return state

    join = staticmethod(join_states)  # the same arithmetic on (M, H) arrays

    def readout(self, state: StackedState) -> tuple[np.ndarray, float]:
        layers, mx, sm, k = state
        feats = {"last": layers[-1][0], "max": mx if k else np.zeros_like(mx), "mean": sm / max(k, 1)}
        f = np.concatenate([feats[p] for p in self.pools], axis=1)[:, None]  # (M, 1, F)
        out = np.matmul(f, self.head_W)[:, 0] + self.head_b  # (M, 4)
        logits, scores = out[:, :3], np.tanh(out[:, 3])
        probs = softmax(logits.astype(np.float64))
        return mean_in_order(list(probs)), float(mean_in_order([np.float64(s) for s in scores]))
