"""Judged candidate pools (issue 14): every candidate of a ranked reply judged, not only the chosen one.

A judged SSA figure of the chosen reply rests on one line per prompt (+-10 points at 50-100 prompts); judging
all N candidates of each prompt measures a change to *generation* (a sampling setting, guidance) on N times as
many lines, and tells generation apart from ranking: the share of sensible candidates, the best candidate of
each pool (the oracle: what a perfect ranker would reach) and the one the shipped ranker picks.

    python bench/chat_pool.py make --systems bench/chat_judging/pool_dev/systems.json --limit 30 \
        --out-dir bench/chat_judging/pool_dev --parts 2
    # judges who see only part-K/sheet.md write part-K/judgments.tsv:
    #   prompt_id <TAB> number <TAB> sensible <TAB> specific
    python bench/chat_pool.py score --out-dir bench/chat_judging/pool_dev
    python bench/chat_pool.py first-messages --out-dir bench/chat_judging/pool_dev --systems base g1 t05
    rnnchat train reply-judge --pools bench/chat_judging/pool_dev bench/chat_judging/pool_train --out J.npz

A candidate's text is judged once per prompt whichever systems made it (the sheet lists each prompt's distinct
texts, shuffled, without systems); `make` with more systems later adds sheets only for texts not judged yet.
A pool directory holds its prompts (`prompts.jsonl`), so the reply judge can be trained on it
(`rnnchat/session/judge_training.py`, which also reads the judgments).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from chat_judging import HERE, load_systems, read_jsonl, seed_of, system_sampling  # noqa: E402
from rnnchat import paths  # noqa: E402
from rnnchat.engine.engine import Engine, make_ranker  # noqa: E402
from rnnchat.engine.ranking import RankWeights  # noqa: E402
from rnnchat.sampling import SamplingSettings  # noqa: E402
from rnnchat.session.judge_training import judged  # noqa: E402
from rnnchat.session.session import ChatSession  # noqa: E402
from rnnchat.session.transcript import Mode  # noqa: E402

ALL_TERMS = RankWeights(responder=1, pmi=1, pmi_mean=1, backward=1, judge=1)  # to record every candidate's terms


def candidates(args) -> list[dict]:
    """Every system's ranked candidates for each prompt (the shipped ranking order), with all score terms."""
    engine = Engine(args.lm)
    shipped, notes = make_ranker(engine)
    for note in notes:
        print(note, file=sys.stderr)
    terms = dataclasses.replace(shipped, weights=ALL_TERMS)
    rows = []
    prompts = read_jsonl(args.prompts)[: args.limit]
    with tempfile.TemporaryDirectory() as tmp:
        for i, p in enumerate(prompts):
            for name, (mode, n, w, settings, judge) in load_systems(args.systems).items():
                if judge is not None:  # the pools' order is the shipped ranking's; another judge would be lost
                    raise SystemExit(f"system {name!r} names a judge: chat_pool.py ranks by the shipped one")
                ranker = dataclasses.replace(shipped, weights=RankWeights(**w))
                sampling = system_sampling(settings, p["turns"])
                s = ChatSession(engine, settings=SamplingSettings(seed=seed_of(p["id"]), **sampling),
                                directory=Path(tmp), ranker=ranker, candidates=n)
                s.set_mode(mode)
                turns = p["turns"]
                for user, bot in zip(turns[:-1:2], turns[1:-1:2]):
                    s.prime(user, bot)
                for _ in s.respond(turns[-1]):
                    pass
                ranked = copy.deepcopy(s.last_reply.ranked)
                conv = s.last_reply.conv if mode is Mode.LM else None
                terms.rank(ranked, turns[-1], [], conv)  # fills the terms; `ranked` keeps the shipped order
                rows += [{"prompt_id": p["id"], "system": name, "rank": k, "text": c.text.strip(),
                          "finished": c.finished, "tokens": len(c.ids), "terms": c.terms} for k, c in enumerate(ranked)]
            print(f"{i + 1}/{len(prompts)}", file=sys.stderr, end="\r")
    return rows


