"""Issue 16: a language model of your own text, through the CLI: train a char model for a few seconds, watch its
samples, resume it, generate from it, score it; word level too; bad files refused with clear messages; a model
of plain text continues text but does not chat."""

import contextlib
import io
import json
import math

import pytest

from rnnchat.checkpoint import read_header
from rnnchat.cli.main import main
from rnnchat.train.lm_text import fit_streams, text_sizes

TEXT = "".join(f"def f{i}(x):\n    return x * {i % 7} + {i % 3}\n\n" for i in range(400))


@pytest.fixture(scope="module")
def char_run(tmp_path_factory):
    """A char model trained for 3 epochs on TEXT (hidden 32): (run dir, checkpoint, text file, stderr, argv)."""
    root = tmp_path_factory.mktemp("text")
    text = root / "code.py"
    text.write_text(TEXT)
    run = root / "run"
    argv = ["train", "lm", "--text", str(text), "--run-dir", str(run), "--hidden", "32", "--layers", "1",
            "--batch-size", "4", "--bptt", "32", "--epochs", "3", "--eval-every", "60", "--lr", "0.01",
            "--prime", "def f"]
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(argv) == 0
    return run, run / "lm.npz", text, err.getvalue(), argv


def test_header_records_level_files_and_bits_per_char(char_run):
    run, ckpt, text, _, _ = char_run
    header = read_header(ckpt)
    assert header["vocab_level"] == "char"
    assert header["corpus"]["name"] == "text"
    (entry,) = header["corpus"]["files"]
    assert entry["name"] == "code.py" and entry["bytes"] == len(TEXT) and len(entry["sha256"]) == 64
    assert TEXT[:50] not in json.dumps(header)  # names and hashes, never the text
    m = header["metrics"]
    assert 0 < m["val_bpc"] < 2.5 and m["val_bpc"] == pytest.approx(math.log2(m["val_perplexity"]))


def test_a_seeded_sample_is_printed_at_every_validation(char_run, capsys):
    run, _, _, err, _ = char_run
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    samples = [r["sample"] for r in records if "sample" in r]
    validations = [r for r in records if "val_loss" in r]
    assert len(samples) == len(validations) >= 3
    assert err.count("\ndef f") >= len(samples)  # each printed from the priming text
    assert "val bpc" in err
    assert samples[-1] != samples[0]  # it learns: the same seed gives another text later
    assert main(["train", "plot", str(run)]) == 0  # the curve in bits per character
    assert "val bits per char" in capsys.readouterr().out


def test_resume_continues_and_refuses_a_changed_text(char_run, tmp_path, capsys):
    run, _, text, _, argv = char_run
    before = sum(1 for _ in (run / "metrics.jsonl").open())
    assert main(["train", "lm", "--resume", "--run-dir", str(run), "--epochs", "4"]) == 0  # its text and sizes
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(records) > before and records[-1]["epoch"] == 4
    capsys.readouterr()
    changed = tmp_path / "code.py"
    changed.write_text(TEXT.replace("return", "yield"))
    argv2 = [a if a != str(text) else str(changed) for a in argv]
    assert main([*argv2, "--resume"]) == 2
    assert "training text changed" in capsys.readouterr().err


