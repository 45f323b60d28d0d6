"""The NumPy LSTM equals torch.nn.LSTM on the same weights: outputs, final state and all gradients."""

import numpy as np
import pytest

from rnnchat.nn import LSTM

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.optional


def to_torch_gate_order(w: np.ndarray, H: int) -> np.ndarray:
    """rnnchat's i|f|o|g columns -> PyTorch's i|f|g|o rows."""
    i, f, o, g = (w[..., k * H:(k + 1) * H] for k in range(4))
    return np.concatenate([i, f, g, o], axis=-1)


def from_torch_gate_order(w: np.ndarray, H: int) -> np.ndarray:
    i, f, g, o = (w[..., k * H:(k + 1) * H] for k in range(4))
    return np.concatenate([i, f, o, g], axis=-1)


def rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("stateful", [False, True])
def test_lstm_matches_torch(stateful):
    N, T, D, H = 3, 7, 5, 6
    rng = np.random.default_rng(0)
    ours = LSTM(D, H, rng=rng, dtype=np.float64, stateful=stateful)
    ref = torch.nn.LSTM(D, H, batch_first=True).double()
    with torch.no_grad():
        ref.weight_ih_l0.copy_(torch.from_numpy(to_torch_gate_order(ours.params["Wx"], H).T.copy()))
        ref.weight_hh_l0.copy_(torch.from_numpy(to_torch_gate_order(ours.params["Wh"], H).T.copy()))
        ref.bias_ih_l0.copy_(torch.from_numpy(to_torch_gate_order(ours.params["b"], H)))
        ref.bias_hh_l0.zero_()
    x = rng.standard_normal((N, T, D))
    h0, c0 = rng.standard_normal((N, H)), rng.standard_normal((N, H))
    if stateful:
        ours.state = (h0, c0)
    hs = ours.forward(x, state=None if stateful else (h0, c0))
    xt = torch.from_numpy(x).requires_grad_()
    h0t, c0t = (torch.from_numpy(s[None].copy()).requires_grad_() for s in (h0, c0))
    hst, (hT, cT) = ref(xt, (h0t, c0t))
    assert rel(hs, hst.detach().numpy()) < 1e-5
    dh = rng.standard_normal(hs.shape)
    hst.backward(torch.from_numpy(dh))
    dx = ours.backward(dh)
    assert rel(dx, xt.grad.numpy()) < 1e-5
    assert rel(ours.grads["Wx"], from_torch_gate_order(ref.weight_ih_l0.grad.numpy().T, H)) < 1e-5
    assert rel(ours.grads["Wh"], from_torch_gate_order(ref.weight_hh_l0.grad.numpy().T, H)) < 1e-5
    assert rel(ours.grads["b"], from_torch_gate_order(ref.bias_ih_l0.grad.numpy(), H)) < 1e-5
    assert rel(ours.dstate[0], h0t.grad.numpy()[0]) < 1e-5
    assert rel(ours.dstate[1], c0t.grad.numpy()[0]) < 1e-5
    if stateful:
        assert rel(ours.state[0], hT.detach().numpy()[0]) < 1e-5
        assert rel(ours.state[1], cT.detach().numpy()[0]) < 1e-5


def test_lstm_float32_matches_torch():
    """The float32 production path agrees with torch to float32 precision."""
    N, T, D, H = 8, 20, 32, 64
    rng = np.random.default_rng(1)
    ours = LSTM(D, H, rng=rng)
    ref = torch.nn.LSTM(D, H, batch_first=True)
    with torch.no_grad():
        ref.weight_ih_l0.copy_(torch.from_numpy(to_torch_gate_order(ours.params["Wx"], H).T.copy()))
        ref.weight_hh_l0.copy_(torch.from_numpy(to_torch_gate_order(ours.params["Wh"], H).T.copy()))
        ref.bias_ih_l0.copy_(torch.from_numpy(to_torch_gate_order(ours.params["b"], H)))
        ref.bias_hh_l0.zero_()
    x = rng.standard_normal((N, T, D)).astype(np.float32)
    hs = ours.forward(x)
    hst, _ = ref(torch.from_numpy(x))
    assert rel(hs, hst.detach().numpy()) < 1e-4
