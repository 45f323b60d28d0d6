"""Issue 17 probe: how far does mixing in the Kneser-Ney n-gram take the shipped LSTM LM's perplexity?

p(w | h) = (1 - lam) p_lstm(w | h) + lam p_kn(w | last n-1 tokens), the classic neural + n-gram interpolation
(Mikolov et al. 2011). The LSTM is scored exactly as `rnnchat.train.lm.evaluate` scores it (16 streams, windows of
64, state carried), each of its targets is matched with the n-gram's probability of the same stream position,
lam is chosen on val per order, and test is read once at that lam. It answers whether a cheap static mixture
could reach the issue's bar (test <= 32.2) without a stronger LSTM: it cannot (bench/results/lm_kn_mix.json).

    python bench/lm_kn_mix.py [--orders 3 5] [--checkpoint rnnchat/checkpoints/lm.npz] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ngram_kn import KneserNey, load_streams  # noqa: E402  (bench/ is this script's directory)

from rnnchat.data.batches import StreamBatches  # noqa: E402
from rnnchat.models.lm import LanguageModel, load_lm  # noqa: E402

LAMBDAS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)


def lstm_target_probs(model: LanguageModel, tokens: np.ndarray, batch: int = 16, bptt: int = 64) -> np.ndarray:
    """p_lstm of each target of the stream, in stream order: targets tokens[1 : n * batch + 1] (as evaluate)."""
    model.train(False)
    model.reset_state()
    sb = StreamBatches(tokens, batch, bptt)
    out = np.zeros(sb.y.shape)                                         # (batch, n)
    for i in range(len(sb)):
        x, y = sb[i]
        z = model.forward(x).astype(np.float64)                        # (batch, T, V)
        z -= z.max(axis=-1, keepdims=True)
        logp = np.take_along_axis(z, y[..., None], -1)[..., 0] - np.log(np.exp(z).sum(axis=-1))
        out[:, i * bptt: i * bptt + x.shape[1]] = np.exp(logp)
    return out.reshape(-1)


def perplexity(p: np.ndarray) -> float:
    return math.exp(-float(np.mean(np.log(p))))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--orders", type=int, nargs="+", default=[3, 5])
    ap.add_argument("--checkpoint", type=Path, default=Path(__file__).resolve().parents[1] / "rnnchat" /
                    "checkpoints" / "lm.npz")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    model, vocab, header = load_lm(a.checkpoint)
    mark = bool(header.get("training", {}).get("mark_starts", False))  # the stream the LM was trained on
    train, val, test, v = load_streams(len(vocab), mark)
    lstm = {name: lstm_target_probs(model, toks) for name, toks in (("val", val), ("test", test))}
    rows = []
    for n in a.orders:
        kn = KneserNey(train, n, v, modified=True)
        mix = {name: kn.token_probs(toks)[: len(lstm[name])] for name, toks in (("val", val), ("test", test))}
        val_ppl = {lam: perplexity((1 - lam) * lstm["val"] + lam * mix["val"]) for lam in LAMBDAS}
        lam = min(val_ppl, key=val_ppl.get)
        row = {"order": n, "kn_val": perplexity(mix["val"]), "kn_test": perplexity(mix["test"]),
               "val_by_lambda": val_ppl, "lambda": lam, "val": val_ppl[lam],
               "test": perplexity((1 - lam) * lstm["test"] + lam * mix["test"])}
        rows.append(row)
        print(f"order {n}: KN val {row['kn_val']:.2f}; mixed val {row['val']:.2f} at lambda {lam} "
              f"(LSTM alone {val_ppl[0.0]:.2f}); test {row['test']:.2f} (LSTM alone {perplexity(lstm['test']):.2f})")
    result = {"what": __doc__.split("\n\n")[0], "checkpoint": str(a.checkpoint.name), "scored": {
        k: len(p) for k, p in lstm.items()}, "lstm_val": perplexity(lstm["val"]),
        "lstm_test": perplexity(lstm["test"]), "rows": rows, "bar_test": 32.2}
    if a.json:
        a.json.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
