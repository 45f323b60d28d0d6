"""Recurrent layers over whole sequences: tanh RNN, LSTM, GRU (wrappers: `rnnchat.nn.recurrent_wrappers`).

Inputs are batch-major (N, T, D); internally everything runs time-major (T, N, ...) so each step reads one
contiguous slab. The input projection for all T steps is a single matrix product; only the recurrent product
runs per step, into preallocated buffers. Backward accumulates the per-step gate gradients into one (T, N, G)
buffer and finishes with three large products (dx, dWx, dWh).

State: `state` is a tuple of (N, H) arrays ((h,) for RNN/GRU, (h, c) for LSTM). With `stateful=True` a
forward call starts from the stored state and leaves its final state there, so callers can carry state across
calls; `reset_state()` clears it; `forward(..., state=...)` overrides it for one call. After `backward`,
`dstate` holds the gradient w.r.t. the initial state of the last forward.

Masks: `mask` (N, T) marks real steps with 1 and padding with 0. At a padded step the state is carried
unchanged (and emitted as that step's output), so a padded batch ends in the same state as the unpadded
sequences.
"""

from __future__ import annotations

import numpy as np

from rnnchat.nn.layers import Layer, keep_mask, transposed, uniform_init


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """In place sigmoid via tanh (one transcendental, numerically safe for any x)."""
    x *= 0.5
    np.tanh(x, out=x)
    x *= 0.5
    x += 0.5
    return x


def lstm_cell(a: np.ndarray, c: np.ndarray, H: int) -> tuple[np.ndarray, np.ndarray]:
    """One inference step: gate pre-activations a (N, 4H) (overwritten) and c (N, H) -> new (h, c).

    Gate order i|f|o|g, as in `LSTM`. Pure apart from `a`, so decoders can call it from several threads.
    """
    _sigmoid(a[:, :3 * H])
    g = np.tanh(a[:, 3 * H:])
    c_new = a[:, H:2 * H] * c
    c_new += a[:, :H] * g
    return a[:, 2 * H:3 * H] * np.tanh(c_new), c_new


class Recurrent(Layer):
    """Common machinery: state handling, masks, time-major layout. Subclasses implement `_run` / `_back`."""

    n_state: int = 1  # number of (N, H) state arrays

    def __init__(self, d_in: int, hidden: int, gates: int, *, rng: np.random.Generator, dtype=np.float32,
                 stateful: bool = False):
        self.d_in, self.hidden, self.dtype = d_in, hidden, np.dtype(dtype)
        scale = 1.0 / np.sqrt(hidden)
        self.params = {
            "Wx": uniform_init(rng, (d_in, gates * hidden), scale, dtype),
            "Wh": uniform_init(rng, (hidden, gates * hidden), scale, dtype),
            "b": uniform_init(rng, (gates * hidden,), scale, dtype),
        }
        self.stateful = stateful
        self.state: tuple[np.ndarray, ...] | None = None
        self.dstate: tuple[np.ndarray, ...] | None = None

    def reset_state(self) -> None:
        self.state = None

    def zero_state(self, n: int) -> tuple[np.ndarray, ...]:
        return tuple(np.zeros((n, self.hidden), self.dtype) for _ in range(self.n_state))

    def forward(self, x: np.ndarray, mask: np.ndarray | None = None,
                state: tuple[np.ndarray, ...] | None = None) -> np.ndarray:
        N, T, _ = x.shape
        if state is None:
            state = self.state if self.stateful and self.state is not None else self.zero_state(N)
        if state[0].shape[0] != N:
            raise ValueError(f"state batch size {state[0].shape[0]} != input batch size {N}")
        self._state0 = tuple(s.astype(self.dtype, copy=False) for s in state)
        self._x = np.ascontiguousarray(x.transpose(1, 0, 2), dtype=self.dtype)  # (T, N, D)
        self._m = None if mask is None else np.ascontiguousarray(mask.T[:, :, None], dtype=self.dtype)
        final = self._run(T, N)
        self.final_state = final  # the state after the last step (also when not stateful)
        if self.stateful:
            self.state = tuple(s.copy() for s in final)
        return self._hs.transpose(1, 0, 2)

    def backward(self, dhs: np.ndarray, dstate: tuple[np.ndarray, ...] | None = None) -> np.ndarray:
        """dhs: (N, T, H) gradient of the outputs; dstate: optional gradient of the final state."""
        dhs_t = np.ascontiguousarray(dhs.transpose(1, 0, 2), dtype=self.dtype)
        dx = self._back(dhs_t, dstate)
        return dx.transpose(1, 0, 2)

    def _input_projection(self, T: int, N: int, gates: int, bias: bool = True) -> np.ndarray:
        xw = (self._x.reshape(T * N, self.d_in) @ self.params["Wx"]).reshape(T, N, gates * self.hidden)
        if bias:
            xw += self.params["b"]
        return xw

    def _weight_grads(self, dA: np.ndarray, h_prev: np.ndarray, db: np.ndarray | None = None) -> np.ndarray:
        """From gate pre-activation grads dA (T, N, G): dWx, dWh, db (unless given) and return dx (T, N, D)."""
        T, N, G = dA.shape
        dA2 = dA.reshape(T * N, G)
        self.grads["Wx"] = self._x.reshape(T * N, self.d_in).T @ dA2
        self.grads["Wh"] = h_prev.reshape(T * N, self.hidden).T @ dA2
        self.grads["b"] = dA2.sum(axis=0) if db is None else db
        return (dA2 @ self.params["Wx"].T).reshape(T, N, self.d_in)

    def _h_prev_stack(self) -> np.ndarray:
        """(T, N, H): the hidden state entering each step."""
        T = self._hs.shape[0]
        hp = np.empty_like(self._hs)
        hp[0] = self._state0[0]
        if T > 1:
            hp[1:] = self._hs[:-1]
        return hp


