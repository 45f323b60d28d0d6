"""A judge of chat replies learnt from blind human-style judgments: P(sensible) and P(specific) of a candidate.

The reply ranker's own terms (likelihood, PMI, the backward model) pick the judged-best candidate of a pool
only about half as often as a perfect ranker would (bench/chat_judging/pool_*: oracle vs ranked pick), so a
judge is learnt on the judged candidate pools themselves, as LaMDA learnt its sensibleness and specificity
classifiers from crowd labels (Thoppilan et al. 2022) and used them to rank sampled replies.

Features of a candidate reply r to a conversation c, all from the language model that wrote it
(`reply_features`):
  [0:5]           the ranker's terms: log p(r + <eot> | c) per token, PMI summed and per token (against the
                  fresh state), the backward model's log p(message | r) per token, log of the tokens scored;
  [5:5+H]         the LM's top-layer state after r's closing <eot> (what the model "thinks" after the reply);
  [5+H:5+2H]      the mean of its top-layer states over r's tokens and <eot>;
  [5+2H:5+3H]     the state after <eot> times the state the reply started from (how the two relate).
Two logistic regressions on the standardised features give P(sensible) and P(specific); the ranker's `judge`
term is their sum. The features depend on the exact LM, so a judge records the id of the LM it was trained
with (`Engine.weights_id`) and the backward model whose score it reads, and is used only with those.

    judge = ReplyJudge.load("rnnchat/checkpoints/reply_judge.npz")
    features, fresh = reply_features(decoder, vocab, conv.logits, conv.state, ids, backward)
    p = judge.predict(features)  # (N, 2): P(sensible), P(specific)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnnchat.checkpoint import load_checkpoint, save_checkpoint
from rnnchat.data.batches import pad
from rnnchat.models.lm import LayerStates, LMDecoder
from rnnchat.models.scoring import LOGIT_ROWS, _lm_outputs, _target_logprobs
from rnnchat.text import Vocab

N_TERMS = 5
TERMS = ("responder", "pmi", "pmi_mean", "backward", "log_tokens")


def feature_size(hidden: int) -> int:
    return N_TERMS + 3 * hidden


def reply_features(dec: LMDecoder, vocab: Vocab, logits: np.ndarray, state: LayerStates,
                   replies: Sequence[Sequence[int]], backward: np.ndarray, known: np.ndarray | None = None,
                   states: Sequence[np.ndarray | None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(N, 5 + 3H) features of N replies (ids without <eot>) to the conversation whose next-token logits (1, V)
    and state (layers of (1, H) pairs) are given (the memory after the user's turn), and (N,) each reply's
    log p(reply + <eot>) from the fresh state (the anti-LM part of PMI, as `lm_reply_logprobs` with no context).

    backward: (N,) the backward model's log p(message | reply) per token of the message (0 without it).
    known: (N,) log p(reply + <eot> | conversation) where it is already known (a finished sampled candidate's
    own sum), NaN where not: those rows' later tokens skip the projection to the vocabulary.
    states: each reply's top-layer states after its ids and <eot> ((len + 1, H), as decoding kept them), None
    where not known: those replies do not run from the conversation's state again.
    The replies run from both states in one pass (up to 2N rows: one product per layer per step for all).
    """
    N, H = len(replies), dec.hidden
    if N == 0:
        return np.zeros((0, feature_size(H))), np.zeros(0)
    fresh_logits, fresh_state = dec.step(np.array([vocab.eot_id]), dec.initial_state(1))
    scored = [[*r, vocab.eot_id] for r in replies]
    one, mask = pad(scored)                                             # (N, T): the reply and its <eot>
    inputs, mask2 = np.concatenate([one, one]), np.concatenate([mask, mask])
    given = np.zeros(N, bool) if states is None else np.array([s is not None for s in states])
    for i in np.flatnonzero(given):
        if states[i].shape != (len(scored[i]), H):
            raise ValueError(f"reply {i}: states of shape {states[i].shape}, not ({len(scored[i])}, {H})")
    run = np.concatenate([np.flatnonzero(~given), N + np.arange(N)])  # rows of the 2N run here
    rows = [(np.repeat(np.concatenate([h, fh]), N, axis=0)[run], np.repeat(np.concatenate([c, fc]), N, axis=0)[run])
            for (h, c), (fh, fc) in zip(state, fresh_state)]
    ran = _lm_outputs(dec, inputs[run], rows, mask2.sum(axis=1)[run])
    out = np.zeros((2 * N, inputs.shape[1], H), ran.dtype)            # (2N, T, H): the state after each input
    out[run] = ran
    for i in np.flatnonzero(given):
        out[i, :len(states[i])] = states[i]
    # teacher-forced log p(reply + <eot>): the first token from the starting logits, each later one from the
    # state after the token before it
    first = np.repeat(np.concatenate([logits, fresh_logits]).astype(np.float32), N, axis=0)
    lp = _target_logprobs(first, inputs[:, 0])
    known = np.full(N, np.nan) if known is None else np.asarray(known, np.float64)
    needed = np.concatenate([np.isnan(known), np.ones(N, bool)])       # rows whose sum is computed here
    later = np.flatnonzero((mask2[:, 1:] > 0) & needed[:, None])
    hidden = out[:, :-1].reshape(-1, H)[later]
    targets, row = inputs[:, 1:].ravel()[later], later // max(inputs.shape[1] - 1, 1)
    for start in range(0, len(later), LOGIT_ROWS):
        part = slice(start, start + LOGIT_ROWS)
        lp += np.bincount(row[part], weights=_target_logprobs(dec.logits(hidden[part]), targets[part]), minlength=2 * N)
    lp, fresh = np.where(np.isnan(known), lp[:N], known), lp[N:]
    out = out[:N]
    lengths = mask.sum(axis=1).astype(np.int64)                         # tokens scored, <eot> included
    end = out[np.arange(N), lengths - 1]                               # (N, H) after <eot>
    mean = (out * mask[..., None]).sum(axis=1) / lengths[:, None]       # (N, H)
    start_h = state[-1][0].reshape(1, H)
    pmi = lp - fresh
    terms = np.stack([lp / lengths, pmi, pmi / lengths, np.asarray(backward, np.float64), np.log(lengths)], axis=1)
    return np.concatenate([terms, end, mean, end * start_h], axis=1).astype(np.float64), fresh


