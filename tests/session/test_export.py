"""Exporting a transcript (issue 15, item 4): `rnnchat export`, /export and Ctrl+E, in md, txt and json, with
speakers, modes, times and the sentiment of each message."""

import json
import os
import stat
from pathlib import Path

import pytest

from rnnchat.cli.main import main
from rnnchat.models.sentiment_result import Sentiment
from rnnchat.session.export import render
from rnnchat.session.store import SessionError
from rnnchat.session.transcript import Mode, Turn, from_json


def test_documents_carry_speaker_mode_time_and_sentiment():
    turns = [Turn("user", "I love\nthis", Mode.LM, Sentiment("positive", 0.5), time="2026-12-01T12:30:05+00:00"),
             Turn("assistant", "Me too!\n", Mode.LM, stopped=True, time="2026-12-01T12:30:06+00:00"),
             Turn("user", "hi", Mode.CHAT), Turn("assistant", "hello", Mode.CHAT)]
    md = render(turns, "md", "T")
    assert md.startswith("# T\n")
    assert "**you** · LM chat · 2026-12-01 12:30 UTC · positive +0.50\n\n> I love\n> this" in md
    assert "**rnnchat** · LM chat · 2026-12-01 12:30 UTC · stopped\n\n> Me too!\n" in md
    assert "**seq2seq** · seq2seq chat\n\n> hello" in md
    txt = render(turns, "txt", "T")
    assert "[LM chat, 2026-12-01 12:30 UTC, positive +0.50] you: I love\n    this\n" in txt
    data = json.loads(render(turns, "json", "T"))
    assert from_json(data["turns"]) == turns
    with pytest.raises(ValueError):
        render(turns, "pdf", "T")


def test_control_characters_in_a_message_are_shown_not_sent_to_the_terminal():
    """A message holding ESC sequences recoloured (or retitled) the terminal that showed its export."""
    turns = [Turn("user", "red \x1b[31mtext\x1b[0m\tand\x07\x9b\nnext", Mode.LM)]
    for fmt in ("md", "txt"):
        doc = render(turns, fmt, "T")
        assert "red \\x1b[31mtext\\x1b[0m\tand\\x07\\x9b" in doc and "next" in doc
        assert not any(ord(c) < 0x20 and c not in "\t\n" or 0x7F <= ord(c) < 0xA0 for c in doc)
    assert from_json(json.loads(render(turns, "json", "T"))["turns"]) == turns  # JSON keeps the text exactly
    windows = [Turn("user", "one\r\ntwo\rthree", Mode.LM)]  # line ends are line ends, not \x0d escapes
    assert "> one\n> two\n> three" in render(windows, "md", "T")


def test_cli_export_of_saved_conversations(make_session, data_dir, tmp_path, capsys):
    s = make_session()
    list(s.respond("hello there"))
    s.autosave()
    s.save("greeting")
    assert main(["export"]) == 0
    out = capsys.readouterr().out
    assert "**you** · LM chat" in out and "> hello there" in out and s.transcript[0].time[:4] in out
    assert main(["export", "greeting", "-o", str(tmp_path / "g.json")]) == 0
    assert from_json(json.loads((tmp_path / "g.json").read_text())["turns"]) == s.transcript
    assert main(["export", "greeting", "--format", "txt"]) == 0
    assert "] you: hello there" in capsys.readouterr().out
    assert main(["export", "missing"]) == 1
    assert "no saved conversation named 'missing'" in capsys.readouterr().err
    saved = data_dir / "conversations"
    (saved / "torn.npz").write_bytes((saved / "greeting.npz").read_bytes()[:300])
    assert main(["export", "torn"]) == 1
    err = capsys.readouterr().err
    assert "torn.npz: truncated" in err and err.count("torn.npz") == 1  # the path once, not twice
    assert main(["export", "greeting", "-o", str(tmp_path / "no" / "such" / "dir.md")]) == 0  # folders made
    capsys.readouterr()
    # an existing file is replaced only with --force, an .npz (a saved conversation, a model) never
    (tmp_path / "mine.txt").write_text("keep me")
    assert main(["export", "greeting", "-o", str(tmp_path / "mine.txt")]) == 1
    assert "exists" in capsys.readouterr().err and (tmp_path / "mine.txt").read_text() == "keep me"
    assert main(["export", "greeting", "-o", str(tmp_path / "mine.txt"), "--force", "-f", "txt"]) == 0
    assert "] you: hello there" in (tmp_path / "mine.txt").read_text()
    saved = s.path("greeting")
    before = saved.read_bytes()
    assert main(["export", "-o", str(saved), "--force", "-f", "json"]) == 1
    assert ".npz" in capsys.readouterr().err and saved.read_bytes() == before
    # what -o cannot name said "exists; replace it with --force", and then --force was refused (adversarial)
    for out, why in ((tmp_path, "it is a folder, a pipe or a device"), ("/dev/null", "it is a folder, a pipe or"),
                     ("", "give a file name"), (tmp_path / "mine.txt" / "x.md", "a file stands where its folder")):
        assert main(["export", "greeting", "-o", str(out), "--force"]) == 1
        assert why in capsys.readouterr().err
    assert main(["export", "greeting", "-o", "-", "-f", "txt"]) == 0  # '-': stdout
    assert "] you: hello there" in capsys.readouterr().out and not Path("-").exists()
    monkey = pytest.MonkeyPatch()
    monkey.chdir(tmp_path)
    try:
        assert main(["export", "greeting", "-o", "./-", "-f", "txt"]) == 0  # ./- names a file
        assert "] you: hello there" in (tmp_path / "-").read_text()
    finally:
        monkey.undo()


