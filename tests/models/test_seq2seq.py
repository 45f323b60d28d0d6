"""The seq2seq model: float64 gradient checks for every option combination (over a chain of exchanges with the
state carried), inference path == training path, state carry, decoding (greedy, sampling, beam), checkpoints,
the chat wrapper."""

import itertools
import threading

import numpy as np
import pytest

from rnnchat.sampling import SamplingSettings
from rnnchat.text import SPECIALS, Vocab
from rnnchat.data.batches import make_exchange
from rnnchat.models.seq2seq import Seq2Seq, Seq2SeqConfig, reverse_rows, seq2seq_spec
from rnnchat.models.seq2seq_decode import Seq2SeqDecoder
from tests.nn.gradcheck import rel_error

V = 9
BOS = EOS = 3
TOL = 1e-6


def tiny(seed=0, **kw):
    base = dict(src_vocab=V, tgt_vocab=V, embed=3, hidden=2, attention="dot")
    return Seq2Seq(Seq2SeqConfig(**(base | kw)), seed=seed, dtype=np.float64)


def rand_seqs(rng, n, lo, hi):
    return [list(rng.integers(4, V, rng.integers(lo, hi + 1))) for _ in range(n)]


def chain(seed=0, batch=3):
    """Two exchanges: all rows, then rows 0 and 2 only (row 1 carries its state unchanged)."""
    rng = np.random.default_rng(seed)
    ex0 = make_exchange(rand_seqs(rng, batch, 1, 4), rand_seqs(rng, batch, 0, 3), BOS, EOS)
    ex1 = make_exchange(rand_seqs(rng, 2, 2, 4), rand_seqs(rng, 2, 1, 3), BOS, EOS, rows=np.array([0, 2]))
    return [ex0, ex1]


def sampled_numerical_grad(f, x, idx, eps=1e-5):
    out = np.empty(len(idx))
    for j, i in enumerate(idx):
        old = x.flat[i]
        x.flat[i] = old + eps
        fp = f()
        x.flat[i] = old - eps
        fm = f()
        x.flat[i] = old
        out[j] = (fp - fm) / (2 * eps)
    return out


def check_chain_gradients(m, exchanges, state0=None, per_array=15, dropout_rng_state=None):
    for p in m.params.params:  # larger weights: gradients well above finite-difference noise
        p *= 3
    if dropout_rng_state is None:
        dropout_rng_state = m.rng.bit_generator.state

    def loss():
        m.rng.bit_generator.state = dropout_rng_state
        return m.chain_loss(exchanges, carry=True, state0=state0, batch=3)[0]

    m.rng.bit_generator.state = dropout_rng_state
    value, count, _ = m.train_chain(exchanges, state0=state0, batch=3)
    assert abs(value - loss()) < 1e-12 and count == sum(ex.n_targets for ex in exchanges)
    pick = np.random.default_rng(5)
    for name, p, g in zip(m.params.names, m.params.params, m.params.grads()):
        idx = pick.choice(p.size, min(per_array, p.size), replace=False)
        num = sampled_numerical_grad(loss, p, idx)
        assert rel_error(g.flat[idx], num) < TOL, (m.config.variant, name, rel_error(g.flat[idx], num))


COMBOS = list(itertools.product([False, True], [False, True], [False, True], ["none", "dot", "general"],
                                ["plain", "proj", "tie"]))


@pytest.mark.parametrize("bi,rev,peeky,attention,head", COMBOS)
def test_gradients_every_option_combination(bi, rev, peeky, attention, head):
    proj = {"plain": 0, "proj": 4, "tie": 3}[head]
    m = tiny(bidirectional=bi, reverse=rev, peeky=peeky, attention=attention, proj=proj, tie=head == "tie")
    assert set(m.params.names) == set(seq2seq_spec(m.header_config()))
    rng = np.random.default_rng(1)
    Hd = m.config.dec_hidden
    state0 = (rng.standard_normal((3, Hd)) * 0.5, rng.standard_normal((3, Hd)) * 0.5)
    check_chain_gradients(m, chain(), state0=state0)


def test_gradients_with_dropout_and_fixed_masks():
    m = tiny(bidirectional=True, peeky=True, attention="general", proj=3, tie=True, dropout=0.3)
    m.train(True)
    check_chain_gradients(m, chain(2))


