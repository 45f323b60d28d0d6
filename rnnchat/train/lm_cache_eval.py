"""Perplexity of the LM with and without its conversation cache (`rnnchat.models.lm_cache`), and the val grid
search that picks the cache's theta and lambda.

Each conversation is scored from a fresh state with the state carried through all its turns (its first token is
predicted from <eot>), so the cache only ever holds states of the same conversation. All settings of a grid are
scored in one pass over the model: the model's log-probabilities and states are computed once per conversation.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from rnnchat.models.lm import LanguageModel
from rnnchat.models.lm_cache import CacheSettings, mix_log_probs, sequence_cache_probs
from rnnchat.text import Vocab, conversation_ids

THETAS = (0.05, 0.1, 0.2, 0.3, 0.5)
LAMBDAS = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3)


def default_grid(size: int = 2000) -> list[CacheSettings]:
    return [CacheSettings(theta=t, lam=l, size=size) for t, l in itertools.product(THETAS, LAMBDAS)]


def _log_softmax_at(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """logits (T, V), targets (T,) -> (T,) log p(target) in float64."""
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    return z[np.arange(len(targets)), targets] - np.log(np.exp(z).sum(axis=1))


def evaluate_cache(model: LanguageModel, convs: list[dict], vocab: Vocab,
                   grid: list[CacheSettings]) -> dict:
    """Per-conversation perplexity without the cache and with each setting of `grid`; also over the turns
    after the first alone (what the cache can draw on). Returns the best setting by whole-conversation loss."""
    model.train(False)
    names = ["none"] + [f"{i}" for i in range(len(grid))]
    total = dict.fromkeys(names, 0.0)
    later = dict.fromkeys(names, 0.0)
    tokens = later_tokens = 0
    for conv in convs:
        targets = np.asarray(conversation_ids(conv["turns"], vocab))
        if len(targets) < 2:
            continue
        first_turn = len(conversation_ids(conv["turns"][:1], vocab))
        ids = np.concatenate([[vocab.eot_id], targets[:-1]])[None]
        model.reset_state()
        logits = model.forward(ids)[0]                       # (T, V)
        hidden = model.top_hidden[:, 0]                      # (T, H)
        log_p = _log_softmax_at(logits, targets)
        scored = {"none": log_p}
        p_cache: dict[tuple[float, int], np.ndarray] = {}  # one cache pass per (theta, size), any lambda
        for i, s in enumerate(grid):
            key = (s.theta, s.size)
            if key not in p_cache:
                p_cache[key] = sequence_cache_probs(hidden, targets, s)
            scored[f"{i}"] = mix_log_probs(log_p, p_cache[key], s.lam)
        for name, lp in scored.items():
            total[name] -= float(lp.sum())
            later[name] -= float(lp[first_turn:].sum())
        tokens += len(targets)
        later_tokens += len(targets) - first_turn
    ppl = {k: math.exp(v / max(tokens, 1)) for k, v in total.items()}
    later_ppl = {k: math.exp(v / max(later_tokens, 1)) for k, v in later.items()}
    best = min(range(len(grid)), key=lambda i: ppl[f"{i}"]) if grid else None
    rows = [{"theta": s.theta, "lam": s.lam, "size": s.size, "perplexity": ppl[f"{i}"],
             "later_turns_perplexity": later_ppl[f"{i}"]} for i, s in enumerate(grid)]
    return {"perplexity": ppl["none"], "later_turns_perplexity": later_ppl["none"], "tokens": tokens,
            "later_turns_tokens": later_tokens, "grid": rows, "best": None if best is None else rows[best]}
