"""Quasi-recurrent layer (QRNN, Bradbury et al. 2016, "Quasi-Recurrent Neural Networks"), window k, fo-pooling.

Every gate reads the inputs only, never the previous hidden state:

    z|f|o = [x_t, x_{t-1}, ..., x_{t-k+1}] @ W + b    (one product for all steps: W is (kD, 3H))
    z = tanh(.), f = sigmoid(.), o = sigmoid(.)
    c_t = f_t * c_{t-1} + (1 - f_t) * z_t             (element-wise: the only sequential part)
    h_t = o_t * c_t

Why: a step is a few element-wise operations on H numbers, no matrix product, so re-running the rest of a
text after an edit in its middle costs microseconds per token (the live sentiment's 1 ms budget), and each
token's gate pre-activations are a sum of one term per token of the window, so a caller can keep those terms
per token id (`rnnchat.models.sentiment_qrnn`).

State: (the previous k - 1 inputs (N, k - 1, D), the oldest first; c (N, H)); the zero state is zeros (the
tokens before the first are zero vectors).
Masks: `mask` (N, T) marks real steps with 1 (right padding): at a padded step c and h are carried.
Batch-major (N, T, ...) in and out, time-major inside, as `rnnchat.nn.recurrent`'s layers.
"""

from __future__ import annotations

import numpy as np

from rnnchat.nn.layers import Layer, uniform_init


def activate(A: np.ndarray) -> np.ndarray:
    """Gate pre-activations (..., 3H) -> z|f|o in place: tanh, sigmoid, sigmoid (element-wise, so the same
    numbers for an element wherever it lies in the array: the live path activates windows in other batches)."""
    H = A.shape[-1] // 3
    np.tanh(A[..., :H], out=A[..., :H])
    s = A[..., H:]
    s *= 0.5  # sigmoid via tanh, as rnnchat.nn.recurrent computes it
    np.tanh(s, out=s)
    s *= 0.5
    s += 0.5
    return A


def qrnn_scan(A: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Gate pre-activations A (T, ..., 3H) (overwritten by z|f|o) from the state c (..., H) -> c for every
    step (T, ..., H)."""
    H = A.shape[-1] // 3
    activate(A)
    z, f = A[..., :H], A[..., H:2 * H]
    g = (1 - f) * z  # the new content, for all steps at once
    cs = np.empty(A.shape[:-1] + (H,), A.dtype)
    for t in range(len(A)):
        np.multiply(f[t], c, out=cs[t])
        cs[t] += g[t]
        c = cs[t]
    return cs


class QRNN(Layer):
    """A QRNN layer of window k with fo-pooling (see the module docstring). Gate column order z|f|o; rows of W:
    the current input's D, then the previous one's, and so on."""

    def __init__(self, d_in: int, hidden: int, *, window: int = 2, rng: np.random.Generator | None,
                 dtype=np.float32):
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.d_in, self.hidden, self.window, self.dtype = d_in, hidden, window, np.dtype(dtype)
        scale = 1.0 / np.sqrt(d_in)
        self.params = {"W": uniform_init(rng, (window * d_in, 3 * hidden), scale, dtype),
                       "b": uniform_init(rng, (3 * hidden,), scale, dtype)}
        self._init_grads()

    def zero_state(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros((n, self.window - 1, self.d_in), self.dtype), np.zeros((n, self.hidden), self.dtype)

    def weight(self, j: int) -> np.ndarray:
        """The rows of W that read the input j steps back (D, 3H)."""
        return self.params["W"][j * self.d_in:(j + 1) * self.d_in]

    def forward(self, x: np.ndarray, mask: np.ndarray | None = None,
                state: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """x (N, T, D) -> h (N, T, H); `final_state` holds (the last k - 1 real inputs, c) after the last step."""
        N, T, D = x.shape
        k, H = self.window, self.hidden
        before, c0 = self.zero_state(N) if state is None else state
        xt = np.ascontiguousarray(x.transpose(1, 0, 2), dtype=self.dtype)  # (T, N, D)
        full = np.concatenate([before.transpose(1, 0, 2).astype(self.dtype), xt])  # (k - 1 + T, N, D)
        shifted = [full[k - 1 - j:k - 1 - j + T] for j in range(k)]  # [j]: each step's input j steps back
        A = np.empty((T, N, 3 * H), self.dtype)
        A[:] = self.params["b"]
        for j, s in enumerate(shifted):
            A += s @ self.weight(j)
        m = None if mask is None else np.ascontiguousarray(mask.T[:, :, None], dtype=self.dtype)  # (T, N, 1)
        if m is not None:  # a padded step keeps c: forget gate 1, no new content
            A[..., H:2 * H] = np.where(m > 0, A[..., H:2 * H], np.inf)
        c0 = c0.astype(self.dtype, copy=False)
        cs = qrnn_scan(A, c0)
        o = A[..., 2 * H:]
        hs = o * cs
        if m is not None and T:  # a padded step emits the state it carries, the last real step's h (none: 0)
            hs[0] = np.where(m[0] > 0, hs[0], 0)
            for t in range(1, T):
                hs[t] = np.where(m[t] > 0, hs[t], hs[t - 1])
        self._shifted, self._A, self._cs, self._c0, self._m = shifted, A, cs, c0, m
        real = mask.sum(axis=1).astype(np.int64) if mask is not None else np.full(N, T)  # each row's real steps
        self.final_state = (full[real[:, None] + np.arange(k - 1), np.arange(N)[:, None]], cs[-1] if T else c0)
        return hs.transpose(1, 0, 2)

    def backward(self, dhs: np.ndarray) -> np.ndarray:
        """dhs (N, T, H) -> dx (N, T, D); fills grads. (The initial state's gradient is not needed here.)"""
        dh = dhs.transpose(1, 0, 2).astype(self.dtype, order="C")  # (T, N, H), a copy: the caller's stays
        T, N, H = dh.shape
        A, cs, m = self._A, self._cs, self._m
        z, f, o = A[..., :H], A[..., H:2 * H], A[..., 2 * H:]
        if m is not None:  # a padded step's output is the previous step's: pass its gradient back
            for t in reversed(range(1, T)):
                dh[t - 1] += dh[t] * (1 - m[t])
                dh[t] *= m[t]
            if T:
                dh[0] *= m[0]
        dA = np.empty_like(A)
        dz, df, do = dA[..., :H], dA[..., H:2 * H], dA[..., 2 * H:]
        np.multiply(dh, cs, out=do)
        do *= o * (1 - o)
        dc_all = dh * o  # the outputs' gradient w.r.t. each c_t, then the recurrence back in time
        dc = np.zeros((N, H), self.dtype)
        for t in reversed(range(T)):
            dc += dc_all[t]
            c_prev = cs[t - 1] if t else self._c0
            np.multiply(dc, c_prev - z[t], out=df[t])
            np.multiply(dc, 1 - f[t], out=dz[t])
            dc *= f[t]  # (a padded step: f = 1, so dc passes unchanged and its gates get 0)
        df *= f * (1 - f)
        dz *= 1 - z * z
        D = self.d_in
        dA2 = dA.reshape(T * N, 3 * H)
        self.grads["W"] = np.concatenate([s.reshape(T * N, D).T @ dA2 for s in self._shifted])
        self.grads["b"] = dA2.sum(axis=0)
        dx = np.zeros((T, N, D), self.dtype)
        for j in range(min(self.window, T)):  # x_t is also the input j steps back of step t + j
            dx[:T - j] += (dA2 @ self.weight(j).T).reshape(T, N, D)[j:]
        return dx.transpose(1, 0, 2)
