"""rnnchat's LSTM language model against PyTorch (CPU) in one process: training speed and correctness.

    python bench/lm_torch.py speed  [--hidden 512 --batch-size 64 --bptt 32 --rounds 5]
    python bench/lm_torch.py parity [--hidden 256 --steps 300]

speed:  training tokens/second of both at the same shapes (forward + backward + clip + Adam), interleaved
        round by round, and rnnchat against the machine's compute ceiling: NumPy's measured GEMM GFLOP/s
        divided by the model's forward+backward FLOPs per token; also against a step that only runs its
        own products, each at its real shape (the per-step recurrent products have batch-many rows).
        Run it alone: a second busy process on the two cores slows everything 2-3x.
parity: the same architecture trained by both from the same initial weights on the same chitchat batches
        for the same number of steps (dropout 0, so the runs are comparable step by step); prints both
        validation perplexities and their ratio (the target is within 2%).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import rnnchat  # noqa: E402,F401  (first: it sets the BLAS thread settings the `rnnchat` command runs with)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from rnnchat.models.lm import LanguageModel, LMConfig  # noqa: E402
from rnnchat.nn import Adam, clip_grad_norm  # noqa: E402


class TorchLM(torch.nn.Module):
    """Embedding -> dropout -> 2-layer LSTM -> dropout -> tied linear, as in rnnchat.models.lm."""

    def __init__(self, V: int, H: int, layers: int, dropout: float):
        super().__init__()
        self.embed = torch.nn.Embedding(V, H)
        self.lstm = torch.nn.LSTM(H, H, layers, batch_first=True, dropout=dropout)
        self.drop = torch.nn.Dropout(dropout)
        self.out_b = torch.nn.Parameter(torch.zeros(V))

    def forward(self, x, state=None):
        h, state = self.lstm(self.drop(self.embed(x)), state)
        return self.drop(h) @ self.embed.weight.T + self.out_b, state


def copy_weights(ours: LanguageModel, ref: TorchLM) -> None:
    """rnnchat -> torch, converting gate order i|f|o|g -> i|f|g|o and (D, 4H) -> (4H, D)."""
    H = ours.config.hidden

    def reorder(w):
        i, f, o, g = (w[..., k * H:(k + 1) * H] for k in range(4))
        return np.concatenate([i, f, g, o], axis=-1)

    with torch.no_grad():
        ref.embed.weight.copy_(torch.from_numpy(ours.embed.params["W"]))
        ref.out_b.copy_(torch.from_numpy(ours.out.params["b"]))
        for k, lstm in enumerate(ours.lstms):
            getattr(ref.lstm, f"weight_ih_l{k}").copy_(torch.from_numpy(reorder(lstm.params["Wx"]).T.copy()))
            getattr(ref.lstm, f"weight_hh_l{k}").copy_(torch.from_numpy(reorder(lstm.params["Wh"]).T.copy()))
            getattr(ref.lstm, f"bias_ih_l{k}").copy_(torch.from_numpy(reorder(lstm.params["b"])))
            getattr(ref.lstm, f"bias_hh_l{k}").zero_()


class Runner:
    """One training step of either implementation on (x, y) batches, state carried between steps."""

    def __init__(self, V, H, layers, dropout, lr, clip, seed=0):
        self.ours = LanguageModel(LMConfig(V, H, layers, dropout), seed=seed)
        self.opt = Adam(self.ours.params.params, lr=lr)
        self.ref = TorchLM(V, H, layers, dropout)
        copy_weights(self.ours, self.ref)
        self.ref.lstm.bias_hh_l0.requires_grad_(False)
        for k in range(layers):
            getattr(self.ref.lstm, f"bias_hh_l{k}").requires_grad_(False)
        self.topt = torch.optim.Adam([p for p in self.ref.parameters() if p.requires_grad], lr=lr)
        self.clip, self.tstate = clip, None

    def step_ours(self, x, y) -> float:
        loss, _ = self.ours.train_step(x, y)
        grads = self.ours.params.grads()
        clip_grad_norm(grads, self.clip)
        self.opt.step(grads)
        return loss

    def step_torch(self, x, y) -> float:
        xt, yt = torch.from_numpy(x.astype(np.int64)), torch.from_numpy(y.astype(np.int64))
        if self.tstate is not None:
            self.tstate = tuple(s.detach() for s in self.tstate)
        logits, self.tstate = self.ref(xt, self.tstate)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), yt.reshape(-1))
        self.topt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.ref.parameters(), self.clip)
        self.topt.step()
        return loss.item()


def gemm_gflops(n: int = 2048, reps: int = 5) -> float:
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    a @ a
    t = time.perf_counter()
    for _ in range(reps):
        a @ a
    return 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e9


def flops_per_token(V: int, H: int, layers: int) -> float:
    """Forward+backward FLOPs per token: 3x the forward's multiply-adds (x2) of the LSTM and output GEMMs."""
    forward = 2 * (layers * 8 * H * H + H * V)
    return 3 * forward