def test_tied_embedding_is_one_parameter_with_summed_gradient():
    m = tiny(proj=3, tie=True)
    assert m.src_embed.params["W"] is m.tgt_embed.params["W"] is m.out.params["W"]
    assert m.params.names.count("src_embed.W") == 1
    assert "tgt_embed.W" not in m.params.names and "out.W" not in m.params.names


def test_reverse_rows_keeps_padding_right():
    ids = np.array([[5, 6, 7, 0], [8, 9, 0, 0]])
    mask = (ids > 0).astype(np.float32)
    np.testing.assert_array_equal(reverse_rows(ids, mask), [[7, 6, 5, 0], [9, 8, 0, 0]])
    np.testing.assert_array_equal(reverse_rows(reverse_rows(ids, mask), mask), ids)


@pytest.mark.parametrize("bi,rev,peeky,attention", [(False, False, False, "none"), (False, True, True, "dot"),
                                                    (True, True, False, "general"), (True, False, True, "dot")])
def test_inference_steps_equal_teacher_forced_logits(bi, rev, peeky, attention):
    m = tiny(seed=3, bidirectional=bi, reverse=rev, peeky=peeky, attention=attention, proj=4, embed=4, hidden=3)
    m.train(False)
    rng = np.random.default_rng(4)
    ex = make_exchange(rand_seqs(rng, 3, 1, 5), rand_seqs(rng, 3, 0, 4), BOS, EOS)
    Hd = m.config.dec_hidden
    state0 = (rng.standard_normal((3, Hd)), rng.standard_normal((3, Hd)))
    want = m.logits(ex, state0)
    dec = Seq2SeqDecoder(m)
    srcs = [list(r[m_ > 0]) for r, m_ in zip(ex.src, ex.src_mask)]
    enc = dec.encode(srcs, state0)
    state = enc.state
    for t in range(ex.tgt_in.shape[1]):
        logits, state, w = dec.step(ex.tgt_in[:, t], state, enc)
        real = ex.tgt_mask[:, t] > 0
        np.testing.assert_allclose(logits[real], want[real, t], rtol=1e-9, atol=1e-12)
        if attention != "none":
            np.testing.assert_allclose(w.sum(axis=1), 1.0)


def test_chain_carry_equals_passing_the_state_by_hand_and_fresh_differs():
    m = tiny(seed=5, bidirectional=True, peeky=True)
    m.train(False)
    ex0, ex1 = chain(6)
    total, count, per = m.chain_loss([ex0, ex1], carry=True, batch=3)
    _, _, (h, c) = m.train_chain([ex0], batch=3)
    l1, n1, _ = m.chain_loss([make_exchange(*_unpad(ex1), BOS, EOS)], state0=(h[[0, 2]], c[[0, 2]]))
    assert n1 == per[1][1]
    assert abs(l1 * n1 - per[1][0]) < 1e-9
    fresh = m.chain_loss([ex0, ex1], carry=False, batch=3)[2]
    assert abs(fresh[0][0] - per[0][0]) < 1e-12 and abs(fresh[1][0] - per[1][0]) > 1e-6


def _unpad(ex):
    src = [list(r[k > 0]) for r, k in zip(ex.src, ex.src_mask)]
    tgt = [list(r[k > 0][:-1]) for r, k in zip(ex.tgt_out, ex.tgt_mask)]
    return src, tgt


def test_rows_of_a_batch_are_independent():
    m = tiny(seed=7, bidirectional=True, attention="general")
    m.train(False)
    rng = np.random.default_rng(8)
    src, tgt = rand_seqs(rng, 4, 1, 6), rand_seqs(rng, 4, 0, 5)
    full = m.logits(make_exchange(src, tgt, BOS, EOS))
    one = m.logits(make_exchange(src[2:3], tgt[2:3], BOS, EOS))
    T = len(tgt[2]) + 1
    np.testing.assert_allclose(one[0, :T], full[2, :T], rtol=1e-10)


