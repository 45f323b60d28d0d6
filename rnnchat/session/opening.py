"""Opening a chat session at start: load every model once, prepare the data directory, restore the last
conversation, and say what is missing (`open_session`, used by both UIs)."""

from __future__ import annotations

from pathlib import Path

from rnnchat import paths
from rnnchat.engine.engine import Engine, load_chat_model, load_live_sentiment, make_ranker
from rnnchat.engine.ranking import check_candidates
from rnnchat.sampling import SamplingSettings
from rnnchat.session.config import DEFAULT_CANDIDATES, DEFAULT_MODE
from rnnchat.session.session import ChatSession
from rnnchat.session.store import SessionError, Store
from rnnchat.session.transcript import Mode


def open_session(lm_path: Path, sentiment_path: Path | None, settings: SamplingSettings,
                 fresh: bool = False, seq2seq_path: Path | None = None, candidates: int = DEFAULT_CANDIDATES,
                 backward_path: Path | None = None, directory: Path | None = None,
                 mode: Mode | str = DEFAULT_MODE, restore: bool = True) -> tuple[ChatSession, list[str]]:
    """Load the models and the last conversation; returns the session and notes to show. With `fresh`, a new
    conversation, the last one kept under a dated name (`/load` lists it), as `/reset` keeps it. Without
    `restore`, the last conversation is neither read nor kept (a one-shot reply that saves nothing).

    `directory`: the data directory (default `paths.data_dir()`); SessionError if it cannot be one. `mode`: the
    mode to start in (LM chat, with a note, where it needs a model that is missing).

    Without a usable seq2seq chat model (default: the shipped one) the chat mode is unavailable, with a note;
    without the backward model or the reply judge, ranking goes without their terms. SessionError if the LM is missing,
    SettingsError for skip words outside its vocabulary or a bad number of candidates.
    """
    if not Path(lm_path).exists():
        raise SessionError(f"no language model at {lm_path}; train one with `rnnchat train lm`")
    check_candidates(candidates)
    store = Store(directory or paths.data_dir())
    data_note = store.prepare()
    sentiment, note = load_live_sentiment(sentiment_path)
    seq2seq, seq2seq_note = load_chat_model(seq2seq_path)
    engine = Engine(lm_path)
    ranker, ranker_notes = make_ranker(engine, backward_path)
    session = ChatSession(engine, sentiment, sentiment_note=note, seq2seq=seq2seq, seq2seq_note=seq2seq_note,
                          settings=settings, ranker=ranker, candidates=candidates, directory=directory)
    notes = [f"sentiment: unavailable ({note})"] if sentiment is None else []
    if data_note:
        notes.append(data_note)
    else:
        store.remove_stale_temporaries()
        if not session.store.lock():
            session.autosave_off = True
            notes.append(f"another rnnchat is using {store.directory}: this one does not autosave (save by name "
                         f"with Ctrl+S or /save)")
    if seq2seq is None:
        notes.append(f"seq2seq chat: unavailable ({seq2seq_note})")
    if candidates > 1:
        notes += ranker_notes
    if restore and (problem := session.restore()):
        notes.append(problem)
    elif restore and fresh and (session.transcript or session.conv.history):
        notes.append(_start_fresh(session))
    if (why := session.unavailable(Mode(mode))) is None:
        session.set_mode(mode)
    else:
        notes.append(f"starting in {'continue mode' if session.fallback_mode is Mode.CONTINUE else 'LM chat'}: {why}")
    return session, notes


def _start_fresh(session: ChatSession) -> str:
    """`--fresh` on a restored conversation: keep it under a dated name (as `/reset` does), then start anew;
    where it cannot be kept, start anew without autosaving, so the autosaved one is left as it was."""
    try:
        return f"new conversation (the previous one is kept: /load {session.reset()})"
    except SessionError:
        session.autosave_off = True
        session.reset(force=True)
        return ("the last conversation could not be kept under a new name (a read-only or full disk?): this new "
                "one is not autosaved, so the last is left as it was")
