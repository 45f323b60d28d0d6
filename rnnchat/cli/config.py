"""`rnnchat config`: where the config file is, and the settings in force (the file's, else the defaults).

    rnnchat config           # the path and the values, as TOML
    rnnchat config --init    # write a commented file with the defaults (never over an existing one)
    rnnchat config --json
"""

from __future__ import annotations

import argparse
import json

from rnnchat.cli.commands import EXIT_USAGE, CommandError, user_config
from rnnchat.session.config import ConfigError, config_path, toml_value, write_default_config


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--init", action="store_true", help="write a config file holding the defaults")
    p.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    path = config_path()
    if args.init:
        try:
            write_default_config(path)
        except ConfigError as e:
            raise CommandError(str(e), EXIT_USAGE) from None
        except OSError as e:  # (the atomic write's own message names the file already)
            why = e.strerror or str(e)
            raise CommandError(why if str(path) in why else f"cannot write {path}: {why}") from None
        print(f"wrote {path}")
        return 0
    config = user_config()
    if args.json:
        print(json.dumps({"path": str(path), "exists": config.path is not None, **config.as_dict()}))
        return 0
    print(f"# {path}" + ("" if config.path else " (no file: the built-in defaults; `rnnchat config --init` writes one)"))
    for section, values in config.as_dict().items():
        print(f"\n[{section}]")
        for key, value in values.items():
            print(f"{key} = {toml_value(value)}" if value is not None else f"# {key} = (not set)")
    return 0