def test_export_command_writes_the_current_transcript(make_session, data_dir, tmp_path):
    s = make_session()
    list(s.respond("hello there"))
    message = s.command("/export")
    assert "exported 2 message(s) to" in message
    [written] = (data_dir / "exports").glob("rnnchat-*.md")
    assert "> hello there" in written.read_text()
    import rnnchat.session.export as export  # another export in the same second takes the next free name
    with pytest.MonkeyPatch.context() as m:
        m.setattr(export, "default_name", lambda: written.stem.removeprefix("rnnchat-"))
        assert s.command("/export").endswith(f"{written.stem}-2.md") and s.command("/export").endswith("-3.md")
    for extra in (data_dir / "exports").glob("rnnchat-*-*-*.md"):
        extra.unlink()
    s.command(f"/export json {tmp_path / 'x.out'}")
    assert json.loads((tmp_path / "x.out").read_text())["turns"][0]["text"] == "hello there"
    s.command(f"/export {tmp_path / 'my notes.md'}")  # the file is the rest of the line (it was refused, while
    assert "> hello there" in (tmp_path / "my notes.md").read_text()  # "/export md my notes.md" wrote it)
    s.command(f"/export txt {tmp_path / 'my  notes.txt'}")
    assert (tmp_path / "my  notes.txt").exists()
    before = (tmp_path / "my notes.md").read_text()  # -f before a name of two spaces replaced the one-space file
    s.command(f"/export -f {tmp_path / 'my  notes.md'}")
    assert (tmp_path / "my  notes.md").exists() and (tmp_path / "my notes.md").read_text() == before
    s.command(f"/export {tmp_path / 'y.txt'}")  # the format follows the suffix
    assert "] you: hello there" in (tmp_path / "y.txt").read_text()
    with pytest.raises(SessionError, match="exists; .* /export -f"):
        s.command(f"/export json {tmp_path / 'y.txt'}")
    assert "] you: hello there" in (tmp_path / "y.txt").read_text()
    s.command(f"/export -f json {tmp_path / 'y.txt'}")
    assert json.loads((tmp_path / "y.txt").read_text())["turns"][0]["text"] == "hello there"
    with pytest.raises(SessionError, match="npz"):
        s.command(f"/export -f {s.path('last')}")
    with pytest.raises(SessionError, match="npz"):  # whatever its case
        s.command(f"/export -f {tmp_path / 'model.NPZ'}")
    pdf = r"/export pdf: not a format \(md, txt, json\), nor a file name with a suffix \(such as pdf\.md\)"
    with pytest.raises(SessionError, match=pdf):  # it wrote a file named pdf
        s.command("/export pdf")
    with pytest.raises(SessionError, match="cannot export to .*: File name too long"):  # not "[Errno 36] ..."
        s.command(f"/export {tmp_path / ('a' * 300) / 'x.md'}")
    for typo in ("md json", "-f -f", ".npz"):  # a second format word, a doubled flag, a bare suffix: no file names
        with pytest.raises(SessionError, match="not a format"):
            s.command(f"/export {typo}")
    assert not (tmp_path / "model.NPZ").exists() and not Path("pdf").exists()
    # a pasted NUL in the file name crashed the app and the REPL (ValueError: embedded null byte)
    with pytest.raises(SessionError, match="NUL byte"):
        s.command(f"/export {tmp_path}/a\0b.md")
    if hasattr(os, "mkfifo"):  # what is not a regular file (/dev/null as root) is never replaced
        os.mkfifo(tmp_path / "fifo")
        with pytest.raises(SessionError, match="it is a folder, a pipe or a device"):
            s.command(f"/export -f {tmp_path / 'fifo'}")
        assert stat.S_ISFIFO(os.stat(tmp_path / "fifo").st_mode)
