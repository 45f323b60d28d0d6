"""Stopping a reply at random points, 1,000 times (issue 8): the conversation's memory always holds exactly the
tokens shown, however the reply ends (consumer breaks out, cancel Event set from another thread at a chosen
token, or set by a timer thread at an arbitrary moment), with conversations carried over several replies and
two worker threads sharing one engine.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from rnnchat.engine.engine import Engine
from rnnchat.sampling import SamplingSettings

TRIALS = 1_000
WORKERS = 2
PROMPTS = ["", "hello there", "i think the movie was good", "how are you ?", ":) :(", "cat dog food",
           "thanks , i'm fine . what do you like ?", "zebra unknown words here"]


def assert_same_memory(conv, ref, exact: bool = False) -> None:
    pairs = [(conv.logits, ref.logits)] + [p for s1, s2 in zip(conv.state, ref.state) for p in zip(s1, s2)]
    assert len(conv.state) == len(ref.state)
    for a, b in pairs:
        if exact:
            np.testing.assert_array_equal(a, b)
        else:
            # The prompt goes through prefill (one input-projection GEMM per chunk), replies through single
            # fused steps: float32 rounds them differently, and the small test LM's weights (x6, saturated
            # gates, pre-activations of tens) turn that into absolute differences of ~3e-5 after 100+ tokens,
            # and 1.4e-4 was seen once (timer-stopped replies run longest). The exact check above is the strict
            # one; this one compares with a fresh conversation.
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-3)


def one_reply(conv, rng: np.random.Generator, mode: str) -> list[int]:
    """Stream one reply and stop it per `mode`; returns the ids the consumer was shown."""
    s = SamplingSettings(temperature=float(rng.choice([0.0, 0.7, 1.2])), top_k=int(rng.choice([0, 5])),
                         max_tokens=int(rng.integers(1, 16)), seed=int(rng.integers(2**31)),
                         stop=(".",) if rng.random() < 0.2 else ())
    stop_at = int(rng.integers(0, s.max_tokens + 2))  # may exceed the reply: then it ends on its own
    cancel = threading.Event()
    shown: list[int] = []
    if mode == "break":
        if stop_at == 0:
            return shown  # the consumer never asked for a token
        for tok in conv.stream(s, cancel=cancel):
            shown.append(tok.id)
            if len(shown) == stop_at:
                break
    elif mode == "event":  # another thread sets the Event once the stop_at-th token is on screen
        if stop_at == 0:
            cancel.set()
        for tok in conv.stream(s, cancel=cancel):
            shown.append(tok.id)
            if len(shown) == stop_at:
                threading.Thread(target=cancel.set).start()
                cancel.wait()
    else:  # "timer": the Event is set at an arbitrary moment, racing the stream
        timer = threading.Timer(float(rng.uniform(0, 0.002)), cancel.set)
        timer.start()
        try:
            for tok in conv.stream(s, cancel=cancel):
                shown.append(tok.id)
                if rng.random() < 0.3:
                    time.sleep(0.0002)
        finally:
            timer.cancel()
    if mode != "timer" and stop_at and stop_at <= s.max_tokens:
        assert len(shown) <= stop_at
    return shown


def worker(engine: Engine, seed: int, trials: int) -> dict:
    rng = np.random.default_rng(seed)
    modes = {"break": 0, "event": 0, "timer": 0}
    conv = mirror = None
    for trial in range(trials):
        if conv is None or rng.random() < 0.3:  # a new conversation, or carry on with the same one
            conv, mirror = engine.conversation(), engine.conversation()
        prompt, end_turn = PROMPTS[int(rng.integers(len(PROMPTS)))], bool(rng.random() < 0.5)
        conv.feed(prompt, end_turn=end_turn)
        expected = list(conv.history)
        mode = ("break", "event", "timer")[trial % 3]
        modes[mode] += 1
        shown = one_reply(conv, rng, mode)
        assert conv.history == expected + shown, (mode, shown, conv.history[len(expected):])
        # the same operations, token by token: bit-identical memory
        mirror.feed(prompt, end_turn=end_turn)
        for tid in shown:
            mirror._advance(tid)
        assert mirror.history == conv.history
        assert_same_memory(conv, mirror, exact=True)
        # a fresh conversation fed the same ids in one go
        fresh = engine.conversation()
        fresh.feed_ids(conv.history)
        assert_same_memory(conv, fresh)
        assert all(np.isfinite(a).all() for hc in conv.state for a in hc)
    return modes


def test_stop_at_random_points_keeps_exactly_the_shown_tokens(small_lm_path):
    engine = Engine(small_lm_path)
    per = TRIALS // WORKERS
    with ThreadPoolExecutor(WORKERS) as pool:
        results = [f.result() for f in [pool.submit(worker, engine, 1000 + w, per) for w in range(WORKERS)]]
    total = {k: sum(r[k] for r in results) for k in results[0]}
    assert sum(total.values()) == TRIALS and min(total.values()) >= TRIALS // 3 - WORKERS
