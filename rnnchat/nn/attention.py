"""Attention of decoder states over encoder states (Luong dot-product or "general" bilinear score)."""

from __future__ import annotations

import numpy as np

from rnnchat.nn.layers import Layer, uniform_init


class Attention(Layer):
    """context_t = sum_s a_ts * enc_s, with a_t = softmax_s(score(dec_t, enc_s)) over unmasked s.

    score = dec . enc ("dot") or dec W enc ("general"). `forward` returns (context (N, Tq, H), weights
    (N, Tq, Tk)); the weights are kept in `self.weights` for inspection.
    """

    def __init__(self, hidden: int, score: str = "dot", *, rng: np.random.Generator | None = None,
                 dtype=np.float32):
        if score not in ("dot", "general"):
            raise ValueError(f"attention score must be 'dot' or 'general', got {score!r}")
        self.score = score
        self.params = {}
        if score == "general":
            if rng is None:
                raise ValueError("general attention needs an rng to initialise W")
            self.params["W"] = uniform_init(rng, (hidden, hidden), 1.0 / np.sqrt(hidden), dtype)
        self._init_grads()
        self.weights: np.ndarray | None = None

    def forward(self, dec: np.ndarray, enc: np.ndarray, enc_mask: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        keys = enc @ self.params["W"].T if self.score == "general" else enc  # dec W enc = dec . (enc W^T)
        scores = dec @ keys.transpose(0, 2, 1)  # (N, Tq, Tk)
        if enc_mask is not None:
            scores = np.where(enc_mask[:, None, :] > 0, scores, -np.inf)
        scores -= scores.max(axis=-1, keepdims=True)
        w = np.exp(scores)
        w /= w.sum(axis=-1, keepdims=True)
        self._dec, self._enc, self._keys, self.weights = dec, enc, keys, w
        return w @ enc, w

    def backward(self, dctx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Returns (d dec, d enc)."""
        w, enc, keys, dec = self.weights, self._enc, self._keys, self._dec
        denc = w.transpose(0, 2, 1) @ dctx
        dw = dctx @ enc.transpose(0, 2, 1)
        dscores = w * (dw - (dw * w).sum(axis=-1, keepdims=True))
        ddec = dscores @ keys
        dkeys = dscores.transpose(0, 2, 1) @ dec
        if self.score == "general":
            W = self.params["W"]
            H = W.shape[0]
            self.grads["W"] = dkeys.reshape(-1, H).T @ enc.reshape(-1, H)
            denc += dkeys @ W
        else:
            denc += dkeys
        return ddec, denc
