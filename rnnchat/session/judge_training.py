"""Train the reply judge (`models/reply_judge.py`) on judged candidate pools, cross-validated over prompts.

It lives with the sessions because it reads each candidate as a session's ranker does (the LM memory after the
prompt's turns, fed as a session feeds them, and the ranker's PMI and backward terms).

    rnnchat train reply-judge --pools bench/chat_judging/pool_dev bench/chat_judging/pool_train \\
        --rounds bench/chat_judging/dev{,2,3,4} bench/chat_judging/round{1..13} \\
        --out rnnchat/checkpoints/reply_judge.npz

A pool directory (written by `bench/chat_pool.py make`) holds `prompts.jsonl` ({"id", "turns"}), every
candidate of every system's ranked reply in `candidates.jsonl` ({"prompt_id", "system", "text", "finished"}),
and blind sheets `part-*/` whose `key.json` maps "prompt_id:number" to a text and whose `judgments.tsv` holds
`prompt_id <TAB> number <TAB> sensible <TAB> specific` lines (specific counts only when sensible). Judged rounds
(`--rounds`, `bench/chat_judging.py`) add the replies systems showed and judges labelled, as training data only:
a few replies each of ~1,000 prompts, where the pools have 16 or 64 candidates each of 200 prompts.

Before fitting on every pool, the judge is fitted K times on the pools of 4/5 of the prompts and asked to pick
the reply of the other prompts' pools (folds over prompts, so a prompt is never seen by the judge that picks
for it): the metrics are each system's SSA of the judge's pick and of the default ranker's
(responder + PMI per token), by judge weight. Unfinished candidates are never picked while a finished one is
there (the ranker's penalties outweigh the judge).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnnchat.data import jsonl
from rnnchat.engine.engine import Engine, load_backward_model, weights_id
from rnnchat.engine.ranking import Ranker
from rnnchat.models.reply_judge import ReplyJudge, reply_features
from rnnchat.progress import Progress
from rnnchat.train.trainer import check_out

FOLDS = 5
STEPS, LEARNING_RATE = 300, 0.05
MIX_WEIGHTS = (1.0, 2.0, 4.0, 8.0)  # judge weights beside the default terms, reported by cross-validation


def judged(pool_dir: Path) -> dict[tuple[str, str], tuple[int, int]]:
    """(prompt_id, text) -> (sensible, specific) from every judged part of a pool (specific only if sensible)."""
    labels = {}
    for part in sorted(Path(pool_dir).glob("part-*")):
        sheet = part / "judgments.tsv"
        if not sheet.exists():
            continue
        where = part / "key.json"
        key = jsonl.parse(jsonl.read_text(where), str(where))
        if not isinstance(key, dict) or not all(isinstance(v, str) for v in key.values()):
            raise ValueError(f"{where}: expected an object of sheet numbers (\"PROMPT:N\") to candidate texts")
        for n, line in enumerate(jsonl.read_text(sheet).splitlines(), 1):
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) != 4 or f"{fields[0]}:{fields[1]}" not in key or not set(fields[2:]) <= {"0", "1"}:
                raise ValueError(f"{sheet}:{n}: expected prompt_id, a number on the sheet, sensible 0/1, specific 0/1")
            pid, number, sens, spec = fields
            labels[(pid, key[f"{pid}:{number}"])] = (int(sens), int(spec) * int(sens))
    return labels


@dataclass
class Pool:
    """One system's candidates for one prompt, with their labels (N, 2)."""

    prompt_id: str
    system: str
    turns: list[str]
    texts: list[str]
    finished: np.ndarray
    labels: np.ndarray
    ranked: bool = True  # False: a judged round's shown replies, training data only (no pick is scored on them)


PROMPT_FIELDS = {"id": str, "turns": list}
CANDIDATE_FIELDS = {"prompt_id": str, "system": str, "text": str, "finished": bool}
REPLY_FIELDS = {"prompt_id": str, "system": str, "reply": str}


def records(path: Path, fields: dict[str, type]) -> Iterator[dict]:
    """The JSON objects of a JSONL file, each holding `fields` of their types (ValueError naming the line)."""
    for n, r in jsonl.values(jsonl.read_text(path).splitlines(), str(path)):
        if not isinstance(r, dict):
            raise ValueError(f"{path}:{n}: expected a JSON object")
        for name, kind in fields.items():
            if not isinstance(r.get(name), kind):
                raise ValueError(f"{path}:{n}: {name!r} is missing or not a {kind.__name__}")
        yield r


