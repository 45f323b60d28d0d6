"""Slash commands and settings typed as text, the same in both UIs (`/temp 0.7`, `/mode lm`, `/save NAME`).

`run(session, line)` runs one command other than /help and /quit (the UIs' own) and returns the message to
show; SessionError or SettingsError for a bad command or value.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Protocol

from rnnchat.control_chars import visible
from rnnchat.sampling import SamplingSettings, SettingsError
from rnnchat.session.export import FORMATS, default_export_path, format_for, write_export
from rnnchat.session.store import SessionError, Store, default_name
from rnnchat.session.transcript import MODE_TITLES, Mode, Turn


class Commandable(Protocol):
    """What the commands use of a `ChatSession` (which calls them: this module does not import it)."""

    settings: SamplingSettings
    mode: Mode
    store: Store
    transcript: list[Turn]

    def set_beam(self, width: int) -> None: ...
    def set_candidates(self, n: int) -> None: ...
    def update_settings(self, **changes: Any) -> None: ...
    def describe_settings(self) -> str: ...
    def set_mode(self, mode: Mode | str) -> None: ...
    def reset(self, force: bool = False) -> str | None: ...
    def save(self, name: str, replace: bool = True) -> Path: ...
    def load(self, name: str) -> str | None: ...
    def saved_names(self) -> list[str]: ...

SETTING_COMMANDS = {"temp": "temperature", "topk": "top_k", "topp": "top_p", "max": "max_tokens", "beam": "beam",
                    "candidates": "candidates", "cache": "cache", "guidance": "guidance",
                    # the flags' names work too: /temperature, /top-k, /top-p, /max-tokens
                    "temperature": "temperature", "top-k": "top_k", "top-p": "top_p", "max-tokens": "max_tokens"}
COMMAND_HELP = (
    ("/temp 0.7", "temperature (0 = greedy)"), ("/topk 40", "top-k (0 = off)"), ("/topp 0.9", "top-p (1 = off)"),
    ("/max 60", "max tokens per reply"), ("/skip WORD", "never say WORD (/skip: clear)"),
    ("/beam 4", "seq2seq beam width (0 = off)"), ("/candidates 16", "replies made and ranked (1 = stream one)"),
    ("/cache on|off", "LM cache of earlier words"),
    ("/guidance 1", "LM: favour words the message made likely (0 = off)"),
    ("/retry", "replace the last reply (next candidate)"),
    ("/mode chat|lm|continue", "switch mode"), ("/reset", "new conversation (old one kept)"),
    ("/save [-f] NAME", "save (-f: replace NAME)"), ("/load NAME", "load one (/load: list)"),
    ("/export [FMT] [FILE]", "transcript: md, txt, json"),
    ("/help", "this help"), ("/quit", "leave"),
)


def _on_off(text: str) -> bool:
    value = {"on": True, "true": True, "1": True, "off": False, "false": False, "0": False}.get(text.lower())
    if value is None:
        raise ValueError(text)
    return value


_PARSE = {"temperature": float, "top_p": float, "guidance": float, "top_k": int, "max_tokens": int, "beam": int,
          "candidates": int, "skip": lambda t: tuple(w for w in re.split(r"[,\s]+", t) if w), "cache": _on_off}


def set_setting(session: Commandable, name: str, text: str) -> None:
    """Set one setting from user text: temperature, top_k, top_p, guidance, max_tokens, skip (words,
    comma/space), cache, candidates or beam; SettingsError if the name or value is bad."""
    if name not in _PARSE:
        raise SettingsError(f"unknown setting {name!r}")
    try:
        value = _PARSE[name](text.strip())
    except ValueError:
        what = "on or off" if name == "cache" else "a number"
        raise SettingsError(f"{name.replace('_', '-')}: not {what}: {text.strip()!r}") from None
    if name == "beam":
        session.set_beam(value)
    elif name == "candidates":
        session.set_candidates(value)
    else:
        session.update_settings(**{name: value})


def _export(session: Commandable, arg: str) -> str:
    """/export [-f] [md|txt|json] [FILE]: the transcript to FILE, the rest of the line (spaces and all; default:
    exports/ in the data directory); -f replaces an existing FILE."""
    rest = arg.strip()
    replace = bool(flag := re.match(r"-f(\s+|$)", rest))
    rest = rest[flag.end():] if flag else rest
    fmt_word = re.match(rf"({'|'.join(FORMATS)})(\s+|$)", rest)
    fmt = fmt_word.group(1) if fmt_word else None
    name = rest[fmt_word.end():] if fmt_word else rest  # (the rest of the line, as typed)
    if name and "/" not in name and not Path(name).suffix:  # "/export pdf", "md json", "-f -f": no file
        raise SessionError(f"/export {visible(name)}: not a format ({', '.join(FORMATS)}), nor a file name "
                           f"with a suffix (such as {visible(name)}.md)")
    path = Path(name).expanduser() if name else None
    fmt = format_for(path, fmt)
    path = path or default_export_path(session.store, fmt)
    write_export(session.transcript, path, fmt, "rnnchat conversation", replace, "/export -f")
    return f"exported {len(session.transcript)} message(s) to {path}"


def run(session: Commandable, line: str) -> str:
    name, arg = (line.strip().lstrip("/").split(maxsplit=1) + ["", ""])[:2]  # (a tab parts them too)
    if name in SETTING_COMMANDS:
        if arg:
            set_setting(session, SETTING_COMMANDS[name], arg)
        return session.describe_settings()
    if name == "skip":
        session.update_settings(skip=tuple(dict.fromkeys(session.settings.skip + tuple(arg.split()))) if arg else ())
        return session.describe_settings()
    if name == "mode":
        if arg:
            session.set_mode(arg)
        return f"mode: {MODE_TITLES[session.mode]}"
    if name == "reset":
        kept = session.reset(force=arg == "-f")
        return "memory reset: new conversation" + (f" (the previous one is kept: /load {kept})" if kept else "")
    if name == "save":
        force, rest = (arg.split(maxsplit=1) + ["", ""])[:2]  # (a tab parts them too)
        if force == "-f":
            return f"saved to {session.save(rest or default_name())}"
        return f"saved to {session.save(arg or default_name(), replace=False)}"
    if name == "export":
        return _export(session, arg)
    if name == "load":
        if not arg:
            return "saved conversations: " + (", ".join(session.saved_names()) or "none")
        note = session.load(arg)
        return f"loaded {arg!r}" + (f"; {note}" if note else "")
    raise SessionError(f"unknown command /{name}: /help lists the commands")
