"""Issue 20, item 13: out-of-range flags are usage errors (exit 2), and a bad metrics log is a clear error."""

import pytest

from rnnchat.cli.main import main


@pytest.mark.parametrize("argv", [["train", "lm", "--lr", "-1"], ["train", "lm", "--lr", "nan"],
                                  ["train", "lm", "--hidden", "0"], ["train", "lm", "--batch-size", "0"],
                                  ["train", "lm", "--dropout", "1"], ["train", "lm", "--epochs", "inf"],
                                  ["eval", "lm", "--max-convs", "0"]])
def test_out_of_range_training_flags_are_usage_errors(argv, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main([*argv, *(["--run-dir", str(tmp_path)] if argv[0] == "train" else [])])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "error: argument" in err and "Traceback" not in err


@pytest.mark.parametrize("argv", [["generate", "-m", "", "hi"], ["sentiment", "-m", "", "hi"], ["eval", "lm", "-m", ""],
                                  ["chat", "-m", ""]])
def test_an_empty_model_path_is_a_usage_error(argv, capsys):
    """-m '' read as '.', the current folder, and failed later as ". : not a regular file" (adversarial)."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and "an empty path: give a file" in capsys.readouterr().err


@pytest.mark.parametrize("content", ["", "garbage\n{\"x\": 1}\n[1, 2]\n", '{"tokens": "a", "train_ppl": 5}\n'])
def test_train_plot_of_an_empty_or_garbage_log_is_a_clear_error(tmp_path, capsys, content):
    (tmp_path / "metrics.jsonl").write_text(content)
    assert main(["train", "plot", str(tmp_path)]) == 1
    assert "no training records" in capsys.readouterr().err


def test_train_plot_of_a_folder_named_like_the_log_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "metrics.jsonl").mkdir()  # (it said "[Errno 21] Is a directory")
    assert main(["train", "plot", str(tmp_path)]) == 1
    assert "metrics.jsonl is not a file: is" in capsys.readouterr().err


def test_info_reports_every_path_even_after_a_bad_one(small_lm_path, tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing.npz"), str(small_lm_path), str(tmp_path / "also.npz")]) == 1
    captured = capsys.readouterr()
    assert captured.err.count("rnnchat: error:") == 2 and "lm" in captured.out