# -- decoding --------------------------------------------------------------------------------------------------
def trained_copy_model():
    """A small model trained for a few hundred steps to copy 1-4 digit strings (fast, deterministic)."""
    m = Seq2Seq(Seq2SeqConfig(src_vocab=V, tgt_vocab=V, embed=16, hidden=24, attention="dot", proj=24), seed=0)
    from rnnchat.nn import Adam, clip_grad_norm
    opt = Adam(m.params.params, lr=1e-2)
    rng = np.random.default_rng(0)
    for _ in range(300):
        src = rand_seqs(rng, 32, 1, 4)
        _, _, _ = m.train_chain([make_exchange(src, src, BOS, EOS)])
        grads = m.params.grads()
        clip_grad_norm(grads, 5.0)
        opt.step(grads)
    m.train(False)
    return m


@pytest.fixture(scope="module")
def copier():
    return trained_copy_model()


def test_greedy_copies_and_reports_attention(copier):
    dec = Seq2SeqDecoder(copier)
    srcs = [[4, 5, 6], [8], [7, 7, 5, 4]]
    hyps = dec.greedy(dec.encode(srcs), BOS, EOS, max_len=8)
    assert [h.ids for h in hyps] == srcs
    for h, s in zip(hyps, srcs):
        assert h.finished and h.attention.shape == (len(s) + 1, 4)
        np.testing.assert_allclose(h.attention.sum(axis=1), 1.0, rtol=1e-5)
        assert not h.attention[:, len(s):].any()  # padding gets no attention
        assert len(h.probs) == len(s) + 1 and all(0 < p <= 1 for p in h.probs)


def test_beam_width_one_is_greedy_and_wider_beams_score_at_least_as_well(copier):
    dec = Seq2SeqDecoder(copier)
    rng = np.random.default_rng(9)
    for src in rand_seqs(rng, 10, 1, 4):
        enc = dec.encode([src])
        g = dec.greedy(enc, BOS, EOS, 8)[0]
        b1 = dec.beam(enc, BOS, EOS, 8, width=1, length_penalty=0)
        assert b1[0].ids == g.ids and abs(b1[0].logprob - g.logprob) < 1e-4
        b5 = dec.beam(enc, BOS, EOS, 8, width=5, length_penalty=0)
        assert b5[0].logprob >= g.logprob - 1e-5
        assert [h.score for h in b5] == sorted((h.score for h in b5), reverse=True)
        assert b5[0].attention.shape[0] == len(b5[0].ids) + 1
        bn = dec.beam(enc, BOS, EOS, 8, width=4, length_penalty=1.0)
        for h in bn:
            assert abs(h.score - h.logprob / len(h.probs)) < 1e-9


def test_beam_search_stops_soon_after_cancel_and_ranks_what_it_has(copier):
    import threading
    dec = Seq2SeqDecoder(copier)
    enc = dec.encode([[4, 5, 6, 7]])
    banned = [0, EOS]  # no hypothesis can finish: without a cancel the search runs all 30 steps
    assert len(dec.beam(enc, BOS, EOS, 30, width=3, banned=banned)[0].ids) == 30
    cancel, calls, step = threading.Event(), [], dec.step

    def counting_step(*args):
        calls.append(1)
        if len(calls) == 3:
            cancel.set()  # as if Esc were pressed during the third step
        return step(*args)

    dec.step = counting_step
    hyps = dec.beam(enc, BOS, EOS, 30, width=3, banned=banned, cancel=cancel)
    assert len(calls) == 3 and len(hyps) == 3
    assert all(len(h.ids) == 3 and not h.finished for h in hyps)
    assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)


def test_sampling_uses_the_engine_settings(copier):
    dec = Seq2SeqDecoder(copier)
    srcs = [[4, 5, 6], [8, 4]]
    enc = dec.encode(srcs)
    banned = np.array([0, 1])
    cold = SamplingSettings(temperature=0, repeat_penalty=1.0, max_tokens=8)
    assert [h.ids for h in dec.sample(enc, BOS, EOS, cold, banned)] == srcs
    hot = SamplingSettings(temperature=1.5, top_k=0, top_p=1.0, seed=11, max_tokens=8)
    a = [h.ids for h in dec.sample(enc, BOS, EOS, hot, banned)]
    b = [h.ids for h in dec.sample(enc, BOS, EOS, hot, banned)]
    assert a == b  # same seed, same draws
    skip = dec.sample(enc, BOS, EOS, cold, np.array([0, 1, 5]))
    assert all(5 not in h.ids for h in skip)
    short = dec.sample(enc, BOS, EOS, cold.with_(max_tokens=2), banned)
    assert all(len(h.probs) <= 2 for h in short)
    stop = dec.sample(enc, BOS, EOS, cold.with_(stop=("5",)), banned, vocab=Vocab([*SPECIALS, *(str(i) for i in range(4, V))]))
    assert stop[0].ids == [4, 5] and not stop[0].finished


