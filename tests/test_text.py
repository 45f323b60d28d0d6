"""Tests for rnnchat.text: tokenizer, vocabulary and (streaming) detokenizer."""

import json
import random
import unicodedata

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnchat.text import (
    EOM,
    EOT,
    PAD,
    SPECIALS,
    UNK,
    Detokenizer,
    Vocab,
    detokenize,
    tokenize,
)

# Any code point at all, including control characters and lone surrogates.
ANY_CHAR = st.characters(exclude_categories=())
# Fragments that exercise the tricky regex branches.
FRAGMENTS = st.sampled_from([
    "'", "\u2019", ":", ";", "=", ")", "(", "-", "<", "3", "d", ".", "!", "?", " ",
    "http://", "www.", "don't", ":)", ":-D", "<3", "\u200d", "\ufe0f", "\u0301",
    "\U0001f44d", "\U0001f3fd", "\U0001f1ec", "\x00", "\ud800", "\u200b", "\u00ad",
    "\u0130", "\u03a3", "1,000", "...", "_",
])
ANY_TEXT = st.text(ANY_CHAR) | st.lists(ANY_CHAR | FRAGMENTS).map("".join)


def _is_control(ch: str) -> bool:
    return unicodedata.category(ch) in ("Cc", "Cs")


# ---------------------------------------------------------------- tokenize


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hello there! i'm fine, thanks. how are you?",
         ["hello", "there", "!", "i'm", "fine", ",", "thanks", ".", "how", "are", "you", "?"]),
        ("Don't you'll it's O'Clock", ["don't", "you'll", "it's", "o'clock"]),
        ("I\u2019m sure you\u2019ll", ["i'm", "sure", "you'll"]),
        ("'quoted' words'", ["'", "quoted", "'", "words", "'"]),
        ("at 10:30 it cost 3.14 or 1,000 (42)",
         ["at", "10:30", "it", "cost", "3.14", "or", "1,000", "(", "42", ")"]),
        ("the end.", ["the", "end", "."]),
        (":) :( :D ;) :-) <3 :P :'(", [":)", ":(", ":D", ";)", ":-)", "<3", ":P", ":'("]),
        ("great:) x<30 note:one", ["great", ":)", "x", "<", "30", "note", ":", "one"]),
        ("wait... what?! no!!", ["wait", "...", "what", "?!", "no", "!!"]),
        ("e-mail and/or -- so", ["e", "-", "mail", "and", "/", "or", "--", "so"]),
        ("\u201cHi\u201d\u2026", ['"', "hi", '"', "..."]),
        ("see https://example.com/a?b=1. ok", ["see", "https://example.com/a?b=1", ".", "ok"]),
        ("www.example.org, please", ["www.example.org", ",", "please"]),
        ("I \u2764\ufe0f it \U0001f44d\U0001f3fd\U0001f600\U0001f600",
         ["i", "\u2764", "it", "\U0001f44d\U0001f3fd", "\U0001f600", "\U0001f600"]),
        ("\U0001f468\u200d\U0001f469\u200d\U0001f467 \U0001f1ec\U0001f1e7",
         ["\U0001f468\u200d\U0001f469\u200d\U0001f467", "\U0001f1ec\U0001f1e7"]),
        ("snake_case", ["snake", "_", "case"]),
    ],
)
def test_tokenize_examples(text, expected):
    assert tokenize(text) == expected


@pytest.mark.parametrize("text", ["", " ", "\n\t\r  ", "\x00\x01\x7f", "\u200b\ufeff", "\ud800\udfff"])
def test_tokenize_blank_input(text):
    assert tokenize(text) == []


def test_control_characters_and_surrogates_act_as_whitespace():
    assert tokenize("a\x00b\x07c\x1bd\ud83de\u200bf\u0085g") == list("abcdefg")
    assert tokenize("exam\u00adple") == ["example"]  # soft hyphen is invisible


def test_mixed_scripts():
    assert tokenize("Привет мир, नमस्ते! café") == ["привет", "мир", ",", "नमस्ते", "!", "café"]
    # Decomposed accents are normalised to the composed form.
    assert tokenize("cafe\u0301") == ["caf\u00e9"]


def test_tokenize_is_pure():
    text = "Hello :D don't"
    assert tokenize(text) == tokenize(text) == ["hello", ":D", "don't"]
    assert text == "Hello :D don't"


@settings(max_examples=1500, deadline=None)
@given(ANY_TEXT)
def test_tokenize_never_raises_and_tokens_are_clean(text):
    tokens = tokenize(text)
    assert all(isinstance(t, str) and t for t in tokens)
    assert not any(ch.isspace() or _is_control(ch) for t in tokens for ch in t)
    # Tokens are stable: re-tokenizing them one by one gives them back.
    assert tokenize(" ".join(tokens)) == tokens


