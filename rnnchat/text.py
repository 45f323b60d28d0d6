"""Tokenizers (word and character level), vocabulary, (streaming) detokenizers and the one turn encoding.

``tokenize`` lowercases text into words (contractions kept whole), numbers,
punctuation, emoticons, emoji and URLs.  It is a pure function that never
raises on a ``str`` and runs in linear time (``ChunkTokenizer``: the same tokens for a text edited a little
at a time, memoised per whitespace-separated chunk).  ``detokenize`` and the streaming
``Detokenizer`` turn tokens back into readable, capitalised text.

A ``Vocab`` knows its level: ``"word"`` (``tokenize`` / ``Detokenizer``) or ``"char"`` (every character a
token, newlines and tabs kept, ``\r\n`` read as ``\n``; ``CharDetokenizer`` joins them as they are).

Turns: every model reads a conversation the same way, each message's tokens followed by ``<eom>`` and each
turn closed by ``<eot>`` (``turn_ids``, ``conversation_ids``, ``closing_ids``; ``source_ids`` for a seq2seq
encoder).
"""

from __future__ import annotations

import functools
import operator
import re
import unicodedata
from collections import Counter
from typing import Iterable, Sequence

PAD, UNK, EOM, EOT = "<pad>", "<unk>", "<eom>", "<eot>"
SPECIALS: tuple[str, ...] = (PAD, UNK, EOM, EOT)


def _mark_class() -> str:
    """Regex class of the Unicode combining marks (category M) below U+1F000.

    The only marks above are variation selectors, which ``tokenize`` removes.
    """
    ranges: list[list[int]] = []
    for cp in range(0x1F000):
        if unicodedata.category(chr(cp))[0] == "M":
            if ranges and ranges[-1][1] == cp - 1:
                ranges[-1][1] = cp
            else:
                ranges.append([cp, cp])
    return "[" + "".join(rf"\U{a:08x}-\U{b:08x}" for a, b in ranges) + "]"


# Control characters, lone surrogates and invisible separators become spaces;
# soft hyphens, bidi marks, word joiners, variation selectors and tag
# characters are removed.  ZWJ survives to glue emoji sequences together.
_SPACE_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b\u2028\u2029\ufeff\ud800-\udfff]+")
_INVISIBLE_RE = re.compile(
    r"[\u00ad\u200c\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f"
    r"\ufe00-\ufe0f\U000e0000-\U000e01ef]+"
)
_NORMALISE = str.maketrans(
    {"\u2018": "'", "\u2019": "'", "\u02bc": "'", "\u201c": '"', "\u201d": '"',
     "\u201e": '"', "\u2026": "..."}
)

# Letters/digits with any combining marks (Devanagari, decomposed accents...).
_WORD = rf"[^\W_]+(?:{_mark_class()}+[^\W_]*)*"
_EMOJI = r"[\u2300-\u23ff\u2600-\u27bf\u2b00-\u2bff\U0001f000-\U0001faff][\U0001f3fb-\U0001f3ff]*"
_URL_CHAR = r"[^\s<>\"'.,!?;:()\[\]{}]"
_TOKEN_RE = re.compile(
    r"(?=[^\s\u200d])(?:"  # the lookahead lets the regex engine skip whitespace fast
    + "|".join((
        rf"(?:https?://|www\.)(?:{_URL_CHAR}|[.,!?;:](?={_URL_CHAR}))+",  # URL
        r"\d+(?:[.,:]\d+)+",  # number with separators: 3.14, 1,000, 10:30
        rf"{_WORD}(?:'{_WORD})*",  # word or contraction: don't, o'clock, 42
        r"[:;=]'?-?[)(\]\[]|[:;]'?-?(?:[|*]|/(?!/)|[dpo](?!\w))|</?3(?!\d)",  # emoticon
        r"[\U0001f1e6-\U0001f1ff]{1,2}",  # flag (regional-indicator pair)
        rf"{_EMOJI}(?:\u200d{_EMOJI})*",  # emoji, with skin tones / ZWJ sequences
        r"\.{2,}|[!?]{2,}|-{2,}",  # punctuation runs: ..., ?!, --
        r"[^\s\u200d]",  # any other single character; stray ZWJs are skipped
    ))
    + ")"
)


