"""Fuzz the tokenizer and the vocabulary directly (issue 8): hostile text never breaks them.

Examples: 5,000 texts through tokenize/encode/decode + 2,000 id sequences through decode and the streaming
detokenizer.
"""

from hypothesis import given
from hypothesis import strategies as st

from rnnchat.text import SPECIALS, ChunkTokenizer, Detokenizer, Vocab, detokenize, tokenize
from tests.conftest import WORDS
from tests.reliability.conftest import CONTROL
from tests.reliability.strategies import LONG_DENSE, LONG_SPARSE, fuzz_settings, hostile_text

SMALL = Vocab(list(SPECIALS) + WORDS)  # the vocabulary of the small test LM


def check_tokens(text: str, toks: list[str]) -> None:
    assert isinstance(toks, list)
    for t in toks:
        assert isinstance(t, str) and t, (text[:80], toks[:20])
        assert not any(ch.isspace() for ch in t), repr(t)
        assert not CONTROL.search(t), repr(t)
        assert not any("\ud800" <= ch <= "\udfff" for ch in t), repr(t)
        assert t == t.lower() or t[0] in ":;", repr(t)  # lowercased; letter emoticons are canonical upper case
        assert "\u200d" != t, repr(t)


def check_text_out(s: str) -> None:
    assert isinstance(s, str)
    s.encode("utf-8")
    assert not CONTROL.search(s), repr(s[:200])


@fuzz_settings(5_000)
@given(hostile_text(long_weight=60))
def test_tokenize_encode_decode_never_break(text):
    toks = tokenize(text)
    check_tokens(text, toks)
    ids = SMALL.encode(text)  # (tokenizes again: also checks that tokenize is pure)
    assert ids == SMALL.encode_tokens(toks) and len(ids) == len(toks)
    assert all(0 <= i < len(SMALL) for i in ids)
    check_text_out(SMALL.decode(ids))
    # A vocabulary built from the text itself knows every token of it (no <unk>), and decodes it readably.
    own = Vocab.build([toks], max_size=None)
    own_ids = own.encode_tokens(toks)
    assert own.unk_id not in own_ids
    check_text_out(own.decode(own_ids, skip_special=False))


# whitespace of every kind, what tokenize turns into spaces or removes, marks, final sigma, emoticon and URL parts
TRICKY = "aZ\u03a3\u03c3 \u039f\u0394\u00a0\u200b\u200d\u00ad\u0301\u2028\t\n\x85\u3000:;)(dDpP/3<.-,!?'\"htpsw\u00e91\u2026\ufe0f\U0001f600\U0001f3fb\U0001f1fa#@_\x00"


@fuzz_settings(3_000)
@given(st.one_of(hostile_text(long_weight=5), st.text(TRICKY, max_size=40)))
def test_chunk_tokenizer_gives_the_tokens_of_the_whole_text(text):
    """The live classifier tokenizes chunk by chunk (whitespace-separated, memoised): exactly tokenize's tokens."""
    chunked = ChunkTokenizer(limit=20, longest=8)
    assert chunked(text) == tokenize(text)
    assert chunked(text + " ok") == tokenize(text + " ok")  # again, from the memo


def test_chunk_tokenizer_does_not_memoise_long_chunks():
    """Typing a long run without spaces (CJK text, a URL) must not keep every prefix: memory stays flat."""
    chunked = ChunkTokenizer(longest=64)
    text = "这家餐厅的服务非常好" * 100
    for i in range(1, len(text) + 1, 7):
        assert chunked(text[:i] + " ok") == tokenize(text[:i] + " ok")
    assert len(chunked._memo) <= 64 // 7 + 2  # the short prefixes and "ok"


def test_long_lines_tokenize():
    """Every 100k-character line, dense (a token per character or two) or not, tokenizes cleanly."""
    for text in LONG_SPARSE + LONG_DENSE:
        toks = tokenize(text)
        check_tokens(text[:80], toks)
        ids = SMALL.encode(text)
        assert len(ids) == len(toks)
    assert len(tokenize(LONG_DENSE[0])) == 100_000  # one emoji, one token


@fuzz_settings(2_000)
@given(st.lists(st.integers(0, len(SMALL) - 1), max_size=200), st.booleans())
def test_decode_any_ids_and_stream_equals_batch(ids, skip_special):
    text = SMALL.decode(ids, skip_special=skip_special)
    check_text_out(text)
    toks = SMALL.ids_to_tokens(ids)
    detok = Detokenizer()
    assert "".join(detok.push(t) for t in toks) == detokenize(toks)
