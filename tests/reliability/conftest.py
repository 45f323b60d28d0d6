"""Helpers for the reliability tests (issue 8): run the CLI in-process with a fake stdin, check its contract."""

from __future__ import annotations

import io
import re
import sys
from dataclasses import dataclass

import pytest

from rnnchat.cli.main import main

# argparse's own usage errors read "rnnchat generate: error: ..." after the usage lines (exit 2).
ARGPARSE_ERROR = re.compile(r"^rnnchat(?: [\w-]+)*: error: ", re.M)
# Any character a terminal could act on (C0 / C1 controls other than newline and tab).
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


class FakeStdin(io.TextIOWrapper):
    """A non-tty text stdin over raw bytes, with `.buffer` like the real one."""

    def __init__(self, data: bytes):
        super().__init__(io.BytesIO(data), encoding="utf-8", errors="strict")

    def isatty(self) -> bool:
        return False


@dataclass
class Result:
    code: int
    out: str
    err: str


def call_main(argv: list[str], capsys, monkeypatch, stdin: bytes = b"") -> Result:
    """Run `rnnchat.cli.main(argv)` in-process; any exception other than SystemExit fails the test."""
    monkeypatch.setattr(sys, "stdin", FakeStdin(stdin))
    capsys.readouterr()  # drop anything left over from the previous example
    try:
        code = main(argv)
    except SystemExit as e:  # argparse: --help (0) or a usage error (2)
        code = e.code
        assert code in (0, 1, 2), f"SystemExit({code!r}) for {argv!r}"
    captured = capsys.readouterr()
    assert isinstance(code, int) and not isinstance(code, bool) and code in (0, 1, 2), \
        f"exit code {code!r} for {argv!r}"
    assert "Traceback" not in captured.err
    return Result(code, captured.out, captured.err)


def assert_clear_failure(r: Result) -> None:
    """A failure: non-zero exit, nothing on stdout, an `rnnchat: error:` line (argparse: its own)."""
    assert r.code != 0
    assert r.out == "", r.out[:200]
    if r.err.startswith("rnnchat: error:"):
        return
    assert r.code == 2 and "usage:" in r.err and ARGPARSE_ERROR.search(r.err), r.err[:500]


def assert_text_only(out: str) -> None:
    """stdout is plain text: valid UTF-8, no control characters, no status/error lines."""
    out.encode("utf-8")  # lone surrogates would raise here
    assert not CONTROL.search(out), repr(out[:200])
    assert "rnnchat:" not in out and "Traceback" not in out


@pytest.fixture
def cli(capsys, monkeypatch):
    """`cli(argv, stdin=b"")` -> Result (exit code, stdout, stderr)."""
    def run(argv: list[str], stdin: bytes = b"") -> Result:
        return call_main(argv, capsys, monkeypatch, stdin)
    return run
