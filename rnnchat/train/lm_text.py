"""A language model of your own text files (char-rnn's core use): the data, sizes and samples of such a run.

`rnnchat train lm --text FILE [FILE ...] [--level char|word]` trains on the files' train parts, keeps the best
checkpoint by val loss and prints a sample after every validation, seeded and from a fixed priming text (the
start of the val split, or --prime), so the run can be watched learning. The split and the streams are
`rnnchat.data.text_files`'; the loop is the same `Trainer` as every other model's.

Sizes not given on the command line follow the text: a char model's width grows with the text (256 below
300k characters, 384 below 2M, 512 above; on this project's 2-core VM 1 MB of chat text gave samples of mostly
real words in 15 minutes at 384, ~7.8k characters/s, and 512 runs ~4.5k characters/s); small texts get fewer,
shorter streams so that every epoch has batches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rnnchat.data.text_files import TextCorpus, text_stream, text_vocab
from rnnchat.models.lm import LanguageModel, LMDecoder
from rnnchat.sampling import RowSampler, SamplingSettings, sample_rows, skip_ids
from rnnchat.text import Vocab

SAMPLE_SETTINGS = {"char": SamplingSettings(temperature=0.8, top_k=0, top_p=1.0, repeat_penalty=1.0,
                                            max_tokens=300, seed=0),
                   "word": SamplingSettings(temperature=0.8, max_tokens=60, seed=0)}
PRIME_CHARS = 40


def text_sizes(level: str, train_chars: int) -> dict:
    """Defaults for the sizes the command line leaves out, from the level and the train text's length."""
    hidden = 256 if train_chars < 300_000 else 384 if train_chars < 2_000_000 else 512
    if level == "char":
        sizes = {"vocab_size": 2_000, "bptt": 128, "dropout": 0.2 if train_chars >= 2_000_000 else 0.3}
    else:
        sizes = {"vocab_size": 10_000, "bptt": 35, "dropout": 0.3}
    return {**sizes, "hidden": hidden, "layers": 2, "batch_size": 32, "lr": 2e-3, "epochs": 10.0,
            "eval_every": 200}


def fit_streams(batch_size: int, bptt: int, tokens: int) -> tuple[int, int]:
    """(batch size, bptt) shrunk so that a stream of `tokens` holds at least two windows per stream."""
    batch_size = max(1, min(batch_size, (tokens - 1) // (2 * bptt)))
    bptt = max(8, min(bptt, (tokens - 1) // (2 * batch_size)))
    return batch_size, bptt


@dataclass
class TextData:
    vocab: Vocab
    train: np.ndarray
    val: np.ndarray
    prime: str


def load_text_data(corpus: TextCorpus, level: str, vocab_size: int, prime: str | None) -> TextData:
    """The vocabulary (from the train parts), train and val streams and the priming text of samples."""
    vocab = text_vocab(corpus.parts["train"], level, vocab_size)
    if prime is None:
        val = next(t for t in corpus.parts["val"] if t)
        prime = val[:PRIME_CHARS] if level == "char" else " ".join(val.split("\n", 1)[0].split()[:8])
    return TextData(vocab, text_stream(corpus.parts["train"], vocab), text_stream(corpus.parts["val"], vocab), prime)


def with_bits(metrics: dict, level: str) -> dict:
    """Char level: add bits per character (the loss in bits: every token is one character)."""
    return {**metrics, "bpc": metrics["loss"] / math.log(2)} if level == "char" else metrics


def sample(model: LanguageModel, vocab: Vocab, prime: str, settings: SamplingSettings | None = None) -> str:
    """A seeded continuation of `prime` from the start of a text (<eot>), as the model is now."""
    settings = settings or SAMPLE_SETTINGS[vocab.level]
    model.train(False)
    decoder = LMDecoder(model)
    logits, state = decoder.step(np.array([vocab.eot_id]), decoder.initial_state(1))
    ids = vocab.encode(prime)
    if ids:
        logits, state = decoder.prefill(np.array([ids]), state)
    sampler = RowSampler(settings, skip_ids(settings, vocab))
    sampler.observe(ids[-settings.repeat_last_n:] if settings.repeat_last_n else [])
    detok = vocab.detokenizer()  # primed, so the continuation is spaced as part of the prime
    for token in vocab.tokens(prime):
        detok.push(token)
    pieces = []
    for _ in range(settings.max_tokens):
        picked, _ = sample_rows(logits, [sampler])
        if picked[0] == vocab.eot_id:  # the end of a text
            break
        pieces.append(detok.push_generated(vocab.itos[picked[0]]))
        logits, state = decoder.step(picked, state)
    return "".join(pieces)


def format_sample(prime: str, text: str, width: int = 100) -> str:
    """The sample as the run prints it: the priming text, then the continuation, between two rules."""
    rule = "-" * width
    return f"{rule}\n{prime}{text}\n{rule}"