def products_only_tok_s(V: int, H: int, N: int, T: int, layers: int = 2, reps: int = 3) -> float:
    """Tokens/second of a step that did nothing but its GEMMs, each timed at its own shape and layout (the
    per-step recurrent products have only N rows, and run far below a square GEMM's rate)."""
    rng = np.random.default_rng(0)
    f = lambda *shape: rng.standard_normal(shape).astype(np.float32)
    x, W, Wt, h, d, dA = f(T * N, H), f(H, 4 * H), f(4 * H, H), f(N, H), f(N, 4 * H), f(T * N, 4 * H)
    E, logits = f(V, H), f(T * N, V)
    rec = np.empty((N, 4 * H), np.float32)
    dh = np.empty((N, H), np.float32)

    def step() -> None:
        for _ in range(layers):
            x @ W                       # input projection, all steps at once
            for _ in range(T):
                np.dot(h, W, out=rec)   # recurrent product per step
            for _ in range(T):
                np.dot(d, Wt, out=dh)   # its backward per step
            x.T @ dA, x.T @ dA, dA @ Wt  # dWx, dWh, dx
        x @ E.T, logits.T @ x, logits @ E  # output forward, dE, dx

    step()
    t = time.perf_counter()
    for _ in range(reps):
        step()
    return N * T * reps / (time.perf_counter() - t)


def speed(a) -> dict:
    V, H, N, T = a.vocab, a.hidden, a.batch_size, a.bptt
    r = Runner(V, H, 2, 0.3, 1e-3, 0.5)
    rng = np.random.default_rng(0)
    data = rng.integers(4, V, (N, T * (a.rounds * a.steps + 2) + 1)).astype(np.int32)
    batch = lambda i: (data[:, i * T:(i + 1) * T], data[:, i * T + 1:(i + 1) * T + 1])
    r.step_ours(*batch(0)), r.step_torch(*batch(0))  # warm-up
    times = {"rnnchat": [], "torch": []}
    for rnd in range(a.rounds):
        for name, fn in (("rnnchat", r.step_ours), ("torch", r.step_torch)):
            t = time.perf_counter()
            for s in range(a.steps):
                fn(*batch(1 + rnd * a.steps + s))
            times[name].append(N * T * a.steps / (time.perf_counter() - t))
    ours, ref = float(np.median(times["rnnchat"])), float(np.median(times["torch"]))
    gf = gemm_gflops()
    ceiling = gf * 1e9 / flops_per_token(V, H, 2)
    products = products_only_tok_s(V, H, N, T)
    out = {"config": {"vocab": V, "hidden": H, "batch": N, "bptt": T, "threads": torch.get_num_threads()},
           "rnnchat_tok_s": ours, "torch_tok_s": ref, "ratio_vs_torch": ours / ref,
           "numpy_gemm_gflops": gf, "ceiling_tok_s": ceiling, "fraction_of_ceiling": ours / ceiling,
           "products_only_tok_s": products, "fraction_of_products_only": ours / products}
    print(f"rnnchat {ours:8.0f} tok/s   torch {ref:8.0f} tok/s   ratio {ours / ref:.2f}x (target >= 1.2x)")
    print(f"NumPy GEMM {gf:.0f} GFLOP/s -> ceiling {ceiling:.0f} tok/s; rnnchat at {ours / ceiling:.0%} "
          f"(target >= 85%)")
    print(f"the step's own products alone, each at its shape: {products:.0f} tok/s; rnnchat at {ours / products:.0%}")
    return out


def parity(a) -> dict:
    from rnnchat.data import corpora
    from rnnchat.data.batches import StreamBatches
    from rnnchat.train.lm import build_vocab, evaluate, stream

    train_convs = corpora.load_chitchat("train")
    vocab = build_vocab(train_convs, a.vocab)
    train = StreamBatches(stream(train_convs, vocab), a.batch_size, a.bptt)
    val = stream(corpora.load_chitchat("val")[: a.val_convs], vocab)
    r = Runner(len(vocab), a.hidden, 2, 0.0, a.lr, 0.5, seed=a.seed)
    t = time.perf_counter()
    for i in range(a.steps):
        lo, lt = r.step_ours(*train[i]), r.step_torch(*train[i])
        if i % 50 == 0:
            print(f"step {i:4d}  loss rnnchat {lo:.4f}  torch {lt:.4f}", file=sys.stderr)
    ours = evaluate(r.ours, val, 16, 64)["perplexity"]
    r.ref.eval()
    with torch.no_grad():
        b = StreamBatches(val, 16, 64)
        state, total, count = None, 0.0, 0
        for i in range(len(b)):
            x, y = (torch.from_numpy(v.astype(np.int64)) for v in b[i])
            logits, state = r.ref(x, state)
            total += float(torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1),
                                                             reduction="sum"))
            count += y.numel()
    ref = math.exp(total / count)
    out = {"steps": a.steps, "hidden": a.hidden, "batch": a.batch_size, "bptt": a.bptt, "val_tokens": count,
           "rnnchat_val_ppl": ours, "torch_val_ppl": ref, "ratio": ours / ref, "seconds": time.perf_counter() - t}
    print(f"after {a.steps} steps: val perplexity rnnchat {ours:.3f}  torch {ref:.3f}  "
          f"ratio {ours / ref:.4f} (target within 2%)")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["speed", "parity"])
    p.add_argument("--vocab", type=int, default=10_000)
    p.add_argument("--hidden", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--bptt", type=int, default=32)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=None, help="speed: steps per round; parity: training steps")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--val-convs", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    a = p.parse_args()
    if a.mode == "speed":
        a.hidden, a.steps = a.hidden or 512, a.steps or 3
        result = speed(a)
    else:
        a.hidden, a.steps = a.hidden or 256, a.steps or 300
        result = parity(a)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
