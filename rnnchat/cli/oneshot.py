"""`rnnchat chat -p MESSAGE`: one reply printed to stdout, for scripts.

    rnnchat chat -p "hello"                        # a reply from a fresh memory; nothing is saved
    rnnchat chat -p "and you?" -c                  # continue the last (autosaved) conversation, save it back
    rnnchat chat -p "hi" --conversation script1    # continue (or start) a named one, save it
    echo "hello" | rnnchat chat -p - --json        # the message from stdin; {"reply", "mode", ...}

A script holds a conversation turn by turn with `-c` or `--conversation`; the reply is ranked and sampled
exactly as in the app (mode, candidates and sampling flags apply).
"""

from __future__ import annotations

import argparse
import json
import sys

from rnnchat.cli.commands import EXIT_USAGE, CommandError
from rnnchat.cli.generate import InputError, read_prompt
from rnnchat.sampling import SettingsError
from rnnchat.session.session import ChatSession
from rnnchat.session.store import LAST, NAME_RE, SessionError
from rnnchat.session.transcript import Mode


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("one reply from the shell")
    g.add_argument("-p", "--prompt", metavar="MESSAGE", default=None,
                   help="send MESSAGE ('-' reads stdin), print the reply and exit")
    g.add_argument("-c", "--continue", dest="continue_last", action="store_true",
                   help="with -p: continue the last conversation and save it back")
    g.add_argument("--conversation", metavar="NAME", default=None,
                   help="with -p: continue the saved conversation NAME (new if there is none) and save it")
    g.add_argument("--json", action="store_true", help="with -p: print the reply as a JSON object")


def check(args: argparse.Namespace) -> None:
    """Usage errors of the one-shot flags (before any model is loaded)."""
    if args.prompt is None:
        used = [f for f, on in (("-c", args.continue_last), ("--conversation", args.conversation),
                                ("--json", args.json)) if on]
        if used:
            raise CommandError(f"{', '.join(used)}: only with -p MESSAGE", EXIT_USAGE)
    elif args.continue_last and args.conversation:
        raise CommandError("-c continues the last conversation, --conversation a named one: give one", EXIT_USAGE)
    elif args.conversation == LAST:
        raise CommandError(f"--conversation {LAST} is the autosaved conversation: use -c", EXIT_USAGE)
    elif args.conversation is not None and not NAME_RE.fullmatch(args.conversation):  # (before any model loads)
        raise CommandError(f"--conversation {args.conversation!r}: a name of letters, digits, '_', '-' and '.'",
                           EXIT_USAGE)


def run(session: ChatSession, notes: list[str], args: argparse.Namespace) -> int:
    try:
        message = read_prompt(args.prompt).strip()
    except InputError as e:
        raise CommandError(str(e)) from None
    if not message:
        raise CommandError("the message is empty", EXIT_USAGE)
    if args.mode_given and session.mode.value != args.mode:  # a reply from a model it did not ask for misleads
        raise CommandError(f"--mode {args.mode}: {session.unavailable(Mode(args.mode))}")
    name = LAST if args.continue_last else args.conversation
    if name is not None and session.autosave_off:
        raise CommandError(f"another rnnchat is using {session.directory}: it would not be saved; try again "
                           f"when it is closed")
    session.autosave_off = name != LAST  # the app's autosave is the last conversation: only -c writes it
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    try:
        if name is not None and name != LAST and session.path(name).exists():
            session.load(name)
        reply = "".join(t.text for t in session.respond(message, mood=session.mood(message))).strip()
        if name is not None and name != LAST:
            session.save(name)
    except (SessionError, SettingsError, OSError) as e:
        raise CommandError(str(e)) from None
    stats = session.last_stats
    if stats is not None and stats.save_error:
        raise CommandError(stats.save_error)
    if args.json:
        user = session.transcript[-2] if len(session.transcript) > 1 else None
        print(json.dumps({"reply": reply, "mode": session.mode.value, "tokens": stats.tokens if stats else 0,
                          "sentiment": None if user is None or user.sentiment is None else user.sentiment.as_dict(),
                          "conversation": name}))
    else:
        print(reply)
    return 0
