"""The language model: whole-model gradients with tied weights, state carry, checkpoint round trip."""

import numpy as np
import pytest

from rnnchat.models.lm import LanguageModel, LMConfig, LMRegularisation, lm_spec
from tests.nn.gradcheck import numerical_grad, rel_error


def tiny(dropout=0.0, seed=0):
    return LanguageModel(LMConfig(vocab_size=11, hidden=5, layers=2, dropout=dropout), seed=seed,
                         dtype=np.float64)


def test_tied_weight_appears_once_and_gets_summed_gradient():
    m = tiny()
    for p in m.params.params:  # larger weights: gradients well above finite-difference noise
        p *= 8
    assert m.out.params["W"] is m.embed.params["W"]
    assert m.params.names.count("embed.W") == 1 and "out.W" not in m.params.names
    assert set(m.params.names) == set(lm_spec(m.header_config()))
    ids = np.random.default_rng(1).integers(0, 11, (2, 6))
    x, y = ids[:, :-1], ids[:, 1:]

    def loss():
        m.reset_state()
        return m.loss(x, y)[0]

    m.reset_state()
    m.train_step(x, y)
    grads = dict(zip(m.params.names, m.params.grads()))
    np.testing.assert_allclose(grads["embed.W"], m.embed.grads["W"] + m.out.grads["W"])
    for name, p in m.params.named().items():
        assert rel_error(grads[name], numerical_grad(loss, p, eps=1e-5)) < 1e-6, name


def test_state_carry_equals_one_pass():
    m = tiny()
    ids = np.random.default_rng(2).integers(0, 11, (3, 9))
    whole = m.forward(ids)
    m.reset_state()
    parts = np.concatenate([m.forward(ids[:, :4]), m.forward(ids[:, 4:])], axis=1)
    np.testing.assert_allclose(parts, whole, rtol=1e-12)
    m.reset_state()
    assert m.state is None


def test_dropout_only_in_training():
    m = tiny(dropout=0.5)
    ids = np.random.default_rng(3).integers(0, 11, (2, 5))
    m.train(False)
    a = m.forward(ids)
    m.reset_state()
    b = m.forward(ids)
    np.testing.assert_array_equal(a, b)
    m.train(True)
    m.reset_state()
    assert not np.allclose(m.forward(ids), a)


def test_backward_refuses_batch_major_gradients():
    # forward() returns batch-major (N, T, V) logits but backward() works on the time-major (T*N, V) rows of
    # loss(); a batch-major gradient must be refused, not silently paired with the wrong hidden states
    m = tiny()
    ids = np.random.default_rng(4).integers(0, 11, (3, 5))
    logits = m.forward(ids)
    with pytest.raises(ValueError, match="time-major"):
        m.backward(np.ones_like(logits))
    m.reset_state()
    m.train_step(ids, ids)  # the supported path still works


def test_blocked_transpose_copies_exactly():
    from rnnchat.nn.layers import transposed
    a = np.random.default_rng(0).standard_normal((1000, 37)).astype(np.float32)  # 1000 rows: a short last block
    t = transposed(a, block=256)
    assert t.flags.c_contiguous and t.shape == (37, 1000)
    np.testing.assert_array_equal(t, a.T)


def test_gradients_with_every_awd_regulariser():
    """Locked dropout, weight drop, embedding dropout, AR and TAR: the masks are drawn from the model's RNG, so
    restoring its state before each evaluation gives the same masks; the objective is CE + AR + TAR."""
    reg = LMRegularisation(locked=True, weight_drop=0.4, embed_drop=0.3, ar=2.0, tar=1.0)
    m = LanguageModel(LMConfig(vocab_size=11, hidden=5, layers=2, dropout=0.3), seed=0, dtype=np.float64, reg=reg)
    for p in m.params.params:
        p *= 8
    ids = np.random.default_rng(1).integers(0, 11, (3, 7))
    x, y = ids[:, :-1], ids[:, 1:]
    rng_state = m.rng.bit_generator.state

    def objective():
        m.rng.bit_generator.state = rng_state
        m.reset_state()
        loss = m.loss(x, y)[0]
        return loss + m.regulariser_loss()

    objective()
    assert m.regulariser_loss() > 0
    assert m.drops[1]._mask.shape == (1, 3, 5)  # locked: one mask per sequence
    assert any(l._wh_mask is not None and (l._wh_mask == 0).any() for l in m.lstms)
    m.rng.bit_generator.state = rng_state
    m.reset_state()
    m.train_step(x, y)
    grads = dict(zip(m.params.names, m.params.grads()))
    for name, p in m.params.named().items():
        assert rel_error(grads[name], numerical_grad(objective, p, eps=1e-5)) < 1e-6, name


def test_regularisers_are_off_at_eval():
    reg = LMRegularisation(locked=True, weight_drop=0.5, embed_drop=0.5, ar=2.0, tar=1.0)
    m = LanguageModel(LMConfig(vocab_size=11, hidden=5, layers=2, dropout=0.5), seed=0, dtype=np.float64, reg=reg)
    plain = LanguageModel(LMConfig(vocab_size=11, hidden=5, layers=2, dropout=0.5), seed=0, dtype=np.float64)
    ids = np.random.default_rng(4).integers(0, 11, (2, 6))
    m.train(False)
    plain.train(False)
    np.testing.assert_array_equal(m.forward(ids), plain.forward(ids))
    assert m.regulariser_loss() == 0.0
    m.train(True)
    m.reset_state()
    assert not np.allclose(m.forward(ids), plain.forward(ids))