@settings(max_examples=300, deadline=None)
@given(ANY_TEXT)
def test_encode_never_raises(text):
    vocab = Vocab.build([tokenize("hello world , . !")])
    ids = vocab.encode(text)
    assert all(0 <= i < len(vocab) for i in ids)
    vocab.decode(ids)


def test_one_megabyte_line_tokenizes():
    rng = random.Random(0)
    pieces = ["hello", "don't", ":)", "\U0001f44d", "3.14", "...", "'", "\x00", "\ud800", "http://x.y"]
    text = " ".join(rng.choice(pieces) for _ in range(200_000))[:1_000_000]
    assert len(tokenize(text)) > 100_000
    assert tokenize("a" * 1_000_000) == ["a" * 1_000_000]


@pytest.mark.parametrize(
    "unit", ["'", "a'", "http://", "http://a" + "." * 50, "www.", ":", ":-", "1.", "</", "\u200d", "a\u0301", "!?"]
)
def test_pathological_inputs_complete(unit):
    text = unit * (200_000 // len(unit))
    assert isinstance(tokenize(text), list)


# --------------------------------------------------------------- detokenize


def test_detokenize_round_trip_example():
    text = "hello there! i'm fine, thanks. how are you?"
    assert detokenize(tokenize(text)) == "Hello there! I'm fine, thanks. How are you?"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("i think i'll go, i've said i'd", "I think I'll go, I've said I'd"),
        ("he said \"no way\" and left.", 'He said "no way" and left.'),
        ("it's (mostly) fine; ok: yes", "It's (mostly) fine; ok: yes"),
        ("great :) see you", "Great :) see you"),
        ("wow! :D see you", "Wow! :D See you"),
        ("really?! yes... maybe. ok", "Really?! Yes... maybe. Ok"),
        ("a well-known e-mail and/or 50%", "A well-known e-mail and/or 50%"),
        ("https://x.org is nice. www.y.org too", "https://x.org is nice. www.y.org too"),
        ("costs $5 at 10:30", "Costs $5 at 10:30"),
        ("'hi' she said", "'Hi' she said"),
    ],
)
def test_detokenize_examples(text, expected):
    assert detokenize(tokenize(text)) == expected


def test_detokenize_empty_and_specials():
    assert detokenize([]) == ""
    assert detokenize(["", "hi", ""]) == "Hi"
    assert detokenize(["hi", EOM, ",", "there", EOT]) == "Hi <eom> , There <eot>"


WORDS = ["hello", "you", "i", "i'm", "don't", "o'clock", "42", "3.14", "ok", "www.x.org", "\U0001f600"]
PUNCT = [",", ".", "!", "?", "?!", "...", ";", ":", "(", ")", '"', "'", "-", "/", "--", "$", ":)", ":D", "<3"]
TOKEN_SEQS = st.lists(st.sampled_from(WORDS + PUNCT + list(SPECIALS) + [""]), max_size=40)


@settings(max_examples=500, deadline=None)
@given(TOKEN_SEQS)
def test_streaming_detokenizer_matches_detokenize(tokens):
    detok = Detokenizer()
    pieces = [detok.push(t) for t in tokens]
    assert "".join(pieces) == detokenize(tokens)
    # Every prefix is final: later tokens never change earlier output.
    for k in range(len(tokens) + 1):
        assert "".join(pieces[:k]) == detokenize(tokens[:k])
    detok.reset()
    assert "".join(detok.push(t) for t in tokens) == detokenize(tokens)


# tokens that glue into others when written together: ":" ")" -> ":)", "!" "!" -> "!!", "?" "!" -> "?!", ...
GLUING = ["!!", "..", "=", "]", "[", ";", "-", "<", "3", "d", "p", "o", "www", ":P", ";)", "!?", "?!?"]


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.sampled_from(WORDS + PUNCT + GLUING), max_size=30))
def test_tokenize_inverts_detokenize(tokens):
    # what a model writes reads back as the same tokens (so a reply's text re-encodes to the ids it was drawn as)
    assert tokenize(detokenize(tokens)) == tokens


@pytest.mark.parametrize(("tokens", "text"), [
    ([":", ")", ".", "are", "a", "?"], ": ). Are a?"),   # not the emoticon ":)"
    (["wow", "!", "!"], "Wow! !"),                       # not the run "!!"
    (["why", "?", "!"], "Why? !"),
    (["ok", ":)", "."], "Ok :)."),                       # glued where that reads back the same
    (["e", "-", "mail"], "E-mail"),
])
def test_glued_tokens_that_would_read_back_as_others_get_a_space(tokens, text):
    assert detokenize(tokens) == text and tokenize(text) == tokens


def test_a_long_glued_run_is_broken_up_and_still_reads_back():
    # each glued token re-reads its run: a run is capped (32 tokens), or a model stuck on ")" costs quadratic time
    text = detokenize([")"] * 5000)
    assert tokenize(text) == [")"] * 5000 and text.count(" ") == 5000 // 32 - (5000 % 32 == 0)
    assert " " not in detokenize([")"] * 32) and detokenize(["a", "-"] * 20).count(" ") == 1


