"""Decode speed of the engine against PyTorch eager (CPU) and against the bare matrix-vector products.

    python bench/decode_torch.py [--checkpoint rnnchat/checkpoints/lm.npz] [--tokens 300] [--batch 64] [--rounds 5] [--compete]

batch 1:  per-token latency of sampling (temperature 0.8, top-k 40, top-p 0.95, repeat penalty 1.1) with
          rnnchat's Conversation.stream vs a PyTorch eager LSTMCell loop doing the same sampling, and vs the
          bare products x@[Wx;Wh] per layer + h@E^T (the memory-bound floor). Targets: <= 0.25x PyTorch,
          <= 1.3x the bare products.
batch 64: tokens/second of rnnchat's batch mode vs PyTorch eager sampling the same way (softmax, cumulative
          sum + search), and vs rnnchat's own batch-1 tokens/second. Targets: >= 1.5x PyTorch, >= 15x batch 1.
candidates: milliseconds for the 16 candidates x 40 tokens of a ranked reply (`decode_rows` as `lm_candidates`
          calls it: log-probabilities and kept states, temperature 0.5; <eot> banned so every row runs 40 steps),
          plain and under guidance 1 (its fresh rows stepped in the same products), vs PyTorch eager decoding
          16 (32) rows the same 40 steps. Target (issue 14): <= 150 ms plain.
--compete: repeats batch-1 decode with a competing busy process on the machine, for 1 and 2 BLAS threads.
Run alone otherwise: another busy process on the two cores slows everything 2-3x.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import rnnchat  # noqa: E402,F401  (first: it sets the BLAS thread settings the `rnnchat` command runs with)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from rnnchat.engine.batch import Job, generate_rows  # noqa: E402
from rnnchat.engine.rows import decode_rows, fresh_guide  # noqa: E402
from rnnchat.engine.engine import Engine  # noqa: E402
from rnnchat.sampling import RowSampler, SamplingSettings, skip_ids  # noqa: E402
from rnnchat import paths  # noqa: E402

SETTINGS = SamplingSettings(temperature=0.8, top_k=40, top_p=0.95, repeat_penalty=1.1, seed=0)


def torch_cells(engine: Engine) -> tuple[torch.Tensor, list, torch.Tensor]:
    """The LM's weights as torch tensors in PyTorch's gate order (i|f|g|o)."""
    d = engine.decoder
    H = d.hidden

    def reorder(w):
        i, f, o, g = (w[..., k * H:(k + 1) * H] for k in range(4))
        return np.concatenate([i, f, g, o], axis=-1)

    cells = []
    for lstm in d.model.lstms:
        cell = torch.nn.LSTMCell(H, H)
        with torch.no_grad():
            cell.weight_ih.copy_(torch.from_numpy(reorder(lstm.params["Wx"]).T.copy()))
            cell.weight_hh.copy_(torch.from_numpy(reorder(lstm.params["Wh"]).T.copy()))
            cell.bias_ih.copy_(torch.from_numpy(reorder(lstm.params["b"])))
            cell.bias_hh.zero_()
        cells.append(cell)
    return torch.from_numpy(d.E), cells, torch.from_numpy(d.out_b)


@torch.no_grad()
def torch_decode(E, cells, out_b, batch: int, steps: int, top_k: int | None, seed: int = 0) -> float:
    """Seconds per step of an eager PyTorch decode loop with sampling (top-k/top-p at batch 1, plain at batch>1)."""
    g = torch.Generator().manual_seed(seed)
    H = E.shape[1]
    E_T = E.T.contiguous()  # the faster layout for torch too (as rnnchat's decoder keeps it)
    state = [(torch.zeros(batch, H), torch.zeros(batch, H)) for _ in cells]
    ids = torch.full((batch,), 3, dtype=torch.long)
    t = time.perf_counter()
    for _ in range(steps):
        x = E[ids]
        new = []
        for cell, (h, c) in zip(cells, state):
            h, c = cell(x, (h, c))
            new.append((h, c))
            x = h
        state = new
        logits = (x @ E_T + out_b) / SETTINGS.temperature
        if top_k:
            vals, idx = torch.topk(logits, top_k, dim=-1)
            p = torch.softmax(vals, dim=-1)
            c = torch.cumsum(p, dim=-1)
            p = torch.where(c - p < SETTINGS.top_p, p, torch.zeros_like(p))
            c = torch.cumsum(p, dim=-1)
            u = torch.rand(batch, 1, generator=g) * c[:, -1:]
            ids = idx.gather(1, torch.searchsorted(c, u).clamp(max=top_k - 1))[:, 0]
        else:
            p = torch.softmax(logits, dim=-1)
            c = torch.cumsum(p, dim=-1)
            u = torch.rand(batch, 1, generator=g) * c[:, -1:]
            ids = torch.searchsorted(c, u).clamp(max=p.shape[1] - 1)[:, 0]
    return (time.perf_counter() - t) / steps


def bare_products(engine: Engine, steps: int) -> float:
    """Seconds per step of only the products of a plain decode step (batch 1): [x, h] @ [Wx; Wh] per layer and
    h @ E^T. (rnnchat's step replaces the first layer's x @ Wx by a row look-up, so it can beat this.)"""
    d = engine.decoder
    xh = np.zeros((1, 2 * d.hidden), np.float32)
    Ws = [np.concatenate([l.params["Wx"], l.params["Wh"]]) for l in d.model.lstms]
    out = [np.empty((1, W.shape[1]), np.float32) for W in Ws]
    h = np.zeros((1, d.hidden), np.float32)
    t = time.perf_counter()
    for _ in range(steps):
        for W, o in zip(Ws, out):
            np.dot(xh, W, out=o)
        h @ d.E_T
    return (time.perf_counter() - t) / steps


def rnnchat_batch1(engine: Engine, steps: int) -> float:
    conv = engine.conversation()
    s = SETTINGS.with_(max_tokens=steps)
    t = time.perf_counter()
    n = sum(1 for _ in conv.stream(s))
    return (time.perf_counter() - t) / n


def rnnchat_batch(engine: Engine, batch: int, steps: int) -> float:
    """Tokens/second of batch mode with plain sampling (the same as the torch comparison). <eot> is banned so
    that every row runs all `steps` steps, the same work as the torch loop (which never stops a row)."""
    s = SETTINGS.with_(top_k=0, top_p=1.0, repeat_penalty=1.0, max_tokens=steps, skip=("#3",), ban_unk=False)
    jobs = [Job(str(i), "", s.with_(seed=i)) for i in range(batch)]
    t = time.perf_counter()
    rows = generate_rows(engine.decoder, engine.vocab, jobs)
    return sum(len(r["token_ids"]) for r in rows) / (time.perf_counter() - t)


def rnnchat_candidates(engine: Engine, n: int, steps: int, guidance: float) -> float:
    """Seconds for n candidate replies of `steps` tokens each, decoded together as a ranked reply's are."""
    conv = engine.conversation()
    conv.feed("what did you do this weekend?", end_turn=True)
    s = SamplingSettings(temperature=0.5, max_tokens=steps, skip=(f"#{engine.vocab.eot_id}",), guidance=guidance)
    banned = skip_ids(s, engine.vocab)
    rows = [RowSampler(s, banned, np.random.default_rng(i)) for i in range(n)]
    state = [(np.repeat(h, n, axis=0), np.repeat(c, n, axis=0)) for h, c in conv.state]
    t = time.perf_counter()
    decode_rows(engine.decoder, engine.vocab, np.repeat(conv.logits, n, axis=0), state, rows, [s] * n,
                with_logprobs=True, guide=fresh_guide(engine.decoder, engine.vocab, [guidance] * n),
                not_first=engine.vocab.end_ids, keep_states=True)
    return time.perf_counter() - t


