"""The one token type every stream yields (the LM conversation, seq2seq chat replies) and the UIs render, and
the re-spacing of a continuation so it reads right after its prompt."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from rnnchat.text import EOM, EOT, Vocab


@dataclass(frozen=True)
class Token:
    id: int
    token: str
    text: str      # the piece to append to the shown text
    prob: float    # probability under the final sampling distribution (beam search: under the model)
    # seq2seq replies: the decoder's attention (S,) over `source`, the user's turn as encoder tokens
    attention: np.ndarray | None = field(default=None, compare=False)
    source: tuple[str, ...] = ()


def continued(text: str, tokens: Iterator[Token], vocab: Vocab) -> Iterator[Token]:
    """Re-detokenize a continuation after `text`: spacing and capitals as if it were one text ("the movie was"
    + "great" reads "the movie was great", not "...was Great"); a message end starts afresh. (A char-level
    vocabulary's pieces are the characters themselves, so they pass unchanged.)"""
    detok = vocab.detokenizer()
    for t in vocab.tokens(text):
        detok.push(t)
    with contextlib.closing(tokens):
        for tok in tokens:
            if tok.token == EOM:
                detok.reset()
                yield tok
            else:
                yield tok if tok.token == EOT else dataclasses.replace(tok, text=detok.push(tok.token))
