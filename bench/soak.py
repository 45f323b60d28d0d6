"""Soak test of the engine (issue 8): one long conversation, then a large batch file.

    python bench/soak.py [--checkpoint rnnchat/checkpoints/lm.npz] [--tokens 100000] [--window 5000]
                         [--prompts 10000] [--batch-tokens 4] [--json bench/results/soak.json]

1. Generation: one conversation streams --tokens tokens in a single reply (default sampling, seed 0, one BLAS
   thread, no stop token: the model runs through its own <eot> turn ends, as a long chat would). Every token:
   the logits it was drawn from and every (h, c) state array are checked with np.isfinite, and its probability
   must be in (0, 1]. Every --window tokens: resident memory (/proc/self/statm) and the window's tokens/second,
   by wall clock and by this process's CPU time (the CPU rate is the one to read on a shared machine).
   Pass: no NaN/inf; resident memory after the first window (warm-up) grows < 5% over the run; the CPU tokens/s
   of every later window within +-25% of their median, and the last third's mean within 10% of the first
   third's (no drift).
2. Batch: --prompts short prompts (a JSONL file with ids) through `rnnchat generate --batch ... -n 4` in-process
   (`rnnchat.cli.main`); pass: exit 0 and every id written exactly once, in input order, and a second run of the
   same command (resume) writes nothing more.

Prints a summary and writes --json. Exit status 1 if a check fails. Run it alone: a busy machine slows it.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import io
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from contextlib import redirect_stderr
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from rnnchat.cli.main import main as cli_main  # noqa: E402
from rnnchat.engine.engine import Engine  # noqa: E402
from rnnchat.sampling import SamplingSettings  # noqa: E402
from rnnchat import paths  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")
ROOT = Path(__file__).resolve().parents[1]
GREETINGS = ["hi", "hello", "hey", "good morning", "what's up", "how are you ?", "yo", "hello there"]
TOPICS = ["i love movies", "do you like dogs ?", "the food was bad", "i think so", "what do you do ?",
          "tell me about your day", "i'm so tired", "that's great !", "where are you from ?", "not really"]


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def shown(path: Path) -> str:
    """A path relative to the repository when it is inside it (results files are committed)."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def mib(n: int) -> float:
    return round(n / 2**20, 2)