def _busy(stop) -> None:
    x = 0
    while not stop.is_set():
        x += 1


def measure(a) -> dict:
    engine = Engine(a.checkpoint)
    E, cells, out_b = torch_cells(engine)
    res = {}
    with threadpool_limits(1):
        torch.set_num_threads(1)
        rnnchat_batch1(engine, 20), torch_decode(E, cells, out_b, 1, 20, 40), bare_products(engine, 20)
        rounds = [(rnnchat_batch1(engine, a.tokens), torch_decode(E, cells, out_b, 1, a.tokens, 40),
                   bare_products(engine, a.tokens)) for _ in range(a.rounds)]  # interleaved: load hits all three
    ours, ref, bare = (float(np.median(v)) for v in zip(*rounds))
    res["batch1"] = {"rnnchat_ms": ours * 1e3, "torch_ms": ref * 1e3, "bare_products_ms": bare * 1e3,
                     "ratio_vs_torch": float(np.median([o / r for o, r, _ in rounds])),
                     "ratio_vs_bare": float(np.median([o / b for o, _, b in rounds]))}
    b1 = res["batch1"]
    print(f"batch 1: rnnchat {ours * 1e3:.3f} ms/token  torch {ref * 1e3:.3f}  bare products {bare * 1e3:.3f}  "
          f"-> {b1['ratio_vs_torch']:.2f}x torch (target <= 0.25x), {b1['ratio_vs_bare']:.2f}x bare "
          f"(target <= 1.3x)")
    torch.set_num_threads(2)
    with threadpool_limits(2):
        rnnchat_batch(engine, a.batch, 5)
        rounds = [(rnnchat_batch(engine, a.batch, a.tokens // 3),
                   a.batch / torch_decode(E, cells, out_b, a.batch, a.tokens // 3, None)) for _ in range(a.rounds)]
    ours_b, ref_b = (float(np.median(v)) for v in zip(*rounds))
    ratio = float(np.median([o / r for o, r in rounds]))
    res["batch"] = {"batch": a.batch, "rnnchat_tok_s": ours_b, "torch_tok_s": ref_b,
                    "ratio_vs_torch": ratio, "ratio_vs_batch1": ours_b * ours}
    print(f"batch {a.batch}: rnnchat {ours_b:.0f} tok/s  torch {ref_b:.0f} tok/s -> {ratio:.2f}x torch "
          f"(target >= 1.5x), {ours_b * ours:.1f}x rnnchat batch 1 (target >= 15x)")
    with threadpool_limits(2):
        rnnchat_candidates(engine, 16, 5, 0.0), rnnchat_candidates(engine, 16, 5, 1.0)
        rounds = [(rnnchat_candidates(engine, 16, 40, 0.0), torch_decode(E, cells, out_b, 16, 40, None) * 40,
                   rnnchat_candidates(engine, 16, 40, 1.0), torch_decode(E, cells, out_b, 32, 40, None) * 40)
                  for _ in range(a.rounds)]
    plain, ref, guided, ref_g = (float(np.median(v)) * 1e3 for v in zip(*rounds))
    res["candidates"] = {"rows": 16, "tokens": 40, "plain_ms": plain, "torch_ms": ref, "guided_ms": guided,
                         "torch_32_rows_ms": ref_g, "ratio_vs_torch": plain / ref, "guided_ratio_vs_torch": guided / ref_g}
    print(f"16 candidates x 40 tokens: rnnchat {plain:.0f} ms (target <= 150), torch {ref:.0f} ms -> "
          f"{plain / ref:.2f}x; guided {guided:.0f} ms, torch 32 rows {ref_g:.0f} ms -> {guided / ref_g:.2f}x")
    if a.compete:
        res["compete"] = {}
        stop = mp.Event()
        proc = mp.Process(target=_busy, args=(stop,))
        proc.start()
        try:
            for threads in (1, 2):
                with threadpool_limits(threads):
                    ms = np.median([rnnchat_batch1(engine, a.tokens) for _ in range(3)]) * 1e3
                res["compete"][f"{threads}_threads_ms"] = ms
                print(f"batch 1 with a competing busy process, {threads} BLAS thread(s): {ms:.3f} ms/token")
        finally:
            stop.set()
            proc.join()
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=paths.lm_checkpoint())
    p.add_argument("--tokens", type=int, default=300)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (medians are reported)")
    p.add_argument("--compete", action="store_true")
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    res = measure(a)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
