"""The training loop: progress, periodic validation, best checkpoint, exact resume, JSONL metrics.

A run lives in a directory: `state.npz` (model + optimizer + RNG + data position, written atomically at least
every `checkpoint_every_s` seconds, at each validation and on Ctrl+C), `metrics.jsonl` (one JSON object per
log/validation event) and whatever `save_best` writes when validation improves. `--resume` reloads
`state.npz` and continues the same trajectory: same batches, same dropout masks, same optimizer moments.

With `average_from` set, the weights are also averaged from that step on (`ParamAverage`); validation and the
best checkpoint then use the averaged weights, while training goes on with the live ones.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from rnnchat.checkpoint import CheckpointError, load_checkpoint, read_header, save_checkpoint
from rnnchat.nn import ParamAverage, ParamSet, clip_grad_norm
from rnnchat.progress import Progress


class TrainableModel(Protocol):
    params: ParamSet
    rng: np.random.Generator

    def train(self, mode: bool = True) -> None: ...
    def reset_state(self) -> None: ...


STATE_FILE = "state.npz"  # a run directory's training state: the one file --resume needs


def check_run_dir(run_dir: Path, resume: bool) -> None:
    """ValueError for a run directory that cannot be used: --resume needs a run to continue (a directory without
    one is not started afresh); a new run does not replace one already there, nor a file."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"--run-dir {run_dir} is a file, not a directory")
    held = (run_dir / STATE_FILE).exists()
    if resume and not held:
        raise ValueError(f"--resume: {run_dir} holds no training run to continue (no state.npz); "
                         f"check --run-dir, or leave out --resume to start a new run")
    if not resume and held:
        raise ValueError(f"{run_dir} holds a training run already: continue it with --resume, or start the new "
                         f"one in another --run-dir (or remove that one)")



def as_resumed(given: dict, defaults: dict, run_dir: Path, kept: Sequence[str]) -> dict:
    """On --resume: the `kept` settings (shapes, data, optimiser) of the run in `run_dir` where the command line
    left them out (None, or the default), so a resumed run goes on as it started; ValueError for one given
    another value than the run's (it would not fit the saved state, or would change the run midway)."""
    try:
        saved = read_header(Path(run_dir) / STATE_FILE).get("training") or {}
    except (CheckpointError, OSError):
        return given  # (check_run_dir says what is wrong with the run)
    out = dict(given)
    for name in kept:
        if name not in saved:
            continue
        value, theirs = given.get(name), saved[name]
        plain = str(value) if isinstance(value, Path) else value
        if value is None or value == defaults.get(name):
            out[name] = Path(theirs) if isinstance(defaults.get(name), Path) and theirs is not None else theirs
        elif plain != theirs:
            raise ValueError(f"--resume: --{name.replace('_', '-')} {value} differs from the run's {theirs} (a "
                             f"resumed run keeps its settings; leave it out, or start a new run)")
    return out


HELD = {"conversation": "a saved conversation", "train-state": "a training run's state"}
RUN_FILES = (STATE_FILE, "metrics.jsonl", "timing.json")  # what a run directory holds besides checkpoints