# -- 1. one long conversation ------------------------------------------------------------------------------------
def soak_generate(engine: Engine, tokens: int, window: int, seed: int, check_every: int) -> dict:
    conv = engine.conversation()
    conv.feed("hello , how are you today ?", end_turn=True)
    settings = SamplingSettings(max_tokens=tokens, seed=seed)
    bad: list[str] = []
    windows: list[dict] = []
    eot = engine.vocab.eot_id
    turns = n = 0

    def finite(where: str) -> None:
        if not np.isfinite(conv.logits).all():
            bad.append(f"logits {where}")
        for i, (h, c) in enumerate(conv.state):
            if not (np.isfinite(h).all() and np.isfinite(c).all()):
                bad.append(f"state layer {i} {where}")

    rss0 = rss_bytes()
    t_wall, t_cpu = time.perf_counter(), time.process_time()
    with threadpool_limits(1):
        for tok in conv.stream(settings):
            n += 1
            turns += tok.id == eot
            if n % check_every == 0:  # conv.logits: the distribution this token was drawn from
                finite(f"at token {n}")
            if not (0.0 < tok.prob <= 1.0) or not np.isfinite(tok.prob):
                bad.append(f"probability {tok.prob} at token {n}")
            if len(bad) > 20:
                break
            if n % window == 0:
                now_wall, now_cpu = time.perf_counter(), time.process_time()
                w = {"tokens": n, "rss_mib": mib(rss_bytes()),
                     "tok_s_wall": round(window / (now_wall - t_wall), 1),
                     "tok_s_cpu": round(window / max(now_cpu - t_cpu, 1e-9), 1),
                     "history_len": len(conv.history), "load": loadavg()}
                windows.append(w)
                print(f"  {n:>7,} tokens  rss {w['rss_mib']:8.1f} MiB  {w['tok_s_wall']:7.1f} tok/s wall  "
                      f"{w['tok_s_cpu']:7.1f} tok/s cpu  load {w['load']}", flush=True)
                t_wall, t_cpu = now_wall, now_cpu
    finite("after the last token")  # (the state after the final token is fed when the stream ends)

    later = windows[1:]  # the first window is warm-up
    result: dict = {"tokens": n, "window": window, "check_every": check_every, "turn_ends_generated": turns,
                    "rss_start_mib": mib(rss0), "windows": windows, "non_finite": bad[:20]}
    if later:
        base = windows[0]["rss_mib"]
        growth = (max(w["rss_mib"] for w in later) - base) / base
        cpu = np.array([w["tok_s_cpu"] for w in later])
        wall = np.array([w["tok_s_wall"] for w in later])
        med = float(np.median(cpu))
        third = max(len(cpu) // 3, 1)
        drift = float(cpu[-third:].mean() / cpu[:third].mean() - 1)
        result.update({
            "rss_after_warmup_mib": base, "rss_max_mib": max(w["rss_mib"] for w in later),
            "rss_growth_after_warmup": round(growth, 4),
            "tok_s_cpu": {"median": round(med, 1), "min": float(cpu.min()), "max": float(cpu.max()),
                          "max_dev_from_median": round(float(np.abs(cpu / med - 1).max()), 3),
                          "drift_last_vs_first_third": round(drift, 3)},
            "tok_s_wall": {"median": round(float(np.median(wall)), 1), "min": float(wall.min()),
                           "max": float(wall.max())},
        })
        result["checks"] = {
            "finite": not bad,
            "rss_growth_lt_5pct": growth < 0.05,
            "tok_s_flat_25pct": result["tok_s_cpu"]["max_dev_from_median"] <= 0.25,
            "no_drift_10pct": abs(drift) <= 0.10,
        }
    else:
        result["checks"] = {"finite": not bad, "enough_windows": False}
    return result


# -- 2. batch mode -----------------------------------------------------------------------------------------------
def soak_batch(checkpoint: Path, prompts: int, max_tokens: int, workdir: Path) -> dict:
    src, out = workdir / "prompts.jsonl", workdir / "results.jsonl"
    ids = [f"p{i:06d}" for i in range(prompts)]
    with open(src, "w", encoding="utf-8") as f:
        for i, pid in enumerate(ids):
            prompt = f"{GREETINGS[i % len(GREETINGS)]} {TOPICS[(i // len(GREETINGS)) % len(TOPICS)]}"
            f.write(json.dumps({"id": pid, "prompt": prompt if i % 97 else ""}) + "\n")
    argv = ["generate", "--batch", str(src), "--out", str(out), "--checkpoint", str(checkpoint),
            "-n", str(max_tokens), "-s", "0", "-q"]
    err = io.StringIO()
    t0, c0 = time.perf_counter(), time.process_time()
    with redirect_stderr(err):
        code = cli_main(argv)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    written = out.read_text(encoding="utf-8").splitlines()
    got = [json.loads(line)["id"] for line in written]
    counts = collections.Counter(got)
    dupes = sorted(k for k, v in counts.items() if v > 1)
    missing = sorted(set(ids) - set(counts))
    n_tokens = sum(len(json.loads(line)["token_ids"]) for line in written)
    with redirect_stderr(io.StringIO()) as err2:
        code2 = cli_main(argv)  # resume: everything is done already
    after = out.read_text(encoding="utf-8").splitlines()
    result = {
        "prompts": prompts, "max_tokens": max_tokens, "exit_code": code, "results_written": len(got),
        "unique_ids": len(counts), "duplicates": dupes[:20], "missing": missing[:20],
        "in_input_order": got == ids, "generated_tokens": n_tokens, "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2), "prompts_per_s_wall": round(prompts / wall, 1),
        "rerun_exit_code": code2, "rerun_added_lines": len(after) - len(written),
        "stderr_tail": err.getvalue()[-500:], "peak_rss_mib": mib(peak_rss_bytes()), "load": loadavg(),
    }
    result["checks"] = {
        "exit_0": code == 0 and code2 == 0,
        "each_id_exactly_once": len(got) == prompts and not dupes and not missing,
        "input_order": got == ids,
        "resume_writes_nothing": len(after) == len(written) and "resuming:" in err2.getvalue(),
    }
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", type=Path, default=paths.lm_checkpoint())
    ap.add_argument("--tokens", type=int, default=100_000, help="tokens generated in one conversation")
    ap.add_argument("--window", type=int, default=5_000, help="tokens per memory/speed sample")
    ap.add_argument("--check-every", type=int, default=1, help="isfinite check of logits and states every N tokens")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--prompts", type=int, default=10_000, help="prompts in the batch file (0 = skip)")
    ap.add_argument("--batch-tokens", type=int, default=4, help="-n for the batch run")
    ap.add_argument("--json", type=Path, default=Path(__file__).resolve().parent / "results" / "soak.json")
    args = ap.parse_args()

    # A private copy: the training run may replace rnnchat/checkpoints/lm.npz while this runs.
    workdir = Path(tempfile.mkdtemp(prefix="rnnchat-soak-"))
    data = args.checkpoint.read_bytes()
    checkpoint = workdir / "lm.npz"
    checkpoint.write_bytes(data)
    engine = Engine(checkpoint)
    info = {"checkpoint": shown(args.checkpoint), "checkpoint_sha256": hashlib.sha256(data).hexdigest(),
            "checkpoint_created": engine.lm_header.get("created"), "config": engine.lm_header["config"],
            "metrics": engine.lm_header.get("metrics"), "python": platform.python_version(),
            "numpy": np.__version__, "cpus": os.cpu_count(),
            "blas": [{k: d.get(k) for k in ("internal_api", "version", "num_threads")} for d in threadpool_info()],
            "env_OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"), "nice": os.nice(0),
            "load_at_start": loadavg(),
            "args": {k: shown(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    del data
    print(f"checkpoint {info['checkpoint']} ({info['config']}); load {info['load_at_start']}", flush=True)

    print(f"1. one conversation, {args.tokens:,} tokens (isfinite every {args.check_every} token(s)):", flush=True)
    gen = soak_generate(engine, args.tokens, args.window, args.seed, args.check_every)
    batch = None
    if args.prompts:
        print(f"2. batch mode, {args.prompts:,} prompts, -n {args.batch_tokens}:", flush=True)
        batch = soak_batch(checkpoint, args.prompts, args.batch_tokens, workdir)
    info["load_at_end"] = loadavg()
    shutil.rmtree(workdir)

    report = {"info": info, "generate": gen, "batch": batch}
    checks = {f"generate.{k}": v for k, v in gen["checks"].items()}
    if batch:
        checks |= {f"batch.{k}": v for k, v in batch["checks"].items()}
    report["passed"] = all(checks.values())

    print("\nsummary")
    if "rss_growth_after_warmup" in gen:
        c = gen["tok_s_cpu"]
        print(f"  generate: {gen['tokens']:,} tokens, {gen['turn_ends_generated']} <eot>; non-finite: "
              f"{len(gen['non_finite'])}; rss {gen['rss_after_warmup_mib']} -> {gen['rss_max_mib']} MiB after "
              f"warm-up ({gen['rss_growth_after_warmup']:+.2%}); tok/s (cpu) median {c['median']} "
              f"[{c['min']}, {c['max']}], max dev {c['max_dev_from_median']:.1%}, drift "
              f"{c['drift_last_vs_first_third']:+.1%}; tok/s (wall) median {gen['tok_s_wall']['median']}")
    if batch:
        print(f"  batch: {batch['prompts']:,} prompts in {batch['wall_s']} s ({batch['prompts_per_s_wall']}/s wall, "
              f"{batch['cpu_s']} s cpu), exit {batch['exit_code']}, {batch['results_written']:,} results, "
              f"{batch['unique_ids']:,} unique ids, {len(batch['duplicates'])} duplicated, "
              f"{len(batch['missing'])} missing, input order {batch['in_input_order']}, "
              f"re-run added {batch['rerun_added_lines']} lines")
    for name, ok in checks.items():
        print(f"  {'PASS' if ok else 'FAIL'}  {name}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
