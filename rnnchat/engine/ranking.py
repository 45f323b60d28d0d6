"""Replies chosen from N candidates: sampled together in one batch, then ranked by how well they listen.

A candidate's score is a weighted sum of terms (the same scorers `rnnchat eval chat` measures and tunes):

* `responder`  log p(reply | conversation) per token, under the model that wrote it (the LM or the seq2seq
               chat model);
* `pmi`, `pmi_mean`  log p(reply | conversation) - log p_LM(reply | a fresh state), summed and per token:
               replies that fit anything lose (MMI-antiLM, Li et al. 2016, "A Diversity-Promoting Objective
               Function for Neural Conversation Models");
* `backward`   log p(user's message | reply) per token of the message, under the backward seq2seq model
               (MMI-bidi, same paper): replies from which the message can be told back win;
* `judge`      P(sensible) + P(specific) under the reply judge learnt from judged pools and rounds
               (`models/reply_judge.py`; LM chat only: it reads the LM's state, and needs the backward model;
               while any candidate finished, the cut ones are not judged, nor given the anti-LM term: they lose);
* penalties    a reply cut at max tokens, one that repeats the user or the bot's recent replies, an empty one.

`rank` sorts candidates best first and fills each one's `terms` and `score`, so a UI can show why one won.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field, fields

import numpy as np

from rnnchat.engine.rows import decode_rows, fresh_guide
from rnnchat.engine.conversation import Conversation
from rnnchat.engine.tokens import Token
from rnnchat.models.lm import LMDecoder
from rnnchat.models.reply_judge import ReplyJudge, reply_features
from rnnchat.models.scoring import lm_reply_logprobs, seq2seq_reply_logprobs
from rnnchat.models.seq2seq import Seq2Seq
from rnnchat.sampling import RowSampler, SamplingSettings, SettingsError, skip_ids
from rnnchat.text import Vocab, source_ids, tokenize, turn_ids

MAX_CANDIDATES = 64
# Candidates still being written when this share of them has ended are cut there: they would rank with the
# unfinished penalty anyway, and the longest few rows would otherwise set the time of every reply.
ENOUGH_FINISHED = 0.75


@dataclass(frozen=True)
class RankWeights:
    # responder and pmi_mean: chosen on the judged dev set (bench/chat_judging/dev: SSA 19% vs 6% for one
    # sample). The weights that win hits@1 on chitchat val (0.25 responder + 1 pmi + 1 pmi_mean) pick long
    # replies that wander off (round 1: 26 words, SSA 7.5%): telling the true reply among 20 is not choosing
    # among samples.
    responder: float = 1.0
    pmi: float = 0.0
    pmi_mean: float = 1.0
    backward: float = 0.0
    # the reply judge decides where it is available (cross-validated on judged pools, judge alone >= judge added
    # to the terms above); the terms above then only break near-ties, and rank alone where it is not
    judge: float = 20.0
    # the penalties outweigh the judge's whole range (20 x 2): a cut reply or a repeat loses to any other
    unfinished: float = 45.0  # subtracted from a reply cut before its end
    repeat: float = 50.0      # subtracted from a reply that repeats the user or a recent reply of the bot
    empty: float = 100.0      # subtracted from an empty reply (worse than any other)

    @classmethod
    def from_dict(cls, d: dict) -> "RankWeights":
        names = {f.name for f in fields(cls)}
        if not isinstance(d, dict) or set(d) - names:
            raise SettingsError(f"ranking weights are an object with keys among {sorted(names)}")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in d.values()):
            raise SettingsError("ranking weights must be finite numbers")
        return cls(**{k: float(v) for k, v in d.items()})


@dataclass
class Candidate:
    """One sampled reply: its tokens as a UI shows them, the ids in the responder's vocabulary (without the
    closing <eot>), whether it ended on <eot>, and its log-probability under the responder."""

    tokens: list[Token]
    ids: list[int]
    finished: bool
    logprob: float
    terms: dict[str, float] = field(default_factory=dict)
    lm_logprob: float | None = None  # the LM's own log p(ids (+ <eot>)): `logprob` unless the cache mixed in
    score: float = 0.0
    # the LM's top-layer states after each id and <eot> ((len(ids) + 1, H), LM candidates that finished): what
    # the reply judge reads, kept from decoding so the ranking need not run the reply through the LM again
    states: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def text(self) -> str:
        return "".join(t.text for t in self.tokens).strip("\n")


def check_candidates(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_CANDIDATES:
        raise SettingsError(f"candidates must be an integer in [1, {MAX_CANDIDATES}] (1 = one streamed sample)")
    return n


def row_seeds(seed: int | None, n: int) -> list[int | None]:
    """Each candidate's own seed: reproducible from the reply's seed, independent of N's other rows."""
    if seed is None:
        return [None] * n
    return [int(s) for s in np.random.SeedSequence([seed, 7]).generate_state(n)]


