"""Every layer's backward against central-difference numerical gradients in float64 (rel. error < 1e-6)."""

import numpy as np
import pytest

from rnnchat.nn import (GRU, LSTM, RNN, Attention, Bidirectional, Dropout, Embedding, EmbeddingBag, Linear,
                        SoftmaxCrossEntropy, Stack, TiedOutput)
from tests.nn.gradcheck import numerical_grad, rel_error

F64 = np.float64
TOL = 1e-6


def rng(seed=0):
    return np.random.default_rng(seed)


def check_layer(layer, x, run, backward, extra_inputs=()):
    """run() -> output; loss = sum(out * R). Checks every param and each array in (x, *extra_inputs)."""
    out = run()
    R = rng(99).standard_normal(out.shape)
    loss = lambda: float(np.sum(run() * R))
    run()
    dins = backward(R)
    for name, p in layer.params.items():
        num = numerical_grad(loss, p)
        assert rel_error(layer.grads[name], num) < TOL, name
    for arr, d in zip((x, *extra_inputs), dins):
        if arr is None:
            continue
        num = numerical_grad(loss, arr)
        assert rel_error(d, num) < TOL


def test_linear_over_time():
    layer = Linear(4, 3, rng=rng(), dtype=F64)
    layer.params["b"][:] = rng(1).standard_normal(3)
    x = rng(2).standard_normal((2, 5, 4))
    check_layer(layer, x, lambda: layer.forward(x), lambda d: (layer.backward(d),))


def test_embedding_accumulates_repeated_ids():
    emb = Embedding(6, 3, rng=rng(), dtype=F64)
    ids = np.array([[1, 2, 1], [1, 5, 0]])
    R = rng(3).standard_normal((2, 3, 3))
    loss = lambda: float(np.sum(emb.forward(ids) * R))
    emb.forward(ids)
    emb.backward(R)
    assert rel_error(emb.grads["W"], numerical_grad(loss, emb.params["W"])) < TOL
    np.testing.assert_allclose(emb.grads["W"][1], R[0, 0] + R[0, 2] + R[1, 0])
    assert not emb.grads["W"][3].any()


def test_embedding_bag_means_its_rows_and_sums_repeated_ids():
    bag = EmbeddingBag(6, 3, rng=rng(), dtype=F64)
    offsets, ids = np.array([0, 3, 3, 4, 6]), np.array([1, 2, 1, 5, 0, 5])  # bags [1 2 1] [] [5] [0 5]
    out = bag.forward(offsets, ids)
    W = bag.params["W"]
    np.testing.assert_allclose(out, [(2 * W[1] + W[2]) / 3, np.zeros(3), W[5], (W[0] + W[5]) / 2])
    R = rng(3).standard_normal((4, 3))
    loss = lambda: float(np.sum(bag.forward(offsets, ids) * R))
    bag.forward(offsets, ids)
    bag.backward(R)
    assert rel_error(bag.grads["W"], numerical_grad(loss, W)) < TOL
    np.testing.assert_allclose(bag.grads["W"][5], R[2] + R[3] / 2)
    assert not bag.grads["W"][3].any() and not bag.grads["W"][4].any()


def test_embedding_bag_of_empty_bags_only():
    bag = EmbeddingBag(4, 2, rng=rng(), dtype=F64)
    out = bag.forward(np.zeros(3, np.int64), np.zeros(0, np.int64))
    assert out.shape == (2, 2) and not out.any()
    bag.backward(np.ones((2, 2)))
    assert not bag.grads["W"].any()


def test_tied_output():
    emb = Embedding(7, 4, rng=rng(), dtype=F64)
    out = TiedOutput(emb)
    assert out.params["W"] is emb.params["W"]
    h = rng(4).standard_normal((2, 3, 4))
    check_layer(out, h, lambda: out.forward(h), lambda d: (out.backward(d),))


