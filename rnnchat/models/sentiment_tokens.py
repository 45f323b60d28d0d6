"""What the sentiment classifier reads for each token: a vocabulary id and, with subwords, its character n-grams.

`TokenReader(vocab, buckets)` gives every token an id (training, evaluation and the live path alike):

* a word of the vocabulary is its id;
* an elongated word the vocabulary lacks ("soooo", "yesss") reads as its form with every run of a letter cut
  to two, else to one ("soo", "so"; "yess", "yes");
* any other token is <unk> (id 1) without subwords. With subwords (`buckets` > 0) it gets an id of its own,
  len(vocab) and up, the first time it is seen: a *form*, read as the <unk> vector plus its n-grams, so a word
  never seen in training still reads as what its spelling shares with the words that were ("shattered" with
  "shatter", "scattered"; "#briansdailythanks" with "thanks"). Form ids are not stored anywhere: a new reader
  numbers them afresh, and the numbers carry no weights.

`bags(ids)` gives each id's subwords as `EmbeddingBag` input: fastText's recipe, the token wrapped in < and >
and its character 3-, 4- and 5-grams, each hashed (CRC-32 of its UTF-8, the same in every process) into
`buckets` rows; an emoji's are those of its Unicode name's words (`subwords`). A word's vector is its own row plus
the mean of its n-gram rows; special tokens have none.
"""

from __future__ import annotations

import re
import threading
import unicodedata
import zlib
from collections.abc import Sequence

import numpy as np

from rnnchat.text import SPECIALS, Vocab, tokenize

NGRAM_SIZES = (3, 4, 5)
FORMS_LIMIT = 1_000_000  # unseen tokens given ids by one reader (~120 B each); later ones read as bare <unk>
FORM_BAGS_KEPT = 4096    # forms whose n-gram rows are kept (the words being typed), the others made again
LONGEST = 64             # a longer token (a URL, a pasted run of letters) reads as the n-grams of its first 64

_ELONGATED = re.compile(r"(.)\1{2,}")
# an emoji sequence: pictographs (So) with skin-tone modifiers (Sk), variation marks (Mn) and joiners (Cf)
_PICTOGRAPH_PARTS = frozenset({"So", "Sk", "Mn", "Cf"})


def char_ngrams(token: str) -> list[str]:
    """fastText's subwords of a token: the character n-grams (n in NGRAM_SIZES) of "<token>"."""
    w = f"<{token}>"
    return [w[i:i + n] for n in NGRAM_SIZES for i in range(len(w) - n + 1)]


def subwords(token: str) -> list[str]:
    """A token's n-grams: `char_ngrams`, with two exceptions. A pictograph (a character of Unicode category So: an
    emoji, a symbol; or a sequence of them with skin tones and joiners, "👍🏽", "👨‍👩‍👧") reads as the n-grams of the
    words of its pictographs' Unicode names: the training text has almost none, so "😞"
    (DISAPPOINTED FACE) would otherwise be rows no sentence ever trained; as "disappointed" and "face" it carries
    what those words' n-grams learnt. A token longer than LONGEST characters reads by its start, so time and memory
    stay bounded however long a token is pasted."""
    if len(token) <= 16 and all(unicodedata.category(c) in _PICTOGRAPH_PARTS for c in token):
        names = [unicodedata.name(c, "") for c in token if unicodedata.category(c) == "So"]
        words = " ".join(names).lower().replace("-", " ").split()
        if words:
            return [g for word in words for g in char_ngrams(word)]
    return char_ngrams(token[:LONGEST])


def ngram_buckets(token: str, buckets: int) -> np.ndarray:
    """The hashed rows of a token's n-grams (`subwords`; int64, possibly repeated)."""
    return np.array([zlib.crc32(g.encode("utf-8")) % buckets for g in subwords(token)], np.int64)


class TokenReader:
    """Tokens -> the classifier's ids, and ids -> their subword rows (see the module docstring)."""

    def __init__(self, vocab: Vocab, buckets: int = 0):
        if buckets < 0:
            raise ValueError(f"subword buckets must be >= 0, got {buckets}")
        self.vocab, self.buckets, self.size = vocab, buckets, len(vocab)
        self._forms: dict[str, int] = {}  # an unseen token -> its id (size + k)
        self._form_tokens: list[str] = []
        self._new_form = threading.Lock()  # the app reads typing on one thread and replies on another
        self._bags: dict[int, np.ndarray] = {}  # a vocabulary id -> its n-gram rows, made on first use
        self._form_bags: dict[int, np.ndarray] = {}  # the same for recent forms (a word being typed), bounded

    def token_id(self, token: str) -> int:
        stoi = self.vocab.stoi
        i = stoi.get(token)
        if i is None and _ELONGATED.search(token):
            i = stoi.get(_ELONGATED.sub(r"\1\1", token)) or stoi.get(_ELONGATED.sub(r"\1", token))
        if i is not None:
            return i
        if not self.buckets:
            return self.vocab.unk_id
        i = self._forms.get(token)
        if i is None:
            with self._new_form:
                i = self._forms.get(token)
                if i is None:
                    if len(self._form_tokens) >= FORMS_LIMIT:
                        return self.vocab.unk_id
                    self._form_tokens.append(token)
                    i = self._forms[token] = self.size + len(self._form_tokens) - 1
        return i

    def text_ids(self, text: str) -> list[int]:
        return [self.token_id(t) for t in tokenize(text)]

    def words(self, ids: np.ndarray) -> np.ndarray:
        """The vocabulary ids behind `ids`: a form is <unk>."""
        return np.where(ids >= self.size, self.vocab.unk_id, ids) if self.buckets else ids

    def token(self, i: int) -> str:
        return self.vocab.itos[i] if i < self.size else self._form_tokens[i - self.size]

    def distinct_bags(self, ids: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(where, offsets, rows): `bags` of the distinct ids of `ids` (any shape), each found once, and which of
        them each position of `ids` holds (flat). The batch, a live run and stacked members all compose this way."""
        distinct, where = np.unique(np.asarray(ids, np.int64), return_inverse=True)
        return (where.ravel(), *self.bags(distinct))

    def bags(self, ids: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(offsets (N + 1,), rows (K,)): id j's n-gram rows are rows[offsets[j]:offsets[j + 1]]."""
        parts = []
        for i in np.asarray(ids, np.int64).tolist():
            memo = self._bags if i < self.size else self._form_bags
            rows = memo.get(i)
            if rows is None:
                token = self.token(i)
                rows = np.zeros(0, np.int64) if token in SPECIALS else ngram_buckets(token, self.buckets)
                if memo is self._form_bags and len(memo) >= FORM_BAGS_KEPT:
                    memo.clear()  # forms keep ~120 B each; only the recent ones keep their rows
                memo[i] = rows
            parts.append(rows)
        offsets = np.zeros(len(parts) + 1, np.int64)
        np.cumsum([len(p) for p in parts], out=offsets[1:])
        return offsets, (np.concatenate(parts) if parts else np.zeros(0, np.int64))
