"""`rnnchat eval chat`: how well each model picks the true next turn of a held-out conversation among 20.

    rnnchat eval chat --split val --positions 200 --backward /tmp/bwtree/bw.npz --json
    rnnchat eval chat --split val --tune               # grid-search the combined scorer's weights (val only)
    rnnchat eval chat --split test --weights '{"lm_pmi_sum": 1, "seq2seq_backward": 0.5}'
    rnnchat eval chat --conversations my.jsonl         # any JSONL of {"turns": [[message, ...], ...]}

Positions: from the held-out conversations, `--positions` (turn k >= 1 of a conversation) drawn by `--seed`;
the context is the turns before k (for the LM, the latest whole turns that fit in 400 tokens), the true reply
turn k (at most 60 tokens). Its 19 distractors are turns of OTHER conversations (same seed). hits@1 of 20 is
the share of positions where the true turn scores strictly highest (ConvAI2's metric; chance 0.05).

Scorers (every one whose model is available; `--lm/--seq2seq/--backward none` leaves one out):
  lm_mean_logprob    log p_LM(reply | context) / tokens
  lm_pmi_sum         log p_LM(reply | context) - log p_LM(reply | fresh state), summed over the reply
  lm_pmi_mean        the same per token
  seq2seq_forward    log p_chat(reply | last turn) / tokens (the chat model, from a fresh state)
  seq2seq_backward   log p_backward(last turn | reply) / tokens of the last turn (MMI-bidi's backward score)
  combined           sum of weight * score over the scorers above (`--weights`, default DEFAULT_WEIGHTS)
Tokens count each reply's closing <eot>. Also reported: the LM's and the chat model's perplexity on the true
replies. Scoring runs on one BLAS thread (several are much slower on a busy machine); 200 positions take
about 1-2 minutes on 2 cores.

The command (rnnchat.cli.chat_eval) runs this ranking (`load_inputs`, `run_ranking`, `print_ranking`) and adds
metrics of replies sampled by a chat session (rnnchat.session.quality).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnnchat import paths, runtime
from rnnchat.checkpoint import CheckpointError
from rnnchat.data import corpora, jsonl
from rnnchat.data.corpora import CorpusError
from rnnchat.models.lm import LMDecoder, load_lm
from rnnchat.models.scoring import lm_reply_logprobs, seq2seq_reply_logprobs, token_counts
from rnnchat.models.seq2seq import Seq2Seq, load_seq2seq
from rnnchat.progress import Progress
from rnnchat.text import Vocab, source_ids, tokenize, turn_ids
from rnnchat.train.seq2seq_chat import target_ids

CANDIDATES, MAX_CONTEXT, MAX_REPLY = 20, 400, 60
SCORERS = ("lm_mean_logprob", "lm_pmi_sum", "lm_pmi_mean", "seq2seq_forward", "seq2seq_backward")
# tuned on val (200 positions, seed 0, `--tune`) with the shipped LM, chat model and backward model (epoch 6):
# hits@1 0.385 on val; 0.42 on test (lm_pmi_sum alone: 0.325 val, 0.39 test)
DEFAULT_WEIGHTS = {"lm_pmi_sum": 0.25, "lm_pmi_mean": 0.5, "seq2seq_backward": 2.0}
TUNE_GRID = (0.0, 0.25, 0.5, 1.0, 2.0)

Turn = list[str]  # a turn's messages


# -- positions -------------------------------------------------------------------------------------------------
@dataclass
class Position:
    context: list[Turn]     # the turns before the reply, oldest first (at least one)
    candidates: list[Turn]  # the true next turn first, then the distractors


def turn_tokens(turn: Turn) -> tuple[int, int]:
    """(words, ids) of a turn: its tokens, and its length as model input (each message followed by <eom>)."""
    words = sum(len(tokenize(m)) for m in turn)
    return words, words + len(turn)


def pick_positions(convs: list[dict], n: int, seed: int, candidates: int = CANDIDATES,
                   max_reply: int = MAX_REPLY) -> list[Position]:
    """Up to n positions drawn by seed, each with candidates - 1 distinct distractors from other conversations."""
    ok = [[0 < w and ids <= max_reply for w, ids in map(turn_tokens, c["turns"])] for c in convs]
    eligible = [(ci, k) for ci, c in enumerate(convs) for k in range(1, len(c["turns"])) if ok[ci][k]]
    pool = [(ci, k) for ci, c in enumerate(convs) for k in range(len(c["turns"])) if ok[ci][k]]
    if not eligible:
        raise CorpusError("no conversation has a reply turn to rank (a turn after the first, 1-60 tokens)")
    rng = np.random.default_rng(seed)
    out = []
    for i in rng.choice(len(eligible), size=min(n, len(eligible)), replace=False):
        ci, k = eligible[i]
        true = convs[ci]["turns"][k]
        cands, seen = [true], {tuple(true)}
        for _ in range(100 * candidates):
            if len(cands) == candidates:
                break
            cj, kj = pool[int(rng.integers(len(pool)))]
            turn = convs[cj]["turns"][kj]
            if cj != ci and tuple(turn) not in seen:
                cands.append(turn)
                seen.add(tuple(turn))
        if len(cands) < candidates:
            raise CorpusError(f"too few distinct turns in other conversations for {candidates - 1} distractors")
        out.append(Position(convs[ci]["turns"][:k], cands))
    return out


def load_conversations(path: Path) -> list[dict]:
    """A JSONL file of {"turns": [[message, ...], ...]} (other keys ignored); CorpusError names any problem."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise CorpusError(f"cannot read conversations file {path}: {e}") from None
    convs = []
    try:
        records = list(jsonl.values(lines, str(path)))
    except ValueError as e:
        raise CorpusError(str(e)) from None
    for no, rec in records:
        turns = rec.get("turns") if isinstance(rec, dict) else None
        if not (isinstance(turns, list) and all(isinstance(t, list) and t and all(isinstance(m, str) for m in t)
                                                for t in turns)):
            raise CorpusError(f'{path}:{no}: expected {{"turns": [[message, ...], ...]}} with non-empty turns '
                              f"of strings")
        convs.append({"turns": turns})
    if not convs:
        raise CorpusError(f"{path}: no conversations")
    return convs


