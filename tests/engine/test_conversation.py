"""Conversations: streaming, the state invariant under early stop and cancel, fork, save/load."""

import threading

import numpy as np
import pytest

from rnnchat.checkpoint import CheckpointError
from rnnchat.sampling import SamplingSettings

S = SamplingSettings(temperature=1.0, seed=7, max_tokens=25, repeat_penalty=1.0)


def replay(engine, conv_history):
    """A fresh conversation fed exactly these token ids."""
    c = engine.conversation()
    c.feed_ids(list(conv_history))
    return c


def assert_same_memory(a, b):
    np.testing.assert_allclose(a.logits, b.logits, rtol=1e-5, atol=1e-5)
    for (h1, c1), (h2, c2) in zip(a.state, b.state):
        np.testing.assert_allclose(h1, h2, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(c1, c2, rtol=1e-5, atol=1e-6)


def test_same_seed_same_text(engine):
    texts = []
    for _ in range(2):
        c = engine.conversation()
        c.feed("hello there , how are you ?", end_turn=True)
        texts.append([t.id for t in c.stream(S)])
    assert texts[0] == texts[1] and len(texts[0]) == 25


def test_state_reflects_exactly_the_emitted_tokens_when_consumer_stops_early(engine):
    c = engine.conversation()
    c.feed("i think the movie was good")
    start = len(c.history)
    got = []
    for tok in c.stream(S):
        got.append(tok.id)
        if len(got) == 6:
            break
    assert c.history[start:] == got
    assert_same_memory(c, replay(engine, c.history))


def test_cancel_from_another_thread(engine):
    c = engine.conversation()
    cancel = threading.Event()
    got = []
    for tok in c.stream(S.with_(max_tokens=1000), cancel=cancel):
        got.append(tok.id)
        if len(got) == 9:
            threading.Thread(target=cancel.set).start()
            cancel.wait()
    assert len(got) == 9 and c.history == got
    assert_same_memory(c, replay(engine, got))


def test_stop_sequence_and_stop_ids(engine):
    c = engine.conversation()
    toks = list(c.stream(S.with_(max_tokens=200, temperature=0, stop=(".",))))
    text = "".join(t.text for t in toks)
    assert text.endswith(".") or len(toks) == 200
    eot = engine.vocab.eot_id
    c2 = engine.conversation()
    toks = list(c2.stream(S.with_(max_tokens=500), stop_ids=(eot,)))
    assert eot not in [t.id for t in toks[:-1]]


def test_empty_prompt_and_long_prompt_in_chunks(engine, monkeypatch):
    c = engine.conversation()
    assert c.feed("") == 0
    assert len(list(c.stream(S.with_(max_tokens=3)))) == 3
    long_text = "hello there , i think the cat is good . " * 700  # > one 4096-token chunk
    whole = engine.conversation()
    n = whole.feed(long_text)
    assert n == len(engine.vocab.encode(long_text)) > 4096
    step_by_step = engine.conversation()
    for i in engine.vocab.encode(long_text)[:50]:
        step_by_step._advance(i)
    part = engine.conversation()
    part.feed_ids(engine.vocab.encode(long_text)[:50])
    assert_same_memory(part, step_by_step)


class SetAfter(threading.Event):
    """An event that reads as set from its n-th look on (a user pressing Esc while a long message is read)."""

    def __init__(self, n: int):
        super().__init__()
        self.looks, self.n = 0, n

    def is_set(self) -> bool:
        self.looks += 1
        return self.looks >= self.n


def test_a_cancel_stops_reading_a_long_message_and_the_memory_holds_the_part_read(engine, monkeypatch):
    """A 100k-word paste took ~20 s to read and Esc / Ctrl+C could not stop it (the feed never looked)."""
    import rnnchat.engine.conversation as conversation
    monkeypatch.setattr(conversation, "FEED_CHUNK", 16)
    text = "hello there , i think the cat is good . " * 40  # 440 tokens: 28 chunks
    c = engine.conversation()
    fed = c.feed(text, end_turn=True, cancel=SetAfter(4))  # looks: the piece, then 3 chunks (the third stops)
    ids = engine.vocab.encode(text)
    assert fed == 2 * 16 + 2 and c.history == [*ids[:32], engine.vocab.eom_id, engine.vocab.eot_id]
    assert_same_memory(c, replay(engine, c.history))
    assert engine.conversation().feed(text, cancel=threading.Event()) == len(ids)  # not set: all of it


def test_fork_is_independent(engine):
    a = engine.conversation()
    a.feed("hello there")
    b = a.fork()
    list(b.stream(S.with_(max_tokens=5)))
    assert len(b.history) == len(a.history) + 5
    fresh = engine.conversation()
    fresh.feed("hello there")
    assert_same_memory(a, fresh)


def test_reset_forgets(engine):
    a = engine.conversation()
    before = a.logits.copy()
    a.feed("i love the dog")
    a.reset()
    assert a.history == [] and np.array_equal(a.logits, before)


def test_save_and_load_round_trip_and_refuse_mismatch(engine, tmp_path, small_lm_path):
    a = engine.conversation()
    a.feed("hello there , how are you ?", end_turn=True)
    path = tmp_path / "conv.npz"
    a.save(path)
    b = engine.conversation()
    b.load(path)
    assert b.history == a.history
    assert [t.id for t in a.fork().stream(S)] == [t.id for t in b.stream(S)]
    other = engine.conversation()
    other.model_id = "another-model"
    with pytest.raises(CheckpointError, match="different model"):
        other.load(path)
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(CheckpointError):
        b.load(tmp_path / "junk.npz")


def test_failed_save_keeps_previous_file(engine, tmp_path, monkeypatch):
    a = engine.conversation()
    path = tmp_path / "conv.npz"
    a.save(path)
    before = path.read_bytes()
    a.feed("more words")
    import os
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    with pytest.raises(OSError):
        a.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["conv.npz"]
