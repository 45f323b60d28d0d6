"""What every seq2seq training run shares: its arguments (task defaults filled in), its clock over `--resume`
invocations, epoch-seeded batch orders (exact resume) and the fit loop with `--max-minutes`."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from rnnchat.atomic import atomic_write_bytes
from rnnchat.models.seq2seq import Seq2SeqConfig
from rnnchat.train.trainer import Trainer, as_resumed, check_out, check_run_dir

TASK_NAMES = ("addition", "dates", "chat", "chat_backward")
CHAT_TASKS = ("chat", "chat_backward")


# -- arguments -------------------------------------------------------------------------------------------------
@dataclass
class Seq2SeqTrainArgs:
    task: str = "addition"
    run_dir: Path | None = None        # default runs/seq2seq_<task>
    out: Path | None = None            # default <run_dir>/seq2seq_<task>.npz
    resume: bool = False
    # architecture (None = the task's default, see TASK_DEFAULTS)
    embed: int | None = None
    hidden: int | None = None
    bidirectional: bool | None = None
    reverse: bool | None = None
    peeky: bool | None = None
    attention: str | None = None
    proj: int | None = None
    tie: bool | None = None
    dropout: float | None = None
    # optimisation
    batch_size: int | None = None      # examples (tasks) or exchanges per window step (chat)
    lr: float | None = None
    clip: float | None = None
    epochs: float | None = None
    eval_every: int | None = None      # steps between validations (tasks: 0 = once per epoch)
    lr_decay: float | None = None      # multiply lr when validation loss does not improve
    max_minutes: float | None = None   # stop (state saved, resumable) after this much training time
    seed: int = 0
    # data
    n_examples: int | None = None      # tasks: number of generated examples
    vocab_size: int | None = None      # chat
    max_src: int | None = None         # chat: source tokens kept (the end of the turn)
    max_tgt: int | None = None         # chat: target tokens kept (the start of the turn, <eot> included)
    window: int | None = None          # chat: exchanges per BPTT window
    max_train_convs: int | None = None  # chat: use only the first N training conversations


# what --resume takes from the run where the flags leave it out (its length, validation and output may change)
RESUME_KEPT = ("task", "embed", "hidden", "bidirectional", "reverse", "peeky", "attention", "proj", "tie", "dropout",
               "batch_size", "lr", "clip", "lr_decay", "seed", "n_examples", "vocab_size", "max_src", "max_tgt",
               "window", "max_train_convs")

# The defaults are the configurations of the shipped checkpoints (rnnchat/checkpoints/seq2seq_<task>.npz).
TASK_DEFAULTS: dict[str, dict] = {
    "addition": dict(embed=32, hidden=128, bidirectional=True, reverse=True, peeky=False, attention="dot",
                     proj=128, tie=False, dropout=0.0, batch_size=128, lr=3e-3, clip=5.0, epochs=30,
                     eval_every=0, lr_decay=0.5, n_examples=50_000),
    "dates": dict(embed=32, hidden=128, bidirectional=True, reverse=False, peeky=False, attention="dot",
                  proj=128, tie=False, dropout=0.0, batch_size=128, lr=3e-3, clip=5.0, epochs=24, eval_every=0,
                  lr_decay=0.5, n_examples=50_000),
    "chat": dict(embed=128, hidden=256, bidirectional=False, reverse=False, peeky=False, attention="dot",
                 proj=128, tie=True, dropout=0.2, batch_size=128, lr=2e-3, clip=1.0, epochs=3, eval_every=400,
                 lr_decay=0.5, vocab_size=8000, max_src=40, max_tgt=40, window=4),
}
# The backward model (MMI-bidi's p(message | reply)): the chat model's shape, one exchange per chain, fresh state.
TASK_DEFAULTS["chat_backward"] = {**TASK_DEFAULTS["chat"], "window": 1}


def resolve(a: Seq2SeqTrainArgs) -> Seq2SeqTrainArgs:
    """Fill unset options from the task's defaults and the default paths."""
    if a.task not in TASK_NAMES:
        raise ValueError(f"unknown task {a.task!r}; choose one of {', '.join(TASK_NAMES)}")
    given = {k: v for k, v in asdict(a).items() if v is not None}
    run_dir = Path(given.get("run_dir") or Path("runs") / f"seq2seq_{a.task}")  # (as train lm and sentiment)
    if a.resume:  # the run's own settings where the flags leave them out
        defaults = {"task": Seq2SeqTrainArgs.task, "seed": Seq2SeqTrainArgs.seed}
        given = {k: v for k, v in as_resumed(given, defaults, run_dir, RESUME_KEPT).items() if v is not None}
    task = given["task"]
    d = {**TASK_DEFAULTS[task], **given}
    d["run_dir"] = run_dir
    d["out"] = Path(d.get("out") or d["run_dir"] / f"seq2seq_{task}.npz")  # never the shipped model by default
    check_run_dir(d["run_dir"], bool(d.get("resume")))
    check_out(d["out"], "seq2seq", task=task, run_dir=d["run_dir"])
    return Seq2SeqTrainArgs(**{k: v for k, v in d.items() if k in {f.name for f in fields(Seq2SeqTrainArgs)}})


