"""Shared fixtures: the real chitchat corpus, built once per session from its PyPI package."""

from pathlib import Path

import pytest

from rnnchat import corpora


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
