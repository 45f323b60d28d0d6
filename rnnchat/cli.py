"""Command line: argument parsing and one small function per subcommand (the logic lives elsewhere)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from rnnchat import __version__

EXIT_USAGE = 2


class CommandError(Exception):
    """A user-facing failure: printed as `rnnchat: error: ...`, exit code `code`."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


# -- corpus ---------------------------------------------------------------------------------------------------
def cmd_corpus_build(args: argparse.Namespace) -> int:
    from rnnchat import corpora
    for name in args.names or corpora.NAMES:
        stats = corpora.build(name, progress=not args.quiet)
        print(corpora.format_stats(stats))
    return 0


def cmd_corpus_stats(args: argparse.Namespace) -> int:
    from rnnchat import corpora
    for name in args.names or corpora.NAMES:
        stats = corpora.stats(name)
        print(json.dumps(stats, indent=2) if args.json else corpora.format_stats(stats))
    return 0


# -- info ------------------------------------------------------------------------------------------------------
def cmd_info(args: argparse.Namespace) -> int:
    from rnnchat.checkpoint import format_header, read_header
    for path in args.paths:
        header = read_header(path)
        if args.json:
            print(json.dumps({k: v for k, v in header.items() if k != "vocab" or args.vocab}, indent=2))
        else:
            print(format_header(header))
    return 0


# -- train / eval ----------------------------------------------------------------------------------------------
def cmd_train_lm(args: argparse.Namespace) -> int:
    from rnnchat.train.lm import LMTrainArgs, train_lm
    fields = LMTrainArgs.__dataclass_fields__
    try:
        train_lm(LMTrainArgs(**{k: v for k, v in vars(args).items() if k in fields}))
    except ValueError as e:  # flags that contradict the run or the --init-from checkpoint
        raise CommandError(str(e), code=2) from None
    return 0


def cmd_train_plot(args: argparse.Namespace) -> int:
    from rnnchat.train.curves import plot_curves
    path = Path(args.run_dir) / "metrics.jsonl"
    if not path.exists():
        raise CommandError(f"{path} does not exist: is {args.run_dir} a training run directory?")
    print(plot_curves(path))
    return 0


def cmd_eval_lm(args: argparse.Namespace) -> int:
    from rnnchat import corpora
    from rnnchat.train.lm import evaluate, load_lm, stream
    from rnnchat.train.lm import evaluate_memory
    model, vocab, _ = load_lm(args.checkpoint)
    convs = corpora.load_chitchat(args.split)[: args.max_convs]
    result = evaluate(model, stream(convs, vocab))
    result = {"perplexity": result["perplexity"], "loss": result["loss"], "tokens": result["tokens"],
              "split": args.split, "checkpoint": str(args.checkpoint)}
    if args.memory:
        result["memory"] = evaluate_memory(model, convs, vocab)
    if args.record:
        from rnnchat.checkpoint import update_metrics
        prefix = args.split if args.max_convs is None else f"{args.split}_first{args.max_convs}"
        record = {f"{prefix}_perplexity": result["perplexity"], f"{prefix}_tokens": result["tokens"]}
        if args.memory:
            record[f"{prefix}_memory"] = result["memory"]
        update_metrics(args.checkpoint, record)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{args.split} perplexity {result['perplexity']:.2f} over {result['tokens']:,} tokens ({args.checkpoint})")
    if args.memory:
        m = result["memory"]
        print(f"turns after the first: perplexity {m['carried_perplexity']:.2f} with the state carried, "
              f"{m['reset_perplexity']:.2f} reset at the turn start (ratio {m['ratio']:.3f}, {m['tokens']:,} tokens)")
    return 0


# -- sentiment / seq2seq ---------------------------------------------------------------------------------------
def cmd_sentiment(args: argparse.Namespace) -> int:
    from rnnchat.generate import InputError, read_prompt
    from rnnchat.train.sentiment_eval import score_texts
    if args.text is None and sys.stdin.isatty():
        raise CommandError("give TEXT, or '-' / a pipe for one text per line", EXIT_USAGE)
    try:
        texts = [args.text] if args.text not in (None, "-") else read_prompt("-").split("\n")
    except InputError as e:
        raise CommandError(str(e)) from None
    for r in score_texts(texts, args.checkpoint):
        if args.json:
            print(json.dumps(r))
        else:
            print(f"{r['label']:8s} {r['score']:+.3f}  {r['text']}" if len(texts) > 1 else
                  f"{r['label']} {r['score']:+.3f}")
    return 0


