"""Distillation: a teacher checkpoint labels chat messages (soft labels), and a student trains on them."""

import numpy as np
import pytest

from rnnchat.data import corpora
from rnnchat.models.sentiment_ensemble import load_sentiment
from rnnchat.train.sentiment import SentimentTrainArgs, train_sentiment
from rnnchat.train.sentiment_distill import chat_messages, with_teacher_texts
from rnnchat.train.sentiment_eval import encode, predict_ids

BUILT = all((corpora.default_root() / name / "train.jsonl").exists() for name in ("vader", "chitchat"))
pytestmark = pytest.mark.skipif(not BUILT, reason="corpora not built (rnnchat corpus build chitchat vader)")


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("teacher")
    train_sentiment(SentimentTrainArgs(run_dir=tmp / "run", out=tmp / "t.npz", embed=6, hidden=6, epochs=1,
                                       batch_size=50, eval_every=4, max_train=200, vocab_size=300,
                                       compare_vader=False, float16=False))
    return tmp / "t.npz"


def test_teacher_texts_carry_the_teachers_probabilities(teacher):
    model, _, _ = load_sentiment(teacher)
    rated = encode(corpora.load_vader("train")[:30], model.reader)
    data = with_teacher_texts(rated, model.reader, teacher, 40, seed=3)
    texts = chat_messages(40, seed=3)
    assert data.texts[30:] == texts and len(data.ids) == 70 and data.domains[30:] == ["chat"] * 40
    probs, scores = predict_ids(model, [model.reader.text_ids(t) for t in texts])
    np.testing.assert_allclose(data.soft[30:], probs)
    np.testing.assert_allclose(data.targets[30:], scores)
    np.testing.assert_array_equal(data.soft[:30], np.eye(3)[rated.labels])  # the rated keep their labels
    assert chat_messages(40, seed=3) == texts != chat_messages(40, seed=4)  # deterministic per seed
    _, _, labels, _ = data.batch(np.arange(28, 34))
    assert labels.shape == (6, 3)


def test_a_student_trains_on_the_teachers_labels(teacher, tmp_path):
    with pytest.raises(ValueError, match="together"):
        train_sentiment(SentimentTrainArgs(run_dir=tmp_path / "x", teacher_texts=10))
    metrics = train_sentiment(SentimentTrainArgs(
        run_dir=tmp_path / "run", out=tmp_path / "s.npz", embed=6, hidden=6, epochs=1, batch_size=50,
        eval_every=4, max_train=200, vocab_size=300, cell="qrnn", teacher=teacher, teacher_texts=300,
        compare_vader=False, float16=False))
    _, _, header = load_sentiment(tmp_path / "s.npz")
    assert header["training"]["teacher_texts"] == 300 and header["training"]["teacher"] == str(teacher)
    assert metrics["steps"] == 10  # (200 rated + 300 labelled messages) / 50 per batch, one epoch