def test_stream_can_be_cancelled(copier):
    dec = Seq2SeqDecoder(copier)
    enc = dec.encode([[4, 5, 6, 7]])
    cancel = threading.Event()
    s = SamplingSettings(temperature=0, repeat_penalty=1.0, max_tokens=8)
    got = []
    for out in dec.stream(enc, BOS, EOS, s, np.array([0]), cancel=cancel):
        got.append(out.id)
        cancel.set()
    assert got == [4]


# -- chat wrapper ----------------------------------------------------------------------------------------------
from rnnchat.engine.seq2seq_chat import ChatState, Seq2SeqChat  # noqa: E402
from rnnchat.engine.tokens import Token as ReplyToken  # noqa: E402
from rnnchat.text import source_ids as chat_source_ids, turn_ids as chat_turn_ids  # noqa: E402

WORDS = ["hello", "world", "how", "are", "you", "?", "i", "am", "fine", "."]


def chat_model(seed=0, **kw):
    vocab = Vocab([*SPECIALS, *WORDS])
    cfg = dict(src_vocab=len(vocab), tgt_vocab=len(vocab), embed=8, hidden=8, attention="dot", proj=8, tie=True)
    m = Seq2Seq(Seq2SeqConfig(**(cfg | kw)), seed=seed)
    m.out.params["b"][vocab.eot_id] -= 3.0  # untrained: make replies a few tokens long
    m.train(False)
    return Seq2SeqChat(m, vocab, max_src=12), vocab


def test_reply_streams_tokens_with_probabilities_and_attention():
    chat, vocab = chat_model()
    state = ChatState()
    s = SamplingSettings(temperature=1.0, top_k=0, top_p=1.0, seed=3, max_tokens=6)
    toks = list(chat.reply(state, "how are you?", s))
    assert toks and all(isinstance(t, ReplyToken) for t in toks)
    source = ("how", "are", "you", "?", "<eom>", "<eot>")
    for t in toks:
        assert t.source == source and t.attention.shape == (len(source),)
        assert abs(t.attention.sum() - 1) < 1e-5 and 0 < t.prob <= 1
        assert t.token == vocab.itos[t.id] and t.token not in ("<pad>", "<unk>", "<eot>")
    assert state.h is not None and state.h.shape == (1, 8)
    assert state.transcript == [{"user": "how are you?", "reply": "".join(t.text for t in toks).strip("\n")}]
    again = list(chat.reply(ChatState(), "how are you?", s))
    assert [t.id for t in again] == [t.id for t in toks]  # same seed, same reply


