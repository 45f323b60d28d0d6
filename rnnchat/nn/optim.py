"""Parameters with shared (tied) weights, optimizers (SGD with decay, Adam), global-norm clipping and the
Polyak average of the weights."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from rnnchat.nn.layers import Layer
from rnnchat.nn.parallel import blocked


class ParamSet:
    """The unique parameters of named layers, with their gradients.

    A weight shared by several layers (the tied embedding / output matrix) is recognised by identity
    (`is`, never by value) and appears once; its gradient is the sum of its owners' gradients, summed once
    per `grads()` call into a reused buffer.
    """

    def __init__(self, layers: Iterable[tuple[str, Layer]]):
        self.names: list[str] = []
        self.params: list[np.ndarray] = []
        self._owners: list[list[tuple[Layer, str]]] = []
        index: dict[int, int] = {}
        for lname, layer in layers:
            for key, p in layer.params.items():
                i = index.get(id(p))
                if i is None:
                    index[id(p)] = len(self.params)
                    self.names.append(f"{lname}.{key}")
                    self.params.append(p)
                    self._owners.append([(layer, key)])
                else:
                    self._owners[i].append((layer, key))
        self._sum_bufs: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.params)

    def named(self) -> dict[str, np.ndarray]:
        return dict(zip(self.names, self.params))

    def grads(self) -> list[np.ndarray]:
        out = []
        for i, owners in enumerate(self._owners):
            if len(owners) == 1:
                layer, key = owners[0]
                out.append(layer.grads[key])
                continue
            buf = self._sum_bufs.setdefault(i, np.empty_like(self.params[i]))
            (l0, k0), (l1, k1) = owners[:2]
            np.add(l0.grads[k0], l1.grads[k1], out=buf)
            for layer, key in owners[2:]:
                buf += layer.grads[key]
            out.append(buf)
        return out

    def load(self, arrays: dict[str, np.ndarray]) -> None:
        """Copy arrays into the parameters in place (shapes must match), so ties stay intact."""
        for name, p in zip(self.names, self.params):
            np.copyto(p, arrays[name].astype(p.dtype, copy=False))


def clip_grad_norm(grads: list[np.ndarray], max_norm: float) -> float:
    """Scale grads in place so their global L2 norm is at most max_norm; returns the norm before clipping."""
    total = float(np.sqrt(sum(float(np.vdot(g, g)) for g in grads)))
    if max_norm > 0 and total > max_norm:
        scale = max_norm / (total + 1e-6)
        for g in grads:
            g *= scale
    return total


class Adam:
    """Adam (Kingma & Ba) with bias correction, updating parameters in place."""

    def __init__(self, params: list[np.ndarray], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        if not all(p.flags.c_contiguous for p in params):
            raise ValueError("Adam updates parameters in place: they must be C-contiguous")
        self.params, self.lr, self.betas, self.eps = params, lr, betas, eps
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self._tmp = [np.empty_like(p) for p in params]
        self.step_count = 0

    def step(self, grads: list[np.ndarray]) -> None:
        self.step_count += 1
        b1, b2 = self.betas
        t = self.step_count
        lr_t = self.lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        eps_t = self.eps * np.sqrt(1 - b2 ** t)  # same as eps added to the bias-corrected sqrt(v)
        for arrays in zip(self.params, grads, self.m, self.v, self._tmp):
            p, g, m, v, tmp = (a.reshape(-1) for a in arrays)  # params, moments and tmp are contiguous

            def update(lo: int, hi: int) -> None:  # one cache-sized block, every pass in cache
                gb, mb, vb, tb = g[lo:hi], m[lo:hi], v[lo:hi], tmp[lo:hi]
                np.subtract(gb, mb, out=tb)  # m += (1 - b1) (g - m)
                tb *= 1 - b1
                mb += tb
                np.multiply(gb, gb, out=tb)  # v += (1 - b2) (g^2 - v)
                tb -= vb
                tb *= 1 - b2
                vb += tb
                np.sqrt(vb, out=tb)
                tb += eps_t
                np.divide(mb, tb, out=tb)
                tb *= lr_t
                p[lo:hi] -= tb

            blocked(update, p.size, 1 << 16)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Moment arrays (lr and step_count are plain attributes, saved by the caller)."""
        return {f"m{i}": m for i, m in enumerate(self.m)} | {f"v{i}": v for i, v in enumerate(self.v)}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        for i in range(len(self.params)):
            np.copyto(self.m[i], state[f"m{i}"])
            np.copyto(self.v[i], state[f"v{i}"])


def swap_arrays(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    """Exchange the contents of two lists of same-shaped arrays in place (averaged <-> live weights)."""
    for x, y in zip(a, b):
        tmp = x.copy()
        np.copyto(x, y)
        np.copyto(y, tmp)


class ParamAverage:
    """The running uniform (Polyak) average of parameters over the steps since averaging began.

    Averaging the iterates is the "A" of AWD-LSTM's NT-ASGD; here it follows any optimiser's step (an averaged
    Adam). `update()` after each step; `swap()` puts the averaged weights into the parameters for a while
    (to validate or save them) and restores the live ones after.
    """

    def __init__(self, params: list[np.ndarray]):
        self.params = params
        self.avg = [p.copy() for p in params]
        self.count = 0

    def update(self) -> None:
        self.count += 1
        if self.count == 1:
            for a, p in zip(self.avg, self.params):
                np.copyto(a, p)
            return
        w = 1.0 / self.count
        for a, p in zip(self.avg, self.params):
            a += w * (p - a)

    def swap(self) -> None:
        """Exchange the live and averaged weights in place (a second call swaps them back)."""
        swap_arrays(self.avg, self.params)

    def state_dict(self) -> dict[str, np.ndarray]:
        return {f"a{i}": a for i, a in enumerate(self.avg)}

    def load_state_dict(self, state: dict[str, np.ndarray], count: int) -> None:
        for i, a in enumerate(self.avg):
            np.copyto(a, state[f"a{i}"])
        self.count = count
