"""Synthetic sequence-to-sequence tasks with exact answers: seeded, deterministic, no downloads.

* ``addition``: ``"582+39" -> "621"``; each operand has 1, 2 or 3 digits (digit count uniform, then the value
  uniform among numbers of that many digits, no leading zeros). 50,000 distinct problems by default.
* ``dates``: a date between 1950-01-01 and 2049-12-31 written in one of many human formats
  (``"september 27, 1994"``, ``"27/09/94"``, ``"Tue 27 Sep 1994"``, ``"1994.09.27"``, ``"27 sept 94"``, ...)
  -> ISO ``"1994-09-27"``. Every format is unambiguous: numeric day/month formats are day-first only, and
  two-digit years mean 1950-2049 (``yy >= 50`` -> 19yy, else 20yy). 50,000 distinct inputs by default.

Each task is a list of (source, target) string pairs, shuffled by the seed; the last ``heldout`` fraction is
held out for evaluation (distinct sources, so a held-out problem was never seen in training). Models read and
write these as characters (``char_vocab``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from rnnchat.text import SPECIALS, Vocab

TASKS = ("addition", "dates")


@dataclass(frozen=True)
class TaskData:
    name: str
    train: list[tuple[str, str]]
    heldout: list[tuple[str, str]]
    params: dict

    @property
    def max_target_len(self) -> int:
        return max(len(t) for _, t in self.train + self.heldout)

    def fingerprint(self) -> str:
        """sha256 of the generated pairs (recorded in checkpoints, like a corpus manifest hash)."""
        h = hashlib.sha256(json.dumps([self.name, self.params, self.train, self.heldout]).encode())
        return h.hexdigest()


def _split(name: str, pairs: list[tuple[str, str]], heldout: float, params: dict) -> TaskData:
    if not 0 < heldout < 1:
        raise ValueError(f"heldout must be in (0, 1), got {heldout}")
    cut = len(pairs) - int(round(len(pairs) * heldout))
    return TaskData(name, pairs[:cut], pairs[cut:], params)


# -- addition --------------------------------------------------------------------------------------------------
def _operand(rng: np.random.Generator, max_digits: int) -> int:
    d = int(rng.integers(1, max_digits + 1))
    lo = 0 if d == 1 else 10 ** (d - 1)
    return int(rng.integers(lo, 10 ** d))


def addition(n: int = 50_000, heldout: float = 0.1, seed: int = 0, max_digits: int = 3) -> TaskData:
    """``n`` distinct problems "a+b" -> str(a+b), a and b with 1..max_digits digits."""
    limit = sum(9 * 10 ** (d - 1) + (d == 1) for d in range(1, max_digits + 1)) ** 2
    if n > limit // 2:
        raise ValueError(f"{n} distinct problems is too many for {max_digits}-digit operands")
    rng = np.random.default_rng(seed)
    seen: dict[str, str] = {}
    while len(seen) < n:
        a, b = _operand(rng, max_digits), _operand(rng, max_digits)
        seen.setdefault(f"{a}+{b}", str(a + b))
    pairs = list(seen.items())
    order = rng.permutation(len(pairs))
    return _split("addition", [pairs[i] for i in order], heldout,
                  {"n": n, "heldout": heldout, "seed": seed, "max_digits": max_digits})


# -- dates -----------------------------------------------------------------------------------------------------
MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december")
DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
FIRST, LAST = date(1950, 1, 1), date(2049, 12, 31)


def _ordinal(d: int) -> str:
    suffix = "th" if 10 <= d % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(d % 10, "th")
    return f"{d}{suffix}"


def _mon(d: date, rng: np.random.Generator) -> str:
    """Abbreviated month: 3 letters, or 'sept' for September half the time."""
    if d.month == 9 and rng.random() < 0.5:
        return "sept"
    return MONTHS[d.month - 1][:3]


def _case(s: str, rng: np.random.Generator) -> str:
    """lower (50%), Title (40%) or UPPER (10%) case."""
    u = rng.random()
    if u < 0.5:
        return s
    return " ".join(w[:1].upper() + w[1:] for w in s.split(" ")) if u < 0.9 else s.upper()


# Each format: (name, function(date, rng) -> text). Names document the shape with the example 1994-09-27.
DATE_FORMATS: tuple[tuple[str, Callable[[date, np.random.Generator], str]], ...] = (
    ("september 27, 1994", lambda d, r: _case(f"{MONTHS[d.month - 1]} {d.day}, {d.year}", r)),
    ("september 27 1994", lambda d, r: _case(f"{MONTHS[d.month - 1]} {d.day} {d.year}", r)),
    ("27 september 1994", lambda d, r: _case(f"{d.day} {MONTHS[d.month - 1]} {d.year}", r)),
    ("27 september, 1994", lambda d, r: _case(f"{d.day} {MONTHS[d.month - 1]}, {d.year}", r)),
    ("27th september 1994", lambda d, r: _case(f"{_ordinal(d.day)} {MONTHS[d.month - 1]} {d.year}", r)),
    ("september 27th, 1994", lambda d, r: _case(f"{MONTHS[d.month - 1]} {_ordinal(d.day)}, {d.year}", r)),
    ("the 27th of september, 1994", lambda d, r: _case(f"the {_ordinal(d.day)} of {MONTHS[d.month - 1]}, "
                                                       f"{d.year}", r)),
    ("tuesday, september 27, 1994", lambda d, r: _case(f"{DAYS[d.weekday()]}, {MONTHS[d.month - 1]} {d.day}, "
                                                       f"{d.year}", r)),
    ("Tue 27 Sep 1994", lambda d, r: _case(f"{DAYS[d.weekday()][:3]} {d.day} {_mon(d, r)} {d.year}", r)),
    ("Tue, 27 Sep 94", lambda d, r: _case(f"{DAYS[d.weekday()][:3]}, {d.day} {_mon(d, r)} {d.year % 100:02d}",
                                          r)),
    ("27 Sep 1994", lambda d, r: _case(f"{d.day} {_mon(d, r)} {d.year}", r)),
    ("27 sept 94", lambda d, r: _case(f"{d.day} {_mon(d, r)} {d.year % 100:02d}", r)),
    ("27-sep-1994", lambda d, r: _case(f"{d.day:02d}-{_mon(d, r)}-{d.year}", r)),
    ("sep 27, 1994", lambda d, r: _case(f"{_mon(d, r)} {d.day}, {d.year}", r)),
    ("sep 27 94", lambda d, r: _case(f"{_mon(d, r)} {d.day} {d.year % 100:02d}", r)),
    ("27/09/94", lambda d, r: f"{d.day:02d}/{d.month:02d}/{d.year % 100:02d}"),
    ("27/09/1994", lambda d, r: f"{d.day:02d}/{d.month:02d}/{d.year}"),
    ("27/9/1994", lambda d, r: f"{d.day}/{d.month}/{d.year}"),
    ("27.09.1994", lambda d, r: f"{d.day:02d}.{d.month:02d}.{d.year}"),
    ("27.9.94", lambda d, r: f"{d.day}.{d.month}.{d.year % 100:02d}"),
    ("27-09-1994", lambda d, r: f"{d.day:02d}-{d.month:02d}-{d.year}"),
    ("1994.09.27", lambda d, r: f"{d.year}.{d.month:02d}.{d.day:02d}"),
    ("1994/09/27", lambda d, r: f"{d.year}/{d.month:02d}/{d.day:02d}"),
    ("1994-09-27", lambda d, r: d.isoformat()),
    ("19940927", lambda d, r: f"{d.year}{d.month:02d}{d.day:02d}"),
    ("1994 sep 27", lambda d, r: _case(f"{d.year} {_mon(d, r)} {d.day}", r)),
)


def parse_two_digit_year(yy: int) -> int:
    """The pivot used by the task: 50..99 -> 1950..1999, 00..49 -> 2000..2049."""
    return 1900 + yy if yy >= 50 else 2000 + yy


def dates(n: int = 50_000, heldout: float = 0.1, seed: int = 0) -> TaskData:
    """``n`` distinct human-written dates -> ISO; format uniform over DATE_FORMATS, date uniform 1950..2049."""
    rng = np.random.default_rng(seed)
    span = (LAST - FIRST).days + 1
    seen: dict[str, str] = {}
    while len(seen) < n:
        d = FIRST + timedelta(days=int(rng.integers(span)))
        _, fmt = DATE_FORMATS[int(rng.integers(len(DATE_FORMATS)))]
        seen.setdefault(fmt(d, rng), d.isoformat())
    pairs = list(seen.items())
    order = rng.permutation(len(pairs))
    return _split("dates", [pairs[i] for i in order], heldout, {"n": n, "heldout": heldout, "seed": seed,
                                                                 "formats": len(DATE_FORMATS)})


def load(name: str, **kw) -> TaskData:
    if name == "addition":
        return addition(**kw)
    if name == "dates":
        return dates(**kw)
    raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")


def char_vocab(data: TaskData) -> Vocab:
    """Character vocabulary of a task (sources and targets): the specials, then characters sorted."""
    chars = sorted({ch for s, t in data.train + data.heldout for ch in s + t})
    return Vocab([*SPECIALS, *chars])


def encode_chars(text: str, vocab: Vocab) -> list[int]:
    return [vocab.stoi.get(ch, vocab.unk_id) for ch in text]