class RNN(Recurrent):
    """Vanilla tanh RNN: h_t = tanh(x_t Wx + h_{t-1} Wh + b)."""

    def __init__(self, d_in: int, hidden: int, **kw):
        super().__init__(d_in, hidden, 1, **kw)
        self._init_grads()

    def _run(self, T: int, N: int):
        A = self._input_projection(T, N, 1)  # becomes the new h candidates
        hs = np.empty((T, N, self.hidden), self.dtype)
        h = self._state0[0]
        Wh = self.params["Wh"]
        for t in range(T):
            a = A[t]
            a += h @ Wh
            np.tanh(a, out=a)
            if self._m is not None:
                a -= h
                a *= self._m[t]
                a += h
            hs[t] = a
            h = hs[t]
        self._A, self._hs = A, hs
        return (h,)

    def _back(self, dhs, dstate):
        T, N, H = dhs.shape
        dA = np.empty((T, N, H), self.dtype)
        dh_next = np.zeros((N, H), self.dtype) if dstate is None else dstate[0].astype(self.dtype)
        Wh_T = transposed(self.params["Wh"])  # row-major: the per-step dh product runs ~15% faster
        for t in reversed(range(T)):
            dh = dhs[t] + dh_next
            if self._m is not None:
                keep = dh * (1 - self._m[t])
                dh = dh * self._m[t]
            a = self._A[t]
            d = dA[t]
            np.multiply(a, a, out=d)
            np.subtract(1, d, out=d)
            d *= dh
            dh_next = d @ Wh_T
            if self._m is not None:
                dh_next += keep
        self.dstate = (dh_next,)
        return self._weight_grads(dA, self._h_prev_stack())