def lm_candidates(conv: Conversation, settings: SamplingSettings, n: int,
                  cancel: threading.Event | None = None) -> list[Candidate]:
    """N replies sampled together from the conversation's current state (the user's turn already fed); a set
    `cancel` ends them after the step in progress (unfinished).

    With the cache on, every row reads the conversation's cache as it was before the reply (a row's own
    tokens are not added while it is decoded, as a streamed reply's are); the chosen reply joins it when fed.
    The conversation itself is not changed: `Conversation.feed_ids` of the chosen one's ids (and <eot> when it
    finished) leaves the memory exactly as if that reply had been streamed.
    """
    vocab = conv.vocab
    banned = skip_ids(settings, vocab)
    rows = [RowSampler(settings, banned, np.random.default_rng(s)) for s in row_seeds(settings.seed, n)]
    recent = conv.history[-settings.repeat_last_n:] if settings.repeat_last_n else []
    for row in rows:
        row.observe(recent)
    logits = np.repeat(conv.logits, n, axis=0)
    state = [(np.repeat(h, n, axis=0), np.repeat(c, n, axis=0)) for h, c in conv.state]
    out = []
    enough = max(1, int(np.ceil(ENOUGH_FINISHED * n))) if n > 1 else None
    adjust = conv.cache.mix if conv.cache is not None and settings.cache else None
    guide = fresh_guide(conv.decoder, vocab, [settings.guidance] * n)
    for d in decode_rows(conv.decoder, vocab, logits, state, rows, [settings] * n, with_logprobs=True,
                         enough=enough, adjust=adjust, guide=guide, not_first=vocab.end_ids, keep_states=True,
                         cancel=cancel):
        ids = d.ids[:-1] if d.finished else d.ids
        tokens = [Token(tid, vocab.itos[tid], piece, p) for tid, p, piece in zip(d.ids, d.probs, d.pieces)]
        out.append(Candidate(tokens, ids, d.finished, d.logprob, lm_logprob=d.lm_logprob, states=d.states))
    return out


def _norm(text: str) -> tuple[str, ...]:
    return tuple(t for t in tokenize(text) if re.search(r"\w", t))


def repeats(reply: str, others: list[str]) -> bool:
    """The reply says (nearly) what one of `others` said: the same words, or >= 80% of its words in one."""
    words = _norm(reply)
    if not words:
        return False
    for other in others:
        theirs = _norm(other)
        if not theirs:
            continue
        if words == theirs or (len(words) >= 3 and sum(w in set(theirs) for w in words) >= 0.8 * len(words)
                               and abs(len(words) - len(theirs)) <= 2):
            return True
    return False


