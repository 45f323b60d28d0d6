"""`rnnchat paths`: where the models, conversations, history, exports, config and corpora live.

    rnnchat paths          # one "what: path" line each (missing ones marked)
    rnnchat paths --json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rnnchat import paths
from rnnchat.session.config import config_path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true")


def locations() -> dict[str, str]:
    data = paths.data_dir()
    return {"models": str(paths.checkpoints_dir()), "language model": str(paths.lm_checkpoint()),
            "data": str(data), "conversations": str(data / "conversations"),
            "last conversation": str(data / "last.npz"), "repl history": str(data / "repl_history"),
            "exports": str(data / "exports"), "config": str(config_path()),
            "corpus builds": str(paths.corpora_build_dir())}


def run(args: argparse.Namespace) -> int:
    where = locations()
    if args.json:
        print(json.dumps(where))
        return 0
    width = max(map(len, where))
    for what, path in where.items():
        print(f"{what + ':':<{width + 1}} {path}" + ("" if Path(path).exists() else "  (not there yet)"))
    return 0
