"""Bytes from the terminal that are not UTF-8 are replaced, not fatal (Textual's input thread died on them),
and an app that ends on an error exits non-zero (`rnnchat chat` returned 0 after Textual's error screen)."""

import sys

import pytest

from rnnchat.ui.tui.terminal_input import tolerate_bad_input_bytes

linux_driver = pytest.importorskip("textual.drivers.linux_driver")


def test_the_drivers_decoder_replaces_bytes_that_are_not_utf8(monkeypatch):
    monkeypatch.setattr(linux_driver, "getincrementaldecoder", linux_driver.getincrementaldecoder)  # restored after
    with pytest.raises(UnicodeDecodeError):
        linux_driver.getincrementaldecoder("utf-8")().decode(b"hello \xff\xfe there")
    assert tolerate_bad_input_bytes()
    decode = linux_driver.getincrementaldecoder("utf-8")().decode  # as the driver's input thread makes it
    assert decode(b"hello \xff\xfe there") == "hello \ufffd\ufffd there"
    assert decode(b"caf\xc3") + decode(b"\xa9") == "caf\u00e9"  # a character split between reads still joins


def test_an_app_that_ends_on_an_error_is_a_failed_exit(monkeypatch, small_lm_path, data_dir):
    from rnnchat.cli.main import main
    from rnnchat.ui.tui import app as app_module
    monkeypatch.setattr(linux_driver, "getincrementaldecoder", linux_driver.getincrementaldecoder)

    def crash(self, *args, **kwargs):
        self._return_code = 1  # what Textual sets when an exception ends the app
    monkeypatch.setattr(app_module.ChatApp, "run", crash)
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    assert main(["chat", "--checkpoint", str(small_lm_path), "--candidates", "1"]) == 1
