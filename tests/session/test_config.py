"""The config file (issue 15, item 7): read at start, flags override it, bad files are clear errors, `rnnchat
config` shows it, a conversation file records the settings it was made with."""

import json

import pytest

from rnnchat.checkpoint import read_header
from rnnchat.cli.main import main
from rnnchat.session.config import Config, ConfigError, load_config
from rnnchat.session.transcript import Mode


@pytest.fixture
def config_file(tmp_path, monkeypatch):
    path = tmp_path / "config.toml"
    monkeypatch.setenv("RNNCHAT_CONFIG", str(path))
    return path


def test_missing_file_is_the_defaults_and_init_writes_them(config_file, capsys):
    assert load_config() == Config()
    assert main(["config"]) == 0
    assert "no file: the built-in defaults" in capsys.readouterr().out
    assert main(["config", "--init"]) == 0
    assert load_config() == Config(path=config_file)
    assert main(["config", "--init"]) == 2  # never over an existing file


def test_init_where_a_file_stands_for_the_folder_says_so(tmp_path, monkeypatch, capsys):
    """It said 'cannot write .../config.toml: File exists', which names neither the file nor the fix."""
    (tmp_path / "rnnchat").write_text("not a folder")
    monkeypatch.setenv("RNNCHAT_CONFIG", str(tmp_path / "rnnchat" / "config.toml"))
    assert main(["config", "--init"]) == 2
    assert f"{tmp_path / 'rnnchat'} is a file, not a folder" in capsys.readouterr().err
    assert (tmp_path / "rnnchat").read_text() == "not a folder"


def test_values_and_errors(config_file):
    config_file.write_text('[sampling]\ntemperature = 0.5\nskip = ["cat"]\n\n[chat]\nmode = "continue"\n'
                           'candidates = 4\n')
    c = load_config()
    assert (c.sampling.temperature, c.sampling.skip, c.mode, c.candidates) == (0.5, ("cat",), Mode.CONTINUE, 4)
    for bad, words in [("[sampling]\ntemperature = -1\n", "temperature"), ("[chat]\nmode = 'x'\n", "mode"),
                       ("[chat]\ncandidates = 0\n", "candidates"), ("[colour]\n", "unknown section"),
                       ("[sampling]\ntopk = 3\n", "unknown setting"), ("temperature = \n", "TOML"),
                       ("[sampling]\nskip = " + "[" * 10_000 + "]" * 10_000 + "\n", "nested too deeply")]:
        config_file.write_text(bad)
        with pytest.raises(ConfigError, match=words):
            load_config()
    config_file.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match=str(config_file)):
        load_config()


def test_flags_override_the_file_and_a_bad_file_is_a_usage_error(config_file, small_lm_path, data_dir, capsys):
    config_file.write_text("[sampling]\nmax_tokens = 3\ntemperature = 0\n\n[chat]\ncandidates = 1\n")
    assert main(["generate", "--checkpoint", str(small_lm_path), "hello", "--json"]) == 0
    sample = json.loads(capsys.readouterr().out)
    assert sample["settings"]["max_tokens"] == 3 and sample["settings"]["temperature"] == 0
    assert main(["generate", "--checkpoint", str(small_lm_path), "hello", "--json", "-n", "5"]) == 0
    assert json.loads(capsys.readouterr().out)["settings"]["max_tokens"] == 5
    assert main(["chat", "--checkpoint", str(small_lm_path), "-p", "hi", "-c"]) == 0
    saved = read_header(data_dir / "last.npz")["settings"]
    assert saved["candidates"] == 1 and saved["sampling"]["max_tokens"] == 3 and saved["mode"] == "lm"
    config_file.write_text("[sampling]\ntemperature = 'hot'\n")
    assert main(["generate", "hi"]) == 2
    assert "temperature" in capsys.readouterr().err


def test_a_config_file_saved_with_a_byte_order_mark_is_read(config_file):
    """Notepad's UTF-8 opens with a byte-order mark, which TOML refused ("Invalid statement")."""
    config_file.write_bytes(b"\xef\xbb\xbf[sampling]\ntemperature = 0.7\n")
    assert load_config().sampling.temperature == 0.7
