"""Judged chat quality (issue 14): every system's reply to the team's prompts, a blind sheet, and SSA per system.

    python bench/chat_judging.py replies            # bench/chat_judging/replies.jsonl (fixed seeds, default settings)
    python bench/chat_judging.py sheet              # sheet.md (labels A-D shuffled per prompt) + key.json
    # a judge who has not seen key.json writes judgments.tsv: prompt_id <TAB> label <TAB> sensible <TAB> specific
    python bench/chat_judging.py score              # SSA per system (results.md, results.json)

Prompts (bench/chat_judging/prompts.jsonl): opening messages ({"turns": [message]}) and three-turn scripts
({"turns": [user, bot, user]}: the first exchange is primed into the memory, the reply to the third is judged).
Judging follows ../shared/JUDGING.md (Adiwardana et al. 2020): sensible 0/1, specific 0/1 only if sensible,
SSA = (sensible + specific) / 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import random
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rnnchat import paths  # noqa: E402
from rnnchat.engine.engine import Engine, load_chat_model, make_ranker  # noqa: E402
from rnnchat.sampling import SamplingSettings  # noqa: E402
from rnnchat.session.session import ChatSession  # noqa: E402
from rnnchat.session.transcript import Mode  # noqa: E402

HERE = ROOT / "bench" / "chat_judging"
# name: (mode, candidates, ranking weights that differ from the defaults); --systems FILE.json replaces them
SYSTEMS = {"seq2seq": (Mode.CHAT, 1, {}), "lm": (Mode.LM, 1, {}), "seq2seq_ranked16": (Mode.CHAT, 16, {}),
           "lm_ranked16": (Mode.LM, 16, {}), "lm_ranked16_backward": (Mode.LM, 16, {"backward": 0.5})}


def load_systems(path: Path | None) -> dict:
    """{"name": {"mode": "lm", "candidates": 16, "weights": {...}, "settings": {...}, "judge": "PATH"}, ...} from a
    JSON file ("judge": a reply judge checkpoint of that system's own, instead of --judge)."""
    if path is None:
        return {k: (m, n, w, {}, None) for k, (m, n, w) in SYSTEMS.items()}
    spec = json.loads(path.read_text())
    return {k: (Mode(v["mode"]), v.get("candidates", 1), v.get("weights", {}), v.get("settings", {}), v.get("judge"))
            for k, v in spec.items()}
LABELS = "ABCDEFGH"
QUESTION_WORDS = frozenset("what whats what's how hows how's why where wheres where's when who whos who's which "
                           "do does did are is can could would will should have has any".split())


def asks(text: str) -> bool:
    """The turn asks something: its last message holds a "?" or opens with a question word. A system's
    "question_guidance" setting guides only these replies (tried in round 4: it did not help)."""
    last = next((m for m in reversed(text.split("\n")) if m.strip()), "")
    words = re.findall(r"[a-z']+", last.lower())
    return "?" in last or bool(words) and words[0] in QUESTION_WORDS


def system_sampling(settings: dict, turns: list[str]) -> dict:
    """A system's sampling settings for a reply to `turns` (its "question_guidance" applied: round 4)."""
    sampling = {k: v for k, v in settings.items() if k != "question_guidance"}
    if "question_guidance" in settings and asks(turns[-1]):
        sampling["guidance"] = settings["question_guidance"]
    return sampling


def seed_of(prompt_id: str) -> int:
    return int.from_bytes(hashlib.sha256(prompt_id.encode()).digest()[:4], "little")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def make_replies(args) -> None:
    prompts = read_jsonl(args.prompts)
    engine = Engine(args.lm)
    chat, note = load_chat_model(args.seq2seq)
    if chat is None:
        raise SystemExit(f"no seq2seq chat model: {note}")
    systems = load_systems(args.systems)
    judges = {name: Path(j) if j else args.judge for name, (*_, j) in systems.items()}  # None: the shipped one
    by_judge = {}  # one ranker per judge checkpoint
    for judge in dict.fromkeys(judges.values()):
        by_judge[judge], notes = make_ranker(engine, args.backward, judge)
        if judge is not None and by_judge[judge].judge is None:  # a system ranked without the judge it names
            raise SystemExit(f"cannot use the judge {judge}: {'; '.join(notes)}")
        print("; ".join([*notes, f"judge {judge or 'shipped'}: weights {by_judge[judge].weights}"]), file=sys.stderr)
    rankers = {}
    for name, (_, _, w, _, _) in systems.items():
        r = by_judge[judges[name]]
        rankers[name] = dataclasses.replace(r, weights=dataclasses.replace(r.weights, **w))
    out, times = [], {name: [] for name in systems}
    with tempfile.TemporaryDirectory() as tmp:
        for i, p in enumerate(prompts):
            for name, (mode, n, _, settings, _) in systems.items():
                sampling = system_sampling(settings, p["turns"])
                s = ChatSession(engine, seq2seq=chat, settings=SamplingSettings(seed=seed_of(p["id"]), **sampling),
                                directory=Path(tmp), ranker=rankers[name], candidates=n)
                s.set_mode(mode)
                turns = p["turns"]
                for user, bot in zip(turns[:-1:2], turns[1:-1:2]):
                    s.prime(user, bot)
                t0 = time.perf_counter()
                reply = "".join(t.text for t in s.respond(turns[-1])).strip()
                times[name].append(time.perf_counter() - t0)
                out.append({"prompt_id": p["id"], "system": name, "reply": reply})
            print(f"{i + 1}/{len(prompts)}", file=sys.stderr, end="\r")
    args.out.write_text("".join(json.dumps(r) + "\n" for r in out), encoding="utf-8")
    print(f"\n{len(out)} replies -> {args.out}; mean seconds per reply: "
          + ", ".join(f"{k} {sum(v) / len(v):.3f}" for k, v in times.items()), file=sys.stderr)


def make_sheet(args) -> None:
    prompts = {p["id"]: p for p in read_jsonl(args.prompts)}
    replies = read_jsonl(args.replies)
    by_prompt: dict[str, list[dict]] = {}
    for r in replies:
        by_prompt.setdefault(r["prompt_id"], []).append(r)
    rng = random.Random(args.seed)
    last = LABELS[max(len(v) for v in by_prompt.values()) - 1]
    key, lines = {}, ["# Blind judging sheet", "", f"For each conversation, judge every reply A-{last} on its own as "
                      "the next thing said (../shared/JUDGING.md): sensible 0/1, specific 0/1 (only if sensible).", ""]
    for pid in sorted(by_prompt):
        rs = by_prompt[pid][:]
        rng.shuffle(rs)
        key[pid] = {LABELS[k]: r["system"] for k, r in enumerate(rs)}
        turns = prompts[pid]["turns"]
        lines.append(f"## {pid}")
        for k, t in enumerate(turns):
            lines.append(f"{'user' if k % 2 == 0 else 'bot '}: {t}")
        for k, r in enumerate(rs):
            lines.append(f"  {LABELS[k]}) {r['reply'] or '(empty reply)'}".replace("\n", " / "))
        lines.append("")
    args.sheet.write_text("\n".join(lines), encoding="utf-8")
    args.key.write_text(json.dumps(key, indent=1) + "\n", encoding="utf-8")
    print(f"sheet.md: {len(by_prompt)} prompts; key.json written (do not show it to the judge)", file=sys.stderr)


def paired_differences(per_prompt: dict[tuple[str, str], list[float]], baseline: str, draws: int = 10_000,
                       seed: int = 0) -> dict[str, tuple[float, float, float]]:
    """Each other system's mean SSA minus the baseline's over the prompts both replied to (judges averaged per
    prompt), in points, with a 95% bootstrap interval (prompts resampled)."""
    systems = sorted({s for s, _ in per_prompt} - {baseline})
    rng = np.random.default_rng(seed)
    out = {}
    for name in systems:
        pids = sorted(p for s, p in per_prompt if s == name and (baseline, p) in per_prompt)
        d = np.array([np.mean(per_prompt[(name, p)]) - np.mean(per_prompt[(baseline, p)]) for p in pids]) * 100
        if not len(d):
            continue
        means = d[rng.integers(0, len(d), (draws, len(d)))].mean(axis=1)
        out[name] = (float(d.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5)))
    return out


