"""Shared fixtures: the real chitchat corpus (built once per session from its PyPI package) and a small
random-weight language model saved as a real checkpoint."""

from pathlib import Path

import pytest

from rnnchat import corpora
from rnnchat.models.lm import LanguageModel, LMConfig
from rnnchat.text import SPECIALS, Vocab
from rnnchat.train.lm import save_lm

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
