"""The generated reliability suite at a larger budget (issue 20): every hypothesis test in tests/reliability run
with RNNCHAT_FUZZ_SCALE times its CI example count and fresh draws, then a table of cases tried and failures.

    python bench/reliability.py [--scale 10] [--explore] [--json bench/results/reliability.json]

CI runs the same tests at scale 1, derandomised (the same cases every time); --explore draws new cases each run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# pytest --hypothesis-show-statistics prints, per test: "  - during generate phase (1.23 seconds):"
# followed by "    - Typical runtimes: ...", "    - 120 passing examples, 0 failing examples, 3 invalid examples"
TEST = re.compile(r"^(tests/reliability/\S+::\S+):\s*$", re.M)
COUNTS = re.compile(r"(\d+) passing examples, (\d+) failing examples, (\d+) invalid examples")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=float, default=10.0)
    p.add_argument("--explore", action="store_true", help="fresh random cases (default: derandomised)")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args()
    env = {**os.environ, "RNNCHAT_FUZZ_SCALE": str(a.scale), "RNNCHAT_FUZZ_EXPLORE": "1" if a.explore else "0"}
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/reliability",
                        "--hypothesis-show-statistics"], cwd=ROOT, env=env, capture_output=True, text=True)
    out = r.stdout
    rows = []
    spans = [(m.group(1), m.end()) for m in TEST.finditer(out)] + [("", len(out))]
    for (name, start), (_, end) in zip(spans, spans[1:]):
        tried = failed = 0
        for m in COUNTS.finditer(out[start:end]):
            tried += int(m.group(1)) + int(m.group(2))
            failed += int(m.group(2))
        rows.append({"test": name.split("::")[-1], "cases": tried, "failures": failed})
    summary = out.strip().splitlines()[-1] if out.strip() else r.stderr[-500:]
    print(f"{'test':<72} {'cases':>7} {'failures':>8}")
    for row in rows:
        print(f"{row['test'][:72]:<72} {row['cases']:>7} {row['failures']:>8}")
    total = sum(row["cases"] for row in rows)
    print(f"{'all generated tests':<72} {total:>7} {sum(row['failures'] for row in rows):>8}")
    print(f"pytest: {summary} ({time.monotonic() - t0:.0f} s, scale {a.scale:g})")
    if a.json:
        a.json.write_text(json.dumps({"scale": a.scale, "explore": a.explore, "rows": rows, "cases": total,
                                      "pytest": summary, "exit_code": r.returncode}, indent=1) + "\n")
    return r.returncode


if __name__ == "__main__":
    sys.exit(main())
