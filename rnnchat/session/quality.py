"""How the replies a user gets look: replies sampled by a chat session for held-out contexts, and their metrics.

    rnnchat eval chat --split test --samples 100 --mode chat --candidates 16 --json   # (rnnchat.cli.chat_eval)

Each context (the turns before a reply of a held-out conversation) is played into a fresh `ChatSession`: the
bot takes the part of the speaker of the reply to predict, so the turns before it go in as `prime(user, reply)`
exchanges, the two speakers alternating, and the turn right before the reply is the message the session
`respond`s to (a turn's messages joined by "\\n"). A user always speaks first in a session, so a context that
opens with the bot's speaker (an even number of turns) starts at its second turn. Each position samples with
the default settings and its own seed (the base seed plus its index); the sessions autosave into a temporary
directory that is removed afterwards.

Metrics over the replies' word tokens (`rnnchat.text.tokenize` of the reply shown):
  distinct_1, distinct_2  distinct n-grams / all n-grams, over all replies
  mean_length             tokens per reply
  empty_rate              replies without a token
  cut_rate                replies cut at max tokens (that did not end on <eot>)
  repeat_rate             replies that repeat the user's message or the bot's previous reply in the context
                          (`rnnchat.engine.ranking.repeats`)
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rnnchat import runtime
from rnnchat.engine.engine import Engine, make_ranker
from rnnchat.engine.ranking import Ranker, repeats
from rnnchat.engine.seq2seq_chat import Seq2SeqChat
from rnnchat.progress import Progress
from rnnchat.sampling import SamplingSettings
from rnnchat.session.session import ChatSession
from rnnchat.session.transcript import Mode
from rnnchat.text import tokenize

Context = list[list[str]]  # turns of messages, oldest first (at least one)
SessionFactory = Callable[[SamplingSettings, Path], ChatSession]  # (settings, data directory) -> a fresh session
METRICS = ("distinct_1", "distinct_2", "mean_length", "empty_rate", "cut_rate", "repeat_rate")


@dataclass(frozen=True)
class SampledReply:
    text: str             # the reply as shown
    finished: bool        # it ended on <eot> (False: cut at max tokens)
    user: str             # the message it answers
    previous: str | None  # the bot's previous reply in the context (None: the bot had not spoken)


def session_factory(lm_path: Path | str, seq2seq_path: Path | str | None = None,
                    backward_path: Path | str | None = None, mode: Mode | str | None = None,
                    candidates: int = 1) -> tuple[SessionFactory, Mode]:
    """Sessions as `open_session` (session/opening.py) makes them (the LM, the chat model, and the backward model
    and the reply judge when a backward model is given; ranking `candidates` replies), the models loaded once, and their mode: `mode`, or with None a
    session's default.
    SessionError if the mode is unavailable, SettingsError for a bad number of candidates."""
    engine = Engine(lm_path)
    chat = None if seq2seq_path is None else Seq2SeqChat.load(seq2seq_path)
    if backward_path is None:
        ranker = Ranker(engine.decoder, engine.vocab)
    else:
        ranker = make_ranker(engine, backward_path)[0]

    def make(settings: SamplingSettings, directory: Path) -> ChatSession:
        session = ChatSession(engine, seq2seq=chat, settings=settings, directory=directory, ranker=ranker,
                              candidates=candidates)
        if mode is not None:
            session.set_mode(mode)
        return session

    probe = make(SamplingSettings(), Path(tempfile.gettempdir()))  # an unavailable mode fails now; writes nothing
    return make, probe.mode


def play(session: ChatSession, context: Context) -> SampledReply:
    """Play `context` into the session (see the module docstring) and sample its reply to the last turn."""
    turns = ["\n".join(t) for t in context]
    if len(turns) % 2 == 0:  # the bot's speaker opened; in a session the user speaks first
        turns = turns[1:]
    for user, reply in zip(turns[:-1:2], turns[1::2]):
        session.prime(user, reply)
    for _ in session.respond(turns[-1]):
        pass
    return SampledReply(session.transcript[-1].text, _finished(session), turns[-1],
                        "\n".join(context[-2]) if len(context) > 1 else None)


def _finished(session: ChatSession) -> bool:
    """Whether the session's last reply ended on <eot>."""
    if session.last_reply is not None and session.last_reply.ranked:
        return session.last_reply.current.finished
    tokens = session.last_tokens
    if session.mode is Mode.LM:  # the LM's stream yields its <eot>
        return bool(tokens) and tokens[-1].id == session.engine.vocab.eot_id
    return len(tokens) < session.settings.max_tokens  # the chat model's stream stops before <eot>


def sample_replies(contexts: list[Context], new_session: SessionFactory, seed: int = 0,
                   progress: bool = False) -> list[SampledReply]:
    """One reply per context, each from a fresh session seeded with seed + its index (one BLAS thread)."""
    bar = Progress(len(contexts), "sampling") if progress and contexts else None
    out = []
    with tempfile.TemporaryDirectory(prefix="rnnchat-quality-") as tmp, runtime.one_blas_thread():
        for i, context in enumerate(contexts):
            out.append(play(new_session(SamplingSettings(seed=seed + i), Path(tmp)), context))
            if bar is not None:
                bar.update(i + 1)
    if bar is not None:
        bar.close()
    return out


def distinct_n(replies: list[list[str]], n: int) -> float:
    """Distinct n-grams / all n-grams over the replies' tokens (0 without any n-gram)."""
    grams = [tuple(r[i: i + n]) for r in replies for i in range(len(r) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def reply_metrics(replies: list[SampledReply]) -> dict[str, float]:
    """The metrics of the module docstring (every one 0 without replies)."""
    if not replies:
        return dict.fromkeys(METRICS, 0.0)
    tokens = [tokenize(r.text) for r in replies]
    n = len(replies)
    return {
        "distinct_1": distinct_n(tokens, 1), "distinct_2": distinct_n(tokens, 2),
        "mean_length": sum(map(len, tokens)) / n,
        "empty_rate": sum(not t for t in tokens) / n,
        "cut_rate": sum(not r.finished for r in replies) / n,
        "repeat_rate": sum(repeats(r.text, [r.user] + ([r.previous] if r.previous is not None else []))
                           for r in replies) / n,
    }
