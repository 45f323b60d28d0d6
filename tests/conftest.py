"""Shared fixtures: the real chitchat corpus (built once per session from its PyPI package), a small
random-weight language model saved as a real checkpoint, and for the session and UI tests an engine on it, a
small random-weight seq2seq chat model, a fake sentiment classifier and sessions in a temp dir."""

from dataclasses import dataclass
from pathlib import Path

import pytest

from rnnchat.data import corpora
from rnnchat.models.lm import LanguageModel, LMConfig, save_lm
from rnnchat.sampling import SamplingSettings
from rnnchat.text import SPECIALS, Vocab

WORDS = ("i you the a is are was it that what how do don't i'm hello hi there good bad great fine thanks "
         "yes no not really so very , . ! ? :) :( cat dog food movie love hate like think know").split()


@pytest.fixture(scope="session")
def chitchat_root(tmp_path_factory) -> Path:
    """A corpus root holding the built chitchat splits (the repo's build if present, else a fresh build)."""
    default = corpora.default_root()
    if (default / "chitchat" / "train.jsonl").exists():
        return default
    pytest.importorskip("chitchat_dataset", reason="pip install 'rnnchat[test]' provides chitchat-dataset")
    root = tmp_path_factory.mktemp("corpora")
    corpora.build("chitchat", root=root, progress=False)
    return root


@pytest.fixture(scope="session")
def small_lm_path(tmp_path_factory) -> Path:
    vocab = Vocab(list(SPECIALS) + WORDS)
    model = LanguageModel(LMConfig(vocab_size=len(vocab), hidden=24, layers=2, dropout=0.0), seed=5)
    for p in model.params.params:  # sharper distributions than the default init
        p *= 6
    path = tmp_path_factory.mktemp("ckpt") / "lm.npz"
    save_lm(model, vocab, path, {"note": "random weights for tests"}, float16=False)
    return path


@pytest.fixture(scope="session")
def engine(small_lm_path):
    from rnnchat.engine.engine import Engine
    return Engine(small_lm_path)


@pytest.fixture(scope="session")
def seq2seq_chat():
    """A Seq2SeqChat with random weights on the test LM's words (one-line replies)."""
    from rnnchat.models.seq2seq import Seq2Seq, Seq2SeqConfig
    from rnnchat.engine.seq2seq_chat import Seq2SeqChat
    from rnnchat.text import SPECIALS, Vocab
    vocab = Vocab(list(SPECIALS) + list(WORDS))
    model = Seq2Seq(Seq2SeqConfig(src_vocab=len(vocab), tgt_vocab=len(vocab), embed=12, hidden=16, proj=12,
                                  tie=True), seed=2)
    for p in model.params.params:  # sharper distributions and attention than the default init
        p *= 10
    model.out.params["b"][vocab.eom_id] -= 20.0  # one-line replies
    model.out.params["b"][vocab.eot_id] += 2.0
    model.train(False)
    return Seq2SeqChat(model, vocab, max_src=20)


@dataclass(frozen=True)
class FakeResult:
    label: str
    score: float


class FakeSentiment:
    """The sentiment protocol, for tests only: counts good and bad words; records every call."""

    GOOD, BAD = {"good", "great", "love", "like", "thanks", ":)"}, {"bad", "hate", "awful", ":("}

    def __init__(self):
        self.calls: list[str] = []

    def set_text(self, text: str) -> FakeResult:
        self.calls.append(text)
        return self.classify(text)

    def classify(self, text: str) -> FakeResult:
        words = text.lower().split()
        score = max(-1.0, min(1.0, 0.5 * (sum(w in self.GOOD for w in words) - sum(w in self.BAD for w in words))))
        return FakeResult("positive" if score > 0 else "negative" if score < 0 else "neutral", score)


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    path = tmp_path / "data"
    monkeypatch.setenv("RNNCHAT_DATA_DIR", str(path))
    return path


@pytest.fixture
def make_session(engine, seq2seq_chat, data_dir):
    """A factory of sessions on the small LM (and with seq2seq=True the small seq2seq chat model, in chat mode),
    seeded, with the fake sentiment (or none) and a fake clock."""
    from rnnchat.session.session import ChatSession
    from rnnchat.session.transcript import Mode

    def make(sentiment=True, seq2seq=False, **settings):
        ticks = iter(range(10**9))
        base = SamplingSettings(seed=3, max_tokens=12, temperature=1.0)
        return ChatSession(engine, FakeSentiment() if sentiment else None, settings=base.with_(**settings),
                           seq2seq=seq2seq_chat if seq2seq else None, mode=Mode.CHAT if seq2seq else Mode.LM,
                           clock=lambda: next(ticks) * 0.25)
    return make
