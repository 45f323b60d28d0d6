"""`rnnchat train seq2seq` and `rnnchat eval seq2seq`: the synthetic tasks (`seq2seq_tasks`) and the chat model
(`seq2seq_chat`) behind one set of flags."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import fields
from pathlib import Path

from rnnchat import paths
from rnnchat.checkpoint import CheckpointError
from rnnchat.models.seq2seq import load_seq2seq
from rnnchat.sampling import SamplingSettings
from rnnchat.train.seq2seq_chat import evaluate_chat, load_chat_chains, train_chat
from rnnchat.train.seq2seq_run import CHAT_TASKS, TASK_NAMES, Seq2SeqTrainArgs
from rnnchat.train.seq2seq_tasks import evaluate_task, load_task, train_task


def train_seq2seq(a: Seq2SeqTrainArgs) -> dict:
    return train_chat(a) if a.task in CHAT_TASKS else train_task(a)


def eval_seq2seq(task: str, checkpoint: Path | None = None, split: str = "test", beam: int = 0,
                 n_samples: int = 500, settings: SamplingSettings | None = None) -> dict:
    """Evaluate a checkpoint: tasks -> held-out exact match; chat -> perplexity carried/fresh, distinct-n."""
    path = Path(checkpoint or paths.seq2seq_checkpoint(task))
    model, vocab, header = load_seq2seq(path)
    if header.get("task") != task:
        raise CheckpointError(f"{path}: holds a model for task {header.get('task')!r}, not {task!r}")
    t0 = time.perf_counter()
    if task in CHAT_TASKS:
        dec = header["decoding"]
        chains = load_chat_chains(split, vocab, dec["max_src"], dec["max_tgt"], backward=task == "chat_backward")
        out = evaluate_chat(model, vocab, chains, n_samples, settings) | {"split": split}
    else:
        hp = header.get("training", {})
        ts = load_task(task, hp.get("n_examples") or 50_000, hp.get("seed", 0))
        if ts.vocab.to_list() != vocab.to_list():
            raise CheckpointError(f"{path}: vocabulary does not match the regenerated {task} task")
        out = evaluate_task(model, ts, beam=beam, errors=10) | {"split": "heldout"}
    return {"task": task, "checkpoint": str(path), "variant": model.config.variant, **out,
            "wall_s": round(time.perf_counter() - t0, 1)}


# -- command line (wired by rnnchat.cli) ---------------------------------------------------------------------
def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of `rnnchat train seq2seq`; unset architecture/optimisation flags take the task's defaults."""
    p.add_argument("--task", choices=TASK_NAMES, default="addition")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    p.add_argument("--run-dir", type=Path, default=None, help="run directory (default runs/seq2seq_TASK)")
    p.add_argument("--out", type=Path, default=None,
                   help="best checkpoint (default RUN_DIR/seq2seq_TASK.npz; never the shipped model)")
    for name in ("embed", "hidden", "proj", "batch_size", "eval_every", "n_examples", "vocab_size", "max_src",
                 "max_tgt", "window", "max_train_convs"):
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=None)
    for name in ("dropout", "lr", "clip", "epochs", "lr_decay", "max_minutes"):
        p.add_argument(f"--{name.replace('_', '-')}", type=float, default=None)
    for name in ("bidirectional", "reverse", "peeky", "tie"):
        p.add_argument(f"--{name}", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--attention", choices=("none", "dot", "general"), default=None)
    p.add_argument("--seed", type=int, default=0)


def run_train_command(args: argparse.Namespace) -> int:
    names = {f.name for f in fields(Seq2SeqTrainArgs)}
    result = train_seq2seq(Seq2SeqTrainArgs(**{k: v for k, v in vars(args).items() if k in names}))
    print(json.dumps({k: v for k, v in result.items() if k not in ("samples", "errors")}))
    return 0


def add_eval_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", choices=TASK_NAMES, default="addition")
    p.add_argument("--checkpoint", type=Path, default=None, help="default rnnchat/checkpoints/seq2seq_TASK.npz")
    p.add_argument("--split", choices=("val", "test"), default="test", help="chat: held-out split")
    p.add_argument("--beam", type=int, default=0, help="tasks: also exact match with beam search of this width")
    p.add_argument("--samples", type=int, default=500, help="chat: replies sampled for distinct-n")
    p.add_argument("--json", action="store_true")


def run_eval_command(args: argparse.Namespace) -> int:
    result = eval_seq2seq(args.task, args.checkpoint, args.split, args.beam, args.samples)
    if args.json:
        print(json.dumps(result))
        return 0
    if args.task in CHAT_TASKS:
        print(f"{args.split}: reply perplexity {result['perplexity_carried']:.2f} with carried state, "
              f"{result['perplexity_fresh']:.2f} fresh; distinct-1 {result['distinct_1']:.3f}, "
              f"distinct-2 {result['distinct_2']:.3f} ({result['checkpoint']})")
        for s in result["samples"][:5]:
            print(f"  > {s['source']}\n  < {s['reply']}")
    else:
        line = f"{args.task}: held-out exact match {result['exact_match']:.2%} (greedy)"
        if args.beam:
            line += f", {result[f'exact_match_beam{args.beam}']:.2%} (beam {args.beam})"
        print(f"{line} over {result['examples']} examples ({result['checkpoint']})")
    return 0
