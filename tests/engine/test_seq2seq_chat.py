"""The seq2seq chat wrapper: saving a conversation's memory as plain arrays (validated on the way back) and beam
search as a reply option."""

import threading

import numpy as np
import pytest

from rnnchat.checkpoint import load_checkpoint, save_checkpoint
from rnnchat.sampling import SamplingSettings
from rnnchat.data.batches import make_exchange
from rnnchat.engine.seq2seq_chat import ChatState, StateError
from tests.models.test_seq2seq import chat_model

SETTINGS = SamplingSettings(temperature=1.0, top_k=0, top_p=1.0, seed=3, max_tokens=6)


def teacher_forced_state(chat, state0, text, ids):
    vocab = chat.vocab
    ex = make_exchange([chat.source(text)], [ids], vocab.eot_id, vocab.eot_id)
    return chat.model._features(ex, state0 if state0 is not None else chat.model.zero_state(1))[1]


# -- saving the memory -----------------------------------------------------------------------------------------
def test_state_round_trips_through_an_npz_file(tmp_path):
    chat, _ = chat_model()
    state = ChatState()
    assert list(chat.reply(state, "how are you?", SETTINGS))
    arrays, meta = chat.save_memory(state)
    assert set(arrays) == {"h", "c"} and meta["model_id"] == chat.model_id and meta["transcript"] == state.transcript
    path = tmp_path / "memory.npz"
    save_checkpoint(path, arrays, {"model": "memory", "config": {}, "vocab": [], "corpus": {}, "metrics": {},
                                   "memory": meta})
    loaded, header = load_checkpoint(path, model="memory")
    back = chat.read_memory(loaded, header["memory"])
    np.testing.assert_array_equal(back.h, state.h)
    np.testing.assert_array_equal(back.c, state.c)
    assert back.transcript == state.transcript and back.h.dtype == np.float32
    settings = SETTINGS.with_(seed=4)
    want = [t.id for t in chat.reply(state, "i am fine", settings)]
    assert [t.id for t in chat.reply(back, "i am fine", settings)] == want  # the memory is the same memory


def test_a_fresh_state_saves_no_arrays():
    chat, _ = chat_model()
    arrays, meta = chat.save_memory(ChatState())
    assert arrays == {} and meta["transcript"] == []
    back = chat.read_memory(arrays, meta)
    assert back.h is None and back.c is None and back.transcript == []


@pytest.mark.parametrize("arrays,transcript,problem", [
    ({"h": np.zeros((1, 8), np.float32)}, [], "needs arrays 'h' and 'c'"),
    ({"h": np.zeros((1, 8)), "c": np.zeros((1, 8)), "x": np.zeros(1)}, [], "needs arrays 'h' and 'c'"),
    ({"h": np.zeros((1, 7)), "c": np.zeros((1, 8))}, [], r"shape \(1, 8\)"),
    ({"h": np.zeros((2, 8)), "c": np.zeros((2, 8))}, [], r"shape \(1, 8\)"),
    ({"h": np.zeros((1, 8), np.int32), "c": np.zeros((1, 8))}, [], "float array"),
    ({"h": np.full((1, 8), np.nan), "c": np.zeros((1, 8))}, [], "NaN or inf"),
    ({"h": np.zeros((1, 8)), "c": np.full((1, 8), np.inf)}, [], "NaN or inf"),
    ({}, None, "transcript"),
    ({}, [{"user": "hi"}], "transcript"),
    ({}, [{"user": "hi", "reply": 3}], "transcript"),
])
def test_malformed_memory_is_refused_with_the_reason(arrays, transcript, problem):
    chat, _ = chat_model()
    meta = {"model_id": chat.model_id, "transcript": transcript}
    with pytest.raises(StateError, match=problem):
        chat.read_memory(arrays, meta)


def test_memory_of_another_model_is_refused():
    chat, _ = chat_model()
    other, _ = chat_model(hidden=6, proj=8)
    arrays, meta = other.save_memory(ChatState())
    with pytest.raises(StateError, match="different seq2seq model"):
        chat.read_memory(arrays, meta)
    with pytest.raises(StateError, match="different seq2seq model"):
        chat.read_memory({}, {"transcript": []})
    assert chat_model(seed=9)[0].model_id == chat.model_id  # same architecture and vocabulary: compatible


