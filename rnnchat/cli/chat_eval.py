"""`rnnchat eval chat`: hits@1 of 20 per scorer (rnnchat.train.chat_eval) and the replies a chat session samples
for held-out contexts (rnnchat.session.quality), in one report.

    rnnchat eval chat --split test --positions 200 --samples 100 --json    # the session's default mode
    rnnchat eval chat --split test --samples 100 --mode lm --candidates 1  # LM chat, one streamed sample
    rnnchat eval chat --split val --samples 0                              # hits@1 only

The sampled replies answer `--samples` positions drawn by `--seed` (as the ranked ones are: the same positions
when `--samples` equals `--positions`), each by a fresh session in `--mode` ranking `--candidates` replies
with the default sampling settings. The JSON adds distinct_1, distinct_2, mean_length, empty_rate, cut_rate and
repeat_rate at its top level and what they were sampled with under "sampled".
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from rnnchat.engine.ranking import check_candidates
from rnnchat.sampling import SamplingSettings, SettingsError
from rnnchat.session import quality
from rnnchat.session.config import DEFAULT_CANDIDATES
from rnnchat.session.store import SessionError
from rnnchat.train import chat_eval
from rnnchat.train.chat_eval import EvalError, Models

EXAMPLES = 5  # sampled replies shown in the JSON


def _samples(text: str) -> int:
    n = int(text)
    if n < 0:
        raise argparse.ArgumentTypeError("must be at least 0 (0 = no sampled replies)")
    return n


def _candidates(text: str) -> int:
    try:
        return check_candidates(int(text))
    except SettingsError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    chat_eval.add_eval_arguments(p)
    p.description += " Also metrics of replies a chat session samples for held-out contexts."
    p.add_argument("--samples", type=_samples, default=100,
                   help="positions to sample a session's reply for (default 100; 0 = none)")
    p.add_argument("--mode", choices=("chat", "lm"), default=None,
                   help="the sampling session's mode (default: a session's default mode)")
    p.add_argument("--candidates", type=_candidates, default=DEFAULT_CANDIDATES,
                   help=f"replies the session samples and ranks per message (default {DEFAULT_CANDIDATES}, the "
                        f"chat's; 1 = one streamed sample)")


def _sessions(args: argparse.Namespace, models: Models) -> tuple[quality.SessionFactory, str] | None:
    """The sampling sessions' factory and mode (None: no LM, so no session)."""
    used = models.paths
    if "lm" not in used:
        if args.mode is not None:  # (asked for by name: not skipped in silence)
            raise EvalError(f"--mode {args.mode}: sampled replies need the LM, which --lm none leaves out "
                            f"(or --samples 0: no sampled replies)", 2)
        return None
    make, mode = quality.session_factory(used["lm"], used.get("seq2seq"), used.get("backward"), args.mode,
                                         args.candidates)
    return make, mode.value


def _sampled(args: argparse.Namespace, convs: list[dict], make: quality.SessionFactory, mode: str) -> dict:
    t0 = time.perf_counter()
    contexts = [p.context for p in chat_eval.pick_positions(convs, args.samples, args.seed)]
    replies = quality.sample_replies(contexts, make, args.seed, progress=not args.quiet)
    settings = SamplingSettings().to_dict()
    settings.pop("seed")
    meta = {"positions": len(replies), "mode": mode, "candidates": args.candidates, "seed": args.seed,
            "sampling": settings, "sample_s": round(time.perf_counter() - t0, 1),
            "examples": [{"message": r.user, "reply": r.text, "finished": r.finished} for r in replies[:EXAMPLES]]}
    return quality.reply_metrics(replies) | {"sampled": meta}


def run(args: argparse.Namespace) -> int:
    try:
        models, convs = chat_eval.load_inputs(args)
        sessions = _sessions(args, models) if args.samples else None
    except (EvalError, SessionError, SettingsError) as e:
        print(f"rnnchat: error: {e}", file=sys.stderr)
        return getattr(e, "code", 1)
    result = chat_eval.run_ranking(args, models, convs)
    if sessions is not None:
        result |= _sampled(args, convs, *sessions)
    elif args.samples:
        result["notes"].append("sampled replies: skipped (a chat session needs the LM)")
    if args.json:
        print(json.dumps(result))
        return 0
    chat_eval.print_ranking(result)
    if "sampled" in result:
        s = result["sampled"]
        print(f"sampled replies ({s['mode']} mode, {s['candidates']} candidates, {s['positions']} positions, "
              f"{s['sample_s']}s): distinct-1 {result['distinct_1']:.3f}, distinct-2 {result['distinct_2']:.3f}, "
              f"mean length {result['mean_length']:.1f} tokens, empty {result['empty_rate']:.3f}, "
              f"cut {result['cut_rate']:.3f}, repeat {result['repeat_rate']:.3f}")
    return 0
