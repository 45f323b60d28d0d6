"""Fuzz `rnnchat generate` in-process through `rnnchat.cli.main` (issue 8).

Contract checked on every input: no exception escapes main (SystemExit only with 0/1/2), a failure is a
non-zero exit with an `rnnchat: error:` message on stderr and nothing on stdout, and stdout carries only text.

Examples: 1,500 prompts as arguments (with sampling flags, valid and not), 1,500 standard inputs as raw bytes
(invalid UTF-8 included), 500 batch files (plain and JSONL, up to 20 lines each, malformed lines included).
`rnnchat sentiment` is not fuzzed: it is still "not implemented yet (issue 6)".
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import shutil

from hypothesis import assume, given
from hypothesis import strategies as st

from rnnchat.checkpoint import read_header
from rnnchat.text import Vocab
from tests.reliability.conftest import CONTROL, assert_clear_failure, assert_text_only
from tests.reliability.strategies import (LONG_DENSE, fuzz_settings, hostile_text, jsonl_line, plain_line_text,
                                          stdin_bytes, utf8)

_counter = itertools.count()


@functools.lru_cache(maxsize=None)
def small_vocab(path) -> Vocab:
    return Vocab(read_header(path)["vocab"])


def check_generate_output(r, prompt: str | None, as_json: bool, samples: int, vocab: Vocab) -> None:
    assert r.code == 0, r.err[-500:]
    assert_text_only(r.out)
    if not as_json:
        assert r.out.count("\n") >= samples and r.out.endswith("\n")
        return
    rows = [json.loads(line) for line in r.out.splitlines()]
    assert len(rows) == samples
    for row in rows:
        if prompt is not None:
            assert row["prompt"] == prompt
        assert 0 <= len(row["tokens"]) <= 2 and all(t in vocab for t in row["tokens"])
        assert not CONTROL.search(row["text"].replace("\n", ""))
        assert all(0 <= p <= 1 for p in row["probs"])


# -- prompts as arguments, with sampling flags ---------------------------------------------------------------------
# (flag, value, valid). A negative seed and "#" + a non-ASCII digit are usage errors: test_regressions.py.
FLAG = st.sampled_from([
    ("--temperature", "0", True), ("--temp", "1.5", True), ("--temperature", "-1", False),
    ("--temperature", "nan", False), ("--temperature", "inf", False), ("--top-k", "1", True),
    ("--top-k", "100000", True), ("--top-k", "-1", False), ("--top-p", "0.3", True), ("--top-p", "0", False),
    ("--top-p", "1.5", False), ("--top-p", "nan", False), ("--repeat-penalty", "1.5", True),
    ("--repeat-penalty", "0", False), ("--repeat-last-n", "0", True), ("--repeat-last-n", "-2", False),
    ("--skip", "the", True), ("--skip", "#4", True), ("--skip", "#100000", False), ("--skip", "zebra", False),
    ("--skip", "two words", False), ("--skip", "", False), ("--stop", ".", True), ("--stop", "\x00", True),
    ("--stop", "", False), ("--num-samples", "2", True), ("--num-samples", "0", False), ("--top-k", "x", False),
    ("--seed", "123456789012345678901234567890", True), ("--json", None, True),
])
STOP_OR_SKIP = st.tuples(st.sampled_from(["--stop", "--skip"]), hostile_text(long_weight=0))


@fuzz_settings(1_500)
@given(prompt=hostile_text(long_weight=80), dashdash=st.booleans(), seed=st.integers(0, 2**70),
       flags=st.lists(FLAG, max_size=3), free=st.lists(STOP_OR_SKIP, max_size=1))
def test_generate_prompt_argument(cli, small_lm_path, prompt, dashdash, seed, flags, free):
    argv = ["generate", "--checkpoint", str(small_lm_path), "-n", "2", "-s", str(seed)]
    valid, as_json, samples = True, False, 1
    for flag, value, ok in flags:
        argv += [flag] if value is None else [flag, value]
        valid &= ok
        as_json |= flag == "--json"
        samples = int(value) if flag == "--num-samples" else samples
    for flag, value in free:
        argv += [f"{flag}={value}"]  # (= keeps a value starting with '-' a value)
        valid = False if flag == "--skip" else valid and value != ""
    if dashdash:
        argv += ["--", prompt]
    else:  # the prompt may parse as options ("-n9999999", "--num-samples=…"): the trailing ones win
        argv += [prompt, "-n", "2", "--num-samples", str(samples)]
    r = cli(argv)
    if any("\ud800" <= ch <= "\udfff" for arg in argv for ch in arg):  # argv bytes that are not UTF-8
        assert_clear_failure(r)
        assert r.code == 2 and "not valid UTF-8" in r.err
        return
    if r.code != 0:
        assert_clear_failure(r)
        # with '--', any prompt text that is UTF-8 is valid input: only a bad flag may fail
        assert not (valid and dashdash), (argv[-1][:80], r.err[:300])
        return
    shown = None if prompt == "-" or not dashdash else prompt
    check_generate_output(r, shown, as_json, samples, small_vocab(small_lm_path))


def test_generate_dense_100k_character_prompts(cli, small_lm_path):
    """A prompt of 100k tokens (one emoji each) streams like any other (fed in bounded chunks)."""
    prompt = LONG_DENSE[0]
    r = cli(["generate", "--checkpoint", str(small_lm_path), "-n", "2", "-s", "1", "--json", "--", prompt])
    check_generate_output(r, prompt, True, 1, small_vocab(small_lm_path))
    assert json.loads(r.out)["timing"]["prompt_tokens"] == 100_000


# -- standard input as raw bytes ----------------------------------------------------------------------------------
@fuzz_settings(1_500)
@given(data=stdin_bytes, explicit=st.booleans(), as_json=st.booleans(), seed=st.integers(0, 2**32))
def test_generate_stdin_bytes(cli, small_lm_path, data, explicit, as_json, seed):
    argv = ["generate", "--checkpoint", str(small_lm_path), "-n", "2", "-s", str(seed)]
    argv += ["-"] if explicit else []  # no prompt and a non-tty stdin: read stdin too
    argv += ["--json"] if as_json else []
    r = cli(argv, stdin=data)
    try:
        text = data.decode("utf-8-sig")  # a leading byte-order mark is not part of the prompt
    except UnicodeDecodeError:
        assert_clear_failure(r)
        assert r.code == 1 and "standard input is not valid UTF-8" in r.err
        return
    check_generate_output(r, text[:-1] if text.endswith("\n") else text, as_json, 1, small_vocab(small_lm_path))


# -- batch files --------------------------------------------------------------------------------------------------
@st.composite
def batch_file(draw):
    """(name, bytes, expected ids in order or None if the file is not UTF-8, bad line numbers)."""
    jsonl = draw(st.booleans())
    if jsonl:
        items = draw(st.lists(jsonl_line, min_size=1, max_size=20))
    else:
        items = [(line, None if not line.strip() else True) for line in
                 draw(st.lists(plain_line_text, min_size=1, max_size=20))]
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    text = eol.join(line for line, _ in items) + (eol if draw(st.booleans()) else "")
    assume(not text.startswith("\ufeff"))  # (a leading byte-order mark is stripped: tests/engine/test_batch.py covers it)
    data = utf8(text)
    if draw(st.integers(0, 9)) == 3:  # one file in ten holds an invalid byte somewhere
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xb2\x80", b"\x80\x80"])) + data[at:]
        try:  # (each of these bytes is invalid wherever it lands, so the expectations below stay exact)
            data.decode("utf-8")
            raise AssertionError("damaged file still decodes")
        except UnicodeDecodeError:
            pass
    ids, bad = [], []
    for n, (line, ok) in enumerate(items, start=1):
        if ok and jsonl:
            obj = json.loads(line)
            ids.append(str(obj["id"]) if "id" in obj else str(n))
        elif ok:
            ids.append(str(n))
        elif ok is False:
            bad.append(n)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        ids = None
    return ("prompts.jsonl" if jsonl else "prompts.txt"), data, ids, bad


@fuzz_settings(500)
@given(spec=batch_file(), rerun=st.booleans(), seed=st.integers(0, 2**32))
def test_generate_batch_files(cli, small_lm_path, tmp_path, spec, rerun, seed):
    name, data, ids, bad = spec
    work = tmp_path / str(next(_counter))
    work.mkdir()
    try:
        src, out = work / name, work / "out" / "results.jsonl"
        src.write_bytes(data)
        argv = ["generate", "--batch", str(src), "--out", str(out), "--checkpoint", str(small_lm_path),
                "-n", "2", "-q", "-s", str(seed), "--batch-size", "7"]
        r = cli(argv)
        assert r.out == ""
        if ids is None:
            assert_clear_failure(r)
            assert r.code == 1 and "not valid UTF-8" in r.err and not out.exists()
            return
        if len(set(ids)) < len(ids):  # two prompts with one id: refused whole (issue 20), nothing written
            assert_clear_failure(r)
            assert r.code == 1 and "needs its own id" in r.err and not out.exists()
            return
        if not ids and not bad:  # only blank lines: nothing to run is an error, nothing written
            assert_clear_failure(r)
            assert r.code == 1 and "no prompts in it" in r.err and not out.exists()
            return
        assert r.code == (1 if bad else 0), r.err[-500:]
        assert [line.split(": skipped: ")[0] for line in r.err.splitlines()] == [f"{src}:{n}" for n in bad]
        written = out.read_text(encoding="utf-8")
        rows = [json.loads(line) for line in written.splitlines()]
        assert [row["id"] for row in rows] == ids  # each job exactly once, in input order
        for row in rows:
            assert len(row["token_ids"]) == len(row["tokens"]) == len(row["probs"]) <= row["settings"]["max_tokens"]
            assert not CONTROL.search(row["text"].replace("\n", ""))
            assert all(math.isfinite(p) and 0 <= p <= 1 for p in row["probs"])
        if rerun:  # resume: nothing is written twice
            again = cli(argv)
            assert again.code == r.code and again.out == ""
            assert out.read_text(encoding="utf-8") == written
            assert ("resuming:" in again.err) == bool(ids)
    finally:
        shutil.rmtree(work)
