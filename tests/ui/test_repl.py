"""The prompt_toolkit REPL, driven through a pipe input with a dummy output."""

import asyncio
import os
import io
import signal
import threading

import numpy as np
import pytest
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from rnnchat.cli.main import main
from rnnchat.sampling import SamplingSettings
from rnnchat.session.transcript import to_json
from rnnchat.ui.repl import Repl


def run(session, keys: str) -> tuple[int, str]:
    out = io.StringIO()
    with create_pipe_input() as inp:
        inp.send_text(keys)
        code = Repl(session, input=inp, output=DummyOutput(), out=out).run()
    return code, out.getvalue()


def test_replies_stream_commands_apply_and_ctrl_d_exits(make_session, data_dir):
    s = make_session()
    code, out = run(s, "hello there\n/temp 0.5\n/topk 7\n/topp 0.9\n/skip cat\n/mode continue\nI like\n\x04")
    assert code == 0
    replies = [m["text"] for m in to_json(s.transcript) if m["role"] == "assistant"]
    assert len(replies) == 2
    assert f"rnnchat> {replies[0]}\n" in out and f"I like{replies[1]}\n" in out
    assert (s.settings.temperature, s.settings.top_k, s.settings.top_p, s.settings.skip) == (0.5, 7, 0.9, ("cat",))
    assert s.mode.value == "continue"
    assert f"[{s.last_stats.tokens} tokens" in out
    mood = s.transcript[1].sentiment  # the bot's reply is scored, and the stats line says so
    assert f"tok/s, mood {mood.label} {mood.score:+.2f}]" in out
    assert "hello there" in (data_dir / "repl_history").read_text()


def test_quit_help_errors_and_ctrl_c_at_the_prompt(make_session):
    s = make_session()
    code, out = run(s, "/help\n/mode chat\n/temp -1\nabc\x03/quit\n")
    assert code == 0
    assert "/mode chat|lm|continue" in out
    assert "error: seq2seq model not available" in out and "error: temperature must be a finite number >= 0" in out
    assert to_json(s.transcript) == []  # Ctrl+C threw the line away


def test_mode_chat_replies_with_the_seq2seq_model_and_beam(make_session, data_dir):
    s = make_session(seq2seq=True)
    s.set_mode("lm")
    code, out = run(s, "/mode chat\ni love the dog\n/beam 2\nhello\n/beam 99\n/save chat\n\x04")
    assert code == 0 and "mode: seq2seq chat" in out
    replies = [m["text"] for m in to_json(s.transcript) if m["role"] == "assistant"]
    assert len(replies) == 2 and f"seq2seq> {replies[0]}\n" in out and f"seq2seq> {replies[1]}\n" in out
    assert "beam 2" in out and "error: beam width must be in [0, 16]" in out and s.beam == 2
    assert [t["user"] for t in s.chat_state.transcript] == ["i love the dog", "hello"]
    assert s.conv.history == []  # the LM's memory is not involved
    t = make_session(seq2seq=True)
    run(t, "/load chat\n\x04")
    np.testing.assert_array_equal(t.chat_state.h, s.chat_state.h)


def test_save_reset_load(make_session, data_dir):
    s = make_session()
    run(s, "hi\n/save one\n/reset\n/load\n/load one\n/quit\n")
    assert (data_dir / "conversations" / "one.npz").exists()
    assert [m["text"] for m in to_json(s.transcript)][:1] == ["hi"]


