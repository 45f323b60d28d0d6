"""`rnnchat chat` (the Textual app, the default command), `rnnchat repl` (prompt_toolkit) and `rnnchat chat -p`
(one reply, `rnnchat.cli.oneshot`): one session, its models, memory and settings."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rnnchat import paths
from rnnchat.cli import oneshot
from rnnchat.cli.flags import file_path
from rnnchat.cli.commands import (EXIT_USAGE, CommandError, add_sampling_flags, model_level, sampling_settings,
                                  user_config)


def run(args: argparse.Namespace) -> int:
    """`rnnchat chat` (Textual) and `rnnchat repl` (prompt_toolkit) on one session: models, memory, settings;
    `rnnchat chat --batch` replies to a file of conversations (`rnnchat.cli.batch`)."""
    from rnnchat.sampling import SettingsError
    from rnnchat.session.opening import open_session
    from rnnchat.session.store import SessionError
    oneshot.check(args)
    if any(getattr(args, k, None) is not None for k in ("batch", "out", "ray", "workers")):
        return _batch(args)
    restore = args.prompt is None or args.continue_last  # a one-shot reply without -c starts from nothing
    try:
        session, notes = open_session(args.checkpoint, args.sentiment,
                                      sampling_settings(args, model_level(args.checkpoint)), fresh=args.fresh,
                                      seq2seq_path=args.seq2seq, candidates=args.candidates,
                                      backward_path=args.backward, mode=args.mode, restore=restore)
    except SessionError as e:
        raise CommandError(str(e)) from None
    except SettingsError as e:
        raise CommandError(str(e), EXIT_USAGE) from None
    if args.prompt is not None:
        return oneshot.run(session, notes, args)
    if args.command == "repl":
        from rnnchat.ui.repl import run_repl
        return run_repl(session, notes)
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise CommandError("the chat app needs a terminal (stdin and stdout); for pipes and files use "
                           "`rnnchat repl < FILE`", EXIT_USAGE)
    from rnnchat.ui.tui.app import ChatApp
    from rnnchat.ui.tui.terminal_input import tolerate_bad_input_bytes
    tolerate_bad_input_bytes()
    app = ChatApp(session, notes)
    app.run()
    return app.return_code or 0  # an app that ended on an error (Textual's error screen) is not a success


def _batch(args: argparse.Namespace) -> int:
    from rnnchat.cli.batch import chat_batch, check_batch_arguments
    from rnnchat.cli.generate import InputError
    if args.prompt is not None:
        raise CommandError("-p and --batch: give one message or a file of conversations", EXIT_USAGE)
    try:
        check_batch_arguments(args)
        return 1 if chat_batch(args, sampling_settings(args, model_level(args.checkpoint))) else 0
    except InputError as e:
        raise CommandError(str(e), e.code) from None


def add_chat_arguments(p: argparse.ArgumentParser) -> None:
    """`rnnchat chat`: the session's flags, -p, and the batch mode's."""
    from rnnchat.cli.flags import add_batch_arguments
    add_arguments(p)
    add_batch_arguments(p, 'conversations file: one message per line, or .jsonl objects with a "conversation" '
                           '(turns, the user\'s first and last) and their own settings/"seed"/"id"/"mode"/'
                           '"candidates"')
    p.add_argument("-q", "--quiet", action="store_true", help="with --batch: no progress bar")


class _GivenMode(argparse.Action):
    """--mode, remembering that it was given: `chat -p` refuses a mode it cannot use only when asked for it (the
    configured default falls back to one that works, with a note, as in the app)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        namespace.mode, namespace.mode_given = values, True


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--model", "--checkpoint", dest="checkpoint", type=file_path, default=paths.lm_checkpoint(),
                   help="language-model checkpoint")
    p.add_argument("--sentiment", type=Path, default=None,
                   help="sentiment checkpoint (default: rnnchat/checkpoints/sentiment.npz; missing = no indicator)")
    p.add_argument("--seq2seq", type=Path, default=None,
                   help="seq2seq chat checkpoint (default: rnnchat/checkpoints/seq2seq_chat.npz; missing = no chat mode)")
    p.add_argument("--fresh", action="store_true", help="start a new conversation instead of the last one")
    config = user_config()
    p.add_argument("--candidates", type=int, default=config.candidates, metavar="N",
                   help="make N replies per message and show the best ranked one (1 = one sample, streamed)")
    p.add_argument("--mode", choices=("lm", "chat", "continue"), default=config.mode.value, action=_GivenMode,
                   help="start in this mode: lm (LM chat), chat (seq2seq chat), continue (extend the text)")
    p.set_defaults(mode_given=False)
    p.add_argument("--backward", type=Path, default=None,
                   help="backward scorer for the ranking (default: rnnchat/checkpoints/seq2seq_chat_backward.npz)")
    add_sampling_flags(p)
    oneshot.add_arguments(p)