def make(args) -> None:
    rows = candidates(args)
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    old = read_jsonl(out / "candidates.jsonl") if (out / "candidates.jsonl").exists() else []
    rows = [r for r in old if r["system"] not in {x["system"] for x in rows}] + rows
    kept = read_jsonl(out / "prompts.jsonl") if (out / "prompts.jsonl").exists() else []
    prompts = {**{p["id"]: p for p in kept}, **{p["id"]: p for p in read_jsonl(args.prompts)}}
    pids = list(dict.fromkeys(r["prompt_id"] for r in rows))
    if missing := [p for p in pids if p not in prompts]:
        raise SystemExit(f"{out} holds candidates of prompts in neither prompts file: {missing[:5]}")
    (out / "prompts.jsonl").write_text("".join(json.dumps(prompts[p]) + "\n" for p in pids), encoding="utf-8")
    (out / "candidates.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    write_sheets(out, rows, prompts, args.parts, args.seed)


def write_sheets(out: Path, rows: list[dict], prompts: dict[str, dict], parts: int, seed: int) -> None:
    """Blind sheets (part-K/sheet.md + key.json) of the rows' texts no earlier part lists, prompts split over
    `parts` judges."""
    done = {k for part in out.glob("part-*") for k in _listed(part)}  # texts already on a sheet
    pids = list(dict.fromkeys(r["prompt_id"] for r in rows))
    rng = random.Random(seed)
    first = len(list(out.glob("part-*")))
    for k in range(parts):
        key, lines = {}, ["# Judge each reply: sensible 0/1, specific 0/1 (only if sensible); see JUDGING.md", ""]
        for pid in pids[k::parts]:
            texts = sorted({r["text"] for r in rows if r["prompt_id"] == pid} - {t for p, t in done if p == pid})
            if not texts:
                continue
            rng.shuffle(texts)
            lines.append(f"## {pid}")
            lines += [f"{'user' if j % 2 == 0 else 'bot '}: {t}" for j, t in enumerate(prompts[pid]["turns"])]
            for j, text in enumerate(texts, start=1):
                key[f"{pid}:{j}"] = text
                lines.append(f"  {j}) {text.replace(chr(10), ' / ') or '(empty reply)'}")
            lines.append("")
        if key:
            part = out / f"part-{first + k + 1}"
            part.mkdir()
            (part / "sheet.md").write_text("\n".join(lines), encoding="utf-8")
            (part / "key.json").write_text(json.dumps(key, indent=1) + "\n", encoding="utf-8")
            print(f"{part}/sheet.md: {len(key)} replies to judge", file=sys.stderr)


def _listed(part: Path) -> set[tuple[str, str]]:
    """(prompt_id, text) of every reply on a part's sheet."""
    return {(k.split(":", 1)[0], v) for k, v in json.loads((part / "key.json").read_text()).items()}


def score(args) -> None:
    labels = judged(args.out_dir)
    rows = read_jsonl(args.out_dir / "candidates.jsonl")
    pools: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        pools.setdefault((r["system"], r["prompt_id"]), []).append(r)
    table = ["| system | prompts | candidates sensible | candidates specific | oracle SSA | ranked pick SSA |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    results = []
    for system in dict.fromkeys(r["system"] for r in rows):
        ps = [sorted(v, key=lambda r: r["rank"]) for (s, _), v in pools.items() if s == system]
        ps = [p for p in ps if all((r["prompt_id"], r["text"]) in labels for r in p)]
        if not ps:
            continue
        lab = [[labels[(r["prompt_id"], r["text"])] for r in p] for p in ps]
        mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
        res = {"system": system, "prompts": len(ps),
               "candidates_sensible": mean([mean([a for a, _ in x]) for x in lab]),
               "candidates_specific": mean([mean([b for _, b in x]) for x in lab]),
               "oracle_ssa": mean([max(a + b for a, b in x) / 2 for x in lab]),
               "pick_ssa": mean([sum(x[0]) / 2 for x in lab])}
        results.append(res)
        table.append(f"| {system} | {res['prompts']} | {res['candidates_sensible']:.1%} | "
                     f"{res['candidates_specific']:.1%} | {res['oracle_ssa']:.1%} | **{res['pick_ssa']:.1%}** |")
    (args.out_dir / "results.md").write_text("\n".join(table) + "\n", encoding="utf-8")
    (args.out_dir / "results.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print("\n".join(table))


def first_messages(args) -> None:
    """One-message pools derived from judged ones: each candidate of `--systems` cut after its first message, as
    system "<name>_m1" (the first message is drawn the same whether sampling would go on or not), with blind
    sheets for the texts not judged yet."""
    out = args.out_dir
    rows = [r for r in read_jsonl(out / "candidates.jsonl") if not r["system"].endswith("_m1")]
    new = []
    for r in rows:
        if r["system"] in args.systems:
            lines = r["text"].split("\n")
            new.append({**r, "system": r["system"] + "_m1", "text": lines[0].strip(),
                        "finished": r["finished"] or len(lines) > 1, "tokens": None, "terms": {}})
    (out / "candidates.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows + new), encoding="utf-8")
    write_sheets(out, new, {p["id"]: p for p in read_jsonl(out / "prompts.jsonl")}, args.parts, args.seed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make", help="candidates of every system and blind sheets of the texts not judged yet")
    m.add_argument("--prompts", type=Path, default=HERE / "dev_prompts.jsonl")
    m.add_argument("--systems", type=Path, required=True)
    m.add_argument("--limit", type=int, default=None, help="the first N prompts")
    m.add_argument("--out-dir", type=Path, required=True)
    m.add_argument("--parts", type=int, default=1, help="sheets to split the prompts over (one judge each)")
    m.add_argument("--lm", type=Path, default=paths.lm_checkpoint())
    m.add_argument("--seed", type=int, default=7)
    m.set_defaults(func=make)
    s = sub.add_parser("score", help="candidate-level rates, oracle and ranked pick SSA per system")
    s.add_argument("--out-dir", type=Path, required=True)
    s.set_defaults(func=score)
    f = sub.add_parser("first-messages", help="one-message pools cut from judged ones, and sheets of new texts")
    f.add_argument("--out-dir", type=Path, required=True)
    f.add_argument("--systems", nargs="+", required=True, help="the systems to cut")
    f.add_argument("--parts", type=int, default=1)
    f.add_argument("--seed", type=int, default=17)
    f.set_defaults(func=first_messages)
    args = ap.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