class InterruptAfter(io.StringIO):
    """Output that sends the process's main thread SIGINT (what Ctrl+C does) at its n-th write."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def write(self, text: str) -> int:
        self.n -= 1
        if self.n == 0:
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
        return super().write(text)


def test_ctrl_c_stops_the_reply_and_memory_holds_only_the_tokens_printed(make_session, engine):
    s = make_session(max_tokens=200, skip=("#3",))
    out = InterruptAfter(4)  # "rnnchat> " and three tokens
    repl = Repl(s, input=None, output=DummyOutput(), out=out)
    handler = signal.getsignal(signal.SIGINT)
    stats = repl.reply("hello")
    assert signal.getsignal(signal.SIGINT) is handler  # Ctrl+C raises KeyboardInterrupt again at the prompt
    v = engine.vocab
    assert stats.stopped and stats.tokens == 3
    assert s.conv.history == v.encode("hello") + [v.eom_id, v.eot_id] + [t.id for t in s.last_tokens]
    printed = out.getvalue().split("rnnchat> ", 1)[1].split("\n[")[0]
    assert printed.rstrip("\n") == "".join(t.text for t in s.last_tokens).rstrip("\n")


def test_toolbar_follows_the_sentiment_of_the_line_as_it_is_typed(make_session):
    s = make_session()
    bars = []

    async def until(condition):
        for _ in range(500):
            if condition():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("not rendered")

    async def type_and_watch():
        with create_pipe_input() as inp:
            repl = Repl(s, input=inp, output=DummyOutput(), out=io.StringIO())
            real = repl.toolbar
            repl.prompt.bottom_toolbar = lambda: bars.append("".join(t for _, t in real())) or real()
            task = asyncio.ensure_future(repl.prompt.prompt_async("you> "))
            inp.send_text("i hate")
            await until(lambda: any("negative -0.50" in b for b in bars))
            inp.send_text(" good great")
            await until(lambda: any("positive +0.50" in b for b in bars))
            inp.send_text("\n")
            return await task, real

    line, toolbar = asyncio.run(type_and_watch())
    assert line == "i hate good great" and "LM chat" in bars[-1]
    s.sentiment = None
    assert "sentiment: unavailable" in "".join(text for _, text in toolbar())


def test_cli_needs_a_language_model(tmp_path, capsys, data_dir):
    assert main(["repl", "--checkpoint", str(tmp_path / "none.npz")]) == 1
    assert "no language model at" in capsys.readouterr().err
    assert main(["chat", "--checkpoint", str(tmp_path / "none.npz")]) == 1


@pytest.mark.parametrize("argv", [["repl", "--temp", "-1"], ["chat", "--skip", "zebra"]])
def test_cli_rejects_bad_settings(argv, small_lm_path, capsys, data_dir):
    assert main([*argv, "--checkpoint", str(small_lm_path)]) == 2
    assert "rnnchat: error:" in capsys.readouterr().err


def test_attention_prints_the_last_seq2seq_replys_grid(make_session, data_dir):
    from rnnchat.ui.render import attention_grid, attention_text
    s = make_session(seq2seq=True)
    code, out = run(s, "/attention\ni love the dog\n/attention\n/help\n\x04")
    assert code == 0 and "no seq2seq reply yet" in out and "/attention" in out
    toks = s.last_tokens
    grid = attention_text(attention_grid(toks)).splitlines()
    assert grid[0].split() == ["i", "love", "the", "dog", "<eom>", "<eot>"]
    assert len(grid) == 1 + len(toks) and "\n".join(grid) in out
    for tok, line in zip(toks, grid[1:]):
        cells = line.split()[-6:]
        assert line.split()[0] == tok.token.strip() or tok.token.strip() == ""
        assert [c.endswith("*") for c in cells].index(True) == int(tok.attention.argmax())
        assert abs(sum(int(c.rstrip("*")) for c in cells) - 100) <= 3  # percentages of one distribution


def test_data_directory_that_cannot_be_one_is_a_clear_error(small_lm_path, tmp_path, monkeypatch, capsys):
    """Issue 20, item 8: RNNCHAT_DATA_DIR naming a file is an error message, not a traceback."""
    (tmp_path / "afile").write_text("x")
    monkeypatch.setenv("RNNCHAT_DATA_DIR", str(tmp_path / "afile"))
    assert main(["repl", "--checkpoint", str(small_lm_path)]) == 1
    assert "is not a directory" in capsys.readouterr().err


def test_unwritable_history_falls_back_to_memory_and_every_piped_line_runs(make_session, data_dir, monkeypatch):
    """A directory where the history file should be, or a read-only data directory: the REPL says so once and
    goes on (prompt_toolkit's failing FileHistory used to stop after each line and swallow the next one)."""
    (data_dir / "repl_history").mkdir(parents=True)
    s = make_session()
    code, out = run(s, "hello\n/temp 0.5\nagain\n\x04")
    assert code == 0 and "input history not saved" in out
    assert [t.role for t in s.transcript].count("assistant") == 2 and s.settings.temperature == 0.5
    (data_dir / "repl_history").rmdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p).startswith(str(data_dir)) else real_access(p, mode))
    code, out = run(make_session(), "hello\n\x04")
    assert code == 0 and "input history not saved" in out and not (data_dir / "repl_history").exists()


