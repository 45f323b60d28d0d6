"""The `rnnchat` command: the subcommand tree and dispatch.

Start-up stays light: the parser knows every subcommand's name and help, but builds the flags (and imports the
modules behind them) only for the subcommand being run; `rnnchat --help` imports no model or training code.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from dataclasses import dataclass

from rnnchat import __version__, runtime

EXIT_USAGE = 2


@dataclass(frozen=True)
class Command:
    help: str
    flags: str           # "module:function" adding the subcommand's flags
    run: str             # "module:function" running it
    description: str = ""


_C, _F = "rnnchat.cli.commands", "rnnchat.cli.flags"
COMMANDS: dict[tuple[str, ...], Command] = {
    ("chat",): Command("Textual chat app (default); -p MESSAGE: one reply; --batch FILE: replies to a file",
                       "rnnchat.cli.ui:add_chat_arguments", "rnnchat.cli.ui:run"),
    ("repl",): Command("line REPL (prompt_toolkit)", "rnnchat.cli.ui:add_arguments", "rnnchat.cli.ui:run"),
    ("generate",): Command("continue a prompt (streams to stdout); batch mode to JSONL",
                           f"{_F}:add_generate_arguments", f"{_C}:cmd_generate",
                           "Continue PROMPT with the language model. stdout carries only the text; status goes to "
                           "stderr. '-' or a pipe reads the prompt from stdin."),
    ("sentiment",): Command("label and score text (negative/neutral/positive, -1..1)",
                            f"{_F}:add_sentiment_arguments", f"{_C}:cmd_sentiment"),
    ("export",): Command("a saved conversation's transcript as Markdown, text or JSON",
                         "rnnchat.cli.export:add_arguments", "rnnchat.cli.export:run"),
    ("paths",): Command("where models, conversations, history, exports and config live",
                        "rnnchat.cli.paths:add_arguments", "rnnchat.cli.paths:run"),
    ("config",): Command("where the config file is and the settings in force", "rnnchat.cli.config:add_arguments",
                         "rnnchat.cli.config:run"),
    ("info",): Command("print a checkpoint's header", f"{_F}:add_info_arguments", f"{_C}:cmd_info"),
    ("corpus", "build"): Command("build corpora from their PyPI packages into corpora/build",
                                 f"{_F}:add_corpus_build_arguments", f"{_C}:cmd_corpus_build"),
    ("corpus", "stats"): Command("sizes, vocabulary coverage and split counts", f"{_F}:add_corpus_stats_arguments",
                                 f"{_C}:cmd_corpus_stats"),
    ("train", "lm"): Command("the LSTM language model (resumable; Ctrl+C saves)", f"{_F}:add_train_lm_arguments",
                             f"{_C}:cmd_train_lm"),
    ("train", "seq2seq"): Command("seq2seq: addition, dates, the chat model or its backward scorer (resumable)",
                                  "rnnchat.train.seq2seq:add_train_arguments", f"{_C}:cmd_train_seq2seq"),
    ("train", "sentiment"): Command("the sentiment classifier (resumable)",
                                    "rnnchat.train.sentiment_flags:add_train_arguments", f"{_C}:cmd_train_sentiment"),
    ("train", "sentiment-ensemble"): Command("one sentiment checkpoint averaging trained members",
                                             "rnnchat.train.sentiment_ensemble:add_ensemble_arguments",
                                             f"{_C}:cmd_train_sentiment_ensemble"),
    ("train", "reply-judge"): Command("the reply judge: P(sensible), P(specific) learnt from judged pools and rounds",
                                      "rnnchat.session.judge_training:add_train_arguments",
                                      f"{_C}:cmd_train_reply_judge"),
    ("train", "plot"): Command("plot a run's training curve in the terminal", f"{_F}:add_train_plot_arguments",
                               f"{_C}:cmd_train_plot"),
    ("eval", "lm"): Command("language-model perplexity", f"{_F}:add_eval_lm_arguments", f"{_C}:cmd_eval_lm"),
    ("eval", "seq2seq"): Command("exact match (addition, dates) or chat perplexity/distinct-n",
                                 "rnnchat.train.seq2seq:add_eval_arguments", f"{_C}:cmd_eval_seq2seq"),
    ("eval", "chat"): Command("rank the true next turn among 20 (hits@1) with the LM, chat and backward models; "
                              "metrics of a session's sampled replies",
                              "rnnchat.cli.chat_eval:add_arguments", "rnnchat.cli.chat_eval:run"),
    ("eval", "sentiment"): Command("accuracy and macro-F1 per domain, optionally against VADER",
                                   "rnnchat.train.sentiment_eval:add_eval_arguments", f"{_C}:cmd_eval_sentiment"),
}
GROUPS = {"corpus": "build and inspect the training corpora", "train": "train a model", "eval": "evaluate a model"}
GROUP_METAVARS = {"corpus": "ACTION", "train": "MODEL", "eval": "MODEL"}


def _load(ref: str):
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def _chosen(argv: list[str]) -> tuple[str, ...] | None:
    """The subcommand path named by argv (its first words), if any."""
    words = [a for a in argv if not a.startswith("-")][:2]
    for path in COMMANDS:
        if tuple(words[: len(path)]) == path:
            return path
    return None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; with argv, only the subcommand argv names gets its flags (None: every subcommand does)."""
    chosen = None if argv is None else _chosen(argv)
    p = argparse.ArgumentParser(prog="rnnchat", description="Offline RNN chat and text generation (NumPy).")
    p.add_argument("--version", action="version", version=f"rnnchat {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction] = {}
    for path, cmd in COMMANDS.items():
        parent = sub
        if len(path) == 2:
            if path[0] not in groups:
                group = sub.add_parser(path[0], help=GROUPS[path[0]])
                groups[path[0]] = group.add_subparsers(dest=f"{path[0]}_command", metavar=GROUP_METAVARS[path[0]],
                                                       required=True)
            parent = groups[path[0]]
        leaf = parent.add_parser(path[-1], help=cmd.help, description=cmd.description or cmd.help)
        if argv is None or path == chosen:
            _load(cmd.flags)(leaf)
            leaf.set_defaults(func=cmd.run, usage_parser=leaf)
    return p


def parse(argv: list[str]) -> argparse.Namespace:
    """argv parsed; an unknown flag is reported with the usage of the subcommand it was given to (argparse's
    own parse_args shows the top level's, `rnnchat [-h] [--version] COMMAND ...`, which does not help)."""
    parser = build_parser(argv)
    args, extra = parser.parse_known_args(argv)
    if extra:
        getattr(args, "usage_parser", parser).error(f"unrecognized arguments: {' '.join(extra)}")
    return args


TOP_FLAGS = ("--help", "--version")  # the top level's own flags; every other flag is chat's


def _may_ask_for_help(argv: list[str]) -> bool:
    """-h, --help or an abbreviation (--hel), or a cluster of short flags holding h (-qh), before any '--'."""
    flags = argv[:argv.index("--")] if "--" in argv else argv
    return any((a.startswith("--") and len(a) > 2 and "--help".startswith(a))
               or (a.startswith("-") and not a.startswith("--") and "h" in a[1:]) for a in flags)


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(sys.argv[1:] if argv is None else argv)
    except KeyboardInterrupt:  # Ctrl+C anywhere, start-up (imports, model loading) included: no traceback
        print("rnnchat: interrupted", file=sys.stderr)
        return 130


def _main(argv: list[str]) -> int:
    first = argv[0] if argv else ""
    top = first == "-h" or (len(first) > 2 and any(f.startswith(first) for f in TOP_FLAGS))  # (--hel, --vers too)
    if not argv or (first.startswith("-") and not top):
        argv = ["chat", *argv]  # `rnnchat [chat flags]` is `rnnchat chat [chat flags]`
    runtime.configure()
    for arg in argv:  # bytes that are not UTF-8 arrive as lone surrogates, which cannot be saved
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            print(f"rnnchat: error: an argument is not valid UTF-8: {ascii(arg)}", file=sys.stderr)
            return EXIT_USAGE
    from rnnchat.cli.commands import CommandError, help_despite_a_bad_config
    try:  # building a subcommand's flags reads the config file, which may be unusable
        args = parse(argv)
        if not hasattr(args, "func"):
            args = parse(["chat", *argv])
    except CommandError as e:
        if _may_ask_for_help(argv):
            with help_despite_a_bad_config():
                try:
                    parse(argv)
                except SystemExit as done:
                    if done.code == 0:
                        print(f"note: {e}; the help shows the built-in defaults", file=sys.stderr)
                        raise
        print(f"rnnchat: error: {e}", file=sys.stderr)
        return e.code
    from rnnchat.checkpoint import CheckpointError
    from rnnchat.data.corpora import CorpusError
    if sys.stdout is None:  # started with stdout closed (`rnnchat generate hi >&-`)
        print("rnnchat: error: standard output is closed", file=sys.stderr)
        return EXIT_USAGE
    try:
        return _load(args.func)(args)
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as Unix tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's last flush does not complain either
        return 128 + signal.SIGPIPE
    except (CommandError, CheckpointError, CorpusError) as e:
        print(f"rnnchat: error: {e}", file=sys.stderr)
        return getattr(e, "code", 1)
    except OSError as e:  # a full disk or a refused write that no command turned into its own message
        print(f"rnnchat: error: {e}", file=sys.stderr)
        return 1
