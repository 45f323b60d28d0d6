"""The CLI skeleton: help, unimplemented commands exit 2, errors are clear, `python -m rnnchat` works."""

import os
import subprocess
import sys

import numpy as np
import pytest

from rnnchat.checkpoint import save_checkpoint
from rnnchat.cli.main import build_parser, main


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for name in ("chat", "repl", "generate", "sentiment", "train", "eval", "corpus", "info"):
        assert name in out


def test_sentiment_scores_text_and_lines(capsys, monkeypatch, tmp_path):
    import io
    import json
    assert main(["sentiment", "this is wonderful , i love it :)"]) == 0
    assert capsys.readouterr().out.startswith("positive +")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"terrible , awful service\nwhat a great day\n")))
    assert main(["sentiment", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["label"] for r in rows] == ["negative", "positive"]
    # -m names another classifier, as with generate and eval (here a restarting one, trained for nothing)
    from rnnchat.models.sentiment import SentimentConfig, SentimentModel
    from rnnchat.models.sentiment_ensemble import save_sentiment
    from rnnchat.text import SPECIALS, Vocab
    vocab = Vocab([*SPECIALS, "good", ".", ","])
    save_sentiment(SentimentModel(SentimentConfig(vocab_size=len(vocab), embed=4, hidden=4, restart="clause")), vocab,
                   tmp_path / "s.npz", {})
    assert main(["sentiment", "-m", str(tmp_path / "s.npz"), "good , good ."]) == 0
    assert capsys.readouterr().out.split()[0] in ("negative", "neutral", "positive")


def test_sentiment_of_nothing_is_an_error_and_a_byte_order_mark_is_not_text(capsys, monkeypatch):
    """Empty input printed a neutral row; a UTF-8 byte-order mark (as Notepad writes) stayed in the text."""
    import io
    import json
    for data in (b"", b"\n \n"):
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
        assert main(["sentiment", "-"]) == 2
        assert "no text to score" in capsys.readouterr().err
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\xef\xbb\xbfwhat a great day\n\nawful\n")))
    assert main(["sentiment", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["text"] for r in rows] == ["what a great day", "", "awful"]  # a row per line, the blank one too


@pytest.mark.parametrize("flag, shows", [("--hel", "usage: rnnchat [-h] [--version] COMMAND"), ("--h", "COMMAND ..."),
                                         ("--vers", "rnnchat 0.")])
def test_the_top_levels_flags_abbreviated_are_the_top_levels(flag, shows, capsys):
    """`rnnchat --hel` showed the chat subcommand's help and `--vers` was an unrecognized argument (argparse
    reads abbreviations; the top level now does too before a flag is taken as chat's)."""
    with pytest.raises(SystemExit) as e:
        main([flag])
    assert e.value.code == 0 and shows in capsys.readouterr().out


def test_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["frobnicate"])
    assert e.value.code == 2


@pytest.mark.parametrize("argv", [["sentiment", "--bogus"], ["eval", "lm", "--bogus"], ["export", "--bogus"]])
def test_an_unknown_flag_shows_the_usage_of_its_subcommand(argv, capsys):
    """argparse's parse_args reported it with the top level's usage (`rnnchat [-h] [--version] COMMAND`)."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    command = " ".join(a for a in argv if not a.startswith("-"))
    assert e.value.code == 2 and f"usage: rnnchat {command} [-h]" in err
    assert f"rnnchat {command}: error: unrecognized arguments: --bogus" in err


def test_a_full_disk_while_training_is_one_line_and_exit_1(tmp_path, capsys, monkeypatch):
    import rnnchat.train.lm as lm

    def full(_args):
        raise OSError(28, f"could not write {tmp_path / 'lm.npz'}: no space left on device")
    monkeypatch.setattr(lm, "train_lm", full)
    assert main(["train", "lm", "--run-dir", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("rnnchat: error: ") and "no space left" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("command", [["train", "lm"], ["train", "sentiment"], ["train", "seq2seq", "--task", "addition"]])
def test_a_new_training_run_never_replaces_one_in_its_directory(tmp_path, capsys, command):
    run = tmp_path / "run"
    run.mkdir()
    (run / "state.npz").write_bytes(b"a run's state")
    assert main([*command, "--run-dir", str(run)]) == 2
    assert "holds a training run already: continue it with --resume" in capsys.readouterr().err
    assert [p.name for p in run.iterdir()] == ["state.npz"] and (run / "state.npz").read_bytes() == b"a run's state"
    assert main([*command, "--run-dir", str(run / "state.npz")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_arguments_that_are_not_utf8_are_a_usage_error(capsys):
    # how Python hands over argv bytes that are not UTF-8 (b"caf\xe9"): a lone surrogate, which no file can hold
    assert main(["sentiment", "--json", "caf\udce9 ok"]) == 2
    assert "an argument is not valid UTF-8: 'caf\\udce9 ok'" in capsys.readouterr().err


def test_info_prints_header_and_refuses_garbage(tmp_path, capsys):
    good = tmp_path / "m.npz"
    save_checkpoint(good, {"w": np.ones((2, 3), np.float32)},
                    {"model": "lm", "config": {"hidden": 3}, "vocab": ["<pad>"], "corpus": {}, "metrics": {"x": 1}})
    assert main(["info", str(good)]) == 0
    assert "hidden=3" in capsys.readouterr().out
    sly = tmp_path / "sly.npz"  # a header key may hold escape sequences (recolour, retitle the terminal)
    save_checkpoint(sly, {"w": np.ones(2, np.float32)}, {"model": "lm", "config": {"\x1b[31mred": 1}, "vocab": [],
                                                         "corpus": {}, "metrics": {"\x1b]0;title\x07": 1}})
    assert main(["info", str(sly)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\\x1b[31mred" in out and "\\x1b]0;title\\x07" in out
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a checkpoint")
    assert main(["info", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("rnnchat: error:") and "bad.npz" in err
    assert main(["info", str(tmp_path / "missing.npz")]) == 1
    capsys.readouterr()
    assert main(["info", "--vocab", str(good)]) == 2  # (ignored without --json)
    assert "--vocab: only with --json" in capsys.readouterr().err


def test_python_dash_m_entry_point():
    r = subprocess.run([sys.executable, "-m", "rnnchat", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("rnnchat ")


def test_every_subcommand_has_help():
    parser = build_parser()
    for argv in (["train", "lm", "--help"], ["eval", "lm", "--help"], ["corpus", "build", "--help"]):
        with pytest.raises(SystemExit) as e:
            parser.parse_args(argv)
        assert e.value.code == 0


@pytest.mark.parametrize("command", ["chat", "repl", "generate"])
def test_missing_language_model_is_a_clear_error(command, tmp_path, capsys):
    assert main([command, "--checkpoint", str(tmp_path / "none.npz")]) == 1
    err = capsys.readouterr().err
    assert "none.npz" in err and "Traceback" not in err


def test_without_ray_flag_nothing_imports_ray(small_lm_path, tmp_path):
    """Issue 19: Ray stays out of every path but `--ray`: a local batch, a streamed continuation and a chat
    reply (`chat -p`, and the chat app's session) leave no `ray` (nor pyarrow, pandas) in sys.modules."""
    prompts = tmp_path / "p.txt"
    prompts.write_text("hello\nthere\n")
    script = f"""
import sys
from rnnchat.cli.main import main
m = {str(small_lm_path)!r}
assert main(["generate", "--batch", {str(prompts)!r}, "--out", {str(tmp_path / "o.jsonl")!r}, "-m", m, "-q"]) == 0
assert main(["generate", "hi", "-m", m, "-n", "3"]) == 0
assert main(["chat", "-p", "hi", "-m", m, "-n", "3", "--candidates", "2"]) == 0
import rnnchat.ui.tui.app
heavy = sorted(n for n in sys.modules if n.split(".")[0] in ("ray", "pyarrow", "pandas"))
assert not heavy, heavy[:5]
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "RNNCHAT_DATA_DIR": str(tmp_path / "data")})
    assert r.returncode == 0, r.stderr[-2000:]


def test_guidance_flag_guides_generate_and_bad_values_are_usage_errors(small_lm_path, capsys):
    def gen(*flags):
        assert main(["generate", "-m", str(small_lm_path), "-s", "5", "-n", "12", "--json", *flags, "i like"]) == 0
        import json
        return json.loads(capsys.readouterr().out.splitlines()[0])
    plain, guided = gen(), gen("--guidance", "3")
    assert guided["settings"]["guidance"] == 3.0 and plain["settings"]["guidance"] == 0.0
    assert plain["tokens"] != guided["tokens"]
    for bad in ("-1", "11", "nan"):
        assert main(["generate", "-m", str(small_lm_path), "--guidance", bad, "hi"]) == 2
        assert "guidance must be" in capsys.readouterr().err


def test_eval_lm_on_a_text_reports_its_share_of_unknown_words(tmp_path, capsys):
    """Words outside the vocabulary all score as the one token <unk>, so gibberish got a perplexity of ~3 with
    nothing to say why: the share of <unk> is reported, and a text mostly made of them gets a note."""
    import json
    gibberish = tmp_path / "gibberish.txt"
    gibberish.write_text("qxzvkjq zzkqvx jjqxzk vvkzqj\n" * 20, encoding="utf-8")
    plain = tmp_path / "plain.txt"
    plain.write_text("hi how are you doing today\ni am good thanks\n" * 10, encoding="utf-8")
    assert main(["eval", "lm", "--text", str(gibberish), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["unk_rate"] > 0.7
    assert main(["eval", "lm", "--text", str(gibberish)]) == 0
    out, err = capsys.readouterr()
    assert "% <unk>" in out and "outside the model's vocabulary" in err
    assert main(["eval", "lm", "--text", str(plain), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["unk_rate"] == 0
    assert main(["eval", "lm", "--text", str(plain)]) == 0
    out, err = capsys.readouterr()
    assert "0.0% <unk>" in out and err == ""


def test_help_works_with_a_config_file_that_cannot_be_used(tmp_path, monkeypatch, capsys):
    """A bad config file made `chat --help` the same usage error as every command: no help to mend it with."""
    config = tmp_path / "config.toml"
    config.write_text("[chat]\nmode = 5\n")
    monkeypatch.setenv("RNNCHAT_CONFIG", str(config))
    with pytest.raises(SystemExit) as e:
        main(["chat", "--help"])
    out, err = capsys.readouterr()
    assert e.value.code == 0 and "--candidates N" in out and "built-in defaults" in err and "mode must be" in err
    for abbreviated in (["chat", "--hel"], ["repl", "-h"]):
        with pytest.raises(SystemExit) as e:
            main(abbreviated)
        assert e.value.code == 0 and "usage:" in capsys.readouterr().out
    assert main(["generate", "-shi", "hi"]) == 2  # (an h in a flag's value is no help: the config error)
    assert "mode must be" in capsys.readouterr().err
    assert main(["generate", "hi"]) == 2  # a command still refuses it
    assert "mode must be" in capsys.readouterr().err
    assert main(["generate", "--", "-h"]) == 2  # (a prompt, not the flag)


def test_generate_with_max_tokens_zero_says_nothing_is_generated(small_lm_path, capsys):
    assert main(["generate", "-m", str(small_lm_path), "-n", "0", "i like"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == "" and "--max-tokens 0: nothing is generated" in err
    assert main(["generate", "-m", str(small_lm_path), "-n", "1", "i like"]) == 0
    assert "nothing is generated" not in capsys.readouterr().err


def test_eval_lm_on_conversations_too_short_for_its_streams(tmp_path, monkeypatch, capsys, small_lm_path):
    """A split whose chosen conversations hold fewer tokens than the 16 scoring streams was a ValueError
    traceback (adversarial finding); one with nothing to predict is a one-line error."""
    import json
    for name, turns in (("few", [["hi"]]), ("none", [])):
        (tmp_path / name / "chitchat").mkdir(parents=True)
        for split in ("train", "val", "test"):
            (tmp_path / name / "chitchat" / f"{split}.jsonl").write_text(
                '{"id": "x", "turns": %s, "senders": []}\n' % json.dumps(turns))
    monkeypatch.setenv("RNNCHAT_CORPORA", str(tmp_path / "few"))
    assert main(["eval", "lm", "-m", str(small_lm_path), "--split", "test", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tokens"] >= 1
    monkeypatch.setenv("RNNCHAT_CORPORA", str(tmp_path / "none"))
    assert main(["eval", "lm", "-m", str(small_lm_path), "--split", "test"]) == 1
    assert "the test split: nothing to score" in capsys.readouterr().err


def test_generate_notes_a_prompt_the_model_cannot_read(small_lm_path, capsys):
    """A prompt of words outside the vocabulary (each read as <unk>) was continued with no word said."""
    assert main(["generate", "-m", str(small_lm_path), "-n", "2", "-s", "1", "zzqqxx blorf qwerty"]) == 0
    assert "note: 3 of the prompt's 3 tokens are outside the model's vocabulary" in capsys.readouterr().err
    assert main(["generate", "-m", str(small_lm_path), "-n", "2", "-s", "1", "i like"]) == 0
    assert "outside the model's vocabulary" not in capsys.readouterr().err