def prompt_turns(d: Path) -> dict[str, list[str]]:
    """A pool's or a round's prompts: id -> turns (ValueError for turns that are not a list of messages)."""
    turns = {}
    for p in records(d / "prompts.jsonl", PROMPT_FIELDS):
        if not p["turns"] or not all(isinstance(t, str) for t in p["turns"]):
            raise ValueError(f"{d / 'prompts.jsonl'}: prompt {p['id']!r}: 'turns' must be a list of messages")
        turns[p["id"]] = p["turns"]
    return turns


def load_rounds(dirs: list[Path]) -> list[Pool]:
    """The judged replies of judged rounds (`bench/chat_judging.py`: prompts.jsonl, replies.jsonl, key.json
    mapping a prompt's sheet labels to systems, judgments.tsv holding every judge's lines) as training-only
    pools, one per prompt of a round: each distinct reply once per round, its labels the mean of every judgment
    of it in that round (every judge, every system that wrote it; a reply two rounds showed counts twice).
    Why: they are the replies rankers picked and judges then rejected or kept, on far more prompts than the
    candidate pools have."""
    pools = []
    for d in map(Path, dirs):
        turns = prompt_turns(d)
        replies = {(r["prompt_id"], r["system"]): r["reply"] for r in records(d / "replies.jsonl", REPLY_FIELDS)}
        where, sheet = d / "key.json", d / "judgments.tsv"
        key = jsonl.parse(jsonl.read_text(where), str(where))
        if not isinstance(key, dict) or not all(isinstance(v, dict) and all(isinstance(s, str) for s in v.values())
                                                for v in key.values()):
            raise ValueError(f"{where}: expected an object of prompt ids to objects of sheet labels to systems")
        votes: dict[str, dict[str, list[tuple[int, int]]]] = {}
        for n, line in enumerate(jsonl.read_text(sheet).splitlines(), 1):
            if not line.strip() or line.startswith("#"):  # (comments, as `chat_judging.py score` skips them)
                continue
            fields = line.split("\t")
            system = key.get(fields[0], {}).get(fields[1]) if len(fields) == 4 else None
            if (fields[0], system) not in replies or fields[0] not in turns or not set(fields[2:]) <= {"0", "1"}:
                raise ValueError(f"{sheet}:{n}: expected a prompt id and label of key.json with a reply, "
                                 "sensible 0/1, specific 0/1")
            sens, spec = int(fields[2]), int(fields[3])
            votes.setdefault(fields[0], {}).setdefault(replies[(fields[0], system)], []).append((sens, sens * spec))
        for pid, by_text in sorted(votes.items()):
            texts = list(by_text)
            pools.append(Pool(pid, f"round {d.name}", turns[pid], texts, np.ones(len(texts), bool),
                              np.array([np.mean(by_text[t], axis=0) for t in texts]), ranked=False))
    return pools


def load_pools(dirs: list[Path]) -> list[Pool]:
    """Every fully judged (prompt, system) pool of the directories (a prompt id names one prompt everywhere)."""
    grouped: dict[tuple[str, str], list[dict]] = {}
    turns: dict[str, list[str]] = {}
    labels: dict[tuple[str, str], tuple[int, int]] = {}
    for d in dirs:
        d = Path(d)
        turns.update(prompt_turns(d))
        labels.update(judged(d))
        for r in records(d / "candidates.jsonl", CANDIDATE_FIELDS):
            grouped.setdefault((r["prompt_id"], r["system"]), []).append(r)
    pools = []
    for (pid, system), rows in sorted(grouped.items()):
        if all((pid, r["text"]) in labels for r in rows):
            if pid not in turns:
                raise ValueError(f"prompt {pid!r} has judged candidates but is in no prompts.jsonl")
            pools.append(Pool(pid, system, turns[pid], [r["text"] for r in rows],
                              np.array([r["finished"] for r in rows]),
                              np.array([labels[(pid, r["text"])] for r in rows], np.float64)))
    return pools


def pool_features(engine: Engine, ranker: Ranker, pools: list[Pool], progress: bool = True) -> list[np.ndarray]:
    """`reply_features` of every pool's candidates, each read from the memory a session has after the prompt."""
    bar = Progress(len(pools), "features") if progress and pools else None
    out = []
    for i, pool in enumerate(pools):
        conv = engine.conversation()
        for turn in pool.turns:  # as `ChatSession.prime` and `respond` feed them
            conv.feed(turn, end_turn=True)
        out.append(reply_features(engine.decoder, engine.vocab, conv.logits, conv.state, ranker.lm_ids(pool.texts),
                                  ranker.backward_scores(pool.texts, pool.turns[-1]))[0])
        if bar is not None:
            bar.update(i + 1)
    if bar is not None:
        bar.close()
    return out


