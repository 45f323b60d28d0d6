"""Your own text as a language-model corpus: files read strictly, split deterministically, streamed as ids.

Each file is read as UTF-8 (a byte-order mark dropped, \\r\\n and a lone \\r read as \\n) and refused with a
message naming it when it is not a regular file, empty, binary (a NUL byte) or not UTF-8. Each file is split
at line boundaries: its first 90% trains, the next 5% validates (best checkpoint, every choice), the last 5%
is the test split (reported, never tuned on). The vocabulary comes from the train parts only.

Streams: every file opens with `<eot>` (the start of a text, as a conversation's turn boundary is for the
chat LM). At char level each character is a token, newlines included; at word level each line is its words
followed by `<eom>`, which the detokenizer shows as a line break, so generated text keeps its lines.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnnchat.text import Vocab, tokenize

SPLITS = ("train", "val", "test")
CUTS = (0.90, 0.95)          # where val and test start, as fractions of each file
MIN_CHARS = 2_000            # all files together: less is too small to split and learn from
MAX_BYTES = 512 * 2 ** 20    # all files together (the token stream is held in memory as int32)


class TextFileError(ValueError):
    """A file that cannot be a corpus; the message names it and says why."""


@dataclass
class TextCorpus:
    """The files' texts cut into splits (`parts[split]` holds one string per file) and what the header records
    about each file (name, bytes, sha256; never the text)."""

    files: list[dict]
    parts: dict[str, list[str]]

    def info(self) -> dict:
        return {"name": "text", "files": self.files}

    def chars(self, split: str) -> int:
        return sum(len(t) for t in self.parts[split])


def read_text(path: Path) -> tuple[str, dict]:
    """(the text, its header entry) of one file; TextFileError when it is not a usable UTF-8 text."""
    path = Path(path)
    if not path.exists():
        raise TextFileError(f"{path}: no such file")
    if not path.is_file():
        raise TextFileError(f"{path}: not a regular file")
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise TextFileError(f"{path}: {size / 2 ** 20:,.0f} MiB is more than the {MAX_BYTES // 2 ** 20} MiB a "
                            f"run can hold; train on a part of it")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise TextFileError(f"{path}: cannot read it ({e.strerror or e})") from None
    if (nul := data.find(b"\0")) >= 0:
        raise TextFileError(f"{path}: a binary file (NUL byte at offset {nul}), not text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise TextFileError(f"{path}: not UTF-8 text (byte {e.start}: {data[e.start:e.start + 1]!r}); "
                            f"convert it first, e.g. iconv -f latin1 -t utf-8") from None
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise TextFileError(f"{path}: empty" + (" (only white space)" if text else ""))
    info = {"name": path.name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    return text, info


def split_text(text: str) -> list[str]:
    """A text cut at the line starts nearest after 90% and 95% of its length: [train, val, test]."""
    bounds = [0]
    for frac in CUTS:
        at = max(int(len(text) * frac), bounds[-1])
        newline = text.find("\n", at)
        bounds.append(len(text) if newline < 0 else newline + 1)
    bounds.append(len(text))
    return [text[a:b] for a, b in zip(bounds, bounds[1:])]


def load_texts(paths: list[Path]) -> TextCorpus:
    """Read, check and split the files (TextFileError for a bad one, or when all are too small together)."""
    if not paths:
        raise TextFileError("no text files given")
    names = [str(p) for p in paths]
    if len(set(names)) != len(names):
        raise TextFileError(f"a file is named twice: {next(n for n in names if names.count(n) > 1)}")
    files, parts = [], {s: [] for s in SPLITS}
    total = 0
    for path in paths:
        text, info = read_text(path)
        total += info["bytes"]
        if total > MAX_BYTES:
            raise TextFileError(f"the files together are more than the {MAX_BYTES // 2 ** 20} MiB a run can hold")
        files.append(info)
        for split, part in zip(SPLITS, split_text(text)):
            parts[split].append(part)
    corpus = TextCorpus(files, parts)
    chars = sum(corpus.chars(s) for s in SPLITS)
    if chars < MIN_CHARS or not corpus.chars("val"):
        raise TextFileError(f"{', '.join(names)}: {chars:,} characters is too small a text to learn from and "
                            f"validate on (at least {MIN_CHARS:,} needed)")
    return corpus


def text_vocab(texts: list[str], level: str, max_size: int) -> Vocab:
    """The vocabulary of the train texts: every character (char level) or the most frequent words."""
    if level == "char":
        return Vocab.build_chars(texts, max_size)
    return Vocab.build((tokenize(line) for t in texts for line in t.split("\n")), max_size=max_size)


def text_stream(texts: list[str], vocab: Vocab) -> np.ndarray:
    """The texts as one int32 stream: each opens with <eot>; word level: each line's words then <eom>."""
    out: list[int] = []
    for text in texts:
        if not text:
            continue
        out.append(vocab.eot_id)
        if vocab.level == "char":
            out += vocab.encode(text)
            continue
        lines = text.split("\n")
        if lines[-1] == "":
            lines.pop()  # the text's last line break
        for line in lines:
            out += vocab.encode(line)
            out.append(vocab.eom_id)
    return np.asarray(out, np.int32)