class LSTM(Recurrent):
    """LSTM. Gate order in Wx, Wh, b columns: input i, forget f, output o, candidate g (i|f|o|g).

    (PyTorch orders them i|f|g|o; `rnnchat`'s order keeps the three sigmoid gates contiguous.)
    c_t = f*c_{t-1} + i*g,  h_t = o*tanh(c_t).

    weight_drop > 0 (with drop_rng) drops recurrent weights (DropConnect on Wh, Wan et al. 2013, the AWD-LSTM
    regulariser): in training, each forward call draws one mask over Wh and uses Wh * mask at
    every step; its gradient is masked the same way. Eval (training False) uses Wh as it is.
    """

    n_state = 2

    def __init__(self, d_in: int, hidden: int, *, weight_drop: float = 0.0,
                 drop_rng: np.random.Generator | None = None, **kw):
        super().__init__(d_in, hidden, 4, **kw)
        if not 0.0 <= weight_drop < 1.0 or (weight_drop and drop_rng is None):
            raise ValueError(f"weight_drop must be in [0, 1) with a drop_rng, got {weight_drop}")
        self.weight_drop, self.drop_rng = weight_drop, drop_rng
        self._wh_mask: np.ndarray | None = None
        self._init_grads()

    def _recurrent_weight(self) -> np.ndarray:
        """Wh for this forward call: masked when weight drop is on in training (the mask is kept for backward)."""
        Wh = self.params["Wh"]
        if not (self.training and self.weight_drop):
            self._wh_mask = None
            return Wh
        self._wh_mask = keep_mask(self.drop_rng, Wh.shape, self.weight_drop, Wh.dtype)
        return Wh * self._wh_mask

    def _run(self, T: int, N: int):
        H = self.hidden
        A = self._input_projection(T, N, 4, bias=False)  # gate activations, in place
        hs = np.empty((T, N, H), self.dtype)
        cs = np.empty((T, N, H), self.dtype)
        tcs = np.empty((T, N, H), self.dtype)
        rec = np.empty((N, 4 * H), self.dtype)
        tmp = np.empty((N, H), self.dtype)
        h, c = self._state0
        Wh, b = self._recurrent_weight(), self.params["b"]
        self._Wh_used = Wh
        m = self._m
        for t in range(T):
            a = A[t]
            np.dot(h, Wh, out=rec)
            rec += b  # the bias per step, while the slab is in cache (not as one more pass over A)
            a += rec
            _sigmoid(a[:, :3 * H])
            np.tanh(a[:, 3 * H:], out=a[:, 3 * H:])
            c_new, h_new = cs[t], hs[t]
            np.multiply(a[:, H:2 * H], c, out=c_new)
            np.multiply(a[:, :H], a[:, 3 * H:], out=tmp)
            c_new += tmp
            if m is not None:  # padded steps carry c
                c_new -= c
                c_new *= m[t]
                c_new += c
            np.tanh(c_new, out=tcs[t])
            np.multiply(a[:, 2 * H:3 * H], tcs[t], out=h_new)
            if m is not None:
                h_new -= h
                h_new *= m[t]
                h_new += h
            h, c = h_new, c_new
        self._A, self._hs, self._cs, self._tcs = A, hs, cs, tcs
        return (h, c)

    def _back(self, dhs, dstate):
        T, N, H = dhs.shape
        A, cs, tcs, m = self._A, self._cs, self._tcs, self._m
        dA = np.empty((T, N, 4 * H), self.dtype)
        if dstate is None:
            dh_next = np.zeros((N, H), self.dtype)
            dc_next = np.zeros((N, H), self.dtype)
        else:
            dh_next, dc_next = (s.astype(self.dtype, copy=True) for s in dstate)
        dh = np.empty((N, H), self.dtype)
        dc = np.empty((N, H), self.dtype)
        tmp = np.empty((N, H), self.dtype)
        tmp3 = np.empty((N, 3 * H), self.dtype)
        Wh_T = transposed(self._Wh_used)  # row-major: the per-step dh product runs ~15% faster
        c0 = self._state0[1]
        db = np.zeros(4 * H, self.dtype)
        for t in reversed(range(T)):
            a, d = A[t], dA[t]
            i, f, o, g = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
            di, df, do, dg = d[:, :H], d[:, H:2 * H], d[:, 2 * H:3 * H], d[:, 3 * H:]
            np.add(dhs[t], dh_next, out=dh)
            if m is not None:
                mt = m[t]
                carry_h = dh * (1 - mt)
                carry_c = dc_next * (1 - mt)
                dh *= mt
                dc_next *= mt
            tc = tcs[t]
            # do = dh * tanh(c) * o * (1 - o)
            np.multiply(dh, tc, out=do)
            # dc = dc_next + dh * o * (1 - tanh(c)^2)
            np.multiply(tc, tc, out=tmp)
            np.subtract(1, tmp, out=tmp)
            tmp *= o
            tmp *= dh
            np.add(dc_next, tmp, out=dc)
            c_prev = cs[t - 1] if t > 0 else c0
            np.multiply(dc, c_prev, out=df)
            np.multiply(dc, g, out=di)
            np.multiply(dc, i, out=dg)
            np.multiply(dc, f, out=dc_next)
            # sigmoid' = s(1-s) on i|f|o, tanh' = 1-g^2 on g
            s = a[:, :3 * H]
            ds = d[:, :3 * H]
            ds *= s
            np.multiply(ds, s, out=tmp3)
            ds -= tmp3
            np.multiply(g, g, out=tmp)
            np.subtract(1, tmp, out=tmp)
            dg *= tmp
            np.dot(d, Wh_T, out=dh_next)
            db += d.sum(axis=0)
            if m is not None:
                dh_next += carry_h
                dc_next += carry_c
        self.dstate = (dh_next, dc_next)
        dx = self._weight_grads(dA, self._h_prev_stack(), db)
        if self._wh_mask is not None:
            self.grads["Wh"] *= self._wh_mask
        return dx


