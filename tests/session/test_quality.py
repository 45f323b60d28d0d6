"""Sampled-reply quality (rnnchat.session.quality): the metrics on hand-made replies, how a context is played
into a session, and `rnnchat eval chat` end to end with small random-weight models on a tiny JSONL."""

import json

import numpy as np
import pytest

from rnnchat.cli.main import main
from rnnchat.models.seq2seq import save_seq2seq
from rnnchat.session.quality import METRICS, SampledReply, distinct_n, play, reply_metrics
from tests.conftest import WORDS


def reply(text, finished=True, user="hello there", previous=None):
    return SampledReply(text, finished, user, previous)


def test_metrics_on_hand_made_replies():
    replies = [
        reply("i like the cat", user="do you like dogs ?"),
        reply("i like the dog .", finished=False),                     # cut
        reply("", user="anyone ?"),                                    # empty
        reply("Hello there!", user="hello there"),                     # repeats the user
        reply("what do you think", user="so ?", previous="what do you think ?"),  # repeats its previous reply
    ]
    m = reply_metrics(replies)
    assert set(m) == set(METRICS)
    # tokens: [i like the cat] [i like the dog .] [] [hello there !] [what do you think]: 16
    assert m["mean_length"] == pytest.approx(16 / 5)
    assert m["distinct_1"] == pytest.approx(13 / 16)  # i, like, the counted once more each
    # bigrams: 3 + 4 + 0 + 2 + 3 = 12, "i like" and "like the" twice
    assert m["distinct_2"] == pytest.approx(10 / 12)
    assert m["empty_rate"] == pytest.approx(1 / 5)
    assert m["cut_rate"] == pytest.approx(1 / 5)
    assert m["repeat_rate"] == pytest.approx(2 / 5)
    assert reply_metrics([]) == dict.fromkeys(METRICS, 0.0)
    assert distinct_n([["a"]], 2) == 0.0


@pytest.mark.parametrize("turns,primed,message", [
    ([["hi"], ["hello"], ["how are you", "ok ?"]], [("hi", "hello")], "how are you\nok ?"),
    # the bot's speaker opened: the session starts at the user's first turn
    ([["hi"], ["hello"], ["fine"], ["good"]], [("hello", "fine")], "good"),
    ([["hi"]], [], "hi"),
    ([["hi"], ["yo"]], [], "yo"),
])
def test_a_context_is_primed_as_alternating_exchanges(make_session, turns, primed, message):
    session = make_session(sentiment=False)
    r = play(session, turns)
    said = [(t.role, t.text) for t in session.transcript]
    expected = [x for u, b in primed for x in (("user", u), ("assistant", b))] + [("user", message)]
    assert said[:-1] == expected and said[-1] == ("assistant", r.text)
    assert r.user == message and r.previous == ("\n".join(turns[-2]) if len(turns) > 1 else None)


@pytest.mark.parametrize("seq2seq,candidates", [(False, 1), (False, 3), (True, 1), (True, 3)])
def test_a_reply_cut_at_max_tokens_is_not_finished(make_session, seq2seq, candidates):
    session = make_session(sentiment=False, seq2seq=seq2seq, max_tokens=0)
    session.set_candidates(candidates)
    r = play(session, [["hi"], ["hello"], ["how are you"]])
    assert r.text == "" and not r.finished
    seen = set()
    for seed in range(8):
        session = make_session(sentiment=False, seq2seq=seq2seq, max_tokens=12, seed=seed)
        session.set_candidates(candidates)
        r = play(session, [["hi"], ["i like the cat"]])
        if seq2seq:  # the chat model's memory: a finished reply stopped before max tokens
            assert r.finished == (len(session.last_tokens) < 12)
        else:        # the LM's memory holds the reply's <eot> only when it finished
            assert r.finished == (session.conv.history[-1] == session.engine.vocab.eot_id)
        seen.add(r.finished)
    assert False in seen and (True in seen or candidates > 1)  # (ranked, the random models' best run long)


# -- the command ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def chat_path(seq2seq_chat, tmp_path_factory):
    path = tmp_path_factory.mktemp("quality") / "chat.npz"
    v = seq2seq_chat.vocab
    save_seq2seq(seq2seq_chat.model, v, path, task="chat", metrics={}, corpus={},
                 decoding={"bos": v.eot_id, "eos": v.eot_id, "max_src": 20, "max_tgt": 20})
    return str(path)


def conversations_file(tmp_path) -> str:
    rng = np.random.default_rng(0)
    convs = [{"turns": [[" ".join(rng.choice(WORDS, 3)) for _ in range(1 + (k == 1))] for k in range(4)]}
             for _ in range(12)]
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps(c) + "\n" for c in convs))
    return str(path)


def eval_chat(capsys, *argv) -> tuple[int, str, str]:
    code = main(["eval", "chat", "-q", "--positions", "4", "--backward", "none", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("mode,candidates", [(None, "16"), ("lm", "1"), ("chat", "2")])
def test_the_command_reports_sampled_reply_metrics(tmp_path, small_lm_path, chat_path, capsys, mode, candidates):
    code, out, _ = eval_chat(capsys, "--conversations", conversations_file(tmp_path), "--json",
                             "--lm", str(small_lm_path), "--seq2seq", chat_path, "--samples", "5",
                             "--candidates", candidates, *(["--mode", mode] if mode else []))
    assert code == 0
    r = json.loads(out)
    assert "hits_at_1" in r and r["positions"] == 4
    assert all(0 <= r[k] <= 1 for k in METRICS if k != "mean_length") and 0 <= r["mean_length"] <= 60
    s = r["sampled"]
    assert s["positions"] == 5 and s["mode"] == (mode or "lm") and s["candidates"] == int(candidates)
    assert len(s["examples"]) == 5 and all(isinstance(e["reply"], str) for e in s["examples"])
    again = eval_chat(capsys, "--conversations", conversations_file(tmp_path), "--lm", str(small_lm_path),
                      "--seq2seq", chat_path, "--samples", "5", "--candidates", candidates,
                      *(["--mode", mode] if mode else []))
    assert again[0] == 0 and f"distinct-1 {r['distinct_1']:.3f}" in again[1]  # same seeds, same replies


def test_sampling_needs_the_mode_s_model_and_the_lm(tmp_path, small_lm_path, chat_path, capsys):
    convs = conversations_file(tmp_path)
    code, _, err = eval_chat(capsys, "--conversations", convs, "--lm", str(small_lm_path), "--seq2seq", "none",
                             "--mode", "chat")
    assert code == 1 and "seq2seq model not available" in err and "Traceback" not in err
    code, out, _ = eval_chat(capsys, "--conversations", convs, "--json", "--lm", "none", "--seq2seq", chat_path,
                             "--samples", "3")
    r = json.loads(out)
    assert code == 0 and "distinct_1" not in r and any("needs the LM" in n for n in r["notes"])
    code, out, _ = eval_chat(capsys, "--conversations", convs, "--json", "--lm", str(small_lm_path),
                             "--seq2seq", "none", "--samples", "0")
    assert code == 0 and not set(METRICS) & set(json.loads(out))
