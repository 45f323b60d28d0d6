"""The live path of QRNN sentiment members (config cell "qrnn", one layer): M alike members stepped together.

A QRNN's gate pre-activations at token t are b + sum over j < k of x_{t-j} @ W_j (W_j: the rows of W that
read the input j steps back), and each term P_j = x @ W_j depends on one token. They are kept per token id
(`GateRows`), and the activated gates of each window of k ids seen are kept too (`WindowGates`), so a run of
tokens costs one gather and the element-wise recurrence: no matrix product for a token seen before, and no
activation for a window seen before. That is what makes an edit in the middle of a text cheap: the rest of
the text is re-run in microseconds per token, where an LSTM runs a recurrent product per token per member.

Each token's rows are a product of their own (a stack of one-row products), so they are the same numbers
however many tokens arrive together (OpenBLAS rounds a row of a many-row product by the product's row count
for some sizes). The gathers, the scan and the pools are element-wise and sequential, so the states after a
text are the same bit for bit however it was split into runs. They equal the batched `forward` up to float
rounding.

State (stacked, M members): ((h (M, H), c (M, H), the previous k - 1 token ids, -1 before the first),), the
running max and sum of h (M, H), the token count: `StackedMembers`'s layout, with the window's ids.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from rnnchat.models.sentiment_result import mean_in_order, softmax
from rnnchat.models.sentiment_segments import join_states
from rnnchat.nn.qrnn import activate

QRNNState = tuple[tuple[tuple[np.ndarray, np.ndarray, tuple[int, ...]], ...], np.ndarray, np.ndarray, int]


class GateRows:
    """For M members: the terms P_j = x @ W_j (M, 3H) of each token id seen, one per window position j (the
    input j steps back); at most `limit` ids (then it starts over: a row is recomputed to the same numbers).
    Row 0 is zeros: the term of a position before the text's first token (id -1)."""

    def __init__(self, members: list, limit: int = 2048):
        self.members, self.limit = members, limit
        layer = members[0].cells[0]
        self.window = layer.window
        self.W = [[m.cells[0].weight(j) for m in members] for j in range(self.window)]  # [j][member]: (D, 3H)
        self.P = np.zeros((self.window, 1, len(members), 3 * layer.hidden), members[0].dtype)  # (k, rows, M, 3H)
        self.index: dict[int, int] = {}

    def rows(self, ids: Sequence[int]) -> np.ndarray:
        """The row of each of `ids` (-1: the zero row), computing the ids not held in one product per member."""
        missing = list(dict.fromkeys(i for i in ids if i >= 0 and i not in self.index))
        if len(self.index) + len(missing) > self.limit:
            self.index.clear()
            missing = list(dict.fromkeys(i for i in ids if i >= 0))
        if missing:
            self._add(missing)
        return np.fromiter((self.index[i] if i >= 0 else 0 for i in ids), np.int64, len(ids))

    def _add(self, ids: list[int]) -> None:
        n0 = len(self.index) + 1
        need = n0 + len(ids)
        if need > self.P.shape[1]:
            size = max(need, min(max(2 * self.P.shape[1], 64), self.limit + 1))  # (never past the limit's rows)
            grown = np.zeros((self.window, size) + self.P.shape[2:], self.P.dtype)
            grown[:, :n0] = self.P[:, :n0]
            self.P = grown
        for m, member in enumerate(self.members):
            x = member.vectors(ids)[:, None]  # (T, 1, D): one product per token, the same bits in any batch
            for j in range(self.window):
                self.P[j, n0:need, m] = np.matmul(x, self.W[j][m])[:, 0]
        for r, i in enumerate(ids, n0):
            self.index[i] = r


