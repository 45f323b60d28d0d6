"""Sentiment ensembles (build, CLI, evaluation, scoring) and the training data options (oversampling, lexicon)."""

import numpy as np
import pytest

from rnnchat.data import corpora
from rnnchat.checkpoint import read_header
from rnnchat.cli.main import main
from rnnchat.models.sentiment import SentimentConfig, SentimentModel
from rnnchat.models.sentiment_ensemble import SentimentEnsemble
from rnnchat.engine.sentiment_live import LiveSentiment
from rnnchat.text import Vocab, tokenize
from rnnchat.train.sentiment import SentimentTrainArgs, oversample, train_sentiment, vader_lexicon
from rnnchat.train.sentiment_ensemble import build_ensemble
from rnnchat.models.sentiment_ensemble import load_sentiment, save_sentiment
from rnnchat.train.sentiment_eval import evaluate_sentiment, score_texts

VADER_BUILT = (corpora.default_root() / "vader" / "train.jsonl").exists()
needs_vader = pytest.mark.skipif(not VADER_BUILT, reason="vader corpus not built (rnnchat corpus build vader)")


def member(path, vocab, seed, **config):
    model = SentimentModel(SentimentConfig(vocab_size=len(vocab), embed=6, hidden=5, **config), seed=seed)
    for p in model.params.params:
        p *= 3
    save_sentiment(model, vocab, path, {"selection": {"val_binary_acc": 0.5}}, extra={"training": {"seed": seed}},
                   float16=False)
    return model


@needs_vader
def test_build_ensemble_writes_one_checkpoint_that_everything_uses(tmp_path):
    vocab = Vocab.build(tokenize(r["text"]) for r in corpora.load_vader("train")[:300])
    a = member(tmp_path / "a.npz", vocab, 1)
    b = member(tmp_path / "b.npz", vocab, 2, pool="max")
    out = tmp_path / "ens.npz"
    assert main(["train", "sentiment-ensemble", str(tmp_path / "a.npz"), str(tmp_path / "b.npz"),
                 "--out", str(out), "--no-compare-vader"]) == 0
    header = read_header(out)
    assert [m["source"] for m in header["members"]] == [str(tmp_path / "a.npz"), str(tmp_path / "b.npz")]
    assert [m["training"]["seed"] for m in header["members"]] == [1, 2]
    assert header["training"]["members"] == 2 and len(header["config"]["members"]) == 2
    model, v, _ = load_sentiment(out)
    assert isinstance(model, SentimentEnsemble) and v.itos == vocab.itos
    result = evaluate_sentiment(out, split="val", compare_vader=False)
    assert result["model"]["pooled"]["binary_acc"] == pytest.approx(header["metrics"]["val"]["pooled"]["binary_acc"])
    # scoring and the live classifier use both members
    text = "the food was great but the service was awful"
    scored = score_texts([text], out)[0]
    ids = np.array([vocab.encode(text)])
    mean = (a.predict(ids, np.ones_like(ids))[0] + b.predict(ids, np.ones_like(ids))[0]) / 2
    np.testing.assert_allclose(list(scored["probs"].values()), mean[0], atol=1e-3)  # float16 storage
    live = LiveSentiment.from_checkpoint(out)
    for i in range(1, len(text) + 1):
        r = live.set_text(text[:i])
    np.testing.assert_allclose(r.probs, list(scored["probs"].values()), rtol=1e-5, atol=1e-7)
    # an ensemble of an ensemble and a model flattens; members with another vocabulary are refused
    build_ensemble([out, tmp_path / "a.npz"], tmp_path / "three.npz", compare_vader=False)
    assert len(load_sentiment(tmp_path / "three.npz")[0].members) == 3
    member(tmp_path / "c.npz", Vocab.build([["other", "words"]]), 3)
    with pytest.raises(ValueError, match="different vocabulary"):
        build_ensemble([tmp_path / "a.npz", tmp_path / "c.npz"], tmp_path / "bad.npz", compare_vader=False)


def test_oversample_repeats_a_domain_by_a_fractional_factor():
    recs = [{"domain": d, "text": str(i)} for i in range(10) for d in ("news", "tweets")]
    out = oversample(recs, "news=1.5,tweets=2")
    assert sum(r["domain"] == "news" for r in out) == 15 and sum(r["domain"] == "tweets" for r in out) == 20
    with pytest.raises(ValueError):
        oversample(recs, "lexicon=2")


@needs_vader
def test_lexicon_entries_join_the_vocabulary_and_the_training_data(tmp_path):
    pytest.importorskip("vaderSentiment")
    lexicon = vader_lexicon()
    assert len(lexicon) > 7000 and all(-4 <= r["rating"] <= 4 for r in lexicon)
    entry = {r["text"]: r["rating"] for r in lexicon}
    assert entry["good"] > 1 and entry["horrible"] < -1 and entry[":)"] > 0
    args = SentimentTrainArgs(run_dir=tmp_path / "run", out=tmp_path / "s.npz", embed=6, hidden=6, epochs=0.2,
                              batch_size=64, eval_every=10, max_train=300, vocab_size=400, lexicon=0.5,
                              compare_vader=False, float16=False)
    train_sentiment(args)
    _, vocab, header = load_sentiment(tmp_path / "s.npz")
    assert len(vocab) > 400 and "horrible" in vocab and header["training"]["lexicon"] == 0.5