def test_read_only_data_directory_is_a_note(small_lm_path, data_dir, monkeypatch):
    from rnnchat.session.opening import open_session
    data_dir.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(data_dir) else real_access(p, mode))
    _, notes = open_session(small_lm_path, None, SamplingSettings(), candidates=1)
    assert any("read-only" in n for n in notes)


def test_dangling_links_and_odd_entries_are_not_listed_as_conversations(make_session, data_dir):
    s = make_session()
    s.save("real")
    conversations = data_dir / "conversations"
    (conversations / "dead.npz").symlink_to(conversations / "missing.npz")
    (conversations / "adir.npz").mkdir()
    assert s.saved_names() == ["real"]
    code, out = run(s, "/load\n\x04")
    assert "saved conversations: real" in out


def test_repl_runs_the_lines_of_a_regular_file_on_stdin(small_lm_path, tmp_path):
    """Issue 20, item 10: `rnnchat repl < cmds.txt` ran nothing and exited 0; now every line runs, bad bytes
    are replaced, a leading byte-order mark is not text, and the end of the file ends the REPL."""
    import subprocess
    import sys
    cmds = tmp_path / "cmds.txt"
    cmds.write_bytes(b"\xef\xbb\xbfhello there\n/temp 0.5\nbad \xff byte\n")
    env = {**os.environ, "RNNCHAT_DATA_DIR": str(tmp_path / "data")}
    with open(cmds, "rb") as stdin:
        r = subprocess.run([sys.executable, "-m", "rnnchat", "repl", "--checkpoint", str(small_lm_path),
                            "--candidates", "1", "-n", "5"], stdin=stdin, capture_output=True, env=env, timeout=120)
    out = r.stdout.decode()
    assert r.returncode == 0, r.stderr
    assert "you> hello there\nrnnchat> " in out and "temperature 0.5" in out and "you> bad \ufffd byte" in out
    assert out.count("tokens, ") == 2 and b"Traceback" not in r.stderr


def test_chat_app_without_a_terminal_is_a_usage_error(small_lm_path, tmp_path):
    """`rnnchat < /dev/null > out` used to draw the app into the file and never exit."""
    import subprocess
    import sys
    env = {**os.environ, "RNNCHAT_DATA_DIR": str(tmp_path / "data")}
    r = subprocess.run([sys.executable, "-m", "rnnchat", "--checkpoint", str(small_lm_path)],
                       stdin=subprocess.DEVNULL, capture_output=True, env=env, timeout=120)
    assert r.returncode == 2 and r.stdout == b""
    assert b"needs a terminal" in r.stderr and b"rnnchat repl" in r.stderr


def test_ctrl_c_during_start_up_is_a_quiet_exit_130(monkeypatch, capsys):
    from rnnchat import runtime

    def interrupted():
        raise KeyboardInterrupt
    monkeypatch.setattr(runtime, "configure", interrupted)
    assert main(["generate", "hi"]) == 130
    assert capsys.readouterr().err == "rnnchat: interrupted\n"


