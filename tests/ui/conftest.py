"""UI test fixtures: an engine on the small LM (tests/conftest.py), a small random-weight seq2seq chat model, a
fake sentiment classifier, sessions in a temp dir."""

from dataclasses import dataclass

import pytest

from rnnchat.engine.sampling import SamplingSettings


@pytest.fixture(scope="session")
def engine(small_lm_path):
    from rnnchat.engine.engine import Engine
    return Engine(small_lm_path)


@pytest.fixture(scope="session")
def seq2seq_chat():
    """A Seq2SeqChat with random weights on the test LM's words (one-line replies)."""
    from rnnchat.models.seq2seq import Seq2Seq, Seq2SeqConfig
    from rnnchat.models.seq2seq_chat import Seq2SeqChat
    from rnnchat.text import SPECIALS, Vocab
    from tests.conftest import WORDS
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
    from rnnchat.chat_session import ChatSession
    from rnnchat.seq2seq_responder import Seq2SeqResponder

    def make(sentiment=True, seq2seq=False, **settings):
        ticks = iter(range(10**9))
        base = SamplingSettings(seed=3, max_tokens=12, temperature=1.0)
        return ChatSession(engine, FakeSentiment() if sentiment else None, settings=base.with_(**settings),
                           seq2seq=Seq2SeqResponder(seq2seq_chat) if seq2seq else None,
                           clock=lambda: next(ticks) * 0.25)
    return make