@dataclass
class Ranker:
    """Scores candidates; the LM (anti-LM term), the backward model and the judge are optional (their terms are
    0 without them; the judge also needs the LM and the backward model, and the conversation's LM memory)."""

    lm: LMDecoder | None = None
    lm_vocab: Vocab | None = None
    backward: Seq2Seq | None = None
    backward_vocab: Vocab | None = None
    backward_max_src: int = 40
    weights: RankWeights = field(default_factory=RankWeights)
    judge: ReplyJudge | None = None

    def lm_ids(self, texts: list[str]) -> list[list[int]]:
        """Each reply text as the LM's ids (its messages, each closed by <eom>): what the LM terms score."""
        return [turn_ids(_messages(t), self.lm_vocab) for t in texts]

    def fresh_logprobs(self, texts: list[str]) -> np.ndarray:
        """(N,) log p_LM(reply + <eot>) of each reply text from a fresh state (the anti-LM part of PMI)."""
        return lm_reply_logprobs(self.lm, self.lm_vocab, [], self.lm_ids(texts))

    def backward_scores(self, texts: list[str], user_text: str) -> np.ndarray:
        """(N,) log p(user's message | reply) per token of the message under the backward model (0 without a
        backward model or a message)."""
        if self.backward is None:
            return np.zeros(len(texts))
        v = self.backward_vocab
        target = turn_ids(_messages(user_text), v)[: self.backward_max_src - 1]
        if not target:
            return np.zeros(len(texts))
        srcs = [source_ids(turn_ids(_messages(t), v), v, self.backward_max_src) for t in texts]
        return seq2seq_reply_logprobs(self.backward, v, srcs, [target] * len(texts)) / (len(target) + 1)

    def can_judge(self, conv: Conversation | None) -> bool:
        return (self.judge is not None and self.lm is not None and self.backward is not None and conv is not None
                and conv.decoder is self.lm)

    def rank(self, candidates: list[Candidate], user_text: str, recent_replies: list[str],
             conv: Conversation | None = None) -> list[Candidate]:
        """Fill every candidate's terms and score; return them best first (ties: sampling order).

        conv: LM chat's memory after the user's turn (what the judge reads; None in seq2seq chat)."""
        w, n = self.weights, len(candidates)
        if n == 0:
            return []
        texts = [c.text for c in candidates]
        lengths = np.array([len(c.ids) + c.finished for c in candidates], np.float64).clip(min=1)
        judged = bool(w.judge) and self.can_judge(conv)
        fresh = np.array([c.logprob for c in candidates])  # without the LM: no anti-LM part (PMI = 0)
        back = np.zeros(n)
        judge = np.zeros(n)
        if judged:
            # a cut candidate loses to every finished one whatever the judge says (its penalty outweighs the
            # judge's whole range), so while any candidate finished only those are judged (and get the anti-LM
            # term, and the backward one unless it is weighed on its own): the cut ones are the longest rows
            picked = [i for i, c in enumerate(candidates) if c.finished] or list(range(n))
            scored = list(range(n)) if w.backward else picked
            back[scored] = self.backward_scores([texts[i] for i in scored], user_text)
            chosen = [candidates[i] for i in picked]
            ids = self.lm_ids([c.text for c in chosen])
            # a finished candidate's own sum is the LM's log p(ids + <eot>) when its text reads back to its ids,
            # and its states from decoding are those of its ids
            same = [c.finished and c.ids == j for c, j in zip(chosen, ids)]
            known = np.array([(c.logprob if c.lm_logprob is None else c.lm_logprob) if ok else np.nan
                              for c, ok in zip(chosen, same)])
            states = [c.states if ok else None for c, ok in zip(chosen, same)]
            features, fresh[picked] = reply_features(self.lm, self.lm_vocab, conv.logits, conv.state, ids,
                                                     back[picked], known, states)
            judge[picked] = self.judge.predict(features).sum(axis=1)
        else:
            if w.backward:
                back = self.backward_scores(texts, user_text)
            if self.lm is not None and (w.pmi or w.pmi_mean):
                fresh = self.fresh_logprobs(texts)
        for i, c in enumerate(candidates):
            pmi = c.logprob - float(fresh[i])
            c.terms = {"responder": c.logprob / lengths[i], "pmi": pmi, "pmi_mean": pmi / lengths[i],
                       "backward": float(back[i]), "judge": float(judge[i]),
                       "unfinished": -float(not c.finished),
                       "repeat": -float(repeats(texts[i], [user_text, *recent_replies])),
                       "empty": -float(not _norm(texts[i]))}
            c.score = sum(getattr(w, k) * v for k, v in c.terms.items())
        return [candidates[i] for i in sorted(range(n), key=lambda i: -candidates[i].score)]


def _messages(text: str) -> list[str]:
    return [m for m in text.split("\n") if m.strip()] or [""]