def test_state_after_a_reply_is_the_teacher_forced_decoder_state():
    """The carried memory equals what training carries: the decoder state after [bos] + reply tokens."""
    chat, vocab = chat_model(seed=1, bidirectional=True, peeky=True, reverse=True, hidden=4)
    m = chat.model
    h0 = np.random.default_rng(0).standard_normal((1, 8)).astype(np.float32)
    for max_tokens, eot_boost in ((3, 0.0), (20, 4.0)):  # stopped by max_tokens (last token fed afterwards) and by <eot>
        m.out.params["b"][vocab.eot_id] += eot_boost  # (chat_model's -3 made every reply run to max_tokens)
        state = ChatState(h0.copy(), h0.copy() * 0.5)
        s = SamplingSettings(temperature=0.9, seed=5, max_tokens=max_tokens)
        ids = [t.id for t in chat.reply(state, "hello world", s)]
        assert (len(ids) == max_tokens) == (eot_boost == 0)  # each way of stopping really happens
        src = chat.source("hello world")
        ex = make_exchange([src], [ids], vocab.eot_id, vocab.eot_id)
        _, (h, c) = m._features(ex, (h0, h0 * 0.5))
        np.testing.assert_allclose(state.h, h, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(state.c, c, rtol=1e-4, atol=1e-6)


def test_consumer_stopping_early_and_cancel_keep_the_state_consistent():
    chat, vocab = chat_model(seed=2)
    s = SamplingSettings(temperature=0, repeat_penalty=1.0, max_tokens=10)
    state = ChatState()
    stream = chat.reply(state, "hello", s)
    first = next(stream)
    stream.close()  # the consumer stops after one token
    src = chat.source("hello")
    _, (h, _) = chat.model._features(make_exchange([src], [[first.id]], vocab.eot_id, vocab.eot_id),
                                     chat.model.zero_state(1))
    np.testing.assert_allclose(state.h, h, rtol=1e-4, atol=1e-6)
    cancel = threading.Event()
    cancel.set()
    state2 = ChatState()
    assert list(chat.reply(state2, "hello", s, cancel)) == []
    enc = chat.decoder.encode([src])
    np.testing.assert_allclose(state2.h, enc.state[0])  # the user's turn is remembered


def test_memory_changes_the_reply_distribution():
    chat, _ = chat_model(seed=4)
    s = SamplingSettings(temperature=1.0, top_k=0, top_p=1.0, repeat_penalty=1.0, max_tokens=5, seed=0)
    state = ChatState()
    list(chat.reply(state, "hello world", s))
    carried = list(chat.reply(state.copy(), "how are you?", s))
    fresh = list(chat.reply(ChatState(), "how are you?", s))
    assert [t.prob for t in carried] != [t.prob for t in fresh]


def test_stop_sequence_and_skip_words():
    chat, vocab = chat_model(seed=6)
    s = SamplingSettings(temperature=1.0, top_k=0, top_p=1.0, seed=1, max_tokens=15, skip=("hello", "#8"))
    toks = list(chat.reply(ChatState(), "i am fine", s))
    assert all(t.token != "hello" and t.id != 8 for t in toks)
    assert len(toks) > 2  # seeded: the stop sequence below is taken from this reply
    stop = toks[1].text.strip() or toks[0].text.strip()
    cut = list(chat.reply(ChatState(), "i am fine", s.with_(stop=(stop,))))
    assert "".join(t.text for t in cut).endswith(stop) and len(cut) <= len(toks)


def test_chat_source_format():
    vocab = Vocab([*SPECIALS, *WORDS])
    turn = chat_turn_ids(["hello world", "how are you?"], vocab)
    assert vocab.ids_to_tokens(turn) == ["hello", "world", "<eom>", "how", "are", "you", "?", "<eom>"]
    assert chat_source_ids(turn, vocab, 4) == turn[-3:] + [vocab.eot_id]
    assert chat_source_ids([], vocab, 4) == [vocab.eot_id]


# -- checkpoints and training end to end -----------------------------------------------------------------------
def test_checkpoint_round_trip_and_validation(tmp_path):
    from rnnchat.checkpoint import CheckpointError, save_checkpoint
    from rnnchat.models.seq2seq import load_seq2seq, save_seq2seq
    chat, vocab = chat_model(seed=7, bidirectional=True, peeky=True, attention="general")
    m = chat.model
    ex = make_exchange([[4, 5, 6]], [[7, 8]], 3, 3)
    for f16, tol in ((False, 1e-6), (True, 2e-2)):
        path = tmp_path / f"s{f16}.npz"
        save_seq2seq(m, vocab, path, task="chat", metrics={"x": 1.0}, corpus={"name": "test"},
                     decoding={"bos": 3, "eos": 3, "max_src": 12}, float16=f16)
        m2, v2, header = load_seq2seq(path)
        assert v2.to_list() == vocab.to_list() and header["task"] == "chat" and header["metrics"] == {"x": 1.0}
        assert m2.config == m.config
        np.testing.assert_allclose(m2.logits(ex), m.logits(ex), atol=tol)
    bad = tmp_path / "bad.npz"
    save_checkpoint(bad, m.arrays(), {"model": "seq2seq", "config": m.header_config(), "vocab": vocab.to_list()[:-1],
                                      "corpus": {}, "metrics": {}, "decoding": {"bos": 3, "eos": 3}})
    with pytest.raises(CheckpointError, match="vocabulary"):
        load_seq2seq(bad)
    with pytest.raises(CheckpointError):
        load_seq2seq(tmp_path / "missing.npz")


def test_train_task_end_to_end_resume_and_eval(tmp_path):
    from rnnchat.models.seq2seq import load_seq2seq
    from rnnchat.train.seq2seq import eval_seq2seq
    from rnnchat.train.seq2seq_run import Seq2SeqTrainArgs
    from rnnchat.train.seq2seq_tasks import train_task
    a = Seq2SeqTrainArgs(task="addition", run_dir=tmp_path / "run", out=tmp_path / "add.npz", n_examples=1000,
                         embed=8, hidden=16, proj=16, epochs=2, batch_size=64)
    r = train_task(a)
    assert r["metrics"]["heldout_examples"] == 100 and 0 <= r["metrics"]["heldout_exact_match"] <= 1
    _, vocab, header = load_seq2seq(a.out)
    assert header["task"] == "addition" and header["corpus"]["name"] == "task:addition"
    assert header["training"]["hidden"] == 16 and "train_wall_s" in header["metrics"]
    assert (tmp_path / "run" / "state.npz").exists()
    a.epochs, a.resume = 3, True
    r2 = train_task(a)
    assert r2["step"] == 3 * (900 // 64)
    e = eval_seq2seq("addition", a.out, beam=2)
    assert e["examples"] == 100 and "exact_match_beam2" in e


def test_resume_from_the_command_line_keeps_the_runs_settings_and_a_damaged_timing_file_is_noted(tmp_path, capsys):
    """`train seq2seq --resume` without the sizes failed on the saved state; a damaged timing.json was an
    AttributeError traceback or an error naming no file (adversarial findings)."""
    from rnnchat.cli.main import main
    from rnnchat.models.seq2seq import load_seq2seq
    run = ["train", "seq2seq", "--task", "dates", "--run-dir", str(tmp_path / "r"), "--out", str(tmp_path / "d.npz")]
    assert main([*run, "--embed", "8", "--hidden", "8", "--proj", "8", "--n-examples", "300", "--epochs", "1"]) == 0
    (tmp_path / "r" / "timing.json").write_text("[1]")
    assert main(["train", "seq2seq", "--run-dir", str(tmp_path / "r"), "--out", str(tmp_path / "d.npz"), "--resume",
                 "--epochs", "2"]) == 0  # (the task, too, is the run's)
    assert "timing.json is damaged" in capsys.readouterr().err
    header = load_seq2seq(tmp_path / "d.npz")[2]
    assert header["task"] == "dates" and header["training"]["hidden"] == 8 and header["metrics"]["train_invocations"] == 1
    assert main([*run, "--resume", "--epochs", "3", "--hidden", "16"]) == 2
    assert "--hidden 16 differs from the run's 8" in capsys.readouterr().err

def test_train_chat_end_to_end(tmp_path, monkeypatch, chitchat_root):
    import argparse
    from rnnchat.train.seq2seq import add_eval_arguments, add_train_arguments, run_eval_command, run_train_command
    monkeypatch.setenv("RNNCHAT_CORPORA", str(chitchat_root))
    p = argparse.ArgumentParser()
    add_train_arguments(p)
    args = p.parse_args(["--task", "chat", "--run-dir", str(tmp_path / "run"), "--out", str(tmp_path / "c.npz"),
                         "--max-train-convs", "60", "--embed", "8", "--hidden", "12", "--proj", "8",
                         "--vocab-size", "300", "--epochs", "1", "--eval-every", "5", "--batch-size", "32"])
    assert run_train_command(args) == 0
    chat = Seq2SeqChat.load(tmp_path / "c.npz")
    h = chat.header
    assert h["corpus"]["name"] == "chitchat" and len(h["corpus"]["manifest_sha256"]) == 64
    assert h["dtype"] == "float16" and h["config"]["tie"] is True
    for key in ("test_perplexity_carried", "test_perplexity_fresh", "test_distinct_1", "test_distinct_2"):
        assert key in h["metrics"]
    state = ChatState()
    list(chat.reply(state, "hi, how are you?", SamplingSettings(seed=0, max_tokens=5)))
    assert state.h is not None
    e = argparse.ArgumentParser()
    add_eval_arguments(e)
    assert run_eval_command(e.parse_args(["--task", "chat", "--checkpoint", str(tmp_path / "c.npz"), "--json",
                                          "--samples", "20"])) == 0