def test_dropout_inverted_and_backward_uses_same_mask():
    d = Dropout(0.5, rng=rng())
    x = np.ones((200, 50))
    y = d.forward(x)
    assert set(np.unique(y)) <= {0.0, 2.0}
    assert abs(y.mean() - 1.0) < 0.05
    np.testing.assert_array_equal(d.backward(np.ones_like(x)), y)
    d.training = False
    assert d.forward(x) is x


@pytest.mark.parametrize("ignore", [None, 0])
def test_softmax_cross_entropy_with_ignore_mask(ignore):
    logits = rng(5).standard_normal((2, 4, 6))
    targets = np.array([[1, 0, 3, 5], [0, 0, 2, 4]])
    ce = SoftmaxCrossEntropy(ignore_index=ignore)
    loss = lambda: ce.forward(logits.copy(), targets)[0]
    _, count = ce.forward(logits.copy(), targets)
    assert count == (8 if ignore is None else 5)
    d = ce.backward()
    assert rel_error(d, numerical_grad(loss, logits)) < TOL
    if ignore == 0:
        assert not d[targets == 0].any()
    # value equals the naive definition
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    nll = -np.log(np.take_along_axis(p, targets[..., None], -1))[..., 0]
    keep = np.ones_like(targets, bool) if ignore is None else targets != 0
    assert abs(loss() - nll[keep].mean()) < 1e-12


RECURRENT = [RNN, LSTM, GRU]


def make(cls, d=3, h=4, seed=0, **kw):
    return cls(d, h, rng=rng(seed), dtype=F64, **kw)


def random_state(cls, n, h, seed=7):
    k = 2 if cls is LSTM else 1
    return tuple(rng(seed + i).standard_normal((n, h)) * 0.5 for i in range(k))


@pytest.mark.parametrize("cls", RECURRENT)
def test_recurrent_gradients(cls):
    layer = make(cls)
    x = rng(1).standard_normal((2, 5, 3))
    check_layer(layer, x, lambda: layer.forward(x), lambda d: (layer.backward(d),))


@pytest.mark.parametrize("cls", RECURRENT)
def test_recurrent_gradients_with_mask(cls):
    layer = make(cls)
    x = rng(1).standard_normal((3, 5, 3))
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], F64)
    check_layer(layer, x, lambda: layer.forward(x, mask), lambda d: (layer.backward(d),))


@pytest.mark.parametrize("cls", RECURRENT)
def test_recurrent_gradients_through_carried_state(cls):
    """Stateful carry: gradients w.r.t. the initial state and through the final state."""
    layer = make(cls, stateful=True)
    x = rng(1).standard_normal((2, 4, 3))
    s0 = random_state(cls, 2, 4)
    Rf = [rng(20 + i).standard_normal((2, 4)) for i in range(len(s0))]
    R = rng(30).standard_normal((2, 4, 4))

    def loss():
        layer.state = s0
        hs = layer.forward(x)
        return float(np.sum(hs * R) + sum(np.sum(s * r) for s, r in zip(layer.state, Rf)))

    layer.state = s0
    layer.forward(x)
    dx = layer.backward(R, dstate=tuple(Rf))
    for name, p in layer.params.items():
        assert rel_error(layer.grads[name], numerical_grad(loss, p)) < TOL, name
    assert rel_error(dx, numerical_grad(loss, x)) < TOL
    for s, ds in zip(s0, layer.dstate):
        assert rel_error(ds, numerical_grad(loss, s)) < TOL


