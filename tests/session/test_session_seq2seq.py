"""The chat session with the seq2seq chat model: chat mode by default, replies with attention, its memory reset,
saved and loaded with the conversation (older files, other models and damaged memory handled)."""

import re

import numpy as np
import pytest

from rnnchat.session.opening import open_session
from rnnchat.session.session import ChatSession
from rnnchat.session.transcript import Mode, to_json
from rnnchat.checkpoint import load_checkpoint, save_checkpoint
from rnnchat.sampling import SamplingSettings
from rnnchat.engine.engine import load_chat_model as load_responder


def reply(session, text):
    return list(session.respond(text))


def memory_of(session):
    return session.chat_state


def test_chat_mode_is_the_default_and_replies_carry_attention_over_the_users_words(make_session):
    s = make_session(seq2seq=True)
    assert s.mode is Mode.CHAT and s.unavailable(Mode.CHAT) is None
    toks = reply(s, "i love the dog")
    assert toks and all(t.attention is not None for t in toks)
    for t in toks:
        assert t.source == ("i", "love", "the", "dog", "<eom>", "<eot>") and t.attention.shape == (6,)
        assert abs(t.attention.sum() - 1) < 1e-5 and 0 < t.prob <= 1
    assert s.last_tokens == toks and s.conv.history == []  # the LM's memory is not involved
    last = to_json(s.transcript)[-1]
    assert last.pop("time")[:2] == "20"  # when it was said, ISO 8601
    text = "".join(t.text for t in toks)
    mood = s.sentiment.classify(text)  # the reply is scored too, once whole
    assert last == {"role": "assistant", "text": text, "mode": "chat", "stopped": False,
                    "sentiment": {"label": mood.label, "score": mood.score}}
    assert memory_of(s).h is not None and memory_of(s).transcript[0]["user"] == "i love the dog"
    s.reset()
    assert memory_of(s).h is None and memory_of(s).transcript == [] and to_json(s.transcript) == []


def test_save_and_load_restore_the_seq2seq_memory(make_session, data_dir):
    s = make_session(seq2seq=True)
    reply(s, "hello there")
    s.save("one")
    saved = memory_of(s).copy()
    reply(s, "what do you think?")
    assert not np.array_equal(memory_of(s).h, saved.h)
    s.load("one")
    np.testing.assert_array_equal(memory_of(s).h, saved.h)
    np.testing.assert_array_equal(memory_of(s).c, saved.c)
    assert memory_of(s).transcript == saved.transcript
    t = make_session(seq2seq=True)  # a new session restores the autosaved conversation, memory included
    assert t.restore() is None
    np.testing.assert_array_equal(memory_of(t).h, saved.h)
    settings = s.settings.with_(seed=9)
    assert ([tok.id for tok in s.seq2seq.reply(memory_of(s), "i like cats", settings)]
            == [tok.id for tok in t.seq2seq.reply(memory_of(t), "i like cats", settings)])


def test_a_file_without_seq2seq_memory_loads_with_a_fresh_one(make_session, data_dir):
    old = make_session()  # no seq2seq model: the plain LM conversation file
    old.set_mode("lm")
    reply(old, "hello")
    old.save("old")
    assert "seq2seq" not in load_checkpoint(data_dir / "conversations" / "old.npz")[1]
    s = make_session(seq2seq=True)
    reply(s, "i love the dog")
    s.load("old")
    assert memory_of(s).h is None and memory_of(s).transcript == []
    assert s.conv.history == old.conv.history and to_json(s.transcript) == to_json(old.transcript)


def test_memory_of_another_seq2seq_model_loads_the_lm_part_and_starts_the_memory_fresh(make_session, engine,
                                                                                        data_dir):
    from rnnchat.models.seq2seq import Seq2Seq, Seq2SeqConfig
    from rnnchat.engine.seq2seq_chat import Seq2SeqChat
    s = make_session(seq2seq=True)
    s.set_mode(Mode.LM)
    reply(s, "hello")
    s.set_mode(Mode.CHAT)
    reply(s, "how are you")
    s.save("mine")
    chat = s.seq2seq
    other = Seq2SeqChat(Seq2Seq(Seq2SeqConfig(len(chat.vocab), len(chat.vocab), embed=6, hidden=5)), chat.vocab)
    t = ChatSession(engine, seq2seq=other, settings=s.settings)
    reply(t, "i like cats")
    note = t.load("mine")
    assert "seq2seq memory not restored" in note and "different seq2seq model" in note
    assert memory_of(t).h is None and memory_of(t).transcript == []  # fresh, not the other model's
    assert t.conv.history == s.conv.history and to_json(t.transcript) == to_json(s.transcript)
    assert "seq2seq memory not restored" in t.command("/load mine")


