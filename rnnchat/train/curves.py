"""Training curves from a run's metrics.jsonl: a terminal plot (plotext) of train and validation perplexity."""

from __future__ import annotations

import json
import math
from pathlib import Path


def read_metrics(path: Path) -> list[dict]:
    """The records of a metrics.jsonl file (a torn last line from a crash is skipped)."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except (json.JSONDecodeError, RecursionError):
            continue
    return out


def bits_per_char(records: list[dict]) -> bool:
    """Whether the log is a char-level run's (its validations report bits per character)."""
    return any(isinstance(r, dict) and "val_bpc" in r for r in records)


def curve_series(records: list[dict], x: str = "tokens") -> dict[str, tuple[list[float], list[float]]]:
    """{"train": (xs, ys), "val": (xs, ys)} from the log records: perplexities, or bits per character for a
    char-level run (the train loss in bits)."""
    series = {"train": ([], []), "val": ([], [])}
    number = (int, float)
    keys = (("train", "train_loss"), ("val", "val_bpc")) if bits_per_char(records) else \
        (("train", "train_ppl"), ("val", "val_perplexity"))
    for r in records:
        if not isinstance(r, dict) or not isinstance(r.get(x), number):
            continue  # not a record of ours (or damaged): nothing to plot from it
        for name, key in keys:
            if isinstance(r.get(key), number) and not isinstance(r[key], bool):
                series[name][0].append(r[x])
                series[name][1].append(r[key] / math.log(2) if key == "train_loss" else r[key])
    return series


def plot_curves(metrics_path: Path, width: int | None = None, height: int | None = None) -> str:
    """Render train/val perplexity against tokens seen as terminal text."""
    import plotext as plt

    records = read_metrics(metrics_path)
    series = curve_series(records)
    unit = "bits per char" if bits_per_char(records) else "perplexity"
    if not any(xs for xs, _ in series.values()):
        raise ValueError(f"{metrics_path} holds no training records to plot (empty, or not a metrics log)")
    plt.clf()
    plt.theme("clear")
    if width and height:
        plt.plotsize(width, height)
    for name, (xs, ys) in series.items():
        if xs:
            plt.plot([x / 1e6 for x in xs], ys, label=f"{name} {unit}", marker="braille")
    plt.xlabel("tokens seen (millions)")
    if unit == "perplexity":
        plt.yscale("log")
    plt.title(f"training curve: {metrics_path}")
    return plt.build()
