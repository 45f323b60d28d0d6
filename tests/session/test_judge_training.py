"""Training the reply judge: the pools' judgments are read strictly, the logistic fit is gradient-checked and
learns, picks never take an unfinished candidate over a finished one, and a trained judge is used only with the
LM it was trained on."""

import json
import re

import numpy as np
import pytest

from rnnchat.engine.engine import Engine, load_reply_judge, make_ranker
from rnnchat.session import judge_training as jt

WORDS = ["i love the dog", "what is that", "hello there", "i like the movie", "how are you", "the cat"]


def write_pool(root, n_prompts=6, judged_all=True):
    """A pool directory as bench/chat_pool.py writes it: 4 candidates per prompt, one judged sheet."""
    root.mkdir()
    animals = ["dogs", "cats", "birds", "fish", "owls", "cows"][:n_prompts]  # one prompt per message
    prompts = [{"id": f"p{i}", "turns": [f"do you like {w}"]} for i, w in enumerate(animals)]
    (root / "prompts.jsonl").write_text("".join(json.dumps(p) + "\n" for p in prompts))
    rows, key, lines = [], {}, []
    for p in prompts:
        for k, text in enumerate(WORDS[:4]):
            rows.append({"prompt_id": p["id"], "system": "base", "rank": k, "text": text, "finished": k != 3})
            key[f"{p['id']}:{k + 1}"] = text
            if judged_all or p["id"] != "p0":
                sens = int("dog" in text or "hello" in text)
                lines.append(f"{p['id']}\t{k + 1}\t{sens}\t{int('dog' in text)}")
    (root / "candidates.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    part = root / "part-1"
    part.mkdir()
    (part / "key.json").write_text(json.dumps(key))
    (part / "judgments.tsv").write_text("\n".join(lines) + "\n")
    return root


def test_judgments_are_read_with_specific_only_when_sensible(tmp_path):
    root = write_pool(tmp_path / "pool")
    labels = jt.judged(root)
    assert labels[("p1", "i love the dog")] == (1, 1) and labels[("p1", "what is that")] == (0, 0)
    (root / "part-1" / "judgments.tsv").write_text("p1\t2\t0\t1\n")
    assert jt.judged(root)[("p1", "what is that")] == (0, 0)
    for bad in ("p1\t9\t1\t1\n", "p1\t2\t1\n", "p1\t2\tyes\t0\n"):
        (root / "part-1" / "judgments.tsv").write_text(bad)
        with pytest.raises(ValueError, match="judgments.tsv:1"):
            jt.judged(root)


def test_only_fully_judged_pools_are_loaded(tmp_path):
    pools = jt.load_pools([write_pool(tmp_path / "pool", judged_all=False)])
    assert sorted(p.prompt_id for p in pools) == ["p1", "p2", "p3", "p4", "p5"]
    p = pools[0]
    assert p.turns == ["do you like cats"] and p.texts == WORDS[:4] and p.finished.tolist() == [True] * 3 + [False]
    assert p.labels.tolist() == [[1, 1], [0, 0], [1, 0], [0, 0]]


@pytest.mark.parametrize("file, line, why", [
    ("prompts.jsonl", '["p9", "hi"]', "prompts.jsonl:7: expected a JSON object"),
    ("prompts.jsonl", '{"id": "p9", "turns": []}', "prompt 'p9': 'turns' must be a list of messages"),
    ("prompts.jsonl", '{"turns": ["hi"]}', "prompts.jsonl:7: 'id' is missing or not a str"),
    ("prompts.jsonl", '{"id": "p9", "turns": [', "prompts.jsonl:7: not JSON"),
    ("candidates.jsonl", '{"prompt_id": "p1", "system": "base", "text": "x"}', "candidates.jsonl:25: 'finished'"),
    ("part-1/key.json", "[1, 2]", "key.json: expected an object"),
    ("part-1/key.json", '{"p1:1": ["x"]}', "key.json: expected an object"),   # (TypeError: unhashable)
    ("part-1/key.json", '{"p1:1": 7}', "key.json: expected an object"),       # (dropped silently)
    ("part-1/key.json", "[" * 100_000 + "]" * 100_000, "key.json: JSON nested too deeply"),
    ("prompts.jsonl", '{"id": "p9", "turns": ' + "[" * 100_000 + "]" * 100_000 + "}", "prompts.jsonl:7: JSON nested"),
])
def test_a_malformed_pool_file_is_a_clear_error_naming_its_line(tmp_path, file, line, why):
    """A list line, an empty 'turns' or a missing id were TypeError, IndexError and KeyError tracebacks."""
    root = write_pool(tmp_path / "pool")
    path = root / file
    path.write_text(line if file.endswith(".json") else path.read_text() + line + "\n")
    with pytest.raises(ValueError, match=re.escape(why)):
        jt.load_pools([root])


def write_round(root, judgments):
    """A judged round as bench/chat_judging.py writes it: two prompts, two systems, a key and judges' lines."""
    root.mkdir()
    prompts = [{"id": "p1", "turns": ["do you like cats"]}, {"id": "r2", "turns": ["what did you eat"]}]
    (root / "prompts.jsonl").write_text("".join(json.dumps(p) + "\n" for p in prompts))
    replies = [("p1", "a", "i love the dog"), ("p1", "b", "i love the dog"), ("r2", "a", "hello there"),
               ("r2", "b", "the cat")]
    (root / "replies.jsonl").write_text("".join(json.dumps({"prompt_id": p, "system": s, "reply": r}) + "\n"
                                                for p, s, r in replies))
    (root / "key.json").write_text(json.dumps({"p1": {"A": "a", "B": "b"}, "r2": {"A": "b", "B": "a"}}))
    (root / "judgments.tsv").write_text(judgments)
    return root


def test_a_round_s_replies_are_training_only_pools_labelled_by_the_mean_of_their_judgments(tmp_path):
    judges = "# judge a\np1\tA\t1\t1\np1\tB\t1\t0\nr2\tA\t0\t1\nr2\tB\t1\t0\n" + "p1\tA\t0\t0\np1\tB\t1\t1\n"
    pools = jt.load_rounds([write_round(tmp_path / "round", judges)])
    assert [(p.prompt_id, p.texts, p.ranked) for p in pools] == [("p1", ["i love the dog"], False),
                                                                   ("r2", ["the cat", "hello there"], False)]
    assert pools[0].labels.tolist() == [[0.75, 0.5]]  # one text of two systems: four judgments
    assert pools[1].labels.tolist() == [[0.0, 0.0], [1.0, 0.0]]  # specific counts only when sensible
    assert pools[0].turns == ["do you like cats"] and jt.pick_ssa(pools, [np.zeros(1), np.zeros(2)]) == {}
    for bad in ("p1\tC\t1\t1\n", "p9\tA\t1\t1\n", "p1\tA\t1\n", "r2\tA\tyes\t0\n"):
        (tmp_path / "round" / "judgments.tsv").write_text("p1\tA\t1\t1\n" + bad)
        with pytest.raises(ValueError, match="judgments.tsv:2"):
            jt.load_rounds([tmp_path / "round"])
    (tmp_path / "round" / "key.json").write_text('{"p1": ["a"]}')
    with pytest.raises(ValueError, match="key.json: expected an object"):
        jt.load_rounds([tmp_path / "round"])


def test_a_round_s_reply_never_trains_the_judge_that_picks_for_its_prompt():
    """Folds are over prompts as their turns: a round's prompt "hi 0" under another id is the pool p0's prompt."""
    rng = np.random.default_rng(5)
    pools = [jt.Pool(f"p{i}", "base", [f"hi {i}"], ["a", "b", "c"], np.ones(3, bool),
                     rng.integers(0, 2, size=(3, 2)).astype(float)) for i in range(10)]
    feats = [rng.normal(size=(3, 5)) for _ in pools]
    extra = jt.Pool("r0", "round r", ["hi 0"], ["d"], np.ones(1, bool), np.array([[1.0, 1.0]]), ranked=False)
    before = jt.cross_validated_predictions(pools + [extra], feats + [rng.normal(size=(1, 5))], 1.0)
    extra.labels = np.array([[0.0, 0.0]])
    after = jt.cross_validated_predictions(pools + [extra], feats + [rng.normal(size=(1, 5)) * 0 + 1], 1.0)
    np.testing.assert_array_equal(after[0], before[0])
    assert any(not np.allclose(a, b) for a, b in zip(after[1:10], before[1:10]))  # other folds do read it


def test_logistic_gradient_matches_finite_differences():
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(20, 4)), rng.uniform(size=20)
    w, b, l2 = rng.normal(size=4), 0.3, 2.0
    _, gw, gb = jt.logistic_loss_grad(X, y, w, b, l2)
    eps = 1e-6
    for k in range(4):
        e = np.zeros(4)
        e[k] = eps
        num = (jt.logistic_loss_grad(X, y, w + e, b, l2)[0] - jt.logistic_loss_grad(X, y, w - e, b, l2)[0]) / (2 * eps)
        assert gw[k] == pytest.approx(num, rel=1e-6, abs=1e-9)
    num = (jt.logistic_loss_grad(X, y, w, b + eps, l2)[0] - jt.logistic_loss_grad(X, y, w, b - eps, l2)[0]) / (2 * eps)
    assert gb == pytest.approx(num, rel=1e-6, abs=1e-9)


