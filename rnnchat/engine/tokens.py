"""The one token type every stream yields (the LM conversation, seq2seq chat replies) and the UIs render."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Token:
    id: int
    token: str
    text: str      # the piece to append to the shown text
    prob: float    # probability under the final sampling distribution (beam search: under the model)
    # seq2seq replies: the decoder's attention (S,) over `source`, the user's turn as encoder tokens
    attention: np.ndarray | None = field(default=None, compare=False)
    source: tuple[str, ...] = ()
