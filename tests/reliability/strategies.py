"""Hypothesis strategies for hostile text: empty, whitespace, emoji, mixed scripts, controls, NUL, surrogates,
100k-character lines, invalid UTF-8 bytes, malformed JSONL."""

from __future__ import annotations

import json
import os
import zlib

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# Deterministic by default (CI must not turn red at random); RNNCHAT_FUZZ_EXPLORE=1 draws fresh inputs, and
# RNNCHAT_FUZZ_SCALE multiplies every example count (e.g. 0.1 for a quick run, 10 for a long local hunt).
EXPLORE = os.environ.get("RNNCHAT_FUZZ_EXPLORE") == "1"
SCALE = float(os.environ.get("RNNCHAT_FUZZ_SCALE", "1"))


def fuzz_settings(n: int) -> settings:
    return settings(max_examples=max(1, round(n * SCALE)), deadline=None, derandomize=not EXPLORE, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large, HealthCheck.large_base_example])


PIECES = (
    "", " ", "  ", "\t", "\n", "\r\n", "\r", "\x00", "\x00\x00", "\x07", "\x1b[31m", "\x1b]0;title\x07", "\x7f",
    "\x85", "\x9b", "\u00a0", "\u2028", "\u2029", "\u200b", "\u200c", "\u200d", "\u200e", "\u202e", "\u2060",
    "\ufeff", "\ufe0f", "\ufffd", "\uffff", "\U000e0041", "\U0010ffff", "\ud800", "\udcff", "\udfff\ud800",
    "😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷", "🇫", "❤️", "☺", "🤖🤖🤖", "e\u0301", "\u0301", "\u0301" * 40,
    "नमस्ते", "مرحبا بالعالم", "שָׁלוֹם", "你好，世界", "こんにちは", "안녕하세요", "Привет, мир", "ไทย", "Ελληνικά",
    "ǅemal", "ß", "ﬁ", "İstanbul", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "Ｆｕｌｌｗｉｄｔｈ", "١٢٣", "½", "²",
    ":)", ":-D", ";p", "</3", "<3", "...", "?!", "!!!", "--", "—", "‘quoted’", "“dq”", "…", "'", '"',
    "don't", "i'm", "o'clock", "1,000.50", "10:30", "3.14.15", "http://example.com/a?b=c&d=e.", "www.x.y",
    "<eot>", "<eom>", "<unk>", "<pad>", "#3", "-", "--help", "-n", "\\", "\\u0000", "{}", "[]", "null",
    "hello", "there", "the cat", "i love the dog", "HELLO THERE", "How are you?",
)

