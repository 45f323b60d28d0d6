"""The QRNN layer: float64 gradient check (with and without padding), padding carries the state, the scan
equals the textbook recurrence, and a run split in two with the carried state equals the whole run."""

import numpy as np
import pytest

from rnnchat.nn.qrnn import QRNN
from tests.nn.test_gradients import check_layer

F64 = np.float64


def _layer(d=4, h=3, seed=0, window=2):
    layer = QRNN(d, h, window=window, rng=np.random.default_rng(seed), dtype=F64)
    layer.params["W"] *= 3  # gates away from 1/2, so a wrong term shows
    return layer


@pytest.mark.parametrize("window", [1, 2, 3])
def test_qrnn_gradients(window):
    layer = _layer(window=window)
    x = np.random.default_rng(1).standard_normal((2, 5, 4))
    check_layer(layer, x, lambda: layer.forward(x), lambda d: (layer.backward(d),))


@pytest.mark.parametrize("window", [2, 3])
def test_qrnn_gradients_with_padding(window):
    layer = _layer(seed=2, window=window)
    x = np.random.default_rng(3).standard_normal((3, 5, 4))
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [0, 0, 0, 0, 0]], F64)
    check_layer(layer, x, lambda: layer.forward(x, mask), lambda d: (layer.backward(d),))


@pytest.mark.parametrize("window", [1, 2, 3])
def test_qrnn_is_the_textbook_recurrence(window):
    layer = _layer(seed=4, window=window)
    x = np.random.default_rng(5).standard_normal((1, 6, 4))
    h = layer.forward(x)[0]
    W, b = layer.params["W"], layer.params["b"]
    sig = lambda v: 1 / (1 + np.exp(-v))
    c, padded = np.zeros(3), np.concatenate([np.zeros((window - 1, 4)), x[0]])
    for t in range(6):
        a = np.concatenate([padded[t + window - 1 - j] for j in range(window)]) @ W + b  # x_t, x_{t-1}, ...
        z, f, o = np.tanh(a[:3]), sig(a[3:6]), sig(a[6:])
        c = f * c + (1 - f) * z
        np.testing.assert_allclose(h[t], o * c, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("window", [1, 2, 3])
def test_padding_carries_the_state_and_a_split_run_equals_the_whole(window):
    layer = _layer(seed=6, window=window)
    x = np.random.default_rng(7).standard_normal((2, 7, 4))
    whole = layer.forward(x)
    x_last, c_last = layer.final_state
    padded = layer.forward(x, np.array([[1] * 7, [1] * 4 + [0] * 3], F64))
    np.testing.assert_allclose(padded[0], whole[0])
    np.testing.assert_allclose(padded[1, :4], whole[1, :4])
    np.testing.assert_allclose(padded[1, 4:], np.repeat(whole[1, 3:4], 3, axis=0))  # carried, not advanced
    np.testing.assert_allclose(layer.final_state[0][1], x[1, 4 - window + 1:4])  # the last real inputs
    first = layer.forward(x[:, :3])
    rest = layer.forward(x[:, 3:], state=layer.final_state)
    np.testing.assert_allclose(np.concatenate([first, rest], axis=1), whole, rtol=1e-12)
    np.testing.assert_allclose(layer.final_state[0], x_last)
    np.testing.assert_allclose(layer.final_state[1], c_last, rtol=1e-12)


def test_a_row_with_no_real_steps_emits_zeros_from_any_state():
    """An empty text in a batch (its first step padded) emits zeros at every step, whatever state it starts
    from: padding never carries the initial state's o * c out."""
    layer = _layer(seed=8, window=2)
    x = np.random.default_rng(9).standard_normal((2, 4, 4))
    state = (np.ones((2, 1, 4)), np.full((2, 3), 0.7))
    h = layer.forward(x, np.array([[1, 1, 1, 0], [0, 0, 0, 0]], F64), state=state)
    np.testing.assert_array_equal(h[1], 0)
    assert np.all(h[0] != 0)


def test_backward_leaves_the_callers_gradient_as_it_was():
    layer = _layer(seed=10)
    for shape in [(1, 5, 4), (3, 1, 4)]:
        x = np.random.default_rng(11).standard_normal(shape)
        mask = np.zeros(shape[:2])
        mask[0, 0] = 1
        dh = np.ones(layer.forward(x, mask).shape)
        layer.backward(dh)
        np.testing.assert_array_equal(dh, 1)
