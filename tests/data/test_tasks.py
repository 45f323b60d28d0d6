"""Synthetic seq2seq tasks: deterministic, correct answers, distinct held-out examples, unambiguous date formats."""

from datetime import date, timedelta

import numpy as np
import pytest

from rnnchat.data import tasks
from rnnchat.text import SPECIALS


@pytest.fixture(scope="module")
def add():
    return tasks.addition(n=5000, seed=1)


@pytest.fixture(scope="module")
def dat():
    return tasks.dates(n=5000, seed=1)


def test_same_seed_same_data_and_other_seed_other_data(add, dat):
    assert tasks.addition(n=5000, seed=1) == add
    assert tasks.dates(n=5000, seed=1) == dat
    assert tasks.addition(n=5000, seed=2).train != add.train
    assert add.fingerprint() == tasks.addition(n=5000, seed=1).fingerprint() != dat.fingerprint()


def test_addition_answers_sizes_and_split(add):
    assert len(add.train) == 4500 and len(add.heldout) == 500
    sources = [s for s, _ in add.train + add.heldout]
    assert len(set(sources)) == len(sources)  # held-out problems were never seen in training
    digits = set()
    for s, t in add.train + add.heldout:
        a, b = s.split("+")
        assert int(t) == int(a) + int(b) and str(int(a)) == a and str(int(b)) == b
        digits |= {len(a), len(b)}
    assert digits == {1, 2, 3}


def test_addition_default_is_the_issue_size():
    d = tasks.addition()
    assert (len(d.train), len(d.heldout)) == (45_000, 5_000)
    assert d.max_target_len == 4


def test_dates_targets_are_iso_and_sources_distinct(dat):
    sources = [s for s, _ in dat.train + dat.heldout]
    assert len(set(sources)) == len(sources)
    for _, t in dat.train + dat.heldout:
        d = date.fromisoformat(t)
        assert tasks.FIRST <= d <= tasks.LAST and d.isoformat() == t
    assert dat.max_target_len == 10


@pytest.mark.parametrize("name,fmt", tasks.DATE_FORMATS, ids=[n for n, _ in tasks.DATE_FORMATS])
def test_each_format_writes_its_example(name, fmt):
    rng = np.random.default_rng(0)
    for _ in range(10):  # casing and "sep"/"sept" vary; the text does not
        got = fmt(date(1994, 9, 27), rng)
        assert got.lower().replace("sept", "sep") == name.lower().replace("sept", "sep")


def test_formats_are_unambiguous():
    seen: dict[str, date] = {}
    days = [date(y, 1, 1) + timedelta(days=i) for y in (1950, 1999, 2000, 2049) for i in range(365)]
    rng = np.random.default_rng(0)
    for d in days:
        for _, fmt in tasks.DATE_FORMATS:
            text = fmt(d, rng).lower()
            assert seen.setdefault(text, d) == d, text


def test_two_digit_year_pivot():
    assert tasks.parse_two_digit_year(94) == 1994 and tasks.parse_two_digit_year(50) == 1950
    assert tasks.parse_two_digit_year(49) == 2049 and tasks.parse_two_digit_year(0) == 2000


def test_many_formats_appear(dat):
    text = " ".join(s for s, _ in dat.train[:2000])
    for piece in ("/", ".", ",", "sept", "th of", "Tue", "-"):
        assert piece in text or piece.lower() in text.lower()


def test_char_vocab(add):
    v = tasks.char_vocab(add)
    assert tuple(v.itos[:4]) == SPECIALS
    assert set(v.itos[4:]) == set("0123456789+")
    assert tasks.encode_chars("12+3", v) == [v.stoi[c] for c in "12+3"]


def test_unknown_task_and_bad_sizes():
    with pytest.raises(ValueError):
        tasks.load("subtraction")
    with pytest.raises(ValueError):
        tasks.addition(n=10, heldout=1.5)
