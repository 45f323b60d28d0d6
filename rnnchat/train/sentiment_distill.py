"""Distillation data for the sentiment trainer (`rnnchat train sentiment --teacher CKPT --teacher-texts N`).

A teacher (a trained classifier: the shipped LSTM ensemble) labels N chat messages with its class
probabilities and scores, and the student (e.g. a QRNN, whose live edits are cheap) trains on the rated vader
sentences (their human labels) plus those messages (the teacher's soft labels: Hinton et al. 2015, "Distilling
the Knowledge in a Neural Network"). Why: the rated sentences are few (~17k); chat messages are many and are
the text the app scores, and a soft label says how sure the teacher is. The messages come from the chitchat
train split (never val or test of either corpus); the teacher must not have seen vader val or test either.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rnnchat.data import corpora
from rnnchat.models.sentiment_ensemble import load_sentiment
from rnnchat.models.sentiment_tokens import TokenReader
from rnnchat.train.sentiment_eval import SentimentData, predict_ids

MAX_CHARS = 300  # longer messages are rare and slow to batch


def chat_messages(n: int, seed: int = 0) -> list[str]:
    """A deterministic sample of `n` messages (1-300 characters) of the chitchat train split."""
    messages = [m for conv in corpora.load_chitchat("train") for turn in conv["turns"] for m in turn
                if 0 < len(m) <= MAX_CHARS]
    if n > len(messages):
        raise ValueError(f"--teacher-texts {n}: the chitchat train split has {len(messages):,} messages")
    return [messages[i] for i in np.random.default_rng(seed).permutation(len(messages))[:n]]


def with_teacher_texts(train: SentimentData, reader: TokenReader, teacher: Path, n: int,
                       seed: int = 0) -> SentimentData:
    """`train` (its labels as one-hot probabilities) plus `n` chat messages labelled by the `teacher`
    checkpoint (probabilities, and its score as the rating / 4); the student reads them with `reader`."""
    model, _, _ = load_sentiment(teacher)  # (it refuses a checkpoint of another kind)
    texts = chat_messages(n, seed)
    probs, scores = predict_ids(model, [model.reader.text_ids(t) for t in texts])
    return SentimentData(ids=train.ids + [reader.text_ids(t) for t in texts],
                         ratings=np.concatenate([train.ratings, 4 * scores]),
                         labels=np.concatenate([train.labels, probs.argmax(axis=1)]),
                         domains=train.domains + ["chat"] * n, texts=train.texts + texts,
                         soft=np.concatenate([np.eye(3)[train.labels], probs]))
