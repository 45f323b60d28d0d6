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
    python bench/chat_pool.py learn --out-dir bench/chat_judging/pool_dev   # a ranker learnt on the labels

A candidate's text is judged once per prompt whichever systems made it (the sheet lists each prompt's distinct
texts, shuffled, without systems); `make` with more systems later adds sheets only for texts not judged yet.
"""

from __future__ import annotations

import argparse
import copy
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
from rnnchat.engine.engine import Engine, load_backward_model  # noqa: E402
from rnnchat.engine.ranking import Ranker, RankWeights  # noqa: E402
from rnnchat.sampling import SamplingSettings  # noqa: E402
from rnnchat.session.session import ChatSession  # noqa: E402

ALL_TERMS = RankWeights(responder=1, pmi=1, pmi_mean=1, backward=1)  # to record every term of every candidate


def candidates(args) -> list[dict]:
    """Every system's ranked candidates for each prompt (the shipped ranking order), with all score terms."""
    engine = Engine(args.lm)
    backward, _ = load_backward_model(None)
    terms = Ranker(engine.decoder, engine.vocab, *(backward or (None, None)), weights=ALL_TERMS)
    rows = []
    prompts = read_jsonl(args.prompts)[: args.limit]
    with tempfile.TemporaryDirectory() as tmp:
        for i, p in enumerate(prompts):
            for name, (mode, n, w, settings) in load_systems(args.systems).items():
                ranker = Ranker(engine.decoder, engine.vocab, weights=RankWeights(**w))
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
                terms.rank(ranked, turns[-1], [])  # fills the terms; `ranked` keeps the shipped order
                rows += [{"prompt_id": p["id"], "system": name, "rank": k, "text": c.text.strip(),
                          "finished": c.finished, "tokens": len(c.ids), "terms": c.terms} for k, c in enumerate(ranked)]
            print(f"{i + 1}/{len(prompts)}", file=sys.stderr, end="\r")
    return rows


def judged(out_dir: Path) -> dict[tuple[str, str], tuple[int, int]]:
    """(prompt_id, text) -> (sensible, specific) from every part's judgments and key."""
    labels = {}
    for part in sorted(out_dir.glob("part-*")):
        key = json.loads((part / "key.json").read_text())
        sheet = part / "judgments.tsv"
        if not sheet.exists():
            continue
        for line in sheet.read_text(encoding="utf-8").splitlines():
            if line.strip():
                pid, number, sens, spec = line.split("\t")
                labels[(pid, key[f"{pid}:{number}"])] = (int(sens), int(spec) * int(sens))
    return labels


def make(args) -> None:
    rows = candidates(args)
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    old = read_jsonl(out / "candidates.jsonl") if (out / "candidates.jsonl").exists() else []
    rows = [r for r in old if r["system"] not in {x["system"] for x in rows}] + rows
    (out / "candidates.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    done = {k for part in out.glob("part-*") for k in _listed(part)}  # texts already on a sheet
    prompts = {p["id"]: p for p in read_jsonl(args.prompts)}
    pids = list(dict.fromkeys(r["prompt_id"] for r in rows))
    rng = random.Random(args.seed)
    first = len(list(out.glob("part-*")))
    for k in range(args.parts):
        key, lines = {}, ["# Judge each reply: sensible 0/1, specific 0/1 (only if sensible); see JUDGING.md", ""]
        for pid in pids[k::args.parts]:
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


def learn(args) -> None:
    """A ranker learnt on the pool labels: logistic regression of (sensible + specific) / 2 on the score terms,
    length, a question mark and word overlap with the user's turn; its pick per system, 5-fold over prompts."""
    import numpy as np
    labels, rows = judged(args.out_dir), read_jsonl(args.out_dir / "candidates.jsonl")
    rows = [r for r in rows if (r["prompt_id"], r["text"]) in labels]
    turns = {p["id"]: p["turns"] for p in read_jsonl(args.prompts)}

    def words(text: str) -> set[str]:
        return {w for w in text.lower().split() if len(w) > 3}
    X = np.array([[r["terms"][k] for k in ("responder", "pmi_mean", "pmi", "backward")]
                  + [float(r["finished"]), min(r["tokens"], 30) / 10, float("?" in r["text"]),
                     float(bool(words(r["text"]) & words(turns[r["prompt_id"]][-1])))] for r in rows])
    y = np.array([sum(labels[(r["prompt_id"], r["text"])]) / 2 for r in rows])
    pids = sorted({r["prompt_id"] for r in rows})
    folds = np.array_split(np.random.default_rng(0).permutation(pids), 5)
    picks: dict[str, list[float]] = {}
    for fold in folds:
        train = np.array([r["prompt_id"] not in fold for r in rows])
        mu, sd = X[train].mean(0), X[train].std(0) + 1e-9
        Z, w, b = (X[train] - mu) / sd, np.zeros(X.shape[1]), 0.0
        for _ in range(2000):
            p = 1 / (1 + np.exp(-(Z @ w + b)))
            w -= 0.5 * (Z.T @ (p - y[train]) + w) / train.sum()
            b -= 0.5 * (p - y[train]).mean()
        score = ((X - mu) / sd) @ w
        for system in dict.fromkeys(r["system"] for r in rows):
            for pid in fold:
                idx = [i for i, r in enumerate(rows) if r["system"] == system and r["prompt_id"] == pid]
                if idx:
                    picks.setdefault(system, []).append(float(y[idx[int(np.argmax(score[idx]))]]))
    for system, v in picks.items():
        print(f"{system}: learnt ranker's pick SSA {sum(v) / len(v):.1%} over {len(v)} prompts")


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
    le = sub.add_parser("learn", help="a ranker learnt on the labels, cross-validated over prompts")
    le.add_argument("--out-dir", type=Path, required=True)
    le.add_argument("--prompts", type=Path, default=HERE / "dev_prompts.jsonl")
    le.set_defaults(func=learn)
    args = ap.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