# -- models ----------------------------------------------------------------------------------------------------
@dataclass
class ChatModel:
    """A seq2seq chat model (forward or backward) with its vocabulary and input limits."""

    model: Seq2Seq
    vocab: Vocab
    max_src: int
    max_tgt: int


@dataclass
class Models:
    lm: tuple[LMDecoder, Vocab] | None
    forward: ChatModel | None
    backward: ChatModel | None
    paths: dict[str, str]
    notes: list[str]


def _resolve(given: str | None, default: Path, name: str, notes: list[str]) -> Path | None:
    """The checkpoint to use: an explicit path (must load), 'none' (skip), or the default if it exists."""
    if given is not None:
        if given.lower() == "none":
            notes.append(f"{name}: left out (--{name.replace('_', '-')} none)")
            return None
        return Path(given)
    if default.exists():
        return default
    notes.append(f"{name}: no checkpoint at {default}, scorer skipped")
    return None


def _chat_model(path: Path, task: str) -> ChatModel:
    model, vocab, header = load_seq2seq(path)
    if header.get("task") != task:
        raise CheckpointError(f"{path}: a {header.get('task')!r} model, expected {task!r}")
    dec = header["decoding"]
    return ChatModel(model, vocab, int(dec.get("max_src", 40)), int(dec.get("max_tgt", 40)))


def load_models(lm: str | None, seq2seq: str | None, backward: str | None) -> Models:
    notes: list[str] = []
    p_lm = _resolve(lm, paths.lm_checkpoint(), "lm", notes)
    p_fw = _resolve(seq2seq, paths.seq2seq_checkpoint("chat"), "seq2seq", notes)
    p_bw = _resolve(backward, paths.seq2seq_checkpoint("chat_backward"), "backward", notes)
    lm_pair = None
    if p_lm is not None:
        model, vocab, _ = load_lm(p_lm)
        lm_pair = (LMDecoder(model), vocab)
    used = {k: str(p) for k, p in (("lm", p_lm), ("seq2seq", p_fw), ("backward", p_bw)) if p is not None}
    return Models(lm_pair, None if p_fw is None else _chat_model(p_fw, "chat"),
                  None if p_bw is None else _chat_model(p_bw, "chat_backward"), used, notes)


# -- scoring ---------------------------------------------------------------------------------------------------
def lm_context(turns: list[list[int]], eot: int, max_tokens: int = MAX_CONTEXT) -> list[int]:
    """The latest whole turns (each + <eot>) that fit in max_tokens; the last one's tail if none fits whole."""
    out: list[int] = []
    for ids in reversed(turns):
        ids = [*ids, eot]
        if len(out) + len(ids) > max_tokens:
            return out or ids[-max_tokens:]
        out = ids + out
    return out


@dataclass
class PositionScores:
    scores: dict[str, np.ndarray]         # scorer -> (candidates,)
    true_logprob: dict[str, tuple[float, int]]  # model -> (log p of the true reply, its tokens)