@pytest.mark.parametrize("cls", RECURRENT)
def test_padded_batch_gives_unpadded_final_state(cls):
    layer = make(cls, d=3, h=5)
    seqs = [rng(i).standard_normal((L, 3)) for i, L in enumerate([6, 2, 4])]
    batch = np.zeros((3, 6, 3))
    mask = np.zeros((3, 6))
    for i, s in enumerate(seqs):
        batch[i, :len(s)] = s
        mask[i, :len(s)] = 1
    layer.stateful = True
    layer.forward(batch, mask)
    padded_final = layer.state
    for i, s in enumerate(seqs):
        layer.reset_state()
        layer.forward(s[None])
        assert len(layer.state) == len(padded_final) > 0
        for a, b in zip(layer.state, padded_final):
            np.testing.assert_allclose(a[0], b[i], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cls", RECURRENT)
def test_stateful_carry_equals_one_long_sequence(cls):
    layer = make(cls, stateful=True)
    x = rng(2).standard_normal((2, 7, 3))
    whole = layer.forward(x)
    layer.reset_state()
    parts = np.concatenate([layer.forward(x[:, :3]), layer.forward(x[:, 3:])], axis=1)
    np.testing.assert_allclose(parts, whole, rtol=1e-12)


@pytest.mark.parametrize("masked", [False, True])
def test_bidirectional_gradients(masked):
    bi = Bidirectional(make(LSTM, seed=1), make(LSTM, seed=2))
    x = rng(3).standard_normal((2, 4, 3))
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0]], F64) if masked else None
    out = bi.forward(x, mask)
    assert out.shape == (2, 4, 8)
    R = rng(4).standard_normal(out.shape)
    loss = lambda: float(np.sum(bi.forward(x, mask) * R))
    bi.forward(x, mask)
    dx = bi.backward(R)
    for name, p in bi.params.items():
        assert rel_error(bi.grads[name], numerical_grad(loss, p)) < TOL, name
    assert rel_error(dx, numerical_grad(loss, x)) < TOL


def test_bidirectional_backward_direction_starts_at_last_real_token():
    bi = Bidirectional(make(GRU, seed=1), make(GRU, seed=2))
    x = rng(3).standard_normal((1, 5, 3))
    padded = np.concatenate([x, np.zeros((1, 2, 3))], axis=1)
    mask = np.array([[1, 1, 1, 1, 1, 0, 0]], F64)
    np.testing.assert_allclose(bi.forward(padded, mask)[:, :5], bi.forward(x), rtol=1e-12)


def test_stack_with_dropout_gradients():
    stack = Stack([make(LSTM, 3, 4, seed=1), make(LSTM, 4, 4, seed=2)], dropout=0.3, rng=rng(5))
    x = rng(6).standard_normal((2, 3, 3))
    out = stack.forward(x)
    R = rng(7).standard_normal(out.shape)
    masks = [d._mask.copy() for d in stack.drops]

    def loss():  # same dropout masks on every evaluation
        h = stack.layers[0].forward(x)
        for m, layer in zip(masks, stack.layers[1:]):
            h = layer.forward(h * m)
        return float(np.sum(h * R))

    stack.forward(x)
    for d, m in zip(stack.drops, masks):
        d._mask = m
    h = stack.layers[0].forward(x)
    stack.layers[1].forward(h * masks[0])
    dx = stack.backward(R)
    for layer in stack.layers:
        for name, p in layer.params.items():
            assert rel_error(layer.grads[name], numerical_grad(loss, p)) < TOL, name
    assert rel_error(dx, numerical_grad(loss, x)) < TOL


@pytest.mark.parametrize("score", ["dot", "general"])
@pytest.mark.parametrize("masked", [False, True])
def test_attention_gradients(score, masked):
    att = Attention(4, score, rng=rng(), dtype=F64)
    dec = rng(1).standard_normal((2, 3, 4))
    enc = rng(2).standard_normal((2, 5, 4))
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], F64) if masked else None
    ctx, w = att.forward(dec, enc, mask)
    np.testing.assert_allclose(w.sum(-1), 1.0)
    if masked:
        assert not w[1, :, 3:].any()
    R = rng(3).standard_normal(ctx.shape)
    loss = lambda: float(np.sum(att.forward(dec, enc, mask)[0] * R))
    att.forward(dec, enc, mask)
    ddec, denc = att.backward(R)
    for name, p in att.params.items():
        assert rel_error(att.grads[name], numerical_grad(loss, p)) < TOL
    assert rel_error(ddec, numerical_grad(loss, dec)) < TOL
    assert rel_error(denc, numerical_grad(loss, enc)) < TOL
