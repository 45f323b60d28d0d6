"""Sentiment ensembles: several separately trained classifiers (same vocabulary) -> one checkpoint.

The ensemble's probabilities and score are the means of its members' (``SentimentEnsemble``); the label
is the argmax of the mean probabilities. Members are chosen on the ``val`` split (never on ``test``);
the checkpoint's metrics are the ensemble's val and test tables against VADER, like a single model's,
and its header lists each member's source, training settings and own numbers.

    rnnchat train sentiment-ensemble runs/a/best.npz runs/b/best.npz --out rnnchat/checkpoints/sentiment.npz
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rnnchat.models.sentiment import SentimentModel
from rnnchat.models.sentiment_ensemble import SentimentEnsemble, load_sentiment
from rnnchat.train.sentiment import finalize_model
from rnnchat.train.trainer import check_out

COMBINE = "mean of the members' probabilities and scores; label = argmax of the mean probabilities"


def _member_info(path: Path, header: dict) -> dict:
    """What the ensemble's header records about one member checkpoint."""
    metrics = header.get("metrics", {})
    info = {"source": str(path), "created": header.get("created"), "git_commit": header.get("git_commit"),
            "training": header.get("training"), "selection": metrics.get("selection", metrics)}
    for split in ("val", "test"):
        if isinstance(metrics.get(split), dict) and "pooled" in metrics[split]:
            info[split] = {d: {k: row[k] for k in ("binary_acc", "macro_f1")} for d, row in metrics[split].items()}
    return info


def build_ensemble(members: Sequence[Path | str], out: Path | str, *, float16: bool = True,
                   compare_vader: bool = True, rule: str = "members chosen on the val split") -> dict:
    """Load the member checkpoints, check they share one vocabulary, evaluate the ensemble on val and
    test (and VADER), and write it to `out` (float16 if verdicts do not change). Returns the metrics.
    `rule` (how the members were chosen) goes into the header's selection metrics.

    A member that is itself an ensemble contributes its members."""
    if not members:
        raise ValueError("an ensemble needs at least one member checkpoint")
    check_out(Path(out), "sentiment", [("member", Path(m)) for m in members])
    models: list[SentimentModel] = []
    infos = []
    vocab = None
    for path in map(Path, members):
        model, v, header = load_sentiment(path)
        if vocab is None:
            vocab, first = v, path
        elif v.itos != vocab.itos:
            raise ValueError(f"{path} has a different vocabulary than {first}; ensemble members must share one")
        if isinstance(model, SentimentEnsemble):
            models += model.members
            infos += header.get("members") or [{"source": str(path)}] * len(model.members)
        else:
            models.append(model)
            infos.append(_member_info(path, header))
    ensemble = SentimentEnsemble(models)
    assert vocab is not None
    selection = {"rule": rule, "members": [i["source"] for i in infos]}
    return finalize_model(ensemble, vocab, Path(out), selection=selection, float16=float16,
                          compare_vader=compare_vader,
                          extra={"training": {"ensemble": COMBINE, "members": len(models)}, "members": infos})


# -- CLI helpers (wired in rnnchat/cli.py) ---------------------------------------------------------------
def add_ensemble_arguments(p) -> None:
    """`rnnchat train sentiment-ensemble` flags."""
    p.add_argument("members", nargs="+", type=Path, help="member checkpoints (same vocabulary), e.g. runs/x/best.npz")
    p.add_argument("--out", type=Path, required=True,
                   help="the ensemble checkpoint (e.g. rnnchat/checkpoints/sentiment.npz to replace the shipped one)")
    p.add_argument("--no-float16", dest="float16", action="store_false", help="store float32 weights")
    p.add_argument("--no-compare-vader", dest="compare_vader", action="store_false", help="skip VADER's tables")
    p.add_argument("--rule", default="members chosen on the val split",
                   help="how the members were chosen (recorded in the header)")


def ensemble_from_namespace(args) -> dict:
    return build_ensemble(args.members, args.out, float16=args.float16, compare_vader=args.compare_vader,
                          rule=args.rule)


__all__ = ["build_ensemble", "add_ensemble_arguments", "ensemble_from_namespace", "COMBINE"]
