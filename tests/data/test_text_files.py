"""Text files as a corpus: strict reading (clear errors naming the file), the 90/5/5 split at line starts, the
char- and word-level streams, and the char-level vocabulary and detokenizer."""

import numpy as np
import pytest

from rnnchat.data.text_files import MIN_CHARS, TextFileError, load_texts, read_text, split_text, text_stream, text_vocab
from rnnchat.text import EOM, EOT, SPECIALS, CharDetokenizer, Vocab, char_tokens

LINES = "".join(f"line {i}: the quick brown fox {i * 7 % 13} jumps\n" for i in range(200))


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"  \n\t\n", "only white space"),
    (b"abc\x00def", "binary file (NUL byte at offset 3)"),
    (b"caf\xe9 au lait", "not UTF-8 text (byte 3"),
])
def test_bad_files_are_refused_naming_the_file(tmp_path, data, message):
    path = tmp_path / "bad.txt"
    path.write_bytes(data)
    with pytest.raises(TextFileError, match="bad.txt") as e:
        read_text(path)
    assert message in str(e.value)


def test_missing_directory_small_and_repeated_files_are_refused(tmp_path):
    with pytest.raises(TextFileError, match="no such file"):
        read_text(tmp_path / "nope.txt")
    with pytest.raises(TextFileError, match="not a regular file"):
        read_text(tmp_path)
    small = tmp_path / "small.txt"
    small.write_text("hello\n" * 10)
    with pytest.raises(TextFileError, match=f"too small.*{MIN_CHARS:,}"):
        load_texts([small])
    with pytest.raises(TextFileError, match="named twice"):
        load_texts([small, small])
    with pytest.raises(TextFileError, match="no text files"):
        load_texts([])


def test_reading_drops_the_bom_and_reads_crlf_as_newlines(tmp_path):
    path = tmp_path / "dos.txt"
    path.write_bytes(b"\xef\xbb\xbfone\r\ntwo\rthree\n")
    text, info = read_text(path)
    assert text == "one\ntwo\nthree\n"
    assert info["name"] == "dos.txt" and info["bytes"] == 18 and len(info["sha256"]) == 64
    assert "text" not in info  # the header describes a file, it never holds it


def test_split_is_90_5_5_at_line_starts_and_loses_nothing():
    train, val, test = split_text(LINES)
    assert train + val + test == LINES
    assert train.endswith("\n") and val.endswith("\n")
    assert 0.89 < len(train) / len(LINES) < 0.91 and 0.04 < len(val) / len(LINES) < 0.06
    assert split_text("x" * 1000) == ["x" * 1000, "", ""]  # one line: nothing to cut at
    assert split_text(LINES) == [train, val, test]  # deterministic


def test_char_stream_round_trips_every_character(tmp_path):
    (tmp_path / "a.txt").write_text("tab\there – ünïcode 🙂\n" + LINES)
    corpus = load_texts([tmp_path / "a.txt"])
    vocab = text_vocab(corpus.parts["train"], "char", 2000)
    assert vocab.level == "char" and "\n" in vocab and "\t" in vocab
    ids = text_stream(corpus.parts["train"], vocab)
    assert ids[0] == vocab.eot_id and ids.dtype == np.int32
    assert vocab.decode(ids[1:]) == corpus.parts["train"][0]


def test_word_stream_ends_each_line_with_eom_and_shows_it_as_a_line_break():
    vocab = text_vocab(["the cat\nthe dog\n"], "word", 100)
    ids = text_stream(["the cat\nthe dog\n"], vocab)
    assert vocab.ids_to_tokens(ids) == [EOT, "the", "cat", EOM, "the", "dog", EOM]
    detok = vocab.detokenizer()
    assert "".join(detok.push_generated(t) for t in vocab.ids_to_tokens(ids[1:])) == "The cat\nThe dog\n"


def test_char_vocab_keeps_what_a_terminal_can_show_and_refuses_the_rest():
    vocab = Vocab.build_chars(["ab\x1b[31mc\r\nd\x00"])
    assert "\x1b" not in vocab and "\x00" not in vocab and "\r" not in vocab
    assert vocab.encode("\x1b") == [vocab.unk_id]
    assert char_tokens("a\r\nb\rc") == ["a", "\n", "b", "\n", "c"]
    assert Vocab.build_chars(["abbccc"]).itos[4:] == ["c", "b", "a"]  # most frequent first
    with pytest.raises(ValueError, match="one character"):
        Vocab([*SPECIALS, "ab"], level="char")
    with pytest.raises(ValueError, match="control"):
        Vocab([*SPECIALS, "\x1b"], level="char")
    with pytest.raises(ValueError, match="level"):
        Vocab([*SPECIALS, "a"], level="byte")
    assert Vocab.from_list(vocab.to_list(), "char").encode("abc") == vocab.encode("abc")
    assert len(Vocab.build_chars(["abcdef"], max_size=6)) == 6


def test_char_detokenizer_joins_characters_as_they_are():
    detok = CharDetokenizer()
    assert "".join(detok.push(t) for t in ["d", "e", "f", " ", "<unk>", "\n", "<eot>"]) == "def \ufffd\n"
    assert detok.push_generated(EOM) == "\n" and detok.push_generated(EOT) == ""
