"""Ranked replies for a session: N candidates made together, the best one shown, and regenerate.

`RankedReply` remembers what a reply was made from (the memory before it, the ranked candidates), so that
`regenerate` can show the next candidate, or a fresh draw once they are used up, with the memory then holding
exactly the reply shown (the replaced one is forgotten).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from rnnchat.engine.conversation import Conversation
from rnnchat.engine.ranking import Candidate, Ranker, lm_candidates
from rnnchat.engine.seq2seq_chat import ChatState, Seq2SeqChat
from rnnchat.engine.tokens import Token
from rnnchat.models.seq2seq_decode import EncodedSource
from rnnchat.sampling import SamplingSettings
from rnnchat.session.transcript import Mode

FRESH_SEED_STEP = 1_000_003  # a fresh draw's seed: the reply's seed plus this times the draw number


@dataclass
class RankedReply:
    """One ranked reply and what it was made from."""

    mode: Mode
    text: str                      # the user's message
    settings: SamplingSettings
    n: int
    conv: Conversation             # LM chat: the memory after the user's turn, before the reply
    chat_state: ChatState          # seq2seq chat: the memory before the exchange
    enc: EncodedSource | None      # seq2seq chat: the user's turn encoded from chat_state
    ranked: list[Candidate]
    shown: int = 0                 # which candidate is on screen
    draws: int = 0                 # fresh draws made by regenerate
    played: bool = False           # the shown one was played (a stop while candidates were made: not yet)

    @property
    def current(self) -> Candidate:
        return self.ranked[self.shown]


def make(mode: Mode, text: str, settings: SamplingSettings, n: int, conv: Conversation, chat: Seq2SeqChat | None,
         chat_state: ChatState, ranker: Ranker, recent: list[str], cancel: threading.Event | None = None
         ) -> RankedReply:
    """Sample N candidates for `text` from the memory as it is (LM chat: the user's turn already fed) and rank
    them; the memory is not changed (`play` commits the shown one). A set `cancel` stops the candidates after
    the step in progress, and then none is kept (regenerate draws afresh)."""
    cancel = cancel or threading.Event()
    if mode is Mode.CHAT:
        cands, enc = chat.candidates(chat_state, text, settings, n, cancel)
        ranked = [] if cancel.is_set() else ranker.rank(cands, text, recent)
        return RankedReply(mode, text, settings, n, conv, chat_state.copy(), enc, ranked)
    cands = lm_candidates(conv, settings, n, cancel)
    ranked = [] if cancel.is_set() else ranker.rank(cands, text, recent, conv)
    return RankedReply(mode, text, settings, n, conv.fork(), chat_state, None, ranked)


def redraw(reply: RankedReply, chat: Seq2SeqChat | None, ranker: Ranker, recent: list[str],
           cancel: threading.Event | None = None) -> RankedReply:
    """The next candidate of `reply` (the best one if a stop came before it was played), or a fresh ranked
    draw (another seed) once every candidate was shown; a set `cancel` stops that draw as `make`'s."""
    if reply.shown + reply.played < len(reply.ranked):
        reply.shown += reply.played
        reply.played = False  # (a stop before this one plays leaves it to the next regenerate)
        return reply
    draws = reply.draws + 1
    seed = reply.settings.seed
    settings = reply.settings if seed is None else reply.settings.with_(seed=seed + FRESH_SEED_STEP * draws)
    fresh = make(reply.mode, reply.text, settings, reply.n, reply.conv.fork(), chat, reply.chat_state.copy(),
                 ranker, recent, cancel)
    fresh.settings, fresh.draws = reply.settings, draws
    return fresh


def play(reply: RankedReply, chat: Seq2SeqChat | None,
         keep: Callable[[Conversation | None, ChatState | None], None]) -> Iterator[Token]:
    """Yield the shown candidate's tokens, then `keep` the memory after exactly the tokens yielded: the LM
    conversation (LM chat) or the seq2seq memory (seq2seq chat), the other one None."""
    cand = reply.current
    reply.played = True
    shown: list[Token] = []
    try:
        for tok in cand.tokens:
            shown.append(tok)
            yield tok
    finally:
        if reply.mode is Mode.CHAT:
            state, n = reply.chat_state.copy(), len(shown)
            chat.commit(state, reply.text, reply.enc,
                        Candidate(shown, cand.ids[:n], cand.finished and n == len(cand.tokens), cand.logprob))
            keep(None, state)
        else:
            conv = reply.conv.fork()
            conv.feed_ids([t.id for t in shown])
            keep(conv, None)
