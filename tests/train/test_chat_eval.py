"""`rnnchat eval chat` (rnnchat.train.chat_eval) on a tiny JSONL of conversations with small random-weight models:
the command's JSON, the metric reaching 1 for a model biased toward the true replies, deterministic positions
with distractors from other conversations, weight tuning, and clean errors for bad input."""

import json

import numpy as np
import pytest

from rnnchat.cli.main import main
from rnnchat.models.lm import LanguageModel, LMConfig, save_lm
from rnnchat.models.seq2seq import Seq2Seq, Seq2SeqConfig, save_seq2seq
from rnnchat.text import SPECIALS, Vocab
from rnnchat.train.chat_eval import SCORERS, hits_at_1, lm_context, pick_positions, tune_weights
from tests.conftest import WORDS

OTHER = [w for w in WORDS if w != "cat"]


def conversations(n: int = 12, seed: int = 0) -> list[dict]:
    """Conversation 0 answers every turn with cats ('cat', 'cat cat', ...); the others never say cat."""
    rng = np.random.default_rng(seed)
    cats = {"turns": [["hello"]] + [["cat " * k] for k in range(1, 6)]}
    others = [{"turns": [[" ".join(rng.choice(OTHER, 3))] for _ in range(3)]} for _ in range(n)]
    return [cats, *others]