def logistic_loss_grad(X: np.ndarray, y: np.ndarray, w: np.ndarray, b: float, l2: float
                       ) -> tuple[float, np.ndarray, float]:
    """Mean log-loss of sigmoid(X w + b) against y in [0, 1] plus l2 / (2n) |w|^2; (loss, dL/dw, dL/db)."""
    n = len(y)
    z = X @ w + b
    loss = float(np.mean(np.logaddexp(0.0, z) - y * z) + 0.5 * l2 * (w @ w) / n)
    p = 1.0 / (1.0 + np.exp(-z))
    return loss, X.T @ (p - y) / n + l2 * w / n, float(np.mean(p - y))


def fit_logistic(X: np.ndarray, y: np.ndarray, l2: float) -> tuple[np.ndarray, float]:
    """Adam from zeros for a fixed number of steps (deterministic; the step count also regularises)."""
    w, b = np.zeros(X.shape[1]), 0.0
    m, v = np.zeros(X.shape[1] + 1), np.zeros(X.shape[1] + 1)
    for t in range(1, STEPS + 1):
        _, gw, gb = logistic_loss_grad(X, y, w, b, l2)
        g = np.append(gw, gb)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        step = LEARNING_RATE * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
        w, b = w - step[:-1], b - step[-1]
    return w, b


def fit_judge(features: np.ndarray, labels: np.ndarray, l2: float, lm_id: str = "", backward_id: str = "",
              metrics: dict | None = None) -> ReplyJudge:
    """Standardise the features (N, D) and fit one logistic regression per label column (N, 2)."""
    mean, scale = features.mean(axis=0), features.std(axis=0) + 1e-6
    X = (features - mean) / scale
    fits = [fit_logistic(X, labels[:, k], l2) for k in range(2)]
    return ReplyJudge(mean, scale, np.stack([w for w, _ in fits]), np.array([b for _, b in fits]), lm_id,
                      backward_id,
                      metrics or {})


def pick_ssa(pools: list[Pool], scores: list[np.ndarray]) -> dict[str, float]:
    """Each system's mean SSA ((sensible + specific) / 2) of the best-scored candidate of its ranked pools."""
    by_system: dict[str, list[float]] = {}
    for pool, s in zip(pools, scores):
        if not pool.ranked:
            continue
        j = int(np.argmax(np.where(pool.finished, s, s - 1e9)))
        by_system.setdefault(pool.system, []).append(float(pool.labels[j].sum() / 2))
    return {k: round(float(np.mean(v)), 4) for k, v in sorted(by_system.items())}


def cross_validated_predictions(pools: list[Pool], feats: list[np.ndarray], l2: float, seed: int = 0
                                ) -> list[np.ndarray]:
    """(N, 2) P(sensible), P(specific) of each ranked pool's candidates by a judge fitted without that pool's
    prompt ((0, 2) for training-only pools). `FOLDS` folds over the ranked pools' prompts, a prompt being its
    turns (the same message under two ids is one prompt): the folds are the same with or without training-only
    pools, which train every fold but their own prompt's."""
    prompts = sorted({prompt_key(p) for p in pools if p.ranked})
    np.random.default_rng(seed).shuffle(prompts)
    fold = {key: k % FOLDS for k, key in enumerate(prompts)}
    out: list[np.ndarray] = [np.zeros((0, 2))] * len(pools)
    for k in range(FOLDS):
        train = [i for i, p in enumerate(pools) if fold.get(prompt_key(p)) != k]
        judge = fit_judge(np.concatenate([feats[i] for i in train]),
                          np.concatenate([pools[i].labels for i in train]), l2)
        for i, p in enumerate(pools):
            if p.ranked and fold[prompt_key(p)] == k:
                out[i] = judge.predict(feats[i])
    return out


def prompt_key(pool: Pool) -> str:
    """What names a prompt across pools and rounds: its turns (ids differ between prompt files)."""
    return "\n".join(pool.turns)


