"""A tiny LM trains end to end on a slice of the real chitchat corpus; its checkpoint round-trips."""

import json

import numpy as np

from rnnchat.data import corpora
from rnnchat.cli.main import main
from rnnchat.checkpoint import read_header
from rnnchat.models.lm import load_lm
from rnnchat.text import conversation_ids
from rnnchat.train.lm import LMTrainArgs, evaluate, evaluate_memory, stream, train_lm


def test_tiny_lm_on_chitchat_slice(chitchat_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RNNCHAT_CORPORA", str(chitchat_root))
    out = tmp_path / "lm.npz"
    args = LMTrainArgs(run_dir=tmp_path / "run", out=out, vocab_size=500, hidden=32, batch_size=8, bptt=16,
                       epochs=2, eval_every=40, max_train_convs=60, lr=1e-2)
    train_lm(args)
    records = [line for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if "val_" in line]
    assert len(records) >= 3
    model, vocab, header = load_lm(out)
    assert header["model"] == "lm" and len(vocab) == 500 and header["dtype"] == "float16"
    assert header["corpus"]["manifest_sha256"] == corpora.manifest_hash("chitchat")
    val = stream(corpora.load_chitchat("val", chitchat_root)[:6], vocab)
    ppl = evaluate(model, val)["perplexity"]
    assert ppl < 0.5 * len(vocab)  # far better than uniform
    assert abs(ppl - header["metrics"]["val_perplexity"]) / ppl < 0.5
    # the CLI reads the same checkpoint
    assert main(["info", str(out)]) == 0
    assert "lm" in capsys.readouterr().out
    assert read_header(out)["config"]["hidden"] == 32
    # float16 storage round trip is exact after the first cast
    model2, _, _ = load_lm(out)
    for a, b in zip(model.params.params, model2.params.params):
        np.testing.assert_array_equal(a, b)

    # memory evaluation scores exactly the turns after the first, both ways
    convs = corpora.load_chitchat("val", chitchat_root)[:8]
    mem = evaluate_memory(model, convs, vocab)
    expected = sum(len(conversation_ids([t], vocab)) for c in convs for t in c["turns"][1:])
    assert mem["tokens"] == expected > 0
    assert mem["carried_perplexity"] > 1 and mem["reset_perplexity"] > 1

    # eval --record writes its numbers into the header
    assert main(["eval", "lm", "--checkpoint", str(out), "--split", "test", "--max-convs", "4", "--memory",
                 "--record", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    metrics = read_header(out)["metrics"]
    assert metrics["test_first4_perplexity"] == result["perplexity"]
    assert metrics["test_first4_memory"]["ratio"] == result["memory"]["ratio"]
    # --resume with --set-lr continues the run with the new learning rate
    n_before = len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines())
    train_lm(LMTrainArgs(**{**vars(args), "resume": True, "epochs": 2.5, "set_lr": 1e-4}))
    after = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()][n_before:]
    assert after and after[0]["lr"] == 1e-4 and after[-1]["epoch"] >= 2

    # --resume refuses a different token stream; the CLI says so with exit code 2
    import pytest
    with pytest.raises(ValueError, match="mark-starts"):
        train_lm(LMTrainArgs(**{**vars(args), "resume": True, "mark_starts": True}))
    assert main(["train", "lm", "--resume", "--run-dir", str(tmp_path / "run"), "--out", str(out),
                 "--vocab-size", "500", "--hidden", "64", "--max-train-convs", "60"]) == 2
    assert "--hidden 64 (run has 32)" in capsys.readouterr().err

    # --init-from starts a new run from the checkpoint's weights: its first validation matches the source's
    source_val = evaluate(model, stream(corpora.load_chitchat("val", chitchat_root)[:6], vocab))["perplexity"]
    warm = LMTrainArgs(**{**vars(args), "run_dir": tmp_path / "warm", "out": tmp_path / "warm.npz",
                          "init_from": out, "epochs": 0.05, "eval_every": 1, "lr": 1e-7, "bptt": 32})
    train_lm(warm)
    first = [json.loads(x) for x in (tmp_path / "warm" / "metrics.jsonl").read_text().splitlines()][0]
    assert first["step"] == 1 and first["tokens"] > header["metrics"]["train_tokens_seen"]
    assert abs(first["val_perplexity"] - source_val) / source_val < 0.01
    with pytest.raises(ValueError, match="architecture"):
        train_lm(LMTrainArgs(**{**vars(warm), "run_dir": tmp_path / "warm3", "hidden": 16}))
    # a new run never replaces one already in its directory, nor writes its checkpoint over its text
    state = (tmp_path / "warm" / "state.npz").read_bytes()
    with pytest.raises(ValueError, match="holds a training run already: continue it with --resume"):
        train_lm(warm)
    assert (tmp_path / "warm" / "state.npz").read_bytes() == state
    with pytest.raises(ValueError, match="is a file"):
        train_lm(LMTrainArgs(**{**vars(warm), "run_dir": tmp_path / "warm.npz"}))
    (tmp_path / "t.txt").write_text("some text to train on\n" * 50)
    with pytest.raises(ValueError, match="is the training text .* itself"):
        train_lm(LMTrainArgs(**{**vars(warm), "run_dir": tmp_path / "t", "init_from": None, "max_train_convs": None,
                                "text": [tmp_path / "t.txt"],
                                "out": tmp_path / "t.txt"}))
    assert (tmp_path / "t.txt").read_text().startswith("some text")
    # another dropout is a training choice, not another shape: the weights are taken as they are
    train_lm(LMTrainArgs(**{**vars(warm), "run_dir": tmp_path / "warm2", "out": tmp_path / "warm2.npz",
                            "dropout": 0.5}))
    assert read_header(tmp_path / "warm2.npz")["config"]["dropout"] == 0.5


def test_resume_keeps_the_runs_regularisers(chitchat_root, tmp_path, monkeypatch):
    """A --resume that leaves out the AWD switches (and --mark-starts) goes on with the run's own, not with
    them off; a value given on the command line still wins."""
    monkeypatch.setenv("RNNCHAT_CORPORA", str(chitchat_root))
    run, out = tmp_path / "run", tmp_path / "lm.npz"
    recipe = {"locked": True, "weight_drop": 0.3, "embed_drop": 0.1, "ar": 1.0, "tar": 0.5, "mark_starts": True}
    train_lm(LMTrainArgs(run_dir=run, out=out, vocab_size=300, hidden=16, batch_size=4, bptt=8, epochs=0.1,
                         eval_every=50, max_train_convs=20, **recipe))
    assert main(["train", "lm", "--resume", "--run-dir", str(run), "--out", str(out), "--max-train-convs", "20",
                 "--epochs", "0.2"]) == 0
    training = read_header(run / "state.npz")["training"]
    assert {k: training[k] for k in recipe} == recipe and training["epochs"] == 0.2
    assert main(["train", "lm", "--resume", "--run-dir", str(run), "--out", str(out), "--max-train-convs", "20",
                 "--epochs", "0.3", "--weight-drop", "0", "--no-locked-dropout"]) == 0
    training = read_header(run / "state.npz")["training"]
    assert training["weight_drop"] == 0 and training["locked"] is False and training["ar"] == 1.0
    fresh = tmp_path / "fresh"
    assert main(["train", "lm", "--run-dir", str(fresh), "--out", str(tmp_path / "f.npz"), "--vocab-size", "300",
                 "--hidden", "16", "--batch-size", "4", "--bptt", "8", "--epochs", "0.05",
                 "--max-train-convs", "20"]) == 0
    plain = read_header(fresh / "state.npz")["training"]
    assert {k: plain[k] for k in recipe} == {"locked": False, "weight_drop": 0.0, "embed_drop": 0.0, "ar": 0.0,
                                             "tar": 0.0, "mark_starts": False}