def test_multi_line_messages_by_block_and_by_alt_enter(make_session):
    """Issue 15, item 5: \"\"\" blocks (as `ollama run` reads them) and Alt+Enter make one message of several
    lines."""
    s = make_session()
    code, out = run(s, '"""first line\nsecond line\n"""\nhello\x1b\rthere\n\x04')
    assert code == 0
    said = [t.text for t in s.transcript if t.role == "user"]
    assert said == ["first line\nsecond line", "hello\nthere"]
    piped = make_session()
    out = io.StringIO()
    assert Repl(piped, out=out, lines=io.StringIO('"""one\ntwo"""\n')).run() == 0
    assert [t.text for t in piped.transcript if t.role == "user"] == ["one\ntwo"]
    assert 'you> """one\n... two"""\n' in out.getvalue()
    assert Repl(piped, out=io.StringIO(), lines=io.StringIO('"""/quit is not a command\n"""\nhi\n')).run() == 0
    assert [t.text for t in piped.transcript if t.role == "user"][-2:] == ["/quit is not a command", "hi"]


def test_a_history_entry_holding_a_lone_surrogate_is_written_with_u_fffd(tmp_path):
    """It raised UnicodeEncodeError in the app (only OSError was caught), ending it."""
    from rnnchat.ui.history import append_history, load_history
    path = tmp_path / "h"
    assert append_history(path, "bad \udcff byte")
    assert load_history(path) == ["bad \ufffd byte"]


def test_a_history_file_that_becomes_unwritable_is_said_once_and_the_prompt_goes_on(tmp_path):
    """Only the start was checked: a history file replaced by a folder (or a full disk) mid-session raised in
    prompt_toolkit after every line ("Unhandled exception ... Press ENTER"; adversarial finding)."""
    from rnnchat.ui.repl import Utf8FileHistory
    path, said = tmp_path / "h", []
    history = Utf8FileHistory(str(path), said.append)
    history.store_string("first")
    path.unlink()
    path.mkdir()
    history.store_string("second")
    history.store_string("third")
    assert said == [f"input history not saved: {path} cannot be written"]
    history.append_string("fourth")  # (what the prompt calls: kept in memory)
    assert "fourth" in history.get_strings()


def test_history_file_entries_keep_any_line_separator_but_newline(tmp_path):
    """prompt_toolkit splits its history file on \\n only; so does the app's reader (\\r, \\u2028 stay inside)."""
    from prompt_toolkit.history import FileHistory
    from rnnchat.ui.history import append_history, load_history
    path = tmp_path / "h"
    for text in ("one\rtwo", "a\u2028b", "multi\nline", "plain"):
        append_history(path, text)
    assert load_history(path) == ["one\rtwo", "a\u2028b", "multi\nline", "plain"]
    assert list(FileHistory(str(path)).load_history_strings())[::-1] == load_history(path)


def test_terminal_bytes_that_are_not_utf8_are_replaced_so_the_conversation_saves(make_session, data_dir, tmp_path):
    """prompt_toolkit keeps them as lone surrogates: autosave failed and /export ended the REPL in a traceback."""
    s = make_session()
    out = io.StringIO()
    with create_pipe_input() as inp:
        inp.send_bytes(b"hello \xff\xfe there\n/export txt " + str(tmp_path / "t.txt").encode() + b"\n\x04")
        assert Repl(s, input=inp, output=DummyOutput(), out=out).run() == 0
    assert s.transcript[0].text == "hello \ufffd\ufffd there"
    assert s.last_stats.save_error is None and (data_dir / "last.npz").exists()
    assert "you: hello \ufffd\ufffd there" in (tmp_path / "t.txt").read_text(encoding="utf-8")


def test_escape_sequences_in_piped_lines_are_printed_visible(make_session):
    """The echo of a piped line and continue mode's print of the user's text sent ESC sequences to the terminal."""
    out = io.StringIO()
    lines = io.StringIO("/mode continue\nclear \x1b[2J and \x1b]0;title\x07 now\n")
    assert Repl(make_session(), out=out, lines=lines).run() == 0
    assert "\x1b" not in out.getvalue() and out.getvalue().count("clear \\x1b[2J and \\x1b]0;title\\x07 now") == 2
