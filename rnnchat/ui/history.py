"""The message history shared by the app and the REPL: one file in the data directory, in prompt_toolkit's
FileHistory format (each entry a "# time" line followed by its lines prefixed "+"), so either UI recalls what
was typed in the other."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

MAX_ENTRIES = 1000  # recalled (the newest); the file itself is only ever appended to
LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # how prompt_toolkit keeps terminal bytes that are not UTF-8


def without_lone_surrogates(text: str) -> str:
    """U+FFFD for each lone surrogate (no file can hold one: autosave, /export and the history failed)."""
    return LONE_SURROGATE.sub("\ufffd", text)


def load_history(path: Path) -> list[str]:
    """Entries, oldest first; [] when the file is missing or unreadable."""
    try:
        raw = path.read_bytes()
    except OSError:
        return []
    entries, lines = [], []
    for line in raw.decode("utf-8", errors="replace").split("\n"):  # only \n, as prompt_toolkit writes them
        line += "\n"
        if line.startswith("+"):
            lines.append(line[1:])
        elif lines:
            entries.append("".join(lines).removesuffix("\n"))
            lines = []
    if lines:
        entries.append("".join(lines).removesuffix("\n"))
    return entries[-MAX_ENTRIES:]


def append_history(path: Path, text: str) -> bool:
    """Add an entry; False (nothing written) if the file cannot be written."""
    record = f"\n# {datetime.now()}\n" + "".join(f"+{line}\n" for line in without_lone_surrogates(text).split("\n"))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as f:
            f.write(record.encode("utf-8"))
    except OSError:
        return False
    return True


class Recall:
    """Up/Down through the entries, as a shell does: Up from the newest back, Down forward to the text being
    typed (kept aside when Up was first pressed). With a `path`, its entries come from that file and each one
    added is appended to it, until a write fails (then in memory only; `unsaved` names the file)."""

    def __init__(self, entries: list[str], path: Path | None = None):
        self.entries, self.pos, self.draft = list(entries), len(entries), ""
        self.path, self.unsaved = path, None

    @classmethod
    def from_file(cls, path: Path) -> Recall:
        return cls(load_history(path), path)

    def add(self, text: str) -> bool:
        """Add an entry; False the first time the file cannot be written (the caller says so once)."""
        if not self.entries or self.entries[-1] != text:
            self.entries.append(text)
        self.pos, self.draft = len(self.entries), ""
        if self.path is None or append_history(self.path, text):
            return True
        self.path, self.unsaved = None, self.path
        return False

    def up(self, current: str) -> str | None:
        if self.pos == 0:
            return None
        if self.pos == len(self.entries):
            self.draft = current
        self.pos -= 1
        return self.entries[self.pos]

    def down(self) -> str | None:
        if self.pos >= len(self.entries):
            return None
        self.pos += 1
        return self.draft if self.pos == len(self.entries) else self.entries[self.pos]