def tokenize(text: str) -> list[str]:
    """Split ``text`` into lowercased tokens; never raises, linear time, pure."""
    text = _INVISIBLE_RE.sub("", _SPACE_RE.sub(" ", text))
    text = unicodedata.normalize("NFC", text).translate(_NORMALISE).lower()
    # Letter emoticons are canonicalised to upper case (":d" -> ":D").
    return [
        t.upper() if t[0] in ":;" and t[-1] in "dpo" else t
        for t in _TOKEN_RE.findall(text)
    ]


class ChunkTokenizer:
    """``tokenize`` for a text that changes a little at a time (the live classifier, once per keystroke): the
    same tokens, from each whitespace-separated chunk's tokens kept in a bounded memo. No token spans
    whitespace and no normalisation step looks across it, so a text's tokens are its chunks' tokens. Chunks
    longer than `longest` characters (text without spaces, a URL) are tokenized afresh each time: memoising
    every prefix of one being typed would keep memory quadratic in its length."""

    def __init__(self, limit: int = 50_000, longest: int = 64):
        self._memo: dict[str, list[str]] = {}
        self._limit, self._longest = limit, longest

    def __call__(self, text: str) -> list[str]:
        memo, out = self._memo, []
        for chunk in _SPACE_RE.sub(" ", text).split():
            tokens = memo.get(chunk)
            if tokens is None:
                tokens = tokenize(chunk)
                if len(chunk) <= self._longest:
                    if len(memo) >= self._limit:
                        memo.clear()
                    memo[chunk] = tokens
            out += tokens
        return out


_CLOSERS = frozenset(",.!?;:)]}%…")
_OPENERS = frozenset("([{$#@£€¿¡")
_TIGHT = frozenset("-/")  # joined on both sides: e-mail, and/or
_QUOTES = frozenset("\"'")
_SPECIAL_SET = frozenset(SPECIALS)
# a glued run of this many tokens gets a space before the next one: checking a run re-tokenizes it whole, so an
# unbounded one (a model stuck on ")))...") would cost quadratic time; a space never merges tokens
_LONGEST_RUN = 32


@functools.lru_cache(maxsize=4096)
def _token_reads(token: str) -> tuple[str, ...]:
    """`tokenize` of one token's text (memoised: a detokenizer asks it of every token it is given)."""
    return tuple(tokenize(token))


class Detokenizer:
    """Streaming detokenizer: ``push`` tokens one at a time and append the pieces.

    Joining the pieces returned for a token sequence equals ``detokenize`` of it, and ``tokenize`` of that text
    gives the tokens back (specials aside): a token glued to the one before gets a space after all where the
    two would read back as other tokens (":" ")" is not the emoticon ":)", "!" "!" not "!!"). Tokens never span
    whitespace, so checking the run of glued text since the last space is enough; a reply the memory holds
    then reads back as the same ids when a conversation is loaded, regenerated or primed from its text.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget all state, ready for a new text."""
        self._empty = True  # nothing emitted yet
        self._glue = False  # next token attaches without a space
        self._force_space = False  # previous token was a special token
        self._capitalise = True  # next word starts a sentence
        self._open_quotes: set[str] = set()
        self._run, self._run_tokens = "", ()  # the text since the last space, and the tokens it must read as

    def push_generated(self, token: str) -> str:
        """The text of a token a model generated: ``<eom>`` ends the line (and starts a new text), ``<eot>``
        shows nothing, any other token as ``push``."""
        if token == EOM:
            self.reset()
            return "\n"
        return "" if token == EOT else self.push(token)

    def push(self, token: str) -> str:
        """Return the text to append for ``token`` (leading space included)."""
        if not token:
            return ""
        if token in _SPECIAL_SET:
            piece = token if self._empty else " " + token
            self._empty, self._glue, self._force_space = False, False, True
            self._capitalise = True
            self._open_quotes.clear()
            self._run, self._run_tokens = "", ()
            return piece
        glue_before = token in _CLOSERS or not token.strip(".!?…") or token in _TIGHT
        glue_after = token in _OPENERS or token in _TIGHT
        if token in _QUOTES:
            closing = token in self._open_quotes
            self._open_quotes ^= {token}
            glue_before, glue_after = closing, not closing
        if token[0].isalnum():
            url = "://" in token or token.startswith("www.")
            if token == "i" or token.startswith("i'") or (
                self._capitalise and token[0].isalpha() and not url
            ):
                token = token[0].upper() + token[1:]
            self._capitalise = False
        elif not token.strip(".!?") and ".." not in token:
            self._capitalise = True  # sentence end: . ! ? !! ?!
        space = not self._empty and (self._force_space or not (self._glue or glue_before))
        own = _token_reads(token)
        if not space and self._run and (len(self._run_tokens) >= _LONGEST_RUN
                                        or tuple(tokenize(self._run + token)) != self._run_tokens + own):
            space = True
        if space or self._empty:
            self._run, self._run_tokens = token, own
        else:
            self._run, self._run_tokens = self._run + token, self._run_tokens + own
        self._empty, self._glue, self._force_space = False, glue_after, False
        return " " + token if space else token


