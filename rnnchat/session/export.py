"""A conversation's transcript as a document: Markdown, plain text or JSON, with speakers, modes, times and
each message's sentiment. Used by `rnnchat export`, the app's Ctrl+E and the REPL's /export.

Reading a saved conversation for export needs only its header (no model is loaded, no memory checked).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from rnnchat.checkpoint import CheckpointError, read_header
from rnnchat.atomic import atomic_write_bytes
from rnnchat.control_chars import visible
from rnnchat.session.store import SessionError, Store, default_name
from rnnchat.session.transcript import MODE_TITLES, Mode, TranscriptError, Turn, from_json, to_json

FORMATS = ("md", "txt", "json")
SPEAKERS = {Mode.CHAT: "seq2seq", Mode.LM: "rnnchat", Mode.CONTINUE: "rnnchat"}


def speaker(turn: Turn) -> str:
    return "you" if turn.role == "user" else SPEAKERS[turn.mode]


def _when(turn: Turn) -> str:
    if turn.time is None:
        return ""
    return datetime.fromisoformat(turn.time).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _about(turn: Turn) -> list[str]:
    """The details shown next to the speaker: mode, time, sentiment, stopped."""
    parts = [MODE_TITLES[turn.mode]]
    if when := _when(turn):
        parts.append(when)
    if turn.sentiment is not None:
        parts.append(f"{turn.sentiment.label} {turn.sentiment.score:+.2f}")
    if turn.stopped:
        parts.append("stopped")
    return parts


# Control characters other than tab and newline, as visible escapes: a message holding ESC sequences (pasted, or
# sent by a script) would otherwise recolour, retitle or clear the terminal that shows the exported document.
def _shown(text: str) -> str:
    return visible(text.rstrip())


def to_markdown(turns: list[Turn], title: str) -> str:
    lines = [f"# {title}", ""]
    for t in turns:
        lines += [f"**{speaker(t)}** · {' · '.join(_about(t))}", ""]
        lines += [f"> {line}" if line else ">" for line in _shown(t.text).split("\n")] + [""]
    return "\n".join(lines)


def to_text(turns: list[Turn], title: str) -> str:
    lines = [title, ""]
    for t in turns:
        lines.append(f"[{', '.join(_about(t))}] {speaker(t)}: " + _shown(t.text).replace("\n", "\n    "))
    return "\n".join(lines) + "\n"


def render(turns: list[Turn], fmt: str, title: str) -> str:
    if fmt == "md":
        return to_markdown(turns, title)
    if fmt == "txt":
        return to_text(turns, title)
    if fmt == "json":
        return json.dumps({"title": title, "turns": to_json(turns)}, ensure_ascii=False, indent=1) + "\n"
    raise ValueError(f"unknown export format {fmt!r} (one of {', '.join(FORMATS)})")


def format_for(path: Path | None, fmt: str | None) -> str:
    """The format asked for, else the one the output file's suffix names, else Markdown."""
    if fmt is not None:
        return fmt
    suffix = path.suffix.lstrip(".").lower() if path is not None else ""
    return {"markdown": "md", "text": "txt"}.get(suffix, suffix) if suffix in (*FORMATS, "markdown", "text") else "md"


def write_export(turns: list[Turn], path: Path, fmt: str, title: str, replace: bool = False,
                 how_to_replace: str = "--force") -> Path:
    """Write the document atomically (creating the folder); OSError as it comes. SessionError, and nothing
    written, for an existing file unless `replace` (`how_to_replace` says how to ask for it), and for an .npz
    file ever: it may be a saved conversation or a model."""
    if "\0" in str(path):  # a pasted /export argument may hold one; the OS cannot name such a file
        raise SessionError(f"cannot export to {ascii(str(path))}: a file name cannot hold a NUL byte")
    if path.suffix.lower() == ".npz":
        raise SessionError(f"will not export to {path}: an .npz file may be a saved conversation or a model")
    if path == Path("."):  # (an empty name reads as ".")
        raise SessionError(f"cannot export to {str(path)!r}: give a file name")
    try:
        if path.exists() and not path.is_file():  # (--force could not replace it either)
            raise SessionError(f"cannot export to {path}: it is a folder, a pipe or a device, not a file")
        if path.exists() and not replace:
            raise SessionError(f"{path} exists; export to another file, or replace it with {how_to_replace}")
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):  # mkdir met a file where a folder goes
        raise SessionError(f"cannot export to {path}: a file stands where its folder should be") from None
    except OSError as e:  # (a name too long)
        raise SessionError(f"cannot export to {path}: {e.strerror or e}") from None
    atomic_write_bytes(path, render(turns, fmt, title).encode("utf-8"))
    return path


def default_export_path(store: Store, fmt: str) -> Path:
    """exports/rnnchat-DATE.FMT in the data directory; -2, -3, ... after it for another export in the same second
    (a second Ctrl+E within one was refused: the name existed, and Ctrl+E has no -f)."""
    base = store.directory / "exports" / f"rnnchat-{default_name()}"
    path, k = base.with_name(f"{base.name}.{fmt}"), 1
    while path.exists():
        k += 1
        path = base.with_name(f"{base.name}-{k}.{fmt}")
    return path


def read_transcript(store: Store, name: str) -> list[Turn]:
    """The transcript of a saved conversation (SessionError if there is none or it is unreadable)."""
    path = store.path(name)
    if not path.exists():
        raise SessionError(f"no saved conversation named {name!r} in {store.directory}")
    try:
        return from_json(read_header(path).get("transcript"))
    except CheckpointError as e:  # its message names the file already
        raise SessionError(str(e)) from None
    except TranscriptError as e:
        raise SessionError(f"{path}: {e}") from None
