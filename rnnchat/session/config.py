"""Settings that persist: a TOML file in the user config directory, read at start; flags override it.

    [sampling]             # any SamplingSettings field
    temperature = 0.7
    top_k = 40
    skip = ["darn"]

    [chat]
    mode = "lm"            # lm | chat | continue
    candidates = 64

The file is `$RNNCHAT_CONFIG`, else `config.toml` in platformdirs' user config directory; a missing file means
the built-in defaults. A file that cannot be used (bad TOML, an unknown key, a value out of range) is a
`ConfigError` naming the file and the key, never silently ignored. `rnnchat config` shows the path and the values
in force; `rnnchat config --init` writes a commented file with the defaults.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from rnnchat.atomic import atomic_write_bytes
from rnnchat.engine.ranking import MAX_CANDIDATES
from rnnchat.sampling import SamplingSettings, SettingsError
from rnnchat.session.transcript import Mode

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, from PyPI
    import tomli as tomllib

# What a user gets by default: the system with the higher judged SSA on the team's prompts
# (bench/chat_judging/round2: LM chat, best of 16 ranked, 16.8%; seq2seq chat, one sample, 3.7%), choosing
# among 64 candidates: +5.4 points of SSA over 16 on 200 fresh prompts (rounds 12 and 13), at ~0.41 s on screen
# against ~0.18 s (bench/ui_latency.py); /candidates 16 is the quicker choice.
DEFAULT_MODE = Mode.LM
DEFAULT_CANDIDATES = 64


class ConfigError(ValueError):
    """The config file cannot be used; the message names the file and what is wrong."""


@dataclass(frozen=True)
class Config:
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    mode: Mode = DEFAULT_MODE
    candidates: int = DEFAULT_CANDIDATES
    path: Path | None = None  # the file read (None: no file, the defaults)

    def as_dict(self) -> dict:
        return {"sampling": self.sampling.to_dict(), "chat": {"mode": self.mode.value, "candidates": self.candidates}}


def config_path() -> Path:
    env = os.environ.get("RNNCHAT_CONFIG")
    return Path(env) if env else Path(platformdirs.user_config_dir("rnnchat")) / "config.toml"


def load_config(path: Path | None = None) -> Config:
    path = path or config_path()
    if not path.exists():
        return Config()
    try:
        if not path.is_file():
            raise ConfigError(f"{path}: not a regular file")
        data = tomllib.loads(path.read_bytes().decode("utf-8-sig"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: cannot read it as TOML ({e})") from None
    except RecursionError:
        raise ConfigError(f"{path}: cannot read it as TOML (nested too deeply)") from None
    unknown = set(data) - {"sampling", "chat"}
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {', '.join(sorted(unknown))} (sampling, chat)")
    sampling, chat = data.get("sampling", {}), data.get("chat", {})
    if not isinstance(sampling, dict) or not isinstance(chat, dict):
        raise ConfigError(f"{path}: [sampling] and [chat] must be tables")
    try:
        settings = SamplingSettings.from_dict(sampling)
    except SettingsError as e:
        raise ConfigError(f"{path}: [sampling] {e}") from None
    if unknown := set(chat) - {"mode", "candidates"}:
        raise ConfigError(f"{path}: [chat] unknown key(s) {', '.join(sorted(unknown))} (mode, candidates)")
    try:
        mode = Mode(chat.get("mode", DEFAULT_MODE.value))
    except ValueError:
        raise ConfigError(f"{path}: [chat] mode must be lm, chat or continue, not {chat['mode']!r}") from None
    candidates = chat.get("candidates", DEFAULT_CANDIDATES)
    if isinstance(candidates, bool) or not isinstance(candidates, int) or not 1 <= candidates <= MAX_CANDIDATES:
        raise ConfigError(f"{path}: [chat] candidates must be an integer in [1, {MAX_CANDIDATES}], "
                          f"not {candidates!r}")
    return Config(settings, mode, candidates, path)


def toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return repr(v)


def write_default_config(path: Path) -> None:
    """A commented config file holding the built-in defaults (refuses to replace an existing file)."""
    if path.exists():
        raise ConfigError(f"{path} exists: edit it, or remove it first")
    lines = ["# rnnchat settings: flags override them. Remove a line to use the built-in default.", "",
             "[sampling]"]
    for key, value in SamplingSettings().to_dict().items():
        if value is None:
            lines.append(f"# {key} =")
        else:
            lines.append(f"{key} = {toml_value(value)}")
    lines += ["", "[chat]", f'mode = "{DEFAULT_MODE.value}"  # lm | chat | continue',
              f"candidates = {DEFAULT_CANDIDATES}  # replies made and ranked per message (1: one, streamed)", ""]
    folder = next((p for p in path.parents if p.exists()), None)  # the nearest that exists must be a folder
    if folder is not None and not folder.is_dir():
        raise ConfigError(f"cannot write {path}: {folder} is a file, not a folder (set RNNCHAT_CONFIG to "
                          f"another path, or move that file)")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, "\n".join(lines).encode("utf-8"))