class CharDetokenizer:
    """The character-level twin of ``Detokenizer``: each character is its own text; ``<unk>`` shows as U+FFFD,
    the other specials as nothing (``<eom>`` generated: a new line)."""

    def reset(self) -> None:
        pass

    def push_generated(self, token: str) -> str:
        return "\n" if token == EOM else self.push(token)

    def push(self, token: str) -> str:
        if token in _SPECIAL_SET:
            return "\ufffd" if token == UNK else ""
        return token


LEVELS = ("word", "char")
# Characters a char-level vocabulary may not hold (they read as <unk>): controls other than newline and tab,
# which a terminal could act on (escape sequences), line separators and lone surrogates.
_CHAR_REFUSED_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def char_tokens(text: str) -> list[str]:
    """Character-level tokens: every character, with \r\n and a lone \r read as \n."""
    return list(text.replace("\r\n", "\n").replace("\r", "\n"))


def detokenize(tokens: Iterable[str]) -> str:
    """Join tokens into readable text with natural spacing and capitalisation."""
    detok = Detokenizer()
    return "".join(detok.push(t) for t in tokens)


class Vocab:
    """Token <-> id mapping; ids 0..3 are always ``SPECIALS``; `level` says how text becomes tokens."""

    def __init__(self, itos: Sequence[str], level: str = "word") -> None:
        if level not in LEVELS:
            raise ValueError(f"vocab level must be one of {LEVELS}, got {level!r}")
        if not isinstance(itos, (list, tuple)):
            raise ValueError(f"vocab must be a list of strings, got {type(itos).__name__}")
        for i, tok in enumerate(itos):
            if not isinstance(tok, str) or not tok:
                raise ValueError(f"vocab entry {i} must be a non-empty string, got {tok!r}")
            if level == "char" and i >= len(SPECIALS):
                if len(tok) != 1:
                    raise ValueError(f"char vocab entry {i} must be one character, got {tok!r}")
                if _CHAR_REFUSED_RE.match(tok):
                    raise ValueError(f"char vocab entry {i} is a control or separator character: {tok!r}")
            elif _SPACE_RE.search(tok):  # tokenize never makes one: a terminal could act on it (escape sequences)
                raise ValueError(f"vocab entry {i} contains a control or separator character: {tok!r}")
        if tuple(itos[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(
                f"vocab must start with the special tokens {list(SPECIALS)}, "
                f"got {list(itos[: len(SPECIALS)])}"
            )
        self.level = level
        self.itos: list[str] = list(itos)
        self.stoi: dict[str, int] = {tok: i for i, tok in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            dup = next(t for t, n in Counter(self.itos).items() if n > 1)
            raise ValueError(f"vocab contains duplicate token {dup!r}")

    @classmethod
    def build(
        cls,
        token_lists: Iterable[Iterable[str]],
        max_size: int | None = 10000,
        min_count: int = 1,
    ) -> Vocab:
        """Build from training token lists: most frequent first, ties by token.

        ``max_size`` counts the specials (``None`` = unlimited); tokens seen fewer
        than ``min_count`` times are left out.
        """
        if max_size is not None and max_size < len(SPECIALS):
            raise ValueError(f"max_size must be at least {len(SPECIALS)}, got {max_size}")
        if min_count < 1:
            raise ValueError(f"min_count must be at least 1, got {min_count}")
        counts: Counter[str] = Counter()
        for tokens in token_lists:
            if isinstance(tokens, str):
                raise TypeError("token_lists must hold lists of tokens, not strings")
            counts.update(tokens)
        ranked = sorted(
            (t for t, n in counts.items() if n >= min_count and t and t not in _SPECIAL_SET),
            key=lambda t: (-counts[t], t),
        )
        if max_size is not None:
            ranked = ranked[: max_size - len(SPECIALS)]
        return cls([*SPECIALS, *ranked])

    @classmethod
    def build_chars(cls, texts: Iterable[str], max_size: int | None = None) -> Vocab:
        """A char-level vocabulary: every character of `texts` a terminal may show, most frequent first (ties
        by character), at most `max_size` entries with the specials; the rest read as <unk>."""
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(char_tokens(text))
        ranked = sorted((c for c in counts if not _CHAR_REFUSED_RE.match(c)), key=lambda c: (-counts[c], c))
        if max_size is not None:
            ranked = ranked[: max(max_size - len(SPECIALS), 0)]
        return cls([*SPECIALS, *ranked], level="char")

    @classmethod
    def from_list(cls, tokens: list[str], level: str = "word") -> Vocab:
        """Rebuild from ``to_list`` output (and the level); raises ValueError if it is malformed."""
        return cls(tokens, level)

    def to_list(self) -> list[str]:
        """The tokens in id order (JSON-serialisable)."""
        return list(self.itos)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: object) -> bool:
        return token in self.stoi

    @property
    def pad_id(self) -> int:
        return 0

    @property
    def unk_id(self) -> int:
        return 1

    @property
    def eom_id(self) -> int:
        return 2

    @property
    def eot_id(self) -> int:
        return 3

    @property
    def end_ids(self) -> tuple[int, int]:
        """The ends of a message and of a turn (<eom>, <eot>): what a chat reply may not open with, and what
        guidance leaves to the model."""
        return self.eom_id, self.eot_id

    def encode_tokens(self, tokens: Iterable[str]) -> list[int]:
        """Map tokens to ids; unknown tokens become ``unk_id``."""
        return [self.stoi.get(t, self.unk_id) for t in tokens]

    def tokens(self, text: str) -> list[str]:
        """``text`` as this vocabulary's tokens (words, or characters), before unknown ones are mapped."""
        return char_tokens(text) if self.level == "char" else tokenize(text)

    def detokenizer(self) -> Detokenizer | CharDetokenizer:
        """A fresh streaming detokenizer for this vocabulary's tokens."""
        return CharDetokenizer() if self.level == "char" else Detokenizer()

    def encode(self, text: str) -> list[int]:
        """Tokenize ``text`` and map it to ids."""
        return self.encode_tokens(self.tokens(text))

    def ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
        """Map ids (Python or NumPy ints) to tokens; raises ValueError if out of range."""
        out = []
        for i in ids:
            i = operator.index(i)
            if not 0 <= i < len(self.itos):
                raise ValueError(f"token id {i} out of range for vocab of size {len(self)}")
            out.append(self.itos[i])
        return out

    def decode(self, ids: Iterable[int], skip_special: bool = True) -> str:
        """Ids to readable text; specials dropped unless ``skip_special`` is False."""
        tokens = self.ids_to_tokens(ids)
        if skip_special:
            tokens = [t for t in tokens if t not in _SPECIAL_SET]
        detok = self.detokenizer()
        return "".join(detok.push(t) for t in tokens)

    def coverage(self, token_lists: Iterable[Iterable[str]]) -> float:
        """Fraction of tokens that are in the vocab (1.0 when there are none)."""
        total = known = 0
        for tokens in token_lists:
            for t in tokens:
                total += 1
                known += t in self.stoi
        return known / total if total else 1.0


# -- turns -----------------------------------------------------------------------------------------------------
def turn_ids(messages: Iterable[str], vocab: Vocab) -> list[int]:
    """A turn as ids, without its closing <eot>: each message's tokens followed by <eom>."""
    ids: list[int] = []
    for msg in messages:
        ids += vocab.encode(msg)
        ids.append(vocab.eom_id)
    return ids


def conversation_ids(turns: Iterable[Iterable[str]], vocab: Vocab) -> list[int]:
    """A conversation (turns of messages) as ids: message <eom> ... <eot> per turn."""
    ids: list[int] = []
    for turn in turns:
        ids += turn_ids(turn, vocab)
        ids.append(vocab.eot_id)
    return ids


def source_ids(turn: list[int], vocab: Vocab, max_src: int) -> list[int]:
    """A turn's ids as a seq2seq encoder input: its last max_src - 1 tokens, then <eot> (never empty)."""
    return (turn[-(max_src - 1):] if max_src > 1 else []) + [vocab.eot_id]


def closing_ids(last: int | None, vocab: Vocab) -> list[int]:
    """What closes the turn after token `last` (None: nothing yet) as a message and a turn: <eom> <eot>,
    only <eot> after an <eom>, nothing after an <eot>."""
    if last == vocab.eot_id:
        return []
    return [vocab.eot_id] if last == vocab.eom_id else [vocab.eom_id, vocab.eot_id]
