"""Where the sentiment recurrence restarts: sentence (or clause) segments, and a batch laid out as segment rows.

With a restart rule the recurrence starts from the zero state after every token that ends a segment
(``sentence``: ``.``, ``!``, ``?`` and runs of them like ``...`` or ``?!``; ``clause``: also ``,`` and ``;``),
while the pooling (last / max / mean) still runs over the whole text. Why: a segment's states then depend
on its own tokens only, so the live classifier re-runs just the edited segment after an edit in the middle
of a paragraph instead of every token after it (``rnnchat.engine.sentiment_live``).

The batched forward runs the segments as rows of their own (no change to the LSTM layer): `Segments` maps
each real token of a (N, T) batch to (segment row, position in it) and back.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

RESTARTS = ("none", "sentence", "clause")
_ENDS = {"sentence": re.compile(r"[.!?]+"), "clause": re.compile(r"[.!?]+|[,;]")}


def segment_ends(itos: Sequence[str], restart: str) -> np.ndarray | None:
    """(V,) bool: which vocabulary entries end a segment under `restart` (None for "none")."""
    if restart not in RESTARTS:
        raise ValueError(f"restart must be one of {RESTARTS}, got {restart!r}")
    if restart == "none":
        return None
    pattern = _ENDS[restart]
    return np.array([pattern.fullmatch(t) is not None for t in itos], bool)


def ends_at(ends: np.ndarray, i: int) -> bool:
    """Whether id i ends a segment; an id past the table (a subword model's unseen word) ends nothing."""
    return i < len(ends) and bool(ends[i])


def split_ids(ids: Sequence[int], ends: np.ndarray | None) -> list[list[int]]:
    """A text's ids cut after every segment end (the whole text is one segment without a rule)."""
    if ends is None:
        return [list(ids)] if len(ids) else []
    out: list[list[int]] = []
    current: list[int] = []
    for i in ids:
        current.append(i)
        if ends_at(ends, i):
            out.append(current)
            current = []
    if current:
        out.append(current)
    return out


class Segments:
    """The segment rows of a right-padded batch: ids (N, T) (before word dropout), mask (N, T), and a table of
    segment ends (V,). `rows` lays any (N, T) array of the batch out as (S, T') segment rows."""

    def __init__(self, ids: np.ndarray, mask: np.ndarray, ends: np.ndarray):
        N, T = ids.shape
        real = mask > 0
        starts = np.zeros((N, T), bool)
        starts[:, 0] = True
        starts[:, 1:] = ends[ids[:, :-1]]
        starts &= real
        self.real, self.shape = real, (N, T)
        flat_starts = starts[real]  # row-major: each row's real tokens are consecutive (right padding)
        self.seg = np.cumsum(flat_starts) - 1  # (R,) the segment row of each real token
        first = np.flatnonzero(flat_starts)
        self.pos = np.arange(len(self.seg)) - first[self.seg]  # (R,) its position in that row
        self.S = len(first)
        self.T = int(np.bincount(self.seg).max()) if self.S else 0
        self.mask = self.rows(np.ones((N, T), mask.dtype))

    def rows(self, x: np.ndarray) -> np.ndarray:
        """(N, T) -> (S, T') segment rows, right-padded with zeros."""
        out = np.zeros((self.S, self.T), x.dtype)
        out[self.seg, self.pos] = x[self.real]
        return out

    def to_batch(self, h: np.ndarray) -> np.ndarray:
        """Segment-row outputs (S, T', H) -> the batch's (N, T, H); padded positions are 0."""
        out = np.zeros((*self.shape, h.shape[-1]), h.dtype)
        out[self.real] = h[self.seg, self.pos]
        return out

    def to_segments(self, dh: np.ndarray) -> np.ndarray:
        """The gradient of `to_batch`: (N, T, H) -> (S, T', H) (each real position has one segment slot)."""
        out = np.zeros((self.S, self.T, dh.shape[-1]), dh.dtype)
        out[self.seg, self.pos] = dh[self.real]
        return out


def join_states(state: tuple, segment: tuple) -> tuple:
    """A text's live state followed by a segment's (stepped from the zero state): the segment's recurrent
    state, the pools over both (running max, sum, token count). join_states(zero, s) is s: a text without
    restarts is one segment. The same arithmetic for one model's (H,) arrays and stacked members' (M, H)."""
    return segment[0], np.maximum(state[1], segment[1]), state[2] + segment[2], state[3] + segment[3]
