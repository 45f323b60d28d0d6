"""A text's sentiment as the app shows and stores it, and the class of a human rating: one result type for every
classifier, the live indicator, `rnnchat sentiment` and transcripts; and how classifiers' logits become it
(`softmax`, members averaged by `mean_in_order`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LABELS = ("negative", "neutral", "positive")
NEG_THRESHOLD, POS_THRESHOLD = -0.5, 0.5


@dataclass(frozen=True)
class Sentiment:
    """One text's sentiment, wherever it is shown or stored (live indicator, `rnnchat sentiment`, transcripts)."""

    label: str                                        # "negative" | "neutral" | "positive"
    score: float                                      # the score head, in [-1, 1]
    probs: tuple[float, float, float] | None = None   # P(negative), P(neutral), P(positive); None: not kept
    tokens: int | None = None                         # tokens classified (the live classifier says)

    @classmethod
    def of(cls, probs: np.ndarray, score: float, tokens: int | None = None) -> "Sentiment":
        """From a model's readout: the label is the argmax of the probabilities."""
        return cls(LABELS[int(np.argmax(probs))], float(score), tuple(float(p) for p in probs), tokens)

    def as_dict(self) -> dict:
        d: dict = {"label": self.label, "score": self.score}
        if self.probs is not None:
            d["probs"] = dict(zip(LABELS, self.probs))
        if self.tokens is not None:
            d["tokens"] = self.tokens
        return d

    @classmethod
    def from_dict(cls, d: dict | None) -> "Sentiment | None":
        return None if not d else cls(str(d["label"]), float(d["score"]))


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def mean_in_order(values: list[np.ndarray]) -> np.ndarray:
    """The mean in a fixed order (sum left to right, then divide): an ensemble's members averaged the same way
    for batched and live use."""
    total = values[0].astype(np.float64, copy=True)
    for v in values[1:]:
        total += v
    return total / len(values)


def rating_label(rating: float) -> int:
    """Class id of a human mean rating: 0 negative (<= -0.5), 2 positive (>= 0.5), else 1 neutral."""
    return 0 if rating <= NEG_THRESHOLD else 2 if rating >= POS_THRESHOLD else 1