def test_generate_and_eval_use_the_char_model(char_run, capsys):
    _, ckpt, text, _, _ = char_run
    assert main(["generate", "-m", str(ckpt), "def f", "-s", "3", "-n", "40"]) == 0
    first = capsys.readouterr().out
    assert main(["generate", "-m", str(ckpt), "def f", "-s", "3", "-n", "40"]) == 0
    assert capsys.readouterr().out == first and len(first) == 41  # 40 characters and the final newline
    assert main(["eval", "lm", "-m", str(ckpt), "--text", str(text), "--split", "test", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["files"][0]["part"] == "test part" and 0 < result["bpc"] < 8
    assert main(["eval", "lm", "-m", str(ckpt)]) == 2
    assert "trained on text files" in capsys.readouterr().err
    assert main(["chat", "-m", str(ckpt), "-p", "def f", "--fresh", "-n", "10"]) == 0
    assert len(capsys.readouterr().out.strip()) > 0
    # skip lists and stop sequences work on characters
    assert main(["generate", "-m", str(ckpt), "def f", "-s", "5", "-n", "300", "--skip", "e", "--skip", "r"]) == 0
    out = capsys.readouterr().out
    assert len(out) == 301 and "e" not in out and "r" not in out
    assert main(["generate", "-m", str(ckpt), "def f", "-s", "5", "-n", "300", "--stop", "x"]) == 0
    out = capsys.readouterr().out
    assert out.endswith("x\n") and out.count("x") == 1
    assert main(["generate", "-m", str(ckpt), "d", "--skip", "ee"]) == 2
    assert "not a single character" in capsys.readouterr().err


def test_a_model_of_plain_text_continues_but_does_not_chat(char_run, tmp_path):
    from rnnchat.engine.engine import Engine
    from rnnchat.session.session import ChatSession
    from rnnchat.session.store import SessionError
    from rnnchat.session.transcript import Mode
    session = ChatSession(Engine(char_run[1]), directory=tmp_path)
    assert session.mode is Mode.CONTINUE
    with pytest.raises(SessionError, match="trained on plain text.*code.py.*only continue"):
        session.set_mode("lm")
    reply = "".join(t.text for t in session.respond("def f"))
    assert reply and session.transcript[-1].mode is Mode.CONTINUE


def test_word_level_keeps_lines(tmp_path, capsys):
    text = tmp_path / "poem.txt"
    text.write_text("".join(f"the rain falls on the {w}\nand the {w} is wet\n\n" for w in
                            ["hill", "road", "roof", "sea", "field"] * 60))
    out = tmp_path / "word.npz"
    assert main(["train", "lm", "--text", str(text), "--level", "word", "--run-dir", str(tmp_path / "run"),
                 "--out", str(out), "--hidden", "32", "--batch-size", "4", "--bptt", "16", "--epochs", "4",
                 "--lr", "0.02", "--eval-every", "100"]) == 0
    assert read_header(out).get("vocab_level", "word") == "word" and "val_bpc" not in read_header(out)["metrics"]
    capsys.readouterr()
    assert main(["generate", "-m", str(out), "the rain", "-s", "1", "-n", "30", "--temperature", "0"]) == 0
    lines = capsys.readouterr().out.split("\n")
    assert lines[0].startswith(" falls on the") and "And the" in lines[1]  # <eom> became a line break


@pytest.mark.parametrize("content, message", [(b"\x89PNG\r\n\x00\x00", "binary"), (b"\xff\xfe", "not UTF-8"),
                                              (b"", "empty"), (b"tiny\n", "too small")])
def test_bad_text_files_are_refused_by_the_cli(tmp_path, capsys, content, message):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(content)
    assert main(["train", "lm", "--text", str(bad), "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "bad.txt" in err and message in err and "Traceback" not in err
    assert not (tmp_path / "run" / "state.npz").exists()


def test_flags_that_need_chitchat_or_text_are_refused(tmp_path, capsys):
    (tmp_path / "t.txt").write_text(TEXT)
    assert main(["train", "lm", "--text", str(tmp_path / "t.txt"), "--mark-starts"]) == 2
    assert main(["train", "lm", "--level", "char", "--run-dir", str(tmp_path / "r")]) == 2
    assert "need --text" in capsys.readouterr().err


def test_sizes_follow_the_text():
    assert text_sizes("char", 100_000)["hidden"] == 256
    assert text_sizes("char", 1_000_000)["hidden"] == 384
    assert text_sizes("char", 5_000_000)["hidden"] == 512
    assert fit_streams(32, 128, 3_000) == (11, 128)  # a small text: fewer streams, each with two windows
    assert fit_streams(32, 128, 100) == (1, 49)
