"""JSON Lines read strictly: each non-blank line is one JSON value, and a line that is not names its file and
number (`conversations.jsonl:7: not JSON (Expecting value)`), so a damaged file is found, not guessed at."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any


def values(lines: Iterable[str], where: str) -> Iterator[tuple[int, Any]]:
    """(line number, value) of each non-blank line; ValueError "WHERE:N: not JSON (why)" at the first bad one."""
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield n, json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{where}:{n}: not JSON ({e.msg})") from None
        except RecursionError:
            raise ValueError(f"{where}:{n}: JSON nested too deeply") from None