def score(args) -> None:
    key = json.loads(args.key.read_text())
    totals: dict[str, list[tuple[int, int]]] = {}
    per_prompt: dict[tuple[str, str], list[float]] = {}  # (system, prompt) -> each judge's SSA of its reply
    for line in args.judgments.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        pid, label, sens, spec = line.split("\t")
        sens, spec = int(sens), int(spec)
        totals.setdefault(key[pid][label], []).append((sens, spec * sens))
        per_prompt.setdefault((key[pid][label], pid), []).append((sens + spec * sens) / 2)
    rows = []
    for name in sorted(totals):
        js = totals.get(name, [])
        n = len(js)
        s_ = sum(a for a, _ in js) / n if n else float("nan")
        p_ = sum(b for _, b in js) / n if n else float("nan")
        rows.append({"system": name, "n": n, "sensible": s_, "specific": p_, "ssa": (s_ + p_) / 2})
    table = ["| system | n | sensible | specific | SSA |", "| --- | ---: | ---: | ---: | ---: |"]
    table += [f"| {r['system']} | {r['n']} | {r['sensible']:.1%} | {r['specific']:.1%} | **{r['ssa']:.1%}** |"
              for r in rows]
    if args.baseline:
        table += ["", f"Paired against {args.baseline} (SSA points, 95% bootstrap interval over prompts):"]
        table += [f"- {name}: {d:+.1f} ({lo:+.1f} .. {hi:+.1f})"
                  for name, (d, lo, hi) in paired_differences(per_prompt, args.baseline).items()]
    args.results.with_suffix(".md").write_text("\n".join(table) + "\n", encoding="utf-8")
    args.results.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    print("\n".join(table))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("replies")
    r.add_argument("--prompts", type=Path, default=HERE / "prompts.jsonl")
    r.add_argument("--out", type=Path, default=HERE / "replies.jsonl")
    r.add_argument("--lm", type=Path, default=paths.lm_checkpoint())
    r.add_argument("--seq2seq", type=Path, default=None)
    r.add_argument("--backward", type=Path, default=None)
    r.add_argument("--judge", type=Path, default=None, help="the reply judge (default: the shipped one)")
    r.add_argument("--systems", type=Path, default=None, help="JSON of the systems to compare (default: SYSTEMS)")
    r.set_defaults(func=make_replies)
    s = sub.add_parser("sheet")
    s.add_argument("--prompts", type=Path, default=HERE / "prompts.jsonl")
    s.add_argument("--replies", type=Path, default=HERE / "replies.jsonl")
    s.add_argument("--seed", type=int, default=2026)
    s.add_argument("--sheet", type=Path, default=HERE / "sheet.md")
    s.add_argument("--key", type=Path, default=HERE / "key.json")
    s.set_defaults(func=make_sheet)
    c = sub.add_parser("score")
    c.add_argument("--judgments", type=Path, default=HERE / "judgments.tsv")
    c.add_argument("--key", type=Path, default=HERE / "key.json")
    c.add_argument("--results", type=Path, default=HERE / "results.md")
    c.add_argument("--baseline", help="a system to compare the others with, prompt by prompt (paired bootstrap)")
    c.set_defaults(func=score)
    args = ap.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