def write_jsonl(path, convs) -> str:
    path.write_text("".join(json.dumps(c) + "\n" for c in convs))
    return str(path)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A cat-loving LM (p(cat), p(<eom>), p(<eot>) dominate everywhere) and random forward/backward models."""
    d = tmp_path_factory.mktemp("chat_eval")
    vocab = Vocab(list(SPECIALS) + WORDS)
    lm = LanguageModel(LMConfig(vocab_size=len(vocab), hidden=8, layers=1, dropout=0.0), seed=1)
    for t in ("cat", "<eom>", "<eot>"):
        lm.out.params["b"][vocab.stoi[t]] += 30.0
    save_lm(lm, vocab, d / "lm.npz", {}, float16=False)
    for task in ("chat", "chat_backward"):
        s2s = Seq2Seq(Seq2SeqConfig(src_vocab=len(vocab), tgt_vocab=len(vocab), embed=6, hidden=6, proj=6, tie=True))
        save_seq2seq(s2s, vocab, d / f"{task}.npz", task=task, metrics={}, corpus={},
                     decoding={"bos": vocab.eot_id, "eos": vocab.eot_id, "max_src": 10, "max_tgt": 10})
    return {"lm": str(d / "lm.npz"), "seq2seq": str(d / "chat.npz"), "backward": str(d / "chat_backward.npz")}


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(["eval", "chat", "-q", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_command_reports_every_scorer_as_json(tmp_path, models, capsys):
    convs = write_jsonl(tmp_path / "c.jsonl", conversations())
    code, out, _ = run(capsys, "--conversations", convs, "--positions", "8", "--json", "--lm", models["lm"],
                       "--seq2seq", models["seq2seq"], "--backward", models["backward"])
    assert code == 0
    r = json.loads(out)
    assert {"hits_at_1", "positions", "split", "reply_perplexity"} <= set(r)
    assert set(r["hits_at_1"]) == {*SCORERS, "combined"} and r["positions"] == 8 and r["split"] == convs
    assert all(0 <= h <= 1 for h in r["hits_at_1"].values())
    assert set(r["reply_perplexity"]) == {"lm", "seq2seq_forward"} and r["reply_perplexity"]["lm"] >= 1


def test_a_model_biased_toward_the_true_replies_ranks_them_first(tmp_path, models, capsys):
    """Only conversation 0 has replies to rank (the others have one turn each: distractors only), and its
    replies are all cats; the LM scores cat turns far above any distractor, which never says cat."""
    convs = conversations(25)
    for c in convs[1:]:
        c["turns"] = c["turns"][:1]
    code, out, _ = run(capsys, "--conversations", write_jsonl(tmp_path / "c.jsonl", convs), "--json",
                       "--lm", models["lm"], "--seq2seq", "none", "--backward", "none", "--tune")
    r = json.loads(out)
    assert code == 0 and r["positions"] == 5  # turns 1..5 of conversation 0
    assert r["hits_at_1"]["lm_mean_logprob"] == 1.0
    assert set(r["hits_at_1"]) == {"lm_mean_logprob", "lm_pmi_sum", "lm_pmi_mean", "combined"}
    assert r["tuned"]["hits_at_1"] == 1.0 and any("seq2seq" in n for n in r["notes"])


def test_positions_are_deterministic_and_distractors_come_from_other_conversations():
    convs = conversations(30)
    a, b = pick_positions(convs, 10, seed=3), pick_positions(convs, 10, seed=3)
    assert [(p.context, p.candidates) for p in a] == [(p.context, p.candidates) for p in b]
    assert [p.candidates for p in pick_positions(convs, 10, seed=4)] != [p.candidates for p in a]
    for p in a:
        home = next(c for c in convs if c["turns"][:len(p.context)] == p.context)
        assert len(p.candidates) == 20 and len({tuple(t) for t in p.candidates}) == 20
        assert p.candidates[0] == home["turns"][len(p.context)]
        assert not any(t in home["turns"] for t in p.candidates[1:])


def test_the_lm_context_keeps_the_latest_whole_turns():
    eot = 3
    assert lm_context([[5, 6], [7], [8, 9, 10]], eot, max_tokens=6) == [7, 3, 8, 9, 10, 3]
    assert lm_context([[5, 6, 7, 8, 9, 10, 11]], eot, max_tokens=4) == [9, 10, 11, 3]


def test_hits_and_tuning():
    good = np.array([[2.0, 1.0, 0.0], [1.0, 1.0, 0.0]])  # a tie is not a hit
    assert hits_at_1(good) == 0.5
    scores = {"lm_mean_logprob": np.array([[0.0, 1.0], [0.0, 1.0]]), "seq2seq_backward": np.array([[1.0, 0.0],
                                                                                                    [1.0, 0.0]])}
    weights, hits = tune_weights(scores)
    assert hits == 1.0 and weights == {"seq2seq_backward": 0.25}  # the simplest best combination


@pytest.mark.parametrize("content,problem", [
    (None, "cannot read"),
    ("{not json\n", "not JSON"),
    ('{"turns": "hi"}\n', "expected"),
    ('{"turns": [[]]}\n', "expected"),
    ("\n\n", "no conversations"),
    ('{"turns": [["hi there"]]}\n', "no conversation has a reply"),
    ('{"turns": [["hi"], ["you"]]}\n{"turns": [["a"], ["b"]]}\n', "too few distinct turns"),
])
def test_bad_conversation_files_are_refused_with_the_reason(tmp_path, models, capsys, content, problem):
    path = tmp_path / "c.jsonl"
    if content is not None:
        path.write_text(content)
    code, _, err = run(capsys, "--conversations", str(path), "--lm", models["lm"], "--seq2seq", "none",
                       "--backward", "none")
    assert code == 1 and problem in err and "Traceback" not in err


def test_bad_flags_exit_2(tmp_path, models, capsys):
    with pytest.raises(SystemExit) as e:
        main(["eval", "chat", "--weights", '{"nope": 1}'])
    assert e.value.code == 2 and "scorer -> number" in capsys.readouterr().err
    code, _, err = run(capsys, "--split", "test", "--tune", "--lm", models["lm"])
    assert code == 2 and "never on test" in err
    code, _, err = run(capsys, "--lm", "none", "--seq2seq", "none", "--backward", "none")
    assert code == 1 and "no model" in err
    convs = tmp_path / "c.jsonl"
    convs.write_text("".join('{"turns": [["hi %d"], ["hello %d"]]}\n' % (i, i) for i in range(25)))
    code, _, err = run(capsys, "--conversations", str(convs), "--lm", "none", "--seq2seq", models["seq2seq"],
                       "--backward", "none", "--mode", "lm")
    assert code == 2 and "--mode lm: sampled replies need the LM" in err  # (it said "skipped" and exit 0)