def cross_validate(pools: list[Pool], feats: list[np.ndarray], l2: float, seed: int = 0) -> dict:
    """Pick SSA per system of the default ranker and of the judge (alone and added to the default terms),
    each prompt's pools picked by a judge fitted without that prompt."""
    predictions = cross_validated_predictions(pools, feats, l2, seed)
    ranked = [i for i, p in enumerate(pools) if p.ranked]
    pools = [pools[i] for i in ranked]
    judge_scores = [predictions[i].sum(axis=1) for i in ranked]
    default = [feats[i][:, 0] + feats[i][:, 2] for i in ranked]  # responder + pmi_mean: the default terms
    out = {"default_ranker": pick_ssa(pools, default), "judge": pick_ssa(pools, judge_scores)}
    for a in MIX_WEIGHTS:
        out[f"default + {a:g} judge"] = pick_ssa(pools, [d + a * j for d, j in zip(default, judge_scores)])
    return out


def judged_features(pool_dirs: list[Path], lm: Path | None = None, progress: bool = True,
                    round_dirs: Sequence[Path] = ()) -> tuple[Engine, tuple, list[Pool], list[np.ndarray]]:
    """The LM's engine, the backward model, the judged pools (then the rounds' training-only ones) and their
    candidates' features (ValueError without the backward model, whose score is a feature, or with ranked pools
    of fewer than `FOLDS` prompts)."""
    engine = Engine(lm)
    backward, why = load_backward_model(None)
    if backward is None:
        raise ValueError(f"the reply judge reads the backward model's score: {why}")
    pools = load_pools(pool_dirs)
    if len({prompt_key(p) for p in pools}) < FOLDS:
        raise ValueError(f"need judged pools of at least {FOLDS} prompts, found {len({prompt_key(p) for p in pools})}")
    pools += load_rounds(list(round_dirs))
    return engine, backward, pools, pool_features(engine, Ranker(engine.decoder, engine.vocab, *backward), pools,
                                                  progress)


def train_reply_judge(pool_dirs: list[Path], out: Path, l2: float = 300.0, lm: Path | None = None,
                      progress: bool = True, round_dirs: Sequence[Path] = ()) -> dict:
    """Cross-validate, fit on every pool (and round) and save the judge; returns its metrics."""
    check_out(out, "reply_judge", [("--lm", lm)])
    engine, backward, pools, feats = judged_features(pool_dirs, lm, progress, round_dirs)
    ranked = [p for p in pools if p.ranked]
    labels = np.concatenate([p.labels for p in ranked])
    metrics = {"pools": len(ranked), "prompts": len({prompt_key(p) for p in ranked}), "candidates": int(len(labels)),
               "sensible_rate": round(float(labels[:, 0].mean()), 4),
               "specific_rate": round(float(labels[:, 1].mean()), 4), "l2": l2,
               "cross_validated_pick_ssa": cross_validate(pools, feats, l2)}
    if round_dirs:
        extra = [p for p in pools if not p.ranked]
        metrics["rounds"] = {"dirs": len(round_dirs), "prompts": len({prompt_key(p) for p in extra}),
                             "replies": sum(len(p.texts) for p in extra)}
    judge = fit_judge(np.concatenate(feats), np.concatenate([p.labels for p in pools]), l2, engine.weights_id,
                      weights_id(backward[0].params.named()), metrics)
    judge.save(out, {"name": "judged candidate pools", "pools": [str(d) for d in pool_dirs],
                     "rounds": [str(d) for d in round_dirs]})
    return metrics


def add_train_arguments(p) -> None:
    """`rnnchat train reply-judge` flags."""
    p.add_argument("--pools", type=Path, nargs="+", required=True,
                   help="judged pool directories (bench/chat_pool.py make + blind judgments)")
    p.add_argument("--out", type=Path, required=True,
                   help="the judge checkpoint (rnnchat/checkpoints/reply_judge.npz replaces the shipped one)")
    p.add_argument("--rounds", type=Path, nargs="+", default=[],
                   help="judged rounds (bench/chat_judging.py: prompts, replies, key.json, judgments.tsv) whose "
                        "replies join the training data (each reply's labels: the mean of its judgments)")
    p.add_argument("--l2", type=float, default=300.0, help="L2 penalty of the two logistic regressions")
    p.add_argument("--lm", type=Path, default=None, help="the LM whose features it reads (default: the shipped one)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def train_from_namespace(args) -> dict:
    return train_reply_judge(args.pools, args.out, args.l2, args.lm, progress=not args.quiet, round_dirs=args.rounds)
