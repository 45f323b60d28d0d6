"""Batch generation throughput: the local batch mode against Ray Data with 1 and 2 workers (issue 19).

The same prompts (`--prompts`, default 1024, built from a fixed word list with per-line seeds) continue for
`--max-tokens` (default 30) tokens with the shipped LM, in one process, through exactly the executors that
`rnnchat generate --batch` uses: `local` here (all BLAS threads, as the CLI runs it, and one thread, which is
what one Ray worker gets), then on a local Ray (`ray.init(num_cpus=2)`, timed on its own) `on_ray`'s pipeline
with 1 and 2 workers. Each Ray time includes starting the actors and loading the model in each, as a user
sees it; Ray's overhead per prompt is (Ray time - local one-thread time) / prompts for 1 worker, and split into
the start (the first results' extra seconds) and what remains per prompt after it (the steady state, counted
from the first results, when each worker's first batch is about done). Every mode's lines are checked equal to
the local ones.

    python bench/ray_batch.py [--prompts 1024] [--max-tokens 30] [--batch-size 64] [--out bench/results/ray_batch]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rnnchat import runtime  # noqa: E402

runtime.configure()  # before NumPy loads, as the `rnnchat` command does (OpenBLAS's thread timeout)

from rnnchat.cli.batch import local  # noqa: E402
from rnnchat.engine.batch import PromptModels, PromptRunner, read_jobs  # noqa: E402
from rnnchat.engine.engine import Engine  # noqa: E402
from rnnchat.runtime import one_blas_thread  # noqa: E402
from rnnchat.sampling import SamplingSettings  # noqa: E402

WORDS = ("i you the a is are was it that what how do hello hi there good bad great fine thanks yes no not really "
         "so very cat dog food movie love hate like think know want go see").split()


def prompt_lines(n: int) -> list[str]:
    rng = random.Random(19)
    return [json.dumps({"prompt": " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 12))), "seed": i})
            for i in range(n)]


def timed(results) -> tuple[float, float, list[str]]:
    """Seconds in all, seconds to the first batch's results, and the result lines."""
    t = time.perf_counter()
    first, lines = None, []
    for batch in results:
        first = first or time.perf_counter() - t
        lines += [line for _, line in batch]
    return time.perf_counter() - t, first, lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompts", type=int, default=1024)
    ap.add_argument("--max-tokens", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ray_batch")
    args = ap.parse_args()
    n = args.prompts
    engine = Engine()
    jobs = list(read_jobs(prompt_lines(n), SamplingSettings(max_tokens=args.max_tokens), jsonl=True))
    run = local(PromptRunner(engine.decoder, engine.vocab), args.batch_size)
    timed(run(jobs[: args.batch_size]))  # warm-up: first-touch of the weights and buffers
    times, first, reference = {}, {}, None
    times["local"], first["local"], reference = timed(run(jobs))
    with one_blas_thread():
        times["local_1_thread"], first["local_1_thread"], lines = timed(run(jobs))
    assert lines == reference
    tokens = sum(len(json.loads(line)["token_ids"]) for line in reference)

    import ray
    from rnnchat.engine import batch_ray
    t = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    times["ray_init"] = time.perf_counter() - t
    wire = [(j.id, j.to_wire()) for j in jobs]
    try:
        with batch_ray.connected(None):
            for k in (1, 2):
                times[f"ray_{k}"], first[f"ray_{k}"], lines = timed(
                    batch_ray.results(PromptModels(), wire, k, args.batch_size))
                assert lines == reference, f"Ray with {k} workers: lines differ from the local batch mode"
    finally:
        ray.shutdown()

    rate = {k: n / v for k, v in times.items() if k != "ray_init"}
    # steady state: when the first results arrive, the first batch of each worker is about done
    done_first = {k: args.batch_size * (2 if k == "ray_2" else 1) for k in first}
    after = {k: (n - done_first[k]) / (times[k] - first[k]) for k in first}
    result = {"prompts": n, "max_tokens": args.max_tokens, "batch_size": args.batch_size, "tokens": tokens,
              "cpus": os.cpu_count(), "load_average_at_end": os.getloadavg()[0],
              "seconds": {k: round(v, 3) for k, v in times.items()},
              "prompts_per_s": {k: round(v, 1) for k, v in rate.items()},
              "first_results_s": {k: round(v, 3) for k, v in first.items()},
              "after_first_results_prompts_per_s": {k: round(after[k], 1) for k in after},
              "ray_overhead_ms_per_prompt": {
                  "1_worker_vs_local_1_thread": round(1000 * (times["ray_1"] - times["local_1_thread"]) / n, 2),
                  "2_workers_vs_local": round(1000 * (times["ray_2"] - times["local"]) / n, 2),
                  "1_worker_after_first_results": round(1000 * (1 / after["ray_1"] - 1 / after["local_1_thread"]), 2)},
              "ray_start_s": round(first["ray_1"] - first["local_1_thread"], 2),
              "ratios": {"ray_2_over_ray_1": round(rate["ray_2"] / rate["ray_1"], 2),
                         "ray_2_over_local": round(rate["ray_2"] / rate["local"], 2)},
              "lines_equal": True}
    text = "\n".join([
        f"{n} prompts x <= {args.max_tokens} tokens ({tokens:,} sampled), batch size {args.batch_size}, shipped LM, "
        f"{os.cpu_count()} CPUs (load average {result['load_average_at_end']:.2f} at the end)",
        f"{'mode':<26}{'seconds':>9}{'prompts/s':>11}{'first results s':>17}{'after them, prompts/s':>23}",
        *(f"{k:<26}{times[k]:>9.2f}{rate[k]:>11.1f}{first[k]:>17.2f}{after[k]:>23.1f}"
          for k in ("local", "local_1_thread", "ray_1", "ray_2")),
        f"ray.init (local, 2 CPUs): {times['ray_init']:.2f} s, not in the Ray times above",
        f"Ray overhead per prompt: {result['ray_overhead_ms_per_prompt']['1_worker_vs_local_1_thread']:.2f} ms "
        f"(1 worker vs local on one thread); 2 workers vs local: "
        f"{result['ray_overhead_ms_per_prompt']['2_workers_vs_local']:.2f} ms; after the first results (workers "
        f"started, model loaded: {result['ray_start_s']:.2f} s more than locally) 1 worker vs local on one thread: "
        f"{result['ray_overhead_ms_per_prompt']['1_worker_after_first_results']:.2f} ms",
        f"2 workers / 1 worker: {result['ratios']['ray_2_over_ray_1']:.2f}x; 2 workers / local: "
        f"{result['ratios']['ray_2_over_local']:.2f}x; every mode's lines equal the local ones"])
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    args.out.with_suffix(".txt").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
