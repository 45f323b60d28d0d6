"""bench/chat_judging.py: the judged rounds' scorer (SSA per system, paired differences against a baseline)."""

from __future__ import annotations

import importlib.util
import json
import sys
from argparse import Namespace
from pathlib import Path

_PATH = Path(__file__).resolve().parents[2] / "bench" / "chat_judging.py"
_spec = importlib.util.spec_from_file_location("bench_chat_judging", _PATH)
cj = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = cj
_spec.loader.exec_module(cj)


def test_score_averages_judges_and_pairs_systems_prompt_by_prompt(tmp_path):
    key = {"p1": {"A": "base", "B": "new"}, "p2": {"A": "new", "B": "base"}}
    (tmp_path / "key.json").write_text(json.dumps(key))
    lines = ["p1\tA\t0\t0", "p1\tB\t1\t1", "p2\tA\t1\t0", "p2\tB\t1\t0",   # judge 1
             "p1\tA\t0\t1", "p1\tB\t1\t0", "p2\tA\t1\t0", "p2\tB\t0\t0"]   # judge 2 (a specific 1 when not sensible counts 0)
    (tmp_path / "j.tsv").write_text("\n".join(lines) + "\n")
    cj.score(Namespace(key=tmp_path / "key.json", judgments=tmp_path / "j.tsv", results=tmp_path / "r.md",
                       baseline="base"))
    rows = {r["system"]: r for r in json.loads((tmp_path / "r.json").read_text())}
    assert rows["base"]["sensible"] == 0.25 and rows["base"]["specific"] == 0.0
    assert rows["new"]["sensible"] == 1.0 and rows["new"]["specific"] == 0.25 and rows["new"]["ssa"] == 0.625
    # per prompt (judges averaged): p1 new 0.75 vs base 0, p2 new 0.5 vs base 0.25 -> +50 points on average
    d, lo, hi = cj.paired_differences({("base", "p1"): [0, 0], ("new", "p1"): [1, 0.5], ("base", "p2"): [0.5, 0],
                                       ("new", "p2"): [0.5, 0.5]}, "base")["new"]
    assert (d, lo, hi) == (50.0, 25.0, 75.0)
    assert "- new: +50.0 (+25.0 .. +75.0)" in (tmp_path / "r.md").read_text()
