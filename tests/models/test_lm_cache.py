"""The LM's conversation cache: the evaluation formula and the incremental cache agree, the mixture is a
distribution, and a conversation keeps its cache through streaming, fork, save/load and reset."""

import numpy as np
import pytest

from rnnchat.engine.conversation import Conversation
from rnnchat.engine.engine import Engine
from rnnchat.models.lm import LanguageModel, LMConfig
from rnnchat.models.lm_cache import CacheSettings, ConversationCache, mix_log_probs, sequence_cache_probs
from rnnchat.sampling import SamplingSettings
from rnnchat.train.lm_cache_eval import evaluate_cache

SET = CacheSettings(theta=0.7, lam=0.25, size=6)


def test_incremental_cache_equals_the_evaluation_formula():
    rng = np.random.default_rng(0)
    hidden, targets = rng.standard_normal((15, 4)), rng.integers(0, 5, 15)
    whole = sequence_cache_probs(hidden, targets, SET)
    assert np.isnan(whole[0])
    cache = ConversationCache(4, 5, SET)
    for t in range(15):
        p = cache.probs(hidden[t][None])
        if t:
            assert p.shape == (1, 5) and p.sum() == pytest.approx(1.0)
            assert p[0, targets[t]] == pytest.approx(whole[t], rel=1e-5)  # only the last `size` states count
        cache.add(hidden[t][None], [targets[t]])
    assert len(cache) == 6


def test_mixture_is_a_distribution_and_matches_the_formula():
    rng = np.random.default_rng(1)
    cache = ConversationCache(4, 7, SET)
    cache.add(rng.standard_normal((5, 4)), [1, 2, 2, 6, 1])
    logits, h = rng.standard_normal((3, 7)).astype(np.float32), rng.standard_normal((3, 4))
    mixed = cache.mix(logits, h)
    np.testing.assert_allclose(np.exp(mixed.astype(np.float64)).sum(axis=1), 1.0, rtol=1e-5)
    p_model = np.exp(logits - logits.max(1, keepdims=True))
    p_model /= p_model.sum(1, keepdims=True)
    expect = 0.75 * p_model + 0.25 * cache.probs(h)
    np.testing.assert_allclose(np.exp(mixed.astype(np.float64)), expect, rtol=1e-5)
    log_p = np.log(p_model[:, 3])
    got = mix_log_probs(log_p, np.array([np.nan, 0.0, 0.5]), 0.25)
    np.testing.assert_allclose(got, [log_p[0], np.log(0.75 * p_model[1, 3]), np.log(0.75 * p_model[2, 3] + 0.125)],
                               rtol=1e-6)
    empty = ConversationCache(4, 7, SET).mix(logits, h)
    np.testing.assert_array_equal(empty, logits)  # empty: the model alone (a copy)
    assert empty is not logits


def test_bad_settings_are_refused():
    for bad in ({"theta": -1}, {"lam": 1.0}, {"size": 0}):
        with pytest.raises(ValueError):
            CacheSettings(**bad)


def cached(engine):
    return Conversation(engine.decoder, engine.vocab, engine.model_id, SET)


def test_conversation_cache_follows_every_fed_and_streamed_token(engine, tmp_path):
    conv = cached(engine)
    conv.feed("the cat sat on the mat", end_turn=True)
    out = list(conv.stream(SamplingSettings(seed=3, max_tokens=8, temperature=1.0, cache=True)))
    assert conv.cache.count == len(conv.history) and len(conv.cache) == min(len(conv.history), 6)
    assert out
    # the cache's last values are the last tokens fed, keyed by the states they followed
    np.testing.assert_array_equal(conv.cache.arrays()["cache_values"], conv.history[-6:])
    replay = cached(engine)
    replay.feed_ids(list(conv.history))
    np.testing.assert_allclose(replay.cache.arrays()["cache_keys"], conv.cache.arrays()["cache_keys"], atol=1e-5)
    fork = conv.fork()
    fork.feed("and more")
    assert fork.cache.count > conv.cache.count and conv.cache.count == len(conv.history)
    conv.save(tmp_path / "c.npz")
    loaded = cached(engine)
    loaded.load(tmp_path / "c.npz")
    np.testing.assert_array_equal(loaded.cache.arrays()["cache_values"], conv.cache.arrays()["cache_values"])
    conv.reset()
    assert len(conv.cache) == 0


def test_settings_cache_off_samples_from_the_model_alone(engine):
    conv = cached(engine)
    conv.feed("the cat sat on the mat the cat", end_turn=False)
    off, on = SamplingSettings(), SamplingSettings(cache=True)  # off by default
    np.testing.assert_array_equal(conv.next_logits(off), conv.logits)
    assert not np.allclose(conv.next_logits(on), conv.logits)
    assert engine.conversation().cache is None  # the test model's header has no tuned cache


def test_engine_uses_the_val_tuned_settings_from_the_header(small_lm_path, tmp_path):
    from rnnchat.checkpoint import CheckpointError, update_metrics
    import shutil
    path = tmp_path / "lm.npz"
    shutil.copy(small_lm_path, path)
    update_metrics(path, {"cache_settings": {"theta": 0.2, "lam": 0.1, "size": 50}})
    engine = Engine(path)
    assert engine.conversation(cache=True).cache.settings == CacheSettings(0.2, 0.1, 50)
    assert engine.conversation().cache is None  # off (the default): nothing kept, nothing saved

    from rnnchat.session.session import ChatSession
    s = ChatSession(engine, directory=tmp_path / "data", candidates=1)
    list(s.respond("the cat sat"))
    s.save("plain")
    assert "cache_keys" not in np.load(tmp_path / "data" / "conversations" / "plain.npz").files
    assert "cache on" in s.command("/cache on")
    assert s.conv.cache is not None and len(s.conv.cache) == 0  # starts empty, from here on
    before = len(s.conv.history)
    list(s.respond("and the dog"))
    assert s.conv.cache.count == len(s.conv.history) - before > 0  # every token fed since
    assert "cache off" in s.command("/cache off")
    assert s.conv.cache is None
    update_metrics(path, {"cache_settings": {"theta": 0.2, "lam": 2, "size": 50}})
    with pytest.raises(CheckpointError, match="cache_settings"):
        Engine(path)


def test_evaluation_scores_the_same_tokens_with_and_without_the_cache():
    from rnnchat.text import SPECIALS, Vocab
    vocab = Vocab(list(SPECIALS) + ["a", "b", "c", "zed"])
    model = LanguageModel(LMConfig(vocab_size=len(vocab), hidden=6, layers=1, dropout=0.0), seed=1)
    convs = [{"turns": [["a b zed"], ["zed c", "a"], ["b zed zed"]]}, {"turns": [["c"]]}]
    r = evaluate_cache(model, convs, vocab, [CacheSettings(0.0, 0.0, 10), SET])
    assert r["grid"][0]["perplexity"] == pytest.approx(r["perplexity"])  # lambda 0: the model alone
    assert r["tokens"] > r["later_turns_tokens"] > 0
    assert r["best"] in r["grid"]
