"""Chat replies in batch (`rnnchat chat --batch`): a file of conversations in, one reply to each out.

Input: plain text, one user message per line (a conversation of one message), or JSONL objects
`{"conversation": [...], "id"?, "mode"?, "candidates"?, settings...}` whose conversation alternates user and
assistant turns, user first and last, each a string or an object with a string "text" (and optionally "role";
other keys, as in an exported transcript's turns, are ignored). Every line gets a seed: its own, or one
derived from the run's seed and its line number.

Each reply is made exactly as `rnnchat chat -p` makes it: a `ChatSession` on the same models, the earlier
exchanges primed into both memories, then `respond` to the last message, with the mode's N ranked candidates
and the turn's seed. A conversation runs alone (its N candidates are the batch), so a reply does not depend on
which other conversations a worker ran. The result line holds the reply, its tokens and the ranked candidates
with their scores (best first: chosen and rejected replies, e.g. for preference data).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from rnnchat.engine.batch import BadLine, derive_seed, line_id
from rnnchat.engine.engine import Engine, load_chat_model, make_ranker
from rnnchat.engine.ranking import Ranker, check_candidates
from rnnchat.engine.seq2seq_chat import Seq2SeqChat
from rnnchat.sampling import SamplingSettings, SettingsError
from rnnchat.session.session import ChatSession
from rnnchat.session.transcript import Mode

CHAT_FORMAT = "rnnchat-chat-batch/1"
REPLY_MODES = (Mode.LM.value, Mode.CHAT.value)


@dataclass
class ChatJob:
    id: str
    turns: list[str]  # user, assistant, ..., user: the reply answers the last one
    settings: SamplingSettings
    mode: str
    candidates: int
    line: int = 0

    def to_wire(self) -> str:
        """The job as one JSON text (what a Ray worker receives); `from_wire` gives it back, equal."""
        return json.dumps({"id": self.id, "turns": self.turns, "settings": self.settings.to_dict(),
                           "mode": self.mode, "candidates": self.candidates, "line": self.line})

    @classmethod
    def from_wire(cls, text: str) -> "ChatJob":
        d = json.loads(text)
        return cls(d["id"], d["turns"], SamplingSettings.from_dict(d["settings"]), d["mode"], d["candidates"],
                   d["line"])


def _turns(conversation: object) -> list[str]:
    """The texts of a conversation (alternating, user first and last); ValueError says what is wrong."""
    if not isinstance(conversation, list) or not conversation:
        raise ValueError('"conversation" must be a non-empty list of turns')
    turns = []
    for i, turn in enumerate(conversation):
        want = "user" if i % 2 == 0 else "assistant"
        if isinstance(turn, dict) and isinstance(turn.get("text"), str):
            text, role = turn["text"], turn.get("role", want)
        elif isinstance(turn, str):
            text, role = turn, want
        else:
            raise ValueError(f'turn {i + 1} must be a string or an object with a string "text"')
        if role != want:
            raise ValueError(f"turn {i + 1} must be the {want}'s (turns alternate, the user's first)")
        turns.append(text)
    if len(turns) % 2 == 0:
        raise ValueError("the last turn must be the user's: the reply answers it")
    if not turns[-1].strip():
        raise ValueError("the user's last message is empty")
    return turns


def read_chat_jobs(lines: Iterable[str], defaults: SamplingSettings, mode: str, candidates: int,
                   jsonl: bool) -> Iterator[ChatJob | BadLine]:
    """Jobs from conversation lines (plain text: one message per line; JSONL: see the module's docstring)."""
    for n, line in enumerate(lines, start=1):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        if not jsonl:
            yield ChatJob(str(n), [line], defaults.with_(seed=derive_seed(defaults.seed, n)), mode, candidates, n)
            continue
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict) or "conversation" not in obj:
                raise ValueError('each line must be a JSON object with a "conversation"')
            turns = _turns(obj.pop("conversation"))
            job_id = line_id(obj, n)
            job_mode = obj.pop("mode", mode)
            if job_mode not in REPLY_MODES:
                raise ValueError(f"mode must be one of {', '.join(REPLY_MODES)}, got {job_mode!r}")
            n_cand = check_candidates(obj.pop("candidates", candidates))
            if obj.get("seed") is None:
                obj["seed"] = derive_seed(defaults.seed, n)
            yield ChatJob(job_id, turns, SamplingSettings.from_dict(obj, defaults), job_mode, n_cand, n)
        except (ValueError, SettingsError, RecursionError) as e:
            yield BadLine(n, "too deeply nested" if isinstance(e, RecursionError) else str(e))


class ChatRunner:
    """Replies to chat jobs on loaded models: jobs in, their result lines (JSON text) out."""

    def __init__(self, engine: Engine, seq2seq: Seq2SeqChat | None, ranker: Ranker):
        self.engine, self.seq2seq, self.ranker = engine, seq2seq, ranker

    def unavailable(self, job: ChatJob) -> str | None:
        """Why this job cannot run here (its mode needs a model that is missing), or None."""
        if job.mode == Mode.CHAT.value and self.seq2seq is None:
            return "mode chat needs the seq2seq chat model, which is not available"
        return None

    def reply(self, job: ChatJob) -> dict:
        session = ChatSession(self.engine, None, seq2seq=self.seq2seq, settings=job.settings, ranker=self.ranker,
                              candidates=job.candidates, mode=Mode(job.mode))
        session.autosave_off = True  # nothing of a batch is saved
        for user, bot in zip(job.turns[:-1:2], job.turns[1::2]):
            session.prime(user, bot)
        tokens = list(session.respond(job.turns[-1]))
        ranked = session.last_reply.ranked if session.last_reply is not None else []
        return {"id": job.id,
                "conversation": [{"role": "user" if i % 2 == 0 else "assistant", "text": t}
                                 for i, t in enumerate(job.turns)],
                "reply": "".join(t.text for t in tokens).strip(), "tokens": [t.token for t in tokens],
                "mode": job.mode, "candidates": job.candidates,
                "ranked": [{"text": c.text, "score": round(c.score, 6)} for c in ranked],
                "settings": job.settings.to_dict(), "seed": job.settings.seed}

    def __call__(self, jobs: list[ChatJob]) -> list[str]:
        return [json.dumps(self.reply(job)) for job in jobs]


@dataclass(frozen=True)
class ChatModels:
    """What a worker needs to reply (picklable: paths, None = the shipped model of the worker's own install;
    loaded once per worker)."""

    lm: Path | None = None
    seq2seq: Path | None = None
    backward: Path | None = None

    def runner(self) -> tuple[ChatRunner, list[str]]:
        """The runner on the models loaded now, and notes on the optional ones that are missing."""
        seq2seq, seq2seq_note = load_chat_model(self.seq2seq)
        engine = Engine(self.lm)
        ranker, ranker_notes = make_ranker(engine, self.backward)
        notes = [] if seq2seq is not None else [f"seq2seq chat: unavailable ({seq2seq_note})"]
        return ChatRunner(engine, seq2seq, ranker), notes + ranker_notes

    def load(self) -> Callable[[list[str]], list[str]]:
        """Wire texts (`ChatJob.to_wire`) -> result lines, on the models loaded now."""
        run = self.runner()[0]
        return lambda texts: run([ChatJob.from_wire(t) for t in texts])