class WindowGates:
    """The activated gates f | (1 - f) z | o (M, 3H) of each window of k token ids seen (at most `limit`; then
    it starts over). An edit re-runs the rest of a text, but only the k windows around it are new: the others
    are gathered, so a re-run is one gather, the scan and the pools."""

    def __init__(self, gate_rows: GateRows, b: np.ndarray, limit: int = 4096):
        self.gate_rows, self.b, self.limit = gate_rows, b, limit
        self.G = np.zeros((64,) + b.shape, b.dtype)
        self.index: dict[tuple[int, ...], int] = {}

    def rows(self, windows: list[tuple[int, ...]]) -> list[int]:
        index = self.index
        try:
            return [index[w] for w in windows]  # the usual case: every window but the edited ones was seen
        except KeyError:
            pass
        missing = list(dict.fromkeys(w for w in windows if w not in index))
        if len(index) + len(missing) > self.limit:
            index.clear()
            missing = list(dict.fromkeys(windows))
        self._add(missing)
        return [index[w] for w in windows]

    def _add(self, windows: list[tuple[int, ...]]) -> None:
        k, n0 = len(windows[0]), len(self.index)
        if n0 + len(windows) > len(self.G):
            size = max(n0 + len(windows), min(2 * len(self.G), self.limit))
            grown = np.zeros((size,) + self.G.shape[1:], self.G.dtype)
            grown[:n0] = self.G[:n0]
            self.G = grown
        rows = self.gate_rows.rows([i for w in windows for i in w]).reshape(len(windows), k)  # oldest first
        P = self.gate_rows.P
        A = P[0, rows[:, k - 1]] + self.b  # the current token's term, then each earlier one's (element-wise)
        for j in range(1, k):
            A += P[j, rows[:, k - 1 - j]]
        H = A.shape[-1] // 3
        activate(A)
        z, f = A[..., :H], A[..., H:2 * H]
        self.G[n0:n0 + len(windows), ..., :H] = f
        self.G[n0:n0 + len(windows), ..., H:2 * H] = (1 - f) * z
        self.G[n0:n0 + len(windows), ..., 2 * H:] = A[..., 2 * H:]
        for r, w in enumerate(windows, n0):
            self.index[w] = r


class _Run:
    """One `steps` call's outputs: h and c per token (T, M, H), the ids (the window's earlier ones first), and the
    state it started from (its pools, token count)."""

    __slots__ = ("hs", "cs", "seq", "mx0", "sm0", "n0", "k")

    def __init__(self, hs, cs, seq, mx0, sm0, n0, k):
        self.hs, self.cs, self.seq, self.mx0, self.sm0, self.n0, self.k = hs, cs, seq, mx0, sm0, n0, k


class RunState:
    """The state after token t of a run, read as the tuple (layers, max, sum, count). Its pools are computed
    when first read: the live path keeps a state per token but reads few of them, and a running max and sum
    per token would cost two NumPy calls each. The sum is a left fold from the run's start (NumPy reduces the
    first axis row after row), so it is the same number however the text was split into runs."""

    __slots__ = ("run", "t", "_pools")

    def __init__(self, run: _Run, t: int):
        self.run, self.t, self._pools = run, t, None

    def __len__(self) -> int:
        return 4

    def __iter__(self):
        return iter((self[0], self[1], self[2], self[3]))

    def __getitem__(self, i: int):
        run, t = self.run, self.t
        if i == 0:
            return ((run.hs[t], run.cs[t], tuple(run.seq[t + 1:t + run.k])),)
        if i == 3:
            return run.n0 + t + 1
        if self._pools is None:
            upto = run.hs[:t + 1]
            self._pools = (np.maximum(run.mx0, upto.max(axis=0)),
                           np.add.reduce(np.concatenate([run.sm0[None], upto]), axis=0))
        return self._pools[i - 1]


def compact(state):
    """A live state that holds only its own numbers: a `RunState` read into arrays of its own (it keeps its
    whole run's arrays alive otherwise), inside any tuple of states (an ensemble's members); other states as
    they are. The live classifier compacts the states it keeps for long (every STRIDE-th, segment ends), so a
    pasted book stays in bounded memory."""
    if isinstance(state, RunState):
        ((h, c, window),), mx, sm, n = state
        return ((h.copy(), c.copy(), window),), mx, sm, n
    if isinstance(state, tuple) and any(isinstance(s, (RunState, tuple)) for s in state):
        return tuple(compact(s) for s in state)
    return state