def best_metrics(metrics: dict) -> dict:
    """Header metrics written at the best validation, timing fields renamed best_* (time to reach the best)."""
    return {(f"best_{k}" if k.startswith("train_") else k): v for k, v in metrics.items()}


def hyper_of(a: Seq2SeqTrainArgs) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(a).items()}


def config_of(a: Seq2SeqTrainArgs, src_vocab: int, tgt_vocab: int) -> Seq2SeqConfig:
    return Seq2SeqConfig(src_vocab=src_vocab, tgt_vocab=tgt_vocab, embed=a.embed, hidden=a.hidden,
                         bidirectional=a.bidirectional, reverse=a.reverse, peeky=a.peeky, attention=a.attention,
                         proj=a.proj, tie=a.tie, dropout=a.dropout)


class _TimeUp(KeyboardInterrupt):
    """Raised inside the training loop when --max-minutes is spent (the trainer saves its state)."""



# -- timing ----------------------------------------------------------------------------------------------------
class RunClock:
    """Wall and CPU time of a run, summed over its invocations (`--resume`) in <run_dir>/timing.json.

    CPU time is this process's (one BLAS thread): on a shared machine it measures the work, wall time the wait.
    """

    def __init__(self, run_dir: Path, resume: bool):
        self.path = Path(run_dir) / "timing.json"
        self.before: list[dict] = []
        if resume and self.path.exists():
            self.before = self._invocations()
        self.wall0, self.cpu0 = time.monotonic(), time.process_time()

    def _invocations(self) -> list[dict]:
        """The earlier invocations' times; a damaged file (it is only bookkeeping) is noted and counted as none."""
        try:
            runs = json.loads(self.path.read_text(encoding="utf-8")).get("invocations")
            if isinstance(runs, list) and all(isinstance(r, dict) and isinstance(r.get("wall_s"), (int, float))
                                              for r in runs):
                return runs
        except (OSError, ValueError, RecursionError, AttributeError):
            pass
        print(f"note: {self.path} is damaged: the time of the run's earlier invocations is not counted",
              file=sys.stderr)
        return []

    def now(self) -> dict:
        return {"wall_s": round(time.monotonic() - self.wall0, 1), "cpu_s": round(time.process_time() - self.cpu0, 1)}

    def totals(self) -> dict:
        runs = self.before + [self.now()]
        cpu = [r.get("cpu_s") for r in runs]
        out = {"train_wall_s": round(sum(r["wall_s"] for r in runs), 1), "train_invocations": len(runs)}
        if all(c is not None for c in cpu):
            out["train_cpu_s"] = round(sum(cpu), 1)
        else:
            out["train_cpu_s_measured"] = round(sum(c for c in cpu if c is not None), 1)
        return out

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.path, (json.dumps({"invocations": self.before + [self.now()]}, indent=1) + "\n").encode())


# -- batches ---------------------------------------------------------------------------------------------------
class EpochBatches:
    """Index i of the current epoch -> a batch; the order is a function of (seed, epoch) only (exact resume)."""

    def __init__(self, items: list, seed: int, make):
        self.items, self.seed, self.make = items, seed, make
        self.epoch = 0
        self._order_epoch, self._order = -1, None

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        if self._order_epoch != self.epoch:
            self._order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.items))
            self._order_epoch = self.epoch
        return self.make(self.items[self._order[i]])


def fit(trainer: Trainer, batches: EpochBatches, a: Seq2SeqTrainArgs, deadline: float | None) -> dict:
    """fit() with the batches following the trainer's epoch, --resume and --max-minutes."""
    if a.resume:  # (check_run_dir refused a --resume without a run)
        trainer.load_state()
        print(f"resumed at step {trainer.step} (epoch {trainer.epoch}, batch {trainer.position})", file=sys.stderr)
    batches.epoch = trainer.epoch
    inner = trainer.step_fn

    def step_fn(batch):
        if deadline is not None and time.monotonic() > deadline:
            raise _TimeUp()
        return inner(batch)

    def start_epoch():
        batches.epoch = trainer.epoch
        trainer.model.reset_state()

    trainer.step_fn, trainer.start_epoch_fn = step_fn, start_epoch
    try:
        return trainer.fit()
    except _TimeUp:
        print(f"time budget of {a.max_minutes} min spent at step {trainer.step}; final validation",
              file=sys.stderr)
        trainer.validate()
        trainer.save_state()
        return {"step": trainer.step, "epoch": trainer.epoch, "best_loss": trainer.best_loss, "stopped": "time"}
