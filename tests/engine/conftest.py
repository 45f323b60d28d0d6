"""A small random-weight language model saved as a real checkpoint (the engine tests' model)."""

import pytest

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


@pytest.fixture
def engine(small_lm_path):
    from rnnchat.engine.engine import Engine
    return Engine(small_lm_path)