def score_position(p: Position, m: Models) -> PositionScores:
    scores, true = {}, {}
    last = p.context[-1]
    if m.lm is not None:
        dec, vocab = m.lm
        cands = [turn_ids(c, vocab) for c in p.candidates]
        n = token_counts(cands)
        ctx = lm_context([turn_ids(t, vocab) for t in p.context], vocab.eot_id)
        lp = lm_reply_logprobs(dec, vocab, ctx, cands)
        pmi = lp - lm_reply_logprobs(dec, vocab, [], cands)
        scores |= {"lm_mean_logprob": lp / n, "lm_pmi_sum": pmi, "lm_pmi_mean": pmi / n}
        true["lm"] = (float(lp[0]), int(n[0]))
    if m.forward is not None:
        f = m.forward
        tgts = [target_ids(turn_ids(c, f.vocab), f.max_tgt) for c in p.candidates]
        lp = seq2seq_reply_logprobs(f.model, f.vocab, source_ids(turn_ids(last, f.vocab), f.vocab, f.max_src), tgts)
        n = token_counts(tgts)
        scores["seq2seq_forward"] = lp / n
        true["seq2seq_forward"] = (float(lp[0]), int(n[0]))
    if m.backward is not None:
        b = m.backward
        srcs = [source_ids(turn_ids(c, b.vocab), b.vocab, b.max_src) for c in p.candidates]
        tgt = target_ids(turn_ids(last, b.vocab), b.max_tgt)
        scores["seq2seq_backward"] = seq2seq_reply_logprobs(b.model, b.vocab, srcs, [tgt] * len(srcs)) / (len(tgt) + 1)
    return PositionScores(scores, true)


def score_positions(positions: list[Position], m: Models, progress: bool = True) -> list[PositionScores]:
    bar = Progress(len(positions), "scoring") if progress else None
    out = []
    with runtime.one_blas_thread():
        for i, p in enumerate(positions, 1):
            out.append(score_position(p, m))
            if bar is not None:
                bar.update(i)
    if bar is not None:
        bar.close()
    return out


def stack(scored: list[PositionScores]) -> dict[str, np.ndarray]:
    """scorer -> (positions, candidates); the true reply is column 0."""
    return {k: np.stack([s.scores[k] for s in scored]) for k in SCORERS if scored and k in scored[0].scores}


def hits_at_1(scores: np.ndarray) -> float:
    """Share of rows whose column 0 (the true reply) is strictly above every other column."""
    return float(np.mean(scores[:, 0] > scores[:, 1:].max(axis=1))) if len(scores) else 0.0


