"""`rnnchat export`: a saved conversation's transcript as Markdown, plain text or JSON.

    rnnchat export                      # the last conversation, Markdown, to stdout
    rnnchat export greeting -o chat.txt # a saved one, plain text (the format follows the suffix)
    rnnchat export --format json        # speakers, modes, times and sentiment as JSON
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rnnchat import paths
from rnnchat.cli.commands import CommandError
from rnnchat.session.export import FORMATS, format_for, read_transcript, render, write_export
from rnnchat.session.store import LAST, SessionError, Store


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = __doc__.split("\n\n")[0]
    p.add_argument("name", nargs="?", default=LAST, help="a saved conversation (default: the last one, autosaved)")
    p.add_argument("--format", "-f", choices=FORMATS, default=None,
                   help="md, txt or json (default: from the -o suffix, else md)")
    p.add_argument("-o", "--out", default=None,
                   help="write to FILE (atomically) instead of stdout ('-': stdout; ./- names a file)")
    p.add_argument("--force", action="store_true", help="replace FILE if it exists (never an .npz file)")


def run(args: argparse.Namespace) -> int:
    store = Store(paths.data_dir())
    try:
        turns = read_transcript(store, args.name)
    except SessionError as e:
        raise CommandError(str(e)) from None
    args.out = None if args.out in (None, "-") else Path(args.out)
    fmt = format_for(args.out, args.format)
    title = "rnnchat conversation" + ("" if args.name == LAST else f" {args.name!r}")
    if args.out is None:
        print(render(turns, fmt, title), end="")
        return 0
    try:
        write_export(turns, args.out, fmt, title, replace=args.force)
    except SessionError as e:
        raise CommandError(str(e)) from None
    except OSError as e:  # the atomic write's own messages name the file already
        why = e.strerror or str(e)
        raise CommandError(why if str(args.out) in why else f"cannot write {args.out}: {why}") from None
    print(f"exported {len(turns)} message(s) to {args.out}", file=sys.stderr)
    return 0