def check_out(out: Path, kind: str, inputs: Sequence[tuple[str, Path | None]] = (), task: str | None = None,
              run_dir: Path | None = None) -> None:
    """ValueError for a checkpoint path (--out) that would destroy something or cannot be written: a file the
    run reads (`inputs`, (flag, path) pairs: written over during the run, the original is gone even if the new
    model is worse), an existing file that is not a `kind` checkpoint (a saved conversation, a run's state,
    another kind of model or seq2seq `task`, a text), a folder, pipe or device, or a folder that cannot hold
    it. A `kind` checkpoint there is replaced: that is how a retrained model takes the old one's place. A
    symbolic link is itself replaced (atomic writes never touch its target), a link to a folder or a device is
    refused. `run_dir`'s own files (its state, metrics, timing) are refused whether or not they exist yet.
    Checked before any work, so no run is lost to it at the end; a missing folder is made then."""
    out = Path(out)
    where = next((p for p in out.parents if p.exists()), Path("."))
    if not where.is_dir() or not os.access(where, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out}: {where} is not a folder this run can write in")
    if run_dir is not None and out.name in RUN_FILES and out.parent.resolve() == Path(run_dir).resolve():
        raise ValueError(f"--out {out} is the run's own {out.name} (the run writes it too): choose another file")
    if out.exists() and not out.is_file():
        raise ValueError(f"--out {out} is a folder, a pipe or a device, not a checkpoint file")
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.is_symlink():
        return
    for flag, path in inputs:
        if path is not None and out.exists() and Path(path).exists() and os.path.samefile(out, path):
            raise ValueError(f"--out {out} is the {flag} {path} itself (the run reads it, and the original would "
                             f"be gone even if the new model is worse); write the checkpoint elsewhere")
    if not out.exists():
        return
    try:
        header = read_header(out)
    except CheckpointError:
        header = {}
    held, held_task = header.get("model"), header.get("task")
    if held != kind or (task is not None and held_task != task):
        what = (f"a {held} {held_task} checkpoint" if held == kind else HELD.get(held, f"a {held} checkpoint")
                if held else "a file that is not an rnnchat checkpoint")
        raise ValueError(f"--out {out} holds {what}, not a {kind}{f' {task}' if task else ''} model, and would be "
                         f"replaced: choose another file (or remove that one first)")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good state on disk is kept."""


@dataclass
class TrainConfig:
    epochs: float = 10.0
    clip: float = 0.25
    eval_every: int = 500           # steps
    log_every: int = 50             # steps
    checkpoint_every_s: float = 600.0
    lr_decay_on_plateau: float = 0.5  # multiply lr when validation does not improve (1.0 = never)
    average_from: int | None = None   # average the weights from this step on (None: no averaging)
    max_seconds: float | None = None  # stop (validated and saved) after this long in this call of `fit`
    cosine_lr: float | None = None    # with max_seconds: the learning rate follows a cosine from this value to 1%
                                      # of it at the time limit (and does not halve on plateaus)
    extra: dict = field(default_factory=dict)


class Trainer:
    """Runs `step_fn(batch)` over `batches` epoch after epoch.

    `step_fn(batch) -> (mean loss, tokens)` computes gradients; the trainer clips, steps the optimizer,
    validates with `evaluate() -> dict` (must hold "loss"), and calls `save_best(metrics)` on improvement.
    `start_epoch()` is called at each epoch start (e.g. to reset a carried state); `after_validate(metrics)`
    after each validation, with the validated weights in eval mode: a text it returns (e.g. a sample of what the
    model has learnt so far) is printed after the validation line and logged as "sample".
    """

    def __init__(self, run_dir: Path, model: TrainableModel, optimizer, batches, step_fn: Callable,
                 evaluate: Callable[[], dict], save_best: Callable[[dict], None], config: TrainConfig,
                 start_epoch: Callable[[], None] | None = None, header: dict | None = None,
                 after_validate: Callable[[dict], str | None] | None = None):
        self.run_dir = Path(run_dir)
        self.model, self.opt, self.batches = model, optimizer, batches
        self.step_fn, self.evaluate, self.save_best = step_fn, evaluate, save_best
        self.start_epoch_fn = start_epoch or model.reset_state
        self.after_validate = after_validate
        self.cfg = config
        self.header = header or {}
        self.step = 0
        self.epoch = 0
        self.position = 0       # next batch index within the epoch
        self.tokens_seen = 0
        self.best_loss = math.inf
        self.average = None if config.average_from is None else ParamAverage(model.params.params)
        self.run_dir.mkdir(parents=True, exist_ok=True)

    @property
    def state_path(self) -> Path:
        return self.run_dir / STATE_FILE

    @property
    def metrics_path(self) -> Path:
        return self.run_dir / "metrics.jsonl"

    # -- persistence ----------------------------------------------------------------------------------------
    def save_state(self) -> None:
        arrays = {f"model.{k}": v for k, v in self.model.params.named().items()}
        arrays |= {f"optim.{k}": np.asarray(v) for k, v in self.opt.state_dict().items()}
        if self.average is not None:
            arrays |= {f"average.{k}": v for k, v in self.average.state_dict().items()}
        header = {**self.header, "model": "train-state", "config": {}, "metrics": {}, "progress": {
            "step": self.step, "lr": self.opt.lr, "opt_steps": self.opt.step_count, "epoch": self.epoch, "position": self.position, "tokens_seen": self.tokens_seen,
            "best_loss": None if math.isinf(self.best_loss) else self.best_loss,
            "average_count": None if self.average is None else self.average.count,
            "rng": self.model.rng.bit_generator.state,
            "carried_state": self._carried_state_names()}}
        arrays |= self._carried_state_arrays()
        save_checkpoint(self.state_path, arrays, header)

    def _carried_state_arrays(self) -> dict[str, np.ndarray]:
        state = getattr(self.model, "state", None)
        if not state:
            return {}
        return {f"carry.{i}.{j}": s for i, layer in enumerate(state) for j, s in enumerate(layer)}

    def _carried_state_names(self) -> list[str]:
        return sorted(self._carried_state_arrays())

    def load_state(self) -> None:
        arrays, header = load_checkpoint(self.state_path, model="train-state", dtype=np.float32)
        p = header["progress"]
        self.model.params.load({k[6:]: v for k, v in arrays.items() if k.startswith("model.")})
        self.opt.load_state_dict({k[6:]: v for k, v in arrays.items() if k.startswith("optim.")})
        if self.average is not None and p.get("average_count") is not None:
            self.average.load_state_dict({k[8:]: v for k, v in arrays.items() if k.startswith("average.")},
                                         p["average_count"])
        self.step, self.epoch, self.position = p["step"], p["epoch"], p["position"]
        self.opt.lr, self.opt.step_count = p["lr"], p["opt_steps"]
        self.tokens_seen = p["tokens_seen"]
        self.best_loss = math.inf if p["best_loss"] is None else p["best_loss"]
        self.model.rng.bit_generator.state = p["rng"]
        if p["carried_state"]:
            layers = sorted({int(n.split(".")[1]) for n in p["carried_state"]})
            self.model.state = [tuple(arrays[f"carry.{i}.{j}"].astype(np.float32) for j in range(2))
                                for i in layers]

    def log(self, record: dict) -> None:
        record = {"time": round(time.time(), 1), "step": self.step, "epoch": self.epoch,
                  "tokens": self.tokens_seen, **record}
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    # -- loop -----------------------------------------------------------------------------------------------
    def fit(self) -> dict:
        """Train until `epochs` are done (or `max_seconds` have passed). Ctrl+C saves the state and re-raises
        KeyboardInterrupt. The bar counts steps, or seconds under a time limit; its note has loss and tok/s."""
        total_steps = int(self.cfg.epochs * len(self.batches))
        start, start_tokens = time.monotonic(), self.tokens_seen
        timed = self.cfg.max_seconds is not None
        bar = (Progress(math.ceil(self.cfg.max_seconds), desc="train (s)") if timed
               else Progress(total_steps, desc="train", initial=self.step))
        last_save = time.monotonic()
        window_loss, window_tokens, window_start = 0.0, 0, time.monotonic()
        set_epoch = getattr(self.batches, "set_epoch", None)  # batches whose windows change per epoch
        if set_epoch:
            set_epoch(self.epoch)
        try:
            while self.step < total_steps and not (timed and time.monotonic() - start >= self.cfg.max_seconds):
                if self.position == 0:
                    self.start_epoch_fn()
                self.model.train(True)
                if timed and self.cfg.cosine_lr is not None:
                    done = min(1.0, (time.monotonic() - start) / self.cfg.max_seconds)
                    self.opt.lr = self.cfg.cosine_lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * done)))
                loss, count = self.step_fn(self.batches[self.position])
                if not math.isfinite(loss):
                    raise TrainingDiverged(
                        f"loss became {loss} at step {self.step}; the last good state is kept in "
                        f"{self.state_path}. Lower the learning rate or the clip norm and --resume.")
                grads = self.model.params.grads()
                clip_grad_norm(grads, self.cfg.clip)
                self.opt.step(grads)
                self.step += 1
                if self.average is not None and self.step > self.cfg.average_from:
                    self.average.update()
                self.tokens_seen += count
                window_loss += loss * count
                window_tokens += count
                self.position += 1
                if self.position == len(self.batches):
                    self.position = 0
                    self.epoch += 1
                    if set_epoch:
                        set_epoch(self.epoch)
                elapsed = time.monotonic() - start
                note = f"loss {loss:.3f} {(self.tokens_seen - start_tokens) / max(elapsed, 1e-9):,.0f} tok/s"
                if timed:
                    bar.update(min(int(elapsed), bar.total), f"{note} step {self.step}")
                else:
                    bar.update(self.step, note)
                if self.step % self.cfg.log_every == 0:
                    elapsed = time.monotonic() - window_start
                    mean = window_loss / max(window_tokens, 1)
                    self.log({"train_loss": mean, "train_ppl": math.exp(min(mean, 50)),
                              "tok_per_s": window_tokens / max(elapsed, 1e-9), "lr": self.opt.lr})
                    window_loss, window_tokens, window_start = 0.0, 0, time.monotonic()
                if self.step % self.cfg.eval_every == 0 or self.step == total_steps:
                    self.validate()
                    self.save_state()
                    last_save = time.monotonic()
                elif time.monotonic() - last_save > self.cfg.checkpoint_every_s:
                    self.save_state()
                    last_save = time.monotonic()
            if timed and self.step % self.cfg.eval_every and self.step < total_steps:  # time is up mid-interval
                self.validate()
                self.save_state()
        except KeyboardInterrupt:
            bar.close()
            print(f"\ninterrupted: saving {self.state_path} (continue with --resume)", file=sys.stderr)
            self.save_state()
            raise
        bar.close()
        return {"step": self.step, "epoch": self.epoch, "best_loss": self.best_loss}

    def validate(self) -> dict:
        carried = getattr(self.model, "state", None)
        averaged = self.average is not None and self.average.count > 0
        if averaged:
            self.average.swap()
        try:
            self.model.train(False)
            metrics = self.evaluate()
            improved = metrics["loss"] < self.best_loss
            if improved:
                self.best_loss = metrics["loss"]
                self.save_best(metrics)
            shown = None if self.after_validate is None else self.after_validate(metrics)
        finally:  # also on Ctrl+C mid-validation: the state saved then must be the training one
            if averaged:
                self.average.swap()
            self.model.train(True)
            if carried is not None:
                self.model.state = carried
        if not improved and self.cfg.lr_decay_on_plateau != 1.0 and self.cfg.cosine_lr is None:
            self.opt.lr *= self.cfg.lr_decay_on_plateau
        self.log({**{f"val_{k}": v for k, v in metrics.items()}, "improved": improved, "lr": self.opt.lr,
                  **({"averaged_steps": self.average.count} if averaged else {}),
                  **({"sample": shown} if shown is not None else {})})
        print(f"\nstep {self.step} epoch {self.epoch}: " +
              " ".join(f"val {k} {v:.4g}" for k, v in metrics.items() if isinstance(v, float)) +
              (" (best)" if improved else ""), file=sys.stderr)
        if shown is not None:
            print(shown, file=sys.stderr)
        return metrics