def cmd_train_sentiment(args: argparse.Namespace) -> int:
    from rnnchat.train.sentiment import train_from_namespace
    train_from_namespace(args)
    return 0


def cmd_train_sentiment_ensemble(args: argparse.Namespace) -> int:
    from rnnchat.train.sentiment_ensemble import ensemble_from_namespace
    try:
        ensemble_from_namespace(args)
    except ValueError as e:
        raise CommandError(str(e)) from None
    return 0


def cmd_eval_sentiment(args: argparse.Namespace) -> int:
    from rnnchat.train.sentiment_eval import eval_from_namespace
    print(eval_from_namespace(args))
    return 0


def cmd_train_seq2seq(args: argparse.Namespace) -> int:
    from rnnchat.train.seq2seq import run_train_command
    return run_train_command(args)


def cmd_eval_seq2seq(args: argparse.Namespace) -> int:
    from rnnchat.train.seq2seq import run_eval_command
    return run_eval_command(args)


# -- generate ------------------------------------------------------------------------------------------------
def sampling_settings(args: argparse.Namespace) -> "SamplingSettings":
    from rnnchat.engine.sampling import SamplingSettings, SettingsError
    try:
        return SamplingSettings(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                                repeat_penalty=args.repeat_penalty, repeat_last_n=args.repeat_last_n,
                                skip=tuple(args.skip), stop=tuple(args.stop), max_tokens=args.max_tokens,
                                seed=args.seed)
    except SettingsError as e:
        raise CommandError(str(e), EXIT_USAGE) from None


def add_sampling_flags(p: argparse.ArgumentParser) -> None:
    from rnnchat.engine.sampling import SamplingSettings
    d = SamplingSettings()
    g = p.add_argument_group("sampling")
    g.add_argument("--temperature", "--temp", type=float, default=d.temperature, help="0 = greedy")
    g.add_argument("--top-k", type=int, default=d.top_k, help="0 = off")
    g.add_argument("--top-p", type=float, default=d.top_p, help="nucleus mass in (0, 1]; 1 = off")
    g.add_argument("--repeat-penalty", type=float, default=d.repeat_penalty, help="1 = off")
    g.add_argument("--repeat-last-n", type=int, default=d.repeat_last_n, help="window of the repeat penalty")
    g.add_argument("--skip", action="append", default=[], metavar="WORD",
                   help="never emit WORD (or token id #N); repeatable")
    g.add_argument("--stop", action="append", default=[], metavar="TEXT", help="stop at TEXT; repeatable")
    g.add_argument("-n", "--max-tokens", type=int, default=d.max_tokens)
    g.add_argument("-s", "--seed", type=int, default=None, help="same seed + prompt + settings = same text")


def cmd_generate(args: argparse.Namespace) -> int:
    from rnnchat.engine.engine import Engine
    from rnnchat.engine.sampling import SettingsError, skip_ids
    from rnnchat.generate import InputError, read_prompt, run_batch, stream_samples
    settings = sampling_settings(args)
    if args.num_samples < 1 or args.batch_size < 1:
        raise CommandError("--num-samples and --batch-size must be >= 1", EXIT_USAGE)
    if args.batch and args.out is None:
        raise CommandError("--batch needs --out FILE for the JSONL results", EXIT_USAGE)
    engine = Engine(args.checkpoint)
    try:
        skip_ids(settings, engine.vocab)
        if args.batch:
            bad = run_batch(engine, Path(args.batch), Path(args.out), settings, args.batch_size,
                            progress=not args.quiet)
            return 1 if bad else 0
        prompt = args.prompt
        if prompt is None:
            prompt = "-" if not sys.stdin.isatty() else ""
        stream_samples(engine, read_prompt(prompt), settings, args.num_samples, args.json)
    except SettingsError as e:
        raise CommandError(str(e), EXIT_USAGE) from None
    except InputError as e:
        raise CommandError(str(e)) from None
    return 0


