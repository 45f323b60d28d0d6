"""`rnnchat chat -p MESSAGE` (issue 15, item 3): one reply on stdout; -c and --conversation hold a conversation
across calls; nothing else is saved."""

import io
import json


from rnnchat.cli.main import main
from rnnchat.session.export import read_transcript
from rnnchat.session.store import Store


def chat(small_lm_path, *argv):
    return main(["chat", "--checkpoint", str(small_lm_path), "--candidates", "1", "-n", "6", "-s", "1", *argv])


def test_one_reply_saves_nothing(small_lm_path, data_dir, capsys):
    assert chat(small_lm_path, "-p", "hello there") == 0
    out = capsys.readouterr().out
    assert out.strip() and out.endswith("\n")
    assert not (data_dir / "last.npz").exists()


def test_continue_and_named_conversations_hold_turns_across_calls(small_lm_path, data_dir, capsys):
    store = Store(data_dir)
    assert chat(small_lm_path, "-p", "hello there", "-c") == 0
    assert chat(small_lm_path, "-p", "and then", "-c", "--json") == 0
    reply = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert reply["mode"] == "lm" and reply["conversation"] == "last" and reply["tokens"] >= 1
    said = [t.text for t in read_transcript(store, "last") if t.role == "user"]
    assert said == ["hello there", "and then"]
    assert chat(small_lm_path, "-p", "one", "--conversation", "s1") == 0
    assert chat(small_lm_path, "-p", "two", "--conversation", "s1") == 0
    assert [t.text for t in read_transcript(store, "s1") if t.role == "user"] == ["one", "two"]
    assert [t.text for t in read_transcript(store, "last") if t.role == "user"] == said  # untouched


def test_message_from_stdin_and_usage_errors(small_lm_path, data_dir, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"from a pipe\n")))
    assert chat(small_lm_path, "-p", "-", "--conversation", "p") == 0
    assert [t.text for t in read_transcript(Store(data_dir), "p")][0] == "from a pipe"
    capsys.readouterr()
    assert chat(small_lm_path, "-c") == 2
    assert "only with -p" in capsys.readouterr().err
    assert chat(small_lm_path, "-p", "x", "-c", "--conversation", "n") == 2
    assert chat(small_lm_path, "-p", "   ") == 2
    assert chat(small_lm_path, "-p", "x", "--conversation", "last") == 2  # the autosaved one: that is -c
    capsys.readouterr()
    assert chat(small_lm_path, "-p", "x", "--conversation", "../x") == 2  # (it was exit 1, after loading models)
    assert "a name of letters, digits" in capsys.readouterr().err


def test_a_mode_asked_for_that_cannot_be_used_is_an_error_not_another_models_reply(small_lm_path, data_dir, capsys,
                                                                                   tmp_path, monkeypatch):
    """`--mode chat` with no seq2seq model answered with the LM and exit 0: a script could not tell."""
    missing = tmp_path / "missing.npz"
    assert chat(small_lm_path, "-p", "hello", "--mode", "chat", "--seq2seq", str(missing), "--json") == 1
    out, err = capsys.readouterr()
    assert out == "" and "--mode chat" in err and "missing.npz" in err
    config = tmp_path / "config.toml"  # a configured mode that cannot be used falls back, with a note
    config.write_text('[chat]\nmode = "chat"\n')
    monkeypatch.setenv("RNNCHAT_CONFIG", str(config))
    assert chat(small_lm_path, "-p", "hello", "--seq2seq", str(missing), "--json") == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["mode"] == "lm" and "seq2seq chat: unavailable" in err
