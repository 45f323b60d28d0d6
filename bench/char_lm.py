"""Char-level yardsticks for `rnnchat train lm --text` (issue 16): bits per character on held-out text.

A text every machine has and no one here wrote: the top-level `.py` sources of the running Python's standard
library (char-rnn's famous demo trained on source code). Each file is split as `train lm --text` splits it
(first 90% train, next 5% val, last 5% test, at line starts); every number here is on the test parts.

* `build`: copy the sources to corpora/build/stdlib/ (git-ignored) and print the training command.
* `baselines`: interpolated Kneser-Ney char n-grams (bench/ngram_kn.py; orders 2..8, chosen on val) fitted on
  the train parts, and `xz -9e` / `bzip2 -9` of the test text (a compressor's bits per char: a floor any
  model must beat, as it sees nothing but the text it codes).
* `score -m CHECKPOINT`: the model's test bits per char next to the baselines; writes
  bench/results/char_lm_<name>.json.

    python bench/char_lm.py build
    python -m rnnchat train lm --text corpora/build/stdlib/*.py --run-dir runs/stdlib --minutes 60
    python bench/char_lm.py baselines
    python bench/char_lm.py score -m runs/stdlib/lm.npz

`--source chitchat` runs the same on the chitchat train conversations written as text (one message per line,
a blank line between conversations; the first train conversations up to 1 MB, the size the issue's "readable
samples within ~15 minutes" is about; cut 90/5/5 like any text file).
"""

from __future__ import annotations

import argparse
import bz2
import json
import lzma
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ngram_kn import KneserNey  # noqa: E402

from rnnchat.data.text_files import SPLITS, load_texts  # noqa: E402
from rnnchat.text import Vocab  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "corpora" / "build"
RESULTS = Path(__file__).resolve().parent / "results"
CHITCHAT_BYTES = 1_000_000


def stdlib_files() -> list[Path]:
    return sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))


def build(source: str) -> list[Path]:
    """Write the source's files under corpora/build/<source>/ and return them."""
    out = BUILD / source
    out.mkdir(parents=True, exist_ok=True)
    if source == "stdlib":
        paths = []
        for f in stdlib_files():
            (out / f.name).write_bytes(f.read_bytes())
            paths.append(out / f.name)
        return paths
    from rnnchat.data import corpora
    lines, size = [], 0
    for conv in corpora.load_chitchat("train"):
        conv_lines = [m for turn in conv["turns"] for m in turn] + [""]
        size += sum(len(m.encode("utf-8")) + 1 for m in conv_lines)
        if size > CHITCHAT_BYTES:
            break
        lines += conv_lines
    path = out / "chitchat_train.txt"
    path.write_text("\n".join(lines), encoding="utf-8")
    return [path]


def built(source: str) -> list[Path]:
    paths = sorted((BUILD / source).glob("*.py" if source == "stdlib" else "*.txt"))
    if not paths:
        sys.exit(f"nothing in {BUILD / source}: run `python bench/char_lm.py build --source {source}` first")
    return paths


def char_ids(texts: list[str], vocab: Vocab) -> np.ndarray:
    """The texts as one id stream, each opening with <eot>, exactly as the LM's stream (`text_stream`)."""
    from rnnchat.data.text_files import text_stream
    return text_stream(texts, vocab).astype(np.int64)


def kn_bits(train: np.ndarray, held: list[np.ndarray], order: int, vocab_size: int) -> list[float]:
    """Bits per char of each held-out stream under one KN model of this order fitted on `train`. A character the
    train part never has (<unk>) gets no mass from modified KN's lowest level, so the model is mixed with a
    uniform 1e-6 (a change below 1e-5 bits per char elsewhere) rather than scoring it infinitely badly (the
    model gives such a character a probability of 0, or a rounding error below it, which is clipped to 0)."""
    model = KneserNey(train, order, vocab_size, modified=True)
    floor = 1e-6
    return [float(-np.mean(np.log2((1 - floor) * np.maximum(model.token_probs(h), 0) + floor / vocab_size)))
            for h in held]