def test_fit_learns_a_separable_rule():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 6))
    labels = np.stack([X[:, 0] > 0, X[:, 0] + X[:, 1] > 1], axis=1).astype(float)
    judge = jt.fit_judge(X * 3 + 1, labels, l2=1.0, lm_id="x")
    p = judge.predict(X * 3 + 1)
    assert ((p[:, 0] > 0.5) == labels[:, 0].astype(bool)).mean() > 0.95
    assert ((p[:, 1] > 0.5) == labels[:, 1].astype(bool)).mean() > 0.9


def test_a_pick_never_takes_an_unfinished_candidate_over_a_finished_one():
    pool = jt.Pool("p", "s", ["hi"], ["a", "b"], np.array([False, True]), np.array([[1.0, 1.0], [0.0, 0.0]]))
    assert jt.pick_ssa([pool], [np.array([5.0, 0.0])]) == {"s": 0.0}
    both = jt.Pool("q", "s", ["hi"], ["a", "b"], np.array([True, True]), np.array([[1.0, 1.0], [0.0, 0.0]]))
    assert jt.pick_ssa([pool, both], [np.array([5.0, 0.0]), np.array([5.0, 0.0])]) == {"s": 0.5}


def test_a_trained_judge_ranks_with_its_lm_only(tmp_path, small_lm_path):
    out = tmp_path / "judge.npz"
    metrics = jt.train_reply_judge([write_pool(tmp_path / "pool")], out, l2=1.0, lm=small_lm_path, progress=False)
    assert metrics["prompts"] == 6 and metrics["candidates"] == 24
    cv = metrics["cross_validated_pick_ssa"]
    assert set(cv) >= {"default_ranker", "judge"} and all(set(v) == {"base"} for v in cv.values())
    judges = "p1\tA\t1\t1\np1\tB\t1\t0\nr2\tA\t0\t1\nr2\tB\t1\t0\n"
    with_round = jt.train_reply_judge([tmp_path / "pool"], tmp_path / "judge2.npz", l2=1.0, lm=small_lm_path,
                                      progress=False, round_dirs=[write_round(tmp_path / "round", judges)])
    assert with_round["prompts"] == 6 and with_round["candidates"] == 24  # the ranked pools' counts
    assert with_round["rounds"] == {"dirs": 1, "prompts": 2, "replies": 3}
    from rnnchat.models.reply_judge import ReplyJudge
    pools_only, both = ReplyJudge.load(out), ReplyJudge.load(tmp_path / "judge2.npz")
    assert not np.allclose(pools_only.weights, both.weights)  # the rounds' replies are in the saved judge's fit
    assert set(with_round["cross_validated_pick_ssa"]["judge"]) == {"base"}
    engine = Engine(small_lm_path)
    from rnnchat.engine.engine import load_backward_model, weights_id
    shipped_backward = weights_id(load_backward_model(None)[0][0].params.named())
    judge, note = load_reply_judge(engine, shipped_backward, out)
    assert judge is not None and note == ""
    judge, note = load_reply_judge(engine, "another-backward-model", out)
    assert judge is None and "another backward model" in note
    from rnnchat.models.lm import LanguageModel, LMConfig, save_lm
    other = tmp_path / "other.npz"  # the same shapes and vocabulary, other weights from another run
    save_lm(LanguageModel(LMConfig(**{**engine.lm_header["config"], "dropout": 0.0}), seed=9), engine.vocab, other,
            {}, float16=False)
    judge, note = load_reply_judge(Engine(other), shipped_backward, out)
    assert judge is None and "trained for another language model" in note
    ranker, notes = make_ranker(engine, judge_path=out)
    assert ranker.judge is not None and not any("judge" in n for n in notes)
    conv = engine.conversation()
    conv.feed("do you like dogs", end_turn=True)
    assert ranker.can_judge(conv) and not ranker.can_judge(None)


def test_a_pool_s_cross_validated_predictions_never_read_its_own_labels():
    rng = np.random.default_rng(4)
    pools = [jt.Pool(f"p{i}", "base", [f"hi {i}"], ["a", "b", "c"], np.ones(3, bool),
                     rng.integers(0, 2, size=(3, 2)).astype(float)) for i in range(10)]
    feats = [rng.normal(size=(3, 5)) for _ in pools]
    before = jt.cross_validated_predictions(pools, feats, 1.0)
    pools[0].labels = 1.0 - pools[0].labels  # what prompt p0's judges said changes; p0's fold is fitted without it
    after = jt.cross_validated_predictions(pools, feats, 1.0)
    np.testing.assert_array_equal(after[0], before[0])
    assert before[0].shape == (3, 2) and ((before[0] > 0) & (before[0] < 1)).all()
    assert any(not np.allclose(a, b) for a, b in zip(after[1:], before[1:]))  # the other folds read them
