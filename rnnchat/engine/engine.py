"""The inference engine: loads each checkpoint once and serves conversations, chat replies and live sentiment.

The LM is required; the seq2seq chat model, the sentiment classifier, the backward model and the reply judge are
optional: a loader returns (None, why) when one is missing or unusable, so the UIs can say so and go on without
it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np

from rnnchat import paths
from rnnchat.checkpoint import CheckpointError
from rnnchat.engine.conversation import Conversation
from rnnchat.engine.ranking import Ranker
from rnnchat.engine.sentiment_live import LiveSentiment
from rnnchat.engine.seq2seq_chat import Seq2SeqChat, max_src_of
from rnnchat.models.lm import LMDecoder, load_lm
from rnnchat.models.lm_cache import CacheSettings
from rnnchat.models.reply_judge import ReplyJudge, feature_size
from rnnchat.models.seq2seq import Seq2Seq, load_seq2seq
from rnnchat.text import Vocab

T = TypeVar("T")


def weights_id(named: dict[str, np.ndarray]) -> str:
    """Which weights a model holds: a hash of every parameter's name, shape and every 97th value (fast: ~1 ms for
    the 18 MB LM; two trainings never share it, the same file always gives it)."""
    h = hashlib.sha256()
    for name in sorted(named):
        a = np.asarray(named[name])
        h.update(f"{name}{a.shape}".encode())
        h.update(np.ascontiguousarray(a.ravel()[::97], np.float32).tobytes())
    return h.hexdigest()[:16]


class Engine:
    """Holds the loaded LM; `conversation()` starts a new conversation with it."""

    def __init__(self, lm_path: Path | str | None = None):
        self.lm_path = Path(lm_path or paths.lm_checkpoint())
        model, self.vocab, self.lm_header = load_lm(self.lm_path)
        self.decoder = LMDecoder(model)
        ident = json.dumps([self.lm_header["config"], self.lm_header["vocab"]], sort_keys=True)
        self.model_id = hashlib.sha256(ident.encode()).hexdigest()[:16]
        self.weights_id = weights_id(model.params.named())
        self.cache_settings = _cache_settings(self.lm_path, self.lm_header)

    @property
    def chat_problem(self) -> str | None:
        """Why this LM cannot answer as the next speaker (LM chat), or None: one trained on plain text files
        never saw a turn, so it can only continue text."""
        corpus = self.lm_header["corpus"]
        if corpus.get("name") != "text":
            return None
        names = ", ".join(f.get("name", "?") for f in corpus.get("files", [])[:3] if isinstance(f, dict))
        return (f"the language model {self.lm_path.name} was trained on plain text ({names or 'text files'}), not "
                f"conversations: it can only continue text (continue mode)")

    def conversation(self, cache: bool = False) -> Conversation:
        """A new conversation; with cache (and val-tuned settings in the LM's header) it keeps the LM cache."""
        return Conversation(self.decoder, self.vocab, self.model_id, self.cache_settings if cache else None)


def _cache_settings(path: Path, header: dict) -> CacheSettings | None:
    """The conversation cache's settings chosen on val (`eval lm --cache --split val --record`), if any."""
    chosen = header["metrics"].get("cache_settings")
    if chosen is None:
        return None
    try:
        return CacheSettings(theta=float(chosen["theta"]), lam=float(chosen["lam"]), size=int(chosen["size"]))
    except (TypeError, KeyError, ValueError) as e:
        raise CheckpointError(f"{path}: unusable cache_settings in the header ({e})") from None


def _optional(path: Path, what: str, load: Callable[[Path], T]) -> tuple[T | None, str]:
    """`load(path)`, or (None, why not): the file is missing or unusable (ValueError names the problem)."""
    if not path.exists():
        return None, f"no {what} at {path}"
    try:
        return load(path), ""
    except (CheckpointError, OSError, ValueError) as e:
        return None, str(e)


def load_chat_model(path: Path | str | None = None) -> tuple[Seq2SeqChat | None, str]:
    """The seq2seq chat model (default: the shipped one), or (None, why it is unavailable)."""
    return _optional(Path(path or paths.seq2seq_checkpoint("chat")), "seq2seq chat model", Seq2SeqChat.load)


def load_live_sentiment(path: Path | str | None = None) -> tuple[LiveSentiment | None, str]:
    """The live sentiment classifier (default: the shipped one), or (None, why it is unavailable)."""
    return _optional(Path(path or paths.sentiment_checkpoint()), "sentiment model", LiveSentiment.from_checkpoint)


def load_backward_model(path: Path | str | None = None) -> tuple[tuple[Seq2Seq, Vocab, int] | None, str]:
    """The backward scorer p(message | reply) (default: the shipped one) as (model, vocabulary, max_src), or
    (None, why it is unavailable)."""
    def load(path: Path) -> tuple[Seq2Seq, Vocab, int]:
        model, vocab, header = load_seq2seq(path)
        if header.get("task") != "chat_backward":
            raise ValueError(f"{path}: not a backward chat model (task {header.get('task')!r})")
        return model, vocab, max_src_of(path, header)
    return _optional(Path(path or paths.seq2seq_checkpoint("chat_backward")), "backward model", load)


def load_reply_judge(engine: Engine, backward_id: str, path: Path | str | None = None
                     ) -> tuple[ReplyJudge | None, str]:
    """The reply judge (default: the shipped one) if it reads this engine's LM and the backward model whose
    `weights_id` is given (its features are theirs), or (None, why not)."""
    def load(path: Path) -> ReplyJudge:
        judge = ReplyJudge.load(path)
        if judge.lm_id != engine.weights_id:
            raise ValueError(f"{path} was trained for another language model; `rnnchat train reply-judge` makes "
                             f"one for this one")
        if judge.backward_id != backward_id:
            raise ValueError(f"{path} was trained with another backward model")
        if judge.mean.shape[0] != feature_size(engine.decoder.hidden):
            raise ValueError(f"{path} reads {judge.mean.shape[0]} features, this LM gives "
                             f"{feature_size(engine.decoder.hidden)}")
        return judge
    return _optional(Path(path or paths.reply_judge_checkpoint()), "reply judge", load)


def make_ranker(engine: Engine, backward_path: Path | str | None = None, judge_path: Path | str | None = None
                ) -> tuple[Ranker, list[str]]:
    """The reply ranker with the backward model and the reply judge where they are usable, and a note for each
    one that is not (the judge also needs the backward model)."""
    backward, backward_note = load_backward_model(backward_path)
    if backward is None:
        judge, judge_note = None, "it reads the backward model's score"
        notes = [f"reply ranking without the backward model ({backward_note})"]
    else:
        judge, judge_note = load_reply_judge(engine, weights_id(backward[0].params.named()), judge_path)
        notes = []
    if judge is None:
        notes.append(f"reply ranking without the reply judge ({judge_note})")
    return Ranker(engine.decoder, engine.vocab, *(backward or (None, None)), judge=judge), notes