@dataclass
class ReplyJudge:
    """Standardisation and two logistic regressions (rows: sensible, specific) over `reply_features`."""

    mean: np.ndarray      # (D,)
    scale: np.ndarray     # (D,)
    weights: np.ndarray   # (2, D)
    bias: np.ndarray      # (2,)
    lm_id: str            # the `Engine.weights_id` of the LM whose features it reads
    backward_id: str      # the `weights_id` of the backward model whose score it reads
    metrics: dict

    def predict(self, features: np.ndarray) -> np.ndarray:
        """(N, 2) P(sensible), P(specific) of each row of features (N, D)."""
        z = ((features - self.mean) / self.scale) @ self.weights.T + self.bias
        return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))

    def save(self, path: Path | str, corpus: dict) -> None:
        arrays = {"mean": self.mean, "scale": self.scale, "weights": self.weights, "bias": self.bias}
        header = {"model": "reply_judge", "config": {"features": int(self.mean.shape[0])}, "vocab": [],
                  "lm_id": self.lm_id, "backward_id": self.backward_id, "corpus": corpus, "metrics": self.metrics}
        # float32 storage: the standardisation keeps every value well inside its range
        save_checkpoint(path, arrays, header)

    @classmethod
    def load(cls, path: Path | str) -> "ReplyJudge":
        def spec(header: dict) -> dict[str, tuple[int, ...]]:
            d = header["config"].get("features")
            if not isinstance(d, int) or d <= N_TERMS:
                raise ValueError(f"{path}: config features must be an integer > {N_TERMS}")
            return {"mean": (d,), "scale": (d,), "weights": (2, d), "bias": (2,)}
        arrays, header = load_checkpoint(path, spec, model="reply_judge", dtype=np.float64)
        for key in ("lm_id", "backward_id"):
            if not isinstance(header.get(key), str):
                raise ValueError(f"{path}: the header names no {key}")
        if not (arrays["scale"] > 0).all():
            raise ValueError(f"{path}: scale must be positive")
        return cls(arrays["mean"], arrays["scale"], arrays["weights"], arrays["bias"], header["lm_id"],
                   header["backward_id"], header["metrics"])