def compressor_bits(texts: list[str]) -> dict:
    data = "".join(texts).encode("utf-8")
    chars = sum(len(t) for t in texts)
    xz = lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)
    bz = bz2.compress(data, 9)
    return {"xz_-9e": 8 * len(xz) / chars, "bzip2_-9": 8 * len(bz) / chars, "chars": chars, "bytes": len(data)}


def baselines(source: str, orders: list[int]) -> dict:
    corpus = load_texts(built(source))
    vocab = Vocab.build_chars(corpus.parts["train"], 2_000)
    ids = {s: char_ids(corpus.parts[s], vocab) for s in SPLITS}
    val, test = {}, {}
    for n in orders:
        t0 = time.monotonic()
        val[n], test[n] = kn_bits(ids["train"], [ids["val"], ids["test"]], n, len(vocab))
        print(f"KN order {n}: val {val[n]:.4f} bits/char ({time.monotonic() - t0:.0f}s)", file=sys.stderr)
    best = min(val, key=val.get)  # the order is chosen on val; every order's test figure is kept for reference
    result = {"source": source, "files": len(corpus.files), "train_chars": corpus.chars("train"),
              "val_chars": corpus.chars("val"), "test_chars": corpus.chars("test"),
              "kn_val_bpc": {str(n): round(v, 4) for n, v in val.items()},
              "kn_test_bpc_by_order": {str(n): round(v, 4) for n, v in test.items()}, "kn_order": best,
              "kn_test_bpc": round(test[best], 4), **{k: round(v, 4) if isinstance(v, float) else v
                                                        for k, v in compressor_bits(corpus.parts["test"]).items()}}
    if source == "stdlib":
        result["python"] = sys.version.split()[0]
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=("build", "baselines", "score"))
    p.add_argument("--source", choices=("stdlib", "chitchat"), default="stdlib")
    p.add_argument("--orders", type=int, nargs="+", default=list(range(2, 9)))
    p.add_argument("-m", "--model", type=Path, help="the char-level checkpoint to score (score)")
    a = p.parse_args(argv)
    RESULTS.mkdir(exist_ok=True)
    base_path = RESULTS / f"char_lm_{a.source}_baselines.json"
    if a.action == "build":
        paths = build(a.source)
        size = sum(f.stat().st_size for f in paths)
        print(f"{len(paths)} files, {size / 1e6:.2f} MB in {BUILD / a.source}\ntrain: python -m rnnchat train lm "
              f"--text {BUILD.relative_to(ROOT) / a.source}/* --run-dir runs/{a.source} --minutes {60 if a.source == 'stdlib' else 15}")
        return 0
    if a.action == "baselines":
        result = baselines(a.source, a.orders)
        base_path.write_text(json.dumps(result, indent=1) + "\n")
        print(json.dumps(result, indent=1))
        return 0
    if a.model is None:
        p.error("score needs -m CHECKPOINT")
    from rnnchat.models.lm import load_lm
    from rnnchat.train.lm import evaluate_texts
    model, vocab, header = load_lm(a.model)
    scored = evaluate_texts(model, vocab, header, built(a.source), "test")
    base = json.loads(base_path.read_text()) if base_path.exists() else {}
    result = {"model": str(a.model), "config": header["config"], "metrics": header["metrics"],
              "training": {k: header.get("training", {}).get(k) for k in ("minutes", "hidden", "layers", "bptt")},
              "test_bpc": round(scored["bpc"], 4), "test_tokens": scored["tokens"], "baselines": base}
    for key in ("kn_test_bpc", "xz_-9e", "bzip2_-9"):
        if key in base:
            result[f"ratio_to_{key}"] = round(scored["bpc"] / base[key], 3)
    if "8" in base.get("kn_test_bpc_by_order", {}):  # the yardstick: orders up to ~8
        result["ratio_to_kn_order_8"] = round(scored["bpc"] / base["kn_test_bpc_by_order"]["8"], 3)
    (RESULTS / f"char_lm_{a.source}.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "metrics"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