# -------------------------------------------------------------------- Vocab


def test_specials_have_fixed_ids():
    vocab = Vocab.build([])
    assert SPECIALS == (PAD, UNK, EOM, EOT) == ("<pad>", "<unk>", "<eom>", "<eot>")
    assert vocab.itos == list(SPECIALS) and len(vocab) == 4
    assert (vocab.pad_id, vocab.unk_id, vocab.eom_id, vocab.eot_id) == (0, 1, 2, 3)
    assert [vocab.stoi[s] for s in SPECIALS] == [0, 1, 2, 3]


def test_build_orders_by_frequency_then_token():
    vocab = Vocab.build([["b", "a", "c"], ["a", "b", "d", "b", PAD]])
    assert vocab.itos == [*SPECIALS, "b", "a", "c", "d"]
    assert vocab.stoi == {t: i for i, t in enumerate(vocab.itos)}


def test_build_limits():
    data = [["a"] * 3 + ["b"] * 2 + ["c", "d"]]
    assert Vocab.build(data, max_size=6).itos[4:] == ["a", "b"]
    assert Vocab.build(data, max_size=4).itos == list(SPECIALS)
    assert len(Vocab.build(data, max_size=None)) == 8
    assert Vocab.build(data, min_count=2).itos[4:] == ["a", "b"]
    assert Vocab.build(data, min_count=4).itos == list(SPECIALS)
    with pytest.raises(ValueError, match="max_size"):
        Vocab.build(data, max_size=3)
    with pytest.raises(ValueError, match="min_count"):
        Vocab.build(data, min_count=0)
    with pytest.raises(TypeError, match="not strings"):
        Vocab.build(["hello world"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.sampled_from("abcdefgh")), max_size=8), st.randoms(), st.integers(4, 10))
def test_build_is_deterministic(token_lists, rnd, max_size):
    shuffled = [rnd.sample(tokens, len(tokens)) for tokens in token_lists]
    rnd.shuffle(shuffled)
    assert Vocab.build(shuffled, max_size).itos == Vocab.build(token_lists, max_size).itos


def test_encode_decode():
    vocab = Vocab.build([tokenize("hello there! i'm fine, thanks.")])
    ids = vocab.encode("Hello zebra!")
    assert ids == [vocab.stoi["hello"], vocab.unk_id, vocab.stoi["!"]]
    assert vocab.encode_tokens(["fine", "nope"]) == [vocab.stoi["fine"], vocab.unk_id]
    assert vocab.decode(ids) == "Hello!"
    assert vocab.decode(ids, skip_special=False) == "Hello <unk> !"
    full = [vocab.eom_id, *vocab.encode("i'm fine."), vocab.eot_id, vocab.pad_id]
    assert vocab.decode(full) == "I'm fine."
    assert vocab.decode(full, skip_special=False) == "<eom> I'm fine. <eot> <pad>"
    assert vocab.decode(np.array(ids)) == "Hello!"
    assert vocab.ids_to_tokens([np.int64(4), 0]) == [vocab.itos[4], PAD]
    assert "hello" in vocab and "zebra" not in vocab


@pytest.mark.parametrize("bad_id", [-1, 99, 1.5])
def test_ids_to_tokens_rejects_bad_ids(bad_id):
    vocab = Vocab.build([["a"]])
    with pytest.raises((ValueError, TypeError)):
        vocab.ids_to_tokens([bad_id])


def test_to_list_from_list_round_trip():
    vocab = Vocab.build([tokenize("a b b c :) \U0001f600")])
    saved = json.loads(json.dumps(vocab.to_list()))
    restored = Vocab.from_list(saved)
    assert restored.itos == vocab.itos and restored.stoi == vocab.stoi
    vocab.to_list().append("mutated")
    assert len(vocab) == len(restored)


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        ("<pad><unk>", "must be a list"),
        ({"<pad>": 0}, "must be a list"),
        (None, "must be a list"),
        ([], "must start with the special tokens"),
        ([UNK, PAD, EOM, EOT], "must start with the special tokens"),
        ([*SPECIALS[:3], "a"], "must start with the special tokens"),
        ([*SPECIALS, ""], "entry 4 must be a non-empty string"),
        ([*SPECIALS, 7], "entry 4 must be a non-empty string"),
        ([*SPECIALS, "a", "b", "a"], "duplicate token 'a'"),
        ([*SPECIALS, PAD], "duplicate token '<pad>'"),
    ],
)
def test_from_list_validation(tokens, message):
    with pytest.raises(ValueError, match=message):
        Vocab.from_list(tokens)


def test_coverage():
    vocab = Vocab.build([["a", "b"]])
    assert vocab.coverage([["a", "b", "z"], ["a"]]) == pytest.approx(0.75)
    assert vocab.coverage([]) == 1.0
