"""Engine fixtures (the small random-weight LM checkpoint comes from tests/conftest.py)."""

import pytest


@pytest.fixture
def engine(small_lm_path):
    from rnnchat.engine.engine import Engine
    return Engine(small_lm_path)