# -- chat / repl (issue 7) ------------------------------------------------------------------------------------
def cmd_ui(args: argparse.Namespace) -> int:
    """`rnnchat chat` (Textual) and `rnnchat repl` (prompt_toolkit) on one session: models, memory, settings."""
    from rnnchat.chat_session import SessionError, open_session
    from rnnchat.engine.sampling import SettingsError
    try:
        session, notes = open_session(args.checkpoint, args.sentiment, sampling_settings(args), fresh=args.fresh,
                                      seq2seq_path=args.seq2seq)
    except SessionError as e:
        raise CommandError(str(e)) from None
    except SettingsError as e:
        raise CommandError(str(e), EXIT_USAGE) from None
    if args.command == "repl":
        from rnnchat.repl import run_repl
        return run_repl(session, notes)
    from rnnchat.tui.app import ChatApp
    ChatApp(session, notes).run()
    return 0


def add_ui_parser(sub, name: str, help: str) -> argparse.ArgumentParser:
    from rnnchat.train.lm import DEFAULT_CHECKPOINT
    p = sub.add_parser(name, help=help)
    p.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT, help="language-model checkpoint")
    p.add_argument("--sentiment", type=Path, default=None,
                   help="sentiment checkpoint (default: checkpoints/sentiment.npz; missing = no indicator)")
    p.add_argument("--seq2seq", type=Path, default=None,
                   help="seq2seq chat checkpoint (default: checkpoints/seq2seq_chat.npz; missing = no chat mode)")
    p.add_argument("--fresh", action="store_true", help="start a new conversation instead of the last one")
    add_sampling_flags(p)
    p.set_defaults(func=cmd_ui)
    return p


