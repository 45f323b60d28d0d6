"""Every default location in one place: shipped checkpoints, corpus manifests and builds, user data.

The shipped checkpoints are package data (`rnnchat/checkpoints/`), so a wheel or `pip install .` carries them
and they are found from any directory. Overrides: `RNNCHAT_CHECKPOINTS` (the models directory),
`RNNCHAT_CORPORA` (the corpus build directory), `RNNCHAT_DATA_DIR` (conversations and the REPL history; default:
the user data directory of `platformdirs`), `RNNCHAT_CONFIG` (the config file).
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

PACKAGE = Path(__file__).resolve().parent     # the installed package (its data: the shipped checkpoints)
ROOT = PACKAGE.parent                          # the source tree, in a clone (training tools and corpora)
MANIFESTS = ROOT / "corpora"                   # corpus manifests (committed); builds go under build/


def checkpoints_dir() -> Path:
    return Path(os.environ.get("RNNCHAT_CHECKPOINTS") or PACKAGE / "checkpoints")


def lm_checkpoint() -> Path:
    return checkpoints_dir() / "lm.npz"


def sentiment_checkpoint() -> Path:
    return checkpoints_dir() / "sentiment.npz"


def seq2seq_checkpoint(task: str) -> Path:
    """The seq2seq model of a task: addition, dates, chat, chat_backward."""
    return checkpoints_dir() / f"seq2seq_{task}.npz"


def reply_judge_checkpoint() -> Path:
    return checkpoints_dir() / "reply_judge.npz"


def corpora_build_dir() -> Path:
    return Path(os.environ.get("RNNCHAT_CORPORA") or MANIFESTS / "build")


def data_dir() -> Path:
    """Conversations and the REPL history: $RNNCHAT_DATA_DIR, else the user's data directory."""
    env = os.environ.get("RNNCHAT_DATA_DIR")
    if env:
        return Path(env)
    return Path(platformdirs.user_data_dir("rnnchat"))