class GRU(Recurrent):
    """GRU, PyTorch formulation. Gate order r|z|n; separate recurrent bias `bh`.

    r = s(x Wr + br + h Ur + bhr), z = s(...), n = tanh(x Wn + bn + r*(h Un + bhn)), h' = (1-z)*n + z*h.
    """

    def __init__(self, d_in: int, hidden: int, *, rng: np.random.Generator, dtype=np.float32, stateful=False):
        super().__init__(d_in, hidden, 3, rng=rng, dtype=dtype, stateful=stateful)
        self.params["bh"] = uniform_init(rng, (3 * hidden,), 1.0 / np.sqrt(hidden), dtype)
        self._init_grads()

    def _run(self, T: int, N: int):
        H = self.hidden
        A = self._input_projection(T, N, 3)  # r, z activations and n
        R = np.empty((T, N, 3 * H), self.dtype)  # recurrent products h Wh + bh
        hs = np.empty((T, N, H), self.dtype)
        h = self._state0[0]
        Wh, bh = self.params["Wh"], self.params["bh"]
        for t in range(T):
            a, r = A[t], R[t]
            np.dot(h, Wh, out=r)
            r += bh
            a[:, :2 * H] += r[:, :2 * H]
            _sigmoid(a[:, :2 * H])
            n = a[:, 2 * H:]
            n += a[:, :H] * r[:, 2 * H:]
            np.tanh(n, out=n)
            z = a[:, H:2 * H]
            h_new = hs[t]
            np.subtract(h, n, out=h_new)  # h' = n + z*(h - n)
            h_new *= z
            h_new += n
            if self._m is not None:
                h_new -= h
                h_new *= self._m[t]
                h_new += h
            h = h_new
        self._A, self._R, self._hs = A, R, hs
        return (h,)

    def _back(self, dhs, dstate):
        T, N, H = dhs.shape
        dA = np.empty((T, N, 3 * H), self.dtype)  # grads of x-side pre-activations
        dR = np.empty((T, N, 3 * H), self.dtype)  # grads of recurrent products (h Wh + bh)
        dh_next = np.zeros((N, H), self.dtype) if dstate is None else dstate[0].astype(self.dtype)
        Wh_T = transposed(self.params["Wh"])  # row-major: the per-step dh product runs ~15% faster
        hprev = self._h_prev_stack()
        for t in reversed(range(T)):
            a, r, d, dr = self._A[t], self._R[t], dA[t], dR[t]
            rg, z, n = a[:, :H], a[:, H:2 * H], a[:, 2 * H:]
            dh = dhs[t] + dh_next
            if self._m is not None:
                carry = dh * (1 - self._m[t])
                dh = dh * self._m[t]
            hp = hprev[t]
            dn = dh * (1 - z) * (1 - n * n)
            dz = dh * (hp - n) * z * (1 - z)
            dr_gate = dn * r[:, 2 * H:] * rg * (1 - rg)
            d[:, :H], d[:, H:2 * H], d[:, 2 * H:] = dr_gate, dz, dn
            dr[:, :2 * H] = d[:, :2 * H]
            dr[:, 2 * H:] = dn * rg
            dh_next = dh * z + dr @ Wh_T
            if self._m is not None:
                dh_next += carry
        self.dstate = (dh_next,)
        dx = self._weight_grads(dA, hprev)
        dR2 = dR.reshape(T * N, 3 * H)
        self.grads["Wh"] = hprev.reshape(T * N, H).T @ dR2
        self.grads["bh"] = dR2.sum(axis=0)
        return dx
