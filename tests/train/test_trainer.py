"""Trainer: loss goes down, exact resume, Ctrl+C saves, divergence stops cleanly, metrics log and curve."""


import numpy as np
import pytest

from rnnchat.models.lm import LanguageModel, LMConfig, LMRegularisation
from rnnchat.nn import Adam
from rnnchat.data.batches import StreamBatches
from rnnchat.train.curves import curve_series, plot_curves, read_metrics
from rnnchat.train.lm import evaluate
from rnnchat.train.trainer import TrainConfig, Trainer, TrainingDiverged

V = 20


def synthetic_tokens(n=4000, seed=0):
    """A learnable stream: a noisy cycle through the vocabulary."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) % (V - 4) + 4
    noise = rng.random(n) < 0.1
    t[noise] = rng.integers(4, V, noise.sum())
    return t.astype(np.int32)


AWD = LMRegularisation(locked=True, weight_drop=0.3, embed_drop=0.1, ar=2.0, tar=1.0)


def make_trainer(run_dir, epochs, saved=None, eval_every=10, step_hook=None, awd=False):
    """awd: every AWD-LSTM regulariser, variable-length windows and weight averaging from step 20."""
    model = LanguageModel(LMConfig(vocab_size=V, hidden=16, layers=2, dropout=0.1), seed=3, reg=AWD if awd else None)
    opt = Adam(model.params.params, lr=3e-2)
    batches = StreamBatches(synthetic_tokens(), batch_size=8, bptt=10, vary=awd, seed=5)
    val = synthetic_tokens(600, seed=1)

    def step_fn(batch):
        if step_hook:
            step_hook()
        return model.train_step(*batch)

    trainer = Trainer(run_dir, model, opt, batches, step_fn, lambda: evaluate(model, val, 4, 10),
                      lambda m: saved.append(m) if saved is not None else None,
                      TrainConfig(epochs=epochs, eval_every=eval_every, log_every=5,
                                  average_from=20 if awd else None),
                      header={"vocab": [], "corpus": {"name": "synthetic"}})
    return trainer, model


def test_loss_goes_down_and_metrics_are_logged(tmp_path):
    saved = []
    trainer, model = make_trainer(tmp_path, epochs=3, saved=saved)
    trainer.fit()
    records = read_metrics(tmp_path / "metrics.jsonl")
    vals = [r["val_perplexity"] for r in records if "val_perplexity" in r]
    assert vals[-1] < 0.5 * vals[0]
    assert saved and saved[-1]["perplexity"] == min(vals)
    series = curve_series(records)
    assert len(series["train"][0]) >= 2 and len(series["val"][0]) == len(vals)
    assert "perplexity" in plot_curves(tmp_path / "metrics.jsonl", 60, 15)


@pytest.mark.parametrize("awd", [False, True])
def test_resume_continues_the_same_trajectory(tmp_path, awd):
    saved_a, saved_b = [], []
    straight, m1 = make_trainer(tmp_path / "a", epochs=2, saved=saved_a, awd=awd)
    straight.fit()
    # the same run, stopped after 1 epoch (50 steps, a multiple of eval_every) and resumed
    first, _ = make_trainer(tmp_path / "b", epochs=1, saved=saved_b, awd=awd)
    first.fit()
    resumed, m2 = make_trainer(tmp_path / "b", epochs=2, saved=saved_b, awd=awd)
    resumed.load_state()
    assert resumed.step == 50 and resumed.epoch == 1 and resumed.position == 0
    resumed.fit()
    for a, b in zip(m1.params.params, m2.params.params):
        np.testing.assert_array_equal(a, b)
    assert saved_a == saved_b  # the same validations (of the averaged weights, with awd)
    if awd:
        assert resumed.average.count == straight.average.count == 80
        for a, b in zip(straight.average.avg, resumed.average.avg):
            np.testing.assert_array_equal(a, b)


def test_validation_uses_the_averaged_weights_and_training_the_live_ones(tmp_path):
    saved = []
    trainer, model = make_trainer(tmp_path, epochs=1, saved=saved, awd=True)
    trainer.fit()
    live = [p.copy() for p in model.params.params]
    trainer.average.swap()
    averaged = evaluate(model, synthetic_tokens(600, seed=1), 4, 10)
    trainer.average.swap()
    for a, b in zip(live, model.params.params):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in zip(live, trainer.average.avg))
    records = read_metrics(tmp_path / "metrics.jsonl")
    last_val = [r for r in records if "val_loss" in r][-1]
    assert last_val["averaged_steps"] == 30
    assert last_val["val_loss"] == pytest.approx(averaged["loss"], rel=1e-6)
    assert saved[-1]["loss"] == min(r["val_loss"] for r in records if "val_loss" in r)


def test_ctrl_c_saves_state_and_reraises(tmp_path):
    calls = {"n": 0}

    def hook():
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt

    trainer, _ = make_trainer(tmp_path, epochs=1, step_hook=hook)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    again, _ = make_trainer(tmp_path, epochs=1)
    again.load_state()
    assert again.step == 6 and again.position == 6


def test_ctrl_c_during_validation_saves_the_training_carry(tmp_path):
    """An interrupt inside evaluate (which carries its own, other-sized state) saves the training state."""
    trainer, model = make_trainer(tmp_path, epochs=1)

    def evaluate():
        model.state = [(np.zeros((3, h.shape[1]), np.float32), np.zeros((3, h.shape[1]), np.float32))
                       for h, _ in model.state]  # the validation stream's rows, not the training batch's
        raise KeyboardInterrupt

    trainer.evaluate = evaluate
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    arrays = np.load(tmp_path / "state.npz")
    carried = [arrays[k] for k in arrays.files if k.startswith("carry.")]
    assert carried and all(a.shape[0] == 8 for a in carried)  # make_trainer batches 8 rows
    assert model.training


def test_divergence_stops_with_clear_message_and_keeps_last_state(tmp_path):
    trainer, model = make_trainer(tmp_path, epochs=1)
    trainer.cfg.epochs = 0.4  # 20 steps, state saved at step 20
    trainer.fit()
    before = (tmp_path / "state.npz").read_bytes()
    trainer.cfg.epochs = 1
    model.embed.params["W"][:] = np.nan
    with pytest.raises(TrainingDiverged, match="last good state"):
        trainer.fit()
    assert (tmp_path / "state.npz").read_bytes() == before


@pytest.mark.parametrize("carry", [True, False])
def test_learning_rate_halves_only_when_validation_does_not_improve(tmp_path, carry):
    """With a carried state (the LM) or without (seq2seq, sentiment): improved -> same lr, plateau -> halved."""
    trainer, model = make_trainer(tmp_path, epochs=1)
    losses = iter([3.0, 2.0, 2.5, 2.5, 1.0])
    trainer.evaluate = lambda: {"loss": next(losses)}
    if not carry:  # a model without a carried `state`
        trainer.model = type("Stateless", (), {"params": model.params, "rng": model.rng, "train": model.train,
                                                "reset_state": model.reset_state})()
    else:
        model.state = [(np.zeros((1, 16), np.float32),) * 2] * 2
    lrs = []
    for _ in range(5):
        trainer.validate()
        lrs.append(trainer.opt.lr)
    assert lrs == pytest.approx([3e-2, 3e-2, 1.5e-2, 7.5e-3, 7.5e-3])


def test_a_time_limit_stops_validates_and_saves_mid_epoch(tmp_path):
    import time
    trainer, _ = make_trainer(tmp_path, epochs=50, eval_every=1000, step_hook=lambda: time.sleep(0.02))
    trainer.cfg.max_seconds = 0.3
    shown = []
    trainer.after_validate = lambda metrics: shown.append(metrics["loss"]) or f"sample {len(shown)}"
    result = trainer.fit()
    assert 3 <= result["step"] < 50 * len(trainer.batches)
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["sample"] for r in records if "val_loss" in r] == ["sample 1"]  # validated once, at the stop
    again, _ = make_trainer(tmp_path, epochs=50)
    again.load_state()
    assert again.step == result["step"]


def test_a_timed_run_anneals_the_learning_rate_along_a_cosine(tmp_path):
    import time
    trainer, _ = make_trainer(tmp_path, epochs=50, eval_every=3, step_hook=lambda: time.sleep(0.02))
    trainer.cfg.max_seconds, trainer.cfg.cosine_lr = 0.5, 0.03
    rates = []
    real_step = trainer.opt.step
    trainer.opt.step = lambda grads: (rates.append(trainer.opt.lr), real_step(grads))
    trainer.fit()
    assert rates[0] == pytest.approx(0.03, rel=0.05) and rates[-1] < 0.01
    assert all(a >= b for a, b in zip(rates, rates[1:]))  # down only: validations never halve it


def test_check_out_refuses_a_path_that_would_destroy_something(tmp_path, small_lm_path):
    """`train reply-judge --lm X --out X`, an --out naming a saved conversation or a run's state, and an
    ensemble written over its own member replaced them at the end of the work (adversarial findings)."""
    from rnnchat.checkpoint import save_checkpoint
    from rnnchat.train.trainer import check_out

    def kind(name, model):
        path = tmp_path / name
        save_checkpoint(path, {"w": np.zeros(2, np.float32)},
                        {"model": model, "config": {}, "vocab": [], "corpus": {}, "metrics": {}})
        return path

    text = tmp_path / "notes.txt"
    text.write_text("my notes")
    cases = {small_lm_path: ("reply_judge", [("--lm", small_lm_path)], "is the --lm .* itself"),
             kind("chat.npz", "conversation"): ("lm", [], "holds a saved conversation, not a lm model"),
             kind("state.npz", "train-state"): ("sentiment", [], "holds a training run's state"),
             kind("member.npz", "sentiment"): ("sentiment", [("member", tmp_path / "member.npz")], "member .* itself"),
             text: ("seq2seq", [], "holds a file that is not an rnnchat checkpoint")}
    for out, (model, inputs, why) in cases.items():
        before = out.read_bytes()
        with pytest.raises(ValueError, match=why):
            check_out(out, model, inputs)
        assert out.read_bytes() == before
    check_out(tmp_path / "new.npz", "lm", [("--lm", small_lm_path)])  # not there yet: fine
    check_out(kind("old.npz", "seq2seq"), "seq2seq")  # a model of its kind is replaced (retraining)
    with pytest.raises(ValueError, match="is a folder, a pipe or a device"):
        check_out(tmp_path, "lm")
    with pytest.raises(ValueError, match="is not a folder this run can write in"):
        check_out(text / "x.npz", "lm")  # (its folder is a file)
    link = tmp_path / "link.npz"
    link.symlink_to(small_lm_path)
    check_out(link, "sentiment", [("--teacher", small_lm_path)])  # the link is replaced, its target never
    (tmp_path / "folder_link.npz").symlink_to(tmp_path)
    with pytest.raises(ValueError, match="is a folder, a pipe or a device"):  # (failed at the first save)
        check_out(tmp_path / "folder_link.npz", "lm")
    check_out(tmp_path / "new" / "deeper" / "m.npz", "lm")  # a missing folder is made before any work
    assert (tmp_path / "new" / "deeper").is_dir()


@pytest.mark.parametrize("name", ["state.npz", "metrics.jsonl", "timing.json"])
def test_check_out_refuses_the_runs_own_files_before_they_exist(tmp_path, name):
    """--out RUN_DIR/state.npz left only the run's state, no model; --out RUN_DIR/metrics.jsonl replaced the
    metrics log with the checkpoint (adversarial findings): refused even when the run has not written them yet."""
    from rnnchat.train.trainer import check_out
    with pytest.raises(ValueError, match=f"is the run's own {name}"):
        check_out(tmp_path / "run" / name, "lm", run_dir=tmp_path / "run")
    check_out(tmp_path / "run" / "lm.npz", "lm", run_dir=tmp_path / "run")
    check_out(tmp_path / "elsewhere" / name, "lm", run_dir=tmp_path / "run")  # the name alone is not refused


def test_check_out_tells_seq2seq_tasks_apart(tmp_path):
    """`train seq2seq --task chat_backward --out rnnchat/checkpoints/seq2seq_chat.npz` replaced the forward
    chat model (both are seq2seq checkpoints)."""
    from rnnchat.checkpoint import save_checkpoint
    from rnnchat.train.trainer import check_out
    path = tmp_path / "chat.npz"
    save_checkpoint(path, {"w": np.zeros(2, np.float32)},
                    {"model": "seq2seq", "task": "chat", "config": {}, "vocab": [], "corpus": {}, "metrics": {}})
    check_out(path, "seq2seq", task="chat")
    with pytest.raises(ValueError, match="holds a seq2seq chat checkpoint, not a seq2seq chat_backward model"):
        check_out(path, "seq2seq", task="chat_backward")


def test_training_commands_refuse_such_an_out_before_any_work(tmp_path, small_lm_path, capsys):
    from rnnchat.cli.main import main
    before = small_lm_path.read_bytes()
    assert main(["train", "reply-judge", "--pools", str(tmp_path), "--lm", str(small_lm_path),
                 "--out", str(small_lm_path)]) == 1
    assert "itself" in capsys.readouterr().err and small_lm_path.read_bytes() == before
    assert main(["train", "sentiment-ensemble", str(small_lm_path), "--out", str(small_lm_path)]) == 1
    assert "itself" in capsys.readouterr().err and small_lm_path.read_bytes() == before
    out = ["--out", str(small_lm_path)]
    for argv, why in ((["lm", "--run-dir", str(tmp_path / "r"), "--out", str(tmp_path / "r" / "state.npz")],
                       "the run's own state.npz"),
                      (["seq2seq", "--task", "addition", "--run-dir", str(tmp_path / "t"), "--out",
                        str(tmp_path / "t" / "metrics.jsonl")], "the run's own metrics.jsonl"),
                      (["sentiment", "--run-dir", str(tmp_path / "s"), *out], "holds a lm checkpoint"),
                      (["seq2seq", "--run-dir", str(tmp_path / "q"), *out], "holds a lm checkpoint"),
                      (["lm", "--run-dir", str(tmp_path / "l"), "--init-from", str(small_lm_path), *out], "itself")):
        assert main(["train", *argv]) == 2  # (before any training: these would take minutes)
        assert why in capsys.readouterr().err
        assert small_lm_path.read_bytes() == before