# -- beam search replies ---------------------------------------------------------------------------------------
def test_beam_reply_streams_the_best_hypothesis_with_attention_and_carries_its_state():
    chat, vocab = chat_model(seed=1, bidirectional=True, reverse=True, hidden=4)
    rng = np.random.default_rng(0)
    h0 = rng.standard_normal((1, 8)).astype(np.float32)
    state = ChatState(h0.copy(), h0 * 0.5)
    toks = list(chat.reply(state, "hello world", SETTINGS.with_(max_tokens=8), beam=3))
    enc = chat.decoder.encode([chat.source("hello world")], (h0, h0 * 0.5))
    best = chat.decoder.beam(enc, vocab.eot_id, vocab.eot_id, 8, width=3, length_penalty=1.0,
                             banned=[vocab.pad_id, vocab.unk_id])[0]
    assert [t.id for t in toks] == best.ids and toks
    np.testing.assert_allclose([t.prob for t in toks], best.probs[:len(toks)], rtol=1e-6)
    for t, row in zip(toks, best.attention):
        np.testing.assert_allclose(t.attention, row, rtol=1e-6)
        assert t.source == ("hello", "world", "<eom>", "<eot>")
    h, c = teacher_forced_state(chat, (h0, h0 * 0.5), "hello world", best.ids)
    np.testing.assert_allclose(state.h, h, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(state.c, c, rtol=1e-4, atol=1e-6)
    assert state.transcript[-1]["reply"] == "".join(t.text for t in toks).strip("\n")


def test_beam_width_one_is_greedy_and_settings_still_apply():
    chat, vocab = chat_model(seed=2)
    greedy = SamplingSettings(temperature=0, repeat_penalty=1.0, max_tokens=10)
    for text in ("hello", "how are you?", "i am fine ."):
        want = [t.id for t in chat.reply(ChatState(), text, greedy)]
        assert [t.id for t in chat.reply(ChatState(), text, greedy.with_(temperature=1.5), beam=1)] == want
    skip = [t.id for t in chat.reply(ChatState(), "hello", greedy.with_(skip=("hello", "#5")), beam=4)]
    assert vocab.stoi["hello"] not in skip and 5 not in skip
    assert len(list(chat.reply(ChatState(), "hello", greedy.with_(max_tokens=2), beam=4))) <= 2
    with pytest.raises(ValueError, match="beam width"):
        next(chat.reply(ChatState(), "hello", greedy, beam=-1))


def test_beam_reply_stopped_early_keeps_the_state_after_the_tokens_shown():
    chat, _ = chat_model(seed=3)
    s = SamplingSettings(max_tokens=10)
    full = list(chat.reply(ChatState(), "hello", s, beam=3))
    assert len(full) >= 2
    state = ChatState()
    stream = chat.reply(state, "hello", s, beam=3)
    first = next(stream)
    stream.close()
    assert first.id == full[0].id
    h, c = teacher_forced_state(chat, None, "hello", [first.id])
    np.testing.assert_allclose(state.h, h, rtol=1e-4, atol=1e-6)
    cancel = threading.Event()
    cancel.set()
    state2 = ChatState()
    assert list(chat.reply(state2, "hello", s, cancel, beam=3)) == []
    np.testing.assert_allclose(state2.h, chat.decoder.encode([chat.source("hello")]).state[0])


def test_skip_words_outside_the_chat_models_vocabulary_are_ignored_not_an_error():
    # the session checks skip words against the LM's vocabulary; the chat model has its own (smaller) one, so a
    # word only the LM knows must not make every chat reply fail (the model cannot say it anyway)
    chat, vocab = chat_model(seed=2)
    assert "zyzzyva" not in vocab and len(vocab) < 100_000
    greedy = SamplingSettings(temperature=0, repeat_penalty=1.0, max_tokens=10)
    assert vocab.stoi["fine"] in [t.id for t in chat.reply(ChatState(), "hello", greedy)]  # the ban has to bite
    want = [t.id for t in chat.reply(ChatState(), "hello", greedy.with_(skip=("fine",)))]
    for beam in (0, 3):
        got = [t.id for t in chat.reply(ChatState(), "hello",
                                        greedy.with_(skip=("zyzzyva", "fine", "#99999")), beam=beam)]
        assert got and vocab.stoi["fine"] not in got
        if beam == 0:
            assert got == want
