"""UI test fixtures: an engine on the small LM (tests/conftest.py), a fake sentiment classifier, sessions
in a temp dir."""

from dataclasses import dataclass

import pytest

from rnnchat.engine.sampling import SamplingSettings


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
