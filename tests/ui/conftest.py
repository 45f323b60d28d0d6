"""UI test fixtures: a small random-weight LM checkpoint, a fake sentiment classifier, sessions in a temp dir."""

from dataclasses import dataclass

import pytest

from rnnchat.engine.sampling import SamplingSettings
from rnnchat.models.lm import LanguageModel, LMConfig
from rnnchat.text import SPECIALS, Vocab
from rnnchat.train.lm import save_lm

WORDS = ("i you the a is are was it that what how do don't i'm hello hi there good bad great fine thanks "
         "yes no not really so very , . ! ? :) :( cat dog food movie love hate like think know").split()


@pytest.fixture(scope="session")
def small_lm_path(tmp_path_factory):
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
        words = text.lower().split()
        score = max(-1.0, min(1.0, 0.5 * (sum(w in self.GOOD for w in words) - sum(w in self.BAD for w in words))))
        return FakeResult("positive" if score > 0 else "negative" if score < 0 else "neutral", score)


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    path = tmp_path / "data"
    monkeypatch.setenv("RNNCHAT_DATA_DIR", str(path))
    return path


@pytest.fixture
def make_session(engine, data_dir):
    """A factory of sessions on the small LM, seeded, with the fake sentiment (or none) and a fake clock."""
    from rnnchat.chat_session import ChatSession

    def make(sentiment=True, **settings):
        ticks = iter(range(10**9))
        base = SamplingSettings(seed=3, max_tokens=12, temperature=1.0)
        return ChatSession(engine, FakeSentiment() if sentiment else None, settings=base.with_(**settings),
                           clock=lambda: next(ticks) * 0.25)
    return make