class StackedQRNN:
    """M alike one-layer QRNN members (M may be 1) stepped together; the interface of `StackedMembers`."""

    def __init__(self, members: list):
        c = members[0].config
        if c.cell != "qrnn" or c.layers != 1:
            raise ValueError("the QRNN live path takes one-layer QRNN members")
        self.H, self.pools, self.M, self.dtype = c.hidden, c.pools, len(members), members[0].dtype
        self.gate_rows = GateRows(members)
        self.k = self.gate_rows.window
        self.windows = WindowGates(self.gate_rows, np.stack([m.cells[0].params["b"] for m in members]))
        self.lock = threading.Lock()
        self.head_W = np.stack([np.concatenate([m.cls.params["W"], m.score.params["W"]], axis=1) for m in members])
        self.head_b = np.stack([np.concatenate([m.cls.params["b"], m.score.params["b"]]) for m in members])

    @staticmethod
    def alike(members: list) -> bool:
        keys = ("vocab_size", "embed", "hidden", "layers", "pool", "lexicon", "subwords", "cell", "window")
        same = len({tuple(getattr(m.config, k) for k in keys) for m in members}) == 1
        return same and members[0].config.cell == "qrnn" and members[0].config.layers == 1

    def zero_state(self) -> QRNNState:
        z = np.zeros((self.M, self.H), self.dtype)
        return ((z, z, (-1,) * (self.k - 1)),), np.full((self.M, self.H), -np.inf, self.dtype), z, 0

    def advance(self, state: QRNNState, token_id: int) -> QRNNState:
        return self.steps(state, [token_id])[-1]

    def steps(self, state: QRNNState, ids: Sequence[int]) -> list[QRNNState]:
        """The states after each of `ids` (pure)."""
        ((h, c, before),), mx, sm, n = state
        T, k = len(ids), self.k
        if not T:
            return []
        seq = [*before, *(int(i) for i in ids)]  # the window's earlier ids, then the run's
        windows = list(zip(*(seq[j:j + T] for j in range(k))))
        with self.lock:  # the tables are shared: the app scores replies and the typed text in two threads
            rows = self.windows.rows(windows)  # (may grow the table: read it after)
            G = self.windows.G[rows]  # (T, M, 3H)
        H = self.H
        f, g = G[..., :H], G[..., H:2 * H]
        cs = np.empty((T, self.M, H), self.dtype)
        for t in range(T):  # c_t = f_t c_{t-1} + (1 - f_t) z_t
            c = np.multiply(f[t], c, out=cs[t])
            c += g[t]
        run = _Run(G[..., 2 * H:] * cs, cs, seq, mx, sm, n, k)
        return [RunState(run, t) for t in range(T)]

    def advance_many(self, state: QRNNState, ids: Sequence[int], chunk: int = 1024) -> QRNNState:
        """The state after all of `ids`, `chunk` tokens at a time (memory bounded for texts of any length)."""
        for start in range(0, len(ids), chunk):
            state = self.steps(state, ids[start:start + chunk])[-1]
        return state

    join = staticmethod(join_states)  # the segment's recurrent state, the pools over both

    def readout(self, state: QRNNState) -> tuple[np.ndarray, float]:
        ((h, _, _),), mx, sm, k = state
        feats = {"last": h, "max": mx if k else np.zeros_like(mx), "mean": sm / max(k, 1)}
        f = np.concatenate([feats[p] for p in self.pools], axis=1)[:, None]  # (M, 1, F)
        out = np.matmul(f, self.head_W)[:, 0] + self.head_b  # (M, 4)
        probs = softmax(out[:, :3].astype(np.float64))
        scores = np.tanh(out[:, 3]).astype(np.float64)
        return mean_in_order(list(probs)), float(mean_in_order(list(scores)))
