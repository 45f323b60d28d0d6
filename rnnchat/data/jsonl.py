"""JSON and JSON Lines read strictly: each non-blank line is one JSON value, and a line that is not names its file
and number (`conversations.jsonl:7: not JSON (Expecting value)`), so a damaged file is found, not guessed at."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


def parse(text: str, where: str) -> Any:
    """One JSON value; ValueError "WHERE: not JSON (why)" or "WHERE: JSON nested too deeply" (a RecursionError)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: not JSON ({e.msg})") from None
    except RecursionError:
        raise ValueError(f"{where}: JSON nested too deeply") from None


def values(lines: Iterable[str], where: str) -> Iterator[tuple[int, Any]]:
    """(line number, value) of each non-blank line; ValueError "WHERE:N: ..." (as `parse`) at the first bad one."""
    for n, line in enumerate(lines, 1):
        if line.strip():
            yield n, parse(line, f"{where}:{n}")


def read_text(path: Path) -> str:
    """A file's UTF-8 text; ValueError naming the file when it cannot be read or is not UTF-8."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ValueError(f"{path}: cannot read it ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text") from None