def combine(scores: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray | None:
    """sum of weight * score over the weighted scorers present (None if none is)."""
    used = [(w, scores[k]) for k, w in weights.items() if k in scores and w]
    return sum(w * s for w, s in used) if used else None


def tune_weights(scores: dict[str, np.ndarray], grid: tuple[float, ...] = TUNE_GRID
                 ) -> tuple[dict[str, float], float]:
    """Grid search of the combined scorer's weights for hits@1 (run it on val, never on test).

    Every combination of grid values over the scorers present; the first best in order of fewest nonzero
    weights wins (simpler combinations first). Returns (weights of the nonzero scorers, their hits@1).
    """
    names = list(scores)
    combos = sorted((c for c in itertools.product(grid, repeat=len(names)) if any(c)),
                    key=lambda c: sum(w != 0 for w in c))
    best, best_hits = {}, -1.0
    for combo in combos:
        weights = {k: w for k, w in zip(names, combo) if w}
        hits = hits_at_1(combine(scores, weights))
        if hits > best_hits:
            best, best_hits = weights, hits
    return best, best_hits


def perplexity(scored: list[PositionScores], model: str) -> float | None:
    pairs = [s.true_logprob[model] for s in scored if model in s.true_logprob]
    count = sum(n for _, n in pairs)
    return math.exp(-sum(lp for lp, _ in pairs) / count) if count else None


def evaluate(convs: list[dict], m: Models, n: int, seed: int, weights: dict[str, float], tune: bool = False,
             progress: bool = True) -> dict:
    t0 = time.perf_counter()
    positions = pick_positions(convs, n, seed)
    scored = score_positions(positions, m, progress)
    scores = stack(scored)
    hits = {k: hits_at_1(s) for k, s in scores.items()}
    notes = list(m.notes)
    combined = combine(scores, weights)
    if combined is None:
        notes.append("combined: no weighted scorer available, skipped")
    else:
        hits["combined"] = hits_at_1(combined)
    ppl = {k: perplexity(scored, k) for k in ("lm", "seq2seq_forward")}
    out = {"hits_at_1": hits, "positions": len(positions), "candidates": CANDIDATES, "chance": 1 / CANDIDATES,
           "seed": seed, "weights": {k: w for k, w in weights.items() if k in scores},
           "reply_perplexity": {k: v for k, v in ppl.items() if v is not None}, "checkpoints": m.paths,
           "notes": notes}
    if tune and scores:
        best, best_hits = tune_weights(scores)
        out["tuned"] = {"weights": best, "hits_at_1": best_hits, "grid": list(TUNE_GRID)}
    out["eval_s"] = round(time.perf_counter() - t0, 1)
    return out


# -- command ---------------------------------------------------------------------------------------------------
def _weights(text: str) -> dict[str, float]:
    try:
        w = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not JSON: {e.msg}") from None
    except RecursionError:
        raise argparse.ArgumentTypeError("JSON nested too deeply") from None
    if not (isinstance(w, dict) and all(k in SCORERS and isinstance(v, (int, float)) and not isinstance(v, bool)
                                        and math.isfinite(v) for k, v in w.items())):
        raise argparse.ArgumentTypeError(f"expected an object of scorer -> number, scorers: {', '.join(SCORERS)}")
    return {k: float(v) for k, v in w.items()}


def _count(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return n


def add_eval_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Rank the true next turn of held-out conversations among 20 (19 turns of other "
                     "conversations) with each model; hits@1 per scorer (chance 0.05).")
    p.add_argument("--split", choices=("val", "test"), default="test", help="chitchat split (default test)")
    p.add_argument("--conversations", type=Path, metavar="FILE.jsonl",
                   help='any JSONL of {"turns": [[message, ...], ...]} instead of a chitchat split')
    p.add_argument("--positions", type=_count, default=200, help="positions ranked (default 200)")
    p.add_argument("--seed", type=int, default=0, help="draws the positions and their distractors")
    p.add_argument("--json", action="store_true")
    p.add_argument("--lm", metavar="PATH", help="language model (default rnnchat/checkpoints/lm.npz; 'none': leave out)")
    p.add_argument("--seq2seq", metavar="PATH", help="chat model (default rnnchat/checkpoints/seq2seq_chat.npz)")
    p.add_argument("--backward", metavar="PATH",
                   help="backward model p(message | reply) (default rnnchat/checkpoints/seq2seq_chat_backward.npz)")
    p.add_argument("--weights", type=_weights, default=None, metavar="JSON",
                   help=f"combined scorer's weights, e.g. '{json.dumps(DEFAULT_WEIGHTS)}' (that is the default)")
    p.add_argument("--tune", action="store_true", help="also grid-search the combined weights (val only)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


class EvalError(Exception):
    """Flags that cannot be run; `code` is the exit status the command returns."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def load_inputs(args: argparse.Namespace) -> tuple[Models, list[dict]]:
    """The models and conversations the flags name (EvalError for flags that cannot run)."""
    if args.tune and args.conversations is None and args.split == "test":
        raise EvalError("--tune fits weights; run it on --split val, never on test", 2)
    models = load_models(args.lm, args.seq2seq, args.backward)
    if models.lm is None and models.forward is None and models.backward is None:
        raise EvalError("no model to score with")
    convs = (load_conversations(args.conversations) if args.conversations is not None
             else corpora.load_chitchat(args.split))
    return models, convs


def run_ranking(args: argparse.Namespace, models: Models, convs: list[dict]) -> dict:
    """hits@1 of every scorer as the flags ask (the JSON `rnnchat eval chat --json` prints)."""
    weights = DEFAULT_WEIGHTS if args.weights is None else args.weights
    result = evaluate(convs, models, args.positions, args.seed, weights, args.tune, progress=not args.quiet)
    result["split"] = str(args.conversations) if args.conversations is not None else args.split
    return result


def print_ranking(result: dict) -> None:
    """The text report of `run_ranking`'s result."""
    print(f"hits@1 of {CANDIDATES} on {result['positions']} positions of {result['split']} "
          f"(chance {1 / CANDIDATES:.2f}, {result['eval_s']}s):")
    for name, h in result["hits_at_1"].items():
        print(f"  {name:<18} {h:.3f}")
    if result["reply_perplexity"]:
        print("reply perplexity: " + ", ".join(f"{k} {v:.1f}" for k, v in result["reply_perplexity"].items()))
    if "tuned" in result:
        print(f"tuned weights: {json.dumps(result['tuned']['weights'])} (hits@1 {result['tuned']['hits_at_1']:.3f})")
    for note in result["notes"]:
        print(f"note: {note}")