# 100k-character lines. All of them are cheap to feed through the model (few tokens); the dense ones (one
# token every character) are in LONG_DENSE and used by a few deterministic tests only.
LONG = 100_000
LONG_SPARSE = (
    "a" * LONG, " " * LONG, "\x00" * LONG, "\t \u200b\ufeff" * (LONG // 4), "é" * LONG, "e\u0301" * (LONG // 2),
    "http://x.y/" + "p" * (LONG - 11), ("Приветhelloмир你好" * LONG)[:LONG], "\u200d" * LONG, "\ufe0f" * LONG,
    ("hello " * LONG)[:LONG][:2000] + "x" * (LONG - 2000),
)
LONG_DENSE = ("😀" * LONG, ("hi " * LONG)[:LONG], "!?" * (LONG // 2), "\ud800x" * (LONG // 2))

_fragment = st.one_of(
    st.sampled_from(PIECES),
    st.text(max_size=12),
    st.text(st.characters(categories=["Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"]), max_size=6),
    st.text(st.characters(categories=["So", "Sk", "Mn", "Me", "Lo"]), max_size=6),
    st.text(st.characters(max_codepoint=0x7f), max_size=12),
)


def _combine(args) -> str:
    gate, weight, parts, long_line, where = args
    # hypothesis draws edge values (0, 1, max) far more often than 1/n: hash the draw to get about 1/weight
    if zlib.crc32(gate.to_bytes(8, "little")) % weight == 0:
        parts = parts[:where] + [long_line] + parts[where:]
    return "".join(parts)


def hostile_text(long_weight: int = 40, drop: str = "") -> st.SearchStrategy[str]:
    """Mostly short mixes of fragments; about one draw in `long_weight` (0 = never) holds a 100k-character
    line. Characters in `drop` are removed."""
    parts = st.lists(_fragment, max_size=8)
    if long_weight:
        text = st.tuples(st.integers(0, 2**63), st.just(long_weight), parts, st.sampled_from(LONG_SPARSE),
                         st.integers(0, 8)).map(_combine)
    else:
        text = parts.map("".join)
    if drop:
        table = str.maketrans(dict.fromkeys(drop))
        text = text.map(lambda t: t.translate(table))
    return text


def utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # lone surrogates become invalid UTF-8 (CESU) bytes


_BAD_UTF8 = (b"\xff", b"\xfe", b"\xc0\xaf", b"\xe2\x82", b"\xed\xa0\x80", b"\xf8\x88\x80\x80", b"\x80",
             b"\xf4\x90\x80\x80", b"\xc3")


def _stdin(args) -> bytes:
    kind, binary, text, bad, where = args
    if kind == "binary":
        return binary
    if kind == "bom":
        return b"\xef\xbb\xbf" + utf8(text)
    if kind == "latin1":
        return text.encode("latin-1", "replace")
    data = utf8(text)
    if kind == "damaged":
        at = len(data) * where // 1000
        data = data[:at] + bad + data[at:]
    return data


# Bytes for a fake stdin: valid UTF-8 text, raw binary, text with a BOM, Latin-1, or text damaged by invalid
# sequences.
stdin_bytes = st.tuples(st.sampled_from(["text", "text", "binary", "damaged", "bom", "latin1"]),
                        st.binary(max_size=64), hostile_text(long_weight=60), st.sampled_from(_BAD_UTF8),
                        st.integers(0, 1000)).map(_stdin)


# -- batch files --------------------------------------------------------------------------------------------------
# Characters str.splitlines() treats as line ends besides \n and \r\n (see test_known_bugs.py): left out of the
# batch fuzz so the expected prompt count is unambiguous (one prompt per \n-terminated line).
EXTRA_LINE_ENDS = frozenset("\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


LINE_ENDS = "\n" + "".join(sorted(EXTRA_LINE_ENDS))
SURROGATES = "".join(map(chr, range(0xD800, 0xE000)))
line_text = hostile_text(long_weight=400, drop=LINE_ENDS)                     # JSON-escaped prompts
plain_line_text = hostile_text(long_weight=400, drop=LINE_ENDS + SURROGATES)  # raw lines of a .txt / junk
junk_text = hostile_text(long_weight=0, drop=LINE_ENDS + SURROGATES)

_good_settings = st.fixed_dictionaries({}, optional={
    "temperature": st.sampled_from([0, 0.0, 0.5, 1, 1.7]),
    "top_k": st.integers(0, 60),
    "top_p": st.sampled_from([1, 1.0, 0.5, 0.01]),
    "repeat_penalty": st.sampled_from([1.0, 1.3, 0.5]),
    "repeat_last_n": st.integers(0, 80),
    "max_tokens": st.integers(0, 3),
    "seed": st.integers(0, 2**64),
    "stop": st.one_of(st.sampled_from([".", "!"]), st.lists(st.sampled_from([".", "the", "\udcff", "😀"]),
                                                            max_size=2)),
    "skip": st.lists(st.sampled_from(["the", "#5", "cat", "you"]), max_size=2),
    "ban_unk": st.booleans(),
})

# Lines the product reports as "skipped" (and keeps going). Values of the wrong *type* that crash today are in
# test_known_bugs.py, not here.
_bad_settings = st.sampled_from([
    {"temperature": -1}, {"temperature": None}, {"temperature": "hot"}, {"temperature": float("nan")},
    {"top_k": -3}, {"top_p": 0}, {"top_p": 7}, {"top_p": "x"}, {"repeat_penalty": 0},
    {"repeat_penalty": float("inf")}, {"repeat_last_n": -1}, {"max_tokens": -5}, {"stop": [""]},
    {"colour": "red"}, {"Temperature": 1},
])


_BLANKS = ("", " ", "\t", "  \t ")
_NOT_OBJECTS = (lambda p: [p], lambda p: p, lambda p: 3, lambda p: None, lambda p: True, lambda p: [],
                lambda p: 1.5)
_NO_PROMPT = (lambda p: {"text": p}, lambda p: {"prompt": 3}, lambda p: {"prompt": [p]},
              lambda p: {"prompt": {"text": p}}, lambda p: {"prompt": True}, lambda p: {"prompt": None})


def _jsonl(args) -> tuple[str, bool | None]:
    """(line, ok): ok lines are jobs, False ones must be reported and skipped, None ones (blank) ignored."""
    kind, prompt, junk, pick, good, bad, job_id, ascii_only, cut = args
    if kind == "blank":
        return _BLANKS[pick % len(_BLANKS)], None
    if kind == "junk":
        if not junk.strip():
            return junk, None
        try:
            obj = json.loads(junk)
        except (ValueError, RecursionError):
            obj = None
        if isinstance(obj, dict) and isinstance(obj.get("prompt"), str):
            return "[]", False  # junk that happens to be a valid job is not junk
        return junk, False
    if kind == "not_object":
        return json.dumps(_NOT_OBJECTS[pick % len(_NOT_OBJECTS)](prompt)), False
    if kind == "no_prompt":
        return json.dumps(_NO_PROMPT[pick % len(_NO_PROMPT)](prompt)), False
    obj = {"prompt": prompt, **(bad if kind == "bad_setting" else good)}
    if job_id is not None:
        obj["id"] = job_id
    line = json.dumps(obj, ensure_ascii=ascii_only)
    if any("\ud800" <= ch <= "\udfff" for ch in line):  # keep the file valid UTF-8: escape lone surrogates
        line = json.dumps(obj)
    if kind == "truncated":  # a JSON object without its closing brace is never valid
        line = line[: (len(line) - 1) * cut // 1000]
        return line, (None if not line.strip() else False)
    return line, kind == "good"


jsonl_line = st.tuples(
    st.sampled_from(["good", "good", "good", "bad_setting", "not_object", "no_prompt", "junk", "truncated",
                     "blank"]),
    line_text, junk_text, st.integers(0, 99), _good_settings, _bad_settings,
    st.one_of(st.none(), st.text(max_size=8), st.integers(-5, 10**20), st.sampled_from(["1", "2", 2])),
    st.booleans(), st.integers(0, 1000)).map(_jsonl)