# -- parser ----------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from rnnchat.train.lm import DEFAULT_CHECKPOINT, LMTrainArgs

    p = argparse.ArgumentParser(prog="rnnchat", description="Offline RNN chat and text generation (NumPy).")
    p.add_argument("--version", action="version", version=f"rnnchat {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    add_ui_parser(sub, "chat", "Textual chat app (default)")
    add_ui_parser(sub, "repl", "line REPL (prompt_toolkit)")
    gen = sub.add_parser("generate", help="continue a prompt (streams to stdout); batch mode to JSONL",
                         description="Continue PROMPT with the language model. stdout carries only the text; "
                                     "status goes to stderr. '-' or a pipe reads the prompt from stdin.")
    gen.add_argument("prompt", nargs="?", help="the text to continue ('-' = stdin; default: empty)")
    gen.add_argument("--num-samples", type=int, default=1, help="independent continuations of the prompt")
    gen.add_argument("--json", action="store_true", help="one JSON object per sample (text, tokens, timing)")
    gen.add_argument("--batch", metavar="FILE", help="prompts file: one per line, or .jsonl objects with "
                     '"prompt" and their own settings/"seed"/"id"')
    gen.add_argument("--out", metavar="FILE", help="batch results (JSONL, input order; re-run to resume)")
    gen.add_argument("--batch-size", type=int, default=64, help="prompts run through the network together")
    gen.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT, help="language-model checkpoint")
    gen.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_sampling_flags(gen)
    gen.set_defaults(func=cmd_generate)
    sent = sub.add_parser("sentiment", help="label and score text (negative/neutral/positive, -1..1)")
    sent.add_argument("text", nargs="?", help="the text; '-' or a pipe: one text per line")
    sent.add_argument("--json", action="store_true", help="JSONL: text, label, score, probs")
    sent.add_argument("--checkpoint", type=Path, default=Path(__file__).resolve().parents[1] / "checkpoints"
                      / "sentiment.npz")
    sent.set_defaults(func=cmd_sentiment)

    info = sub.add_parser("info", help="print a checkpoint's header")
    info.add_argument("paths", nargs="+", metavar="PATH")
    info.add_argument("--json", action="store_true", help="print the header as JSON")
    info.add_argument("--vocab", action="store_true", help="with --json, include the vocabulary")
    info.set_defaults(func=cmd_info)

    corpus = sub.add_parser("corpus", help="build and inspect the training corpora")
    csub = corpus.add_subparsers(dest="corpus_command", metavar="ACTION", required=True)
    b = csub.add_parser("build", help="build corpora from their PyPI packages into corpora/build")
    b.add_argument("names", nargs="*", metavar="NAME",
                   help="chitchat and/or vader (default: both)")
    b.add_argument("-q", "--quiet", action="store_true")
    b.set_defaults(func=cmd_corpus_build)
    s = csub.add_parser("stats", help="sizes, vocabulary coverage and split counts")
    s.add_argument("names", nargs="*", metavar="NAME", help="chitchat and/or vader (default: both)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_corpus_stats)

    train = sub.add_parser("train", help="train a model")
    tsub = train.add_subparsers(dest="train_command", metavar="MODEL", required=True)
    d = LMTrainArgs()
    lm = tsub.add_parser("lm", help="the LSTM language model (resumable; Ctrl+C saves)",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    lm.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    lm.add_argument("--run-dir", type=Path, default=d.run_dir, help="run directory (state, metrics)")
    lm.add_argument("--out", type=Path, default=d.out, help="best checkpoint path")
    for name in ("vocab_size", "hidden", "layers", "batch_size", "bptt", "eval_every", "seed"):
        lm.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(d, name))
    for name in ("dropout", "lr", "clip", "epochs"):
        lm.add_argument(f"--{name}", type=float, default=getattr(d, name))
    lm.add_argument("--max-train-convs", type=int, default=None, help="use only the first N conversations")
    lm.add_argument("--set-lr", type=float, default=None,
                    help="with --resume: replace the saved learning rate (e.g. a final decay step)")
    lm.add_argument("--mark-starts", action="store_true",
                    help="train on a stream where each conversation opens with an extra <eot>, so a new "
                         "conversation is told apart from the next turn")
    lm.add_argument("--init-from", type=Path, default=None, metavar="CHECKPOINT",
                    help="start a new run from this checkpoint's weights (same size and vocabulary) with a "
                         "fresh optimizer, e.g. to fine-tune the shipped model with another --bptt")
    lm.set_defaults(func=cmd_train_lm)
    from rnnchat.train import sentiment as sentiment_train, sentiment_ensemble, sentiment_eval, seq2seq as seq2seq_train
    _command(tsub, "seq2seq", "seq2seq: addition, dates or the chat model (resumable)",
             seq2seq_train.add_train_arguments, cmd_train_seq2seq)
    _command(tsub, "sentiment", "the sentiment classifier (resumable)", sentiment_train.add_train_arguments,
             cmd_train_sentiment)
    _command(tsub, "sentiment-ensemble", "one sentiment checkpoint averaging trained members",
             sentiment_ensemble.add_ensemble_arguments, cmd_train_sentiment_ensemble)
    plot = tsub.add_parser("plot", help="plot a run's training curve in the terminal")
    plot.add_argument("run_dir", nargs="?", default="runs/lm")
    plot.set_defaults(func=cmd_train_plot)

    ev = sub.add_parser("eval", help="evaluate a model")
    esub = ev.add_subparsers(dest="eval_command", metavar="MODEL", required=True)
    el = esub.add_parser("lm", help="language-model perplexity")
    el.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    el.add_argument("--split", choices=["val", "test"], default="val")
    el.add_argument("--json", action="store_true")
    el.add_argument("--memory", action="store_true",
                    help="also per-turn perplexity with the state carried across turns vs reset")
    el.add_argument("--max-convs", type=int, default=None, help="only the first N conversations of the split")
    el.add_argument("--record", action="store_true", help="write the results into the checkpoint's header metrics")
    el.set_defaults(func=cmd_eval_lm)
    _command(esub, "seq2seq", "exact match (addition, dates) or chat perplexity/distinct-n",
             seq2seq_train.add_eval_arguments, cmd_eval_seq2seq)
    _command(esub, "sentiment", "accuracy and macro-F1 per domain, optionally against VADER",
             sentiment_eval.add_eval_arguments, cmd_eval_sentiment)
    return p


def _command(sub, name: str, help: str, add_arguments: Callable[[argparse.ArgumentParser], None],
             func: Callable[[argparse.Namespace], int]) -> None:
    """A subcommand whose flags come from its module's `add_*_arguments`."""
    parser = sub.add_parser(name, help=help)
    add_arguments(parser)
    parser.set_defaults(func=func)


def main(argv: list[str] | None = None) -> int:
    from rnnchat.checkpoint import CheckpointError
    from rnnchat.corpora import CorpusError

    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv or ["chat"])
    if not hasattr(args, "func"):
        args = parser.parse_args(["chat", *argv])
    try:
        return args.func(args)
    except (CommandError, CheckpointError, CorpusError) as e:
        print(f"rnnchat: error: {e}", file=sys.stderr)
        return getattr(e, "code", 1)
    except KeyboardInterrupt:
        print("rnnchat: interrupted", file=sys.stderr)
        return 130