@pytest.mark.parametrize("damage,problem", [
    (lambda a, h: a.update({"seq2seq.h": np.zeros((1, 3), np.float32)}), r"shape \(1, 16\)"),
    (lambda a, h: a.pop("seq2seq.c"), "needs arrays 'h' and 'c'"),
    (lambda a, h: h["seq2seq"].update(transcript="no"), "transcript"),
])
def test_damaged_seq2seq_memory_is_not_used_and_the_note_says_why(make_session, data_dir, damage, problem):
    s = make_session(seq2seq=True)
    reply(s, "hello")
    path = s.save("broken")
    arrays, header = load_checkpoint(path)
    damage(arrays, header)
    save_checkpoint(path, arrays, header)
    t = make_session(seq2seq=True)
    note = t.load("broken")
    assert re.search(problem, note) and memory_of(t).h is None
    assert to_json(t.transcript) == to_json(s.transcript)


def test_a_save_is_one_write_holding_both_memories(make_session, data_dir, monkeypatch):
    import rnnchat.engine.conversation as conversation
    s = make_session(seq2seq=True)
    reply(s, "hello")
    writes = []
    real = conversation.save_checkpoint
    monkeypatch.setattr(conversation, "save_checkpoint", lambda *a, **k: (writes.append(a[0]), real(*a, **k)))
    path = s.save("once")
    arrays, header = load_checkpoint(path)
    assert writes == [path] and "seq2seq.h" in arrays and "h0" in arrays and "seq2seq" in header


def test_open_session_loads_the_seq2seq_model_or_notes_why_not(small_lm_path, data_dir, tmp_path, seq2seq_chat):
    from rnnchat.models.seq2seq import save_seq2seq
    missing = tmp_path / "none.npz"
    s, notes = open_session(small_lm_path, tmp_path / "x.npz", SamplingSettings(), seq2seq_path=missing)
    assert s.mode is Mode.LM and f"seq2seq chat: unavailable (no seq2seq chat model at {missing})" in notes
    assert s.unavailable(Mode.CHAT) == f"seq2seq model not available (no seq2seq chat model at {missing})"
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04 not really")
    s, notes = open_session(small_lm_path, None, SamplingSettings(), seq2seq_path=corrupt)
    assert s.seq2seq is None and any("corrupt.npz" in n and n.startswith("seq2seq chat: unavailable") for n in notes)
    path = tmp_path / "s2s.npz"
    save_seq2seq(seq2seq_chat.model, seq2seq_chat.vocab, path, task="chat", metrics={}, corpus={},
                 decoding={"bos": 3, "eos": 3, "max_src": 20})
    s, notes = open_session(small_lm_path, None, SamplingSettings(max_tokens=4, seed=0), seq2seq_path=path)
    # the default is the system with the higher judged SSA (LM chat, the best of 64); seq2seq chat is one key away
    assert s.mode is Mode.LM and s.unavailable(Mode.CHAT) is None and s.candidates == 64
    assert not [n for n in notes if n.startswith("seq2seq")]
    s.set_mode(Mode.CHAT)
    assert reply(s, "hello") and memory_of(s).h is not None
    responder, note = load_responder(tmp_path / "none.npz")
    assert responder is None and "no seq2seq chat model" in note


def test_skip_ids_name_the_lm_tokens_and_reach_the_seq2seq_model_as_words(make_session):
    from rnnchat.sampling import skip_ids, skip_ids_as_words
    from rnnchat.models.seq2seq import Seq2Seq, Seq2SeqConfig
    from rnnchat.engine.seq2seq_chat import Seq2SeqChat
    from rnnchat.text import SPECIALS, Vocab
    from tests.conftest import WORDS
    s = make_session(seq2seq=True)
    s2s_vocab = Vocab(list(SPECIALS) + list(reversed(WORDS)))  # the same words, numbered otherwise
    model = Seq2Seq(Seq2SeqConfig(src_vocab=len(s2s_vocab), tgt_vocab=len(s2s_vocab), embed=12, hidden=16, proj=12,
                                  tie=True), seed=3)
    model.out.params["b"][s2s_vocab.eom_id] -= 20.0
    model.train(False)
    s.seq2seq = Seq2SeqChat(model, s2s_vocab, max_src=20)
    lm_vocab = s.engine.vocab
    shared = [w for w in s2s_vocab.itos[4:] if w in lm_vocab.stoi and lm_vocab.stoi[w] != s2s_vocab.stoi[w]]
    assert shared  # the two vocabularies number their words differently
    word = shared[0]
    settings = SamplingSettings(skip=(f"#{lm_vocab.stoi[word]}", "#999999", "<eom>"))
    as_words = skip_ids_as_words(settings, lm_vocab)
    assert as_words.skip == (word, "#999999", "<eom>")
    banned = skip_ids(as_words, s2s_vocab, strict=False)
    assert s2s_vocab.stoi[word] in banned and s2s_vocab.eom_id in banned
    # the reply never says the word the LM id names, whatever the seed
    s.update_settings(skip=(f"#{lm_vocab.stoi[word]}",), temperature=5.0, top_k=0, top_p=1.0)
    for seed in range(5):
        s.update_settings(seed=seed)
        assert all(t.token != word for t in reply(s, "i love the dog"))
