"""One small function per subcommand (`cmd_*`, the logic lives elsewhere) and the flags of the subcommands that
have no module of their own (`add_*_arguments`). Each imports what it needs when it runs."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path


EXIT_USAGE = 2
UNK_WARN = 0.05  # above this share of <unk> tokens a text's perplexity gets a note


class CommandError(Exception):
    """A user-facing failure: printed as `rnnchat: error: ...`, exit code `code`."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


# -- corpus ---------------------------------------------------------------------------------------------------
def corpus_names(args: argparse.Namespace) -> list[str]:
    """The corpora named (default: all); an unknown name is a usage error (exit 2), before any work."""
    from rnnchat.data import corpora
    if unknown := [n for n in args.names if n not in corpora.NAMES]:
        raise CommandError(f"unknown corpus {unknown[0]!r}; choose one of {', '.join(corpora.NAMES)}", code=2)
    return args.names or list(corpora.NAMES)


def cmd_corpus_build(args: argparse.Namespace) -> int:
    from rnnchat.data import corpora
    for name in corpus_names(args):
        stats = corpora.build(name, progress=not args.quiet)
        print(corpora.format_stats(stats))
    return 0


def cmd_corpus_stats(args: argparse.Namespace) -> int:
    from rnnchat.data import corpora
    for name in corpus_names(args):
        stats = corpora.stats(name)
        print(json.dumps(stats, indent=2) if args.json else corpora.format_stats(stats))
    return 0


# -- info ------------------------------------------------------------------------------------------------------
def cmd_info(args: argparse.Namespace) -> int:
    from rnnchat.checkpoint import CheckpointError, format_header, read_header
    from rnnchat.control_chars import visible
    failed = 0
    if args.vocab and not args.json:
        raise CommandError("--vocab: only with --json (the text view never lists the vocabulary)", EXIT_USAGE)
    for path in args.paths:  # every path is reported, a bad one does not hide the others
        try:
            header = read_header(path)
        except CheckpointError as e:
            print(f"rnnchat: error: {e}", file=sys.stderr)
            failed += 1
            continue
        if args.json:
            print(json.dumps({k: v for k, v in header.items() if k != "vocab" or args.vocab}, indent=2))
        else:  # (a checkpoint's header is anyone's text: its escape sequences are shown, not obeyed)
            print(visible(format_header(header)))
    return 1 if failed else 0


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
    if not path.is_file():
        why = "is not a file" if path.exists() else "does not exist"
        raise CommandError(f"{path} {why}: is {args.run_dir} a training run directory?")
    try:
        print(plot_curves(path))
    except (ValueError, UnicodeDecodeError) as e:
        raise CommandError(f"{path}: {e}") from None
    except OSError as e:
        raise CommandError(f"cannot read {path}: {e.strerror or e}") from None
    return 0


def cmd_eval_lm(args: argparse.Namespace) -> int:
    from rnnchat.data import corpora
    from rnnchat.models.lm import load_lm
    from rnnchat.train.lm import evaluate, evaluate_memory, stream, unk_rate
    model, vocab, header = load_lm(args.checkpoint)
    if args.text:
        return _eval_lm_text(args, model, vocab, header)
    if header["corpus"].get("name") == "text":
        raise CommandError(f"{args.checkpoint} was trained on text files, not chitchat conversations: score it "
                           f"with --text FILE (its own files: their --split part)", EXIT_USAGE)
    convs = corpora.load_chitchat(args.split)[: args.max_convs]
    if args.cache:
        return _eval_lm_cache(args, model, vocab, header, convs)
    tokens = stream(convs, vocab)
    try:
        result = evaluate(model, tokens)
    except ValueError as e:
        first = "" if args.max_convs is None else f" (its first {args.max_convs} conversations)"
        raise CommandError(f"the {args.split} split{first}: {e}") from None
    result = {"perplexity": result["perplexity"], "loss": result["loss"], "tokens": result["tokens"],
              "unk_rate": unk_rate(tokens, vocab), "split": args.split, "checkpoint": str(args.checkpoint)}
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
    print(f"{args.split} perplexity {result['perplexity']:.2f} over {result['tokens']:,} tokens "
          f"({_unk_words(result['unk_rate'])}; {args.checkpoint})")
    if args.memory:
        m = result["memory"]
        print(f"turns after the first: perplexity {m['carried_perplexity']:.2f} with the state carried, "
              f"{m['reset_perplexity']:.2f} reset at the turn start (ratio {m['ratio']:.3f}, {m['tokens']:,} tokens)")
    return 0


def _eval_lm_text(args: argparse.Namespace, model, vocab, header: dict) -> int:
    """Bits per character (char level) and perplexity on text files: the --split part of the files the model
    was trained on, any other file whole."""
    from rnnchat.data.text_files import TextFileError
    from rnnchat.train.lm import evaluate_texts
    if args.cache or args.memory or args.max_convs:
        raise CommandError("--cache, --memory and --max-convs score conversations: not with --text", EXIT_USAGE)
    try:
        result = evaluate_texts(model, vocab, header, args.text, args.split)
    except TextFileError as e:
        raise CommandError(str(e)) from None
    if args.record:
        from rnnchat.checkpoint import update_metrics
        update_metrics(args.checkpoint, {f"text_{args.split}": result})
    if args.json:
        print(json.dumps({**result, "checkpoint": str(args.checkpoint)}))
        return 0
    for f in result["files"]:
        print(f"{f['path']}: {f['part']} ({f['chars']:,} characters)")
    bits = f"bits per character {result['bpc']:.4f}, " if "bpc" in result else ""
    print(f"{bits}perplexity {result['perplexity']:.3f} over {result['tokens']:,} tokens "
          f"({_unk_words(result['unk_rate'])}; {args.checkpoint})")
    if result["unk_rate"] > UNK_WARN:
        print(f"note: {result['unk_rate']:.0%} of the tokens are outside the model's vocabulary and each is scored "
              f"as the one token <unk>, so this perplexity flatters the model: it says little about this text",
              file=sys.stderr)
    return 0


def _unk_words(rate: float) -> str:
    return f"{rate:.1%} <unk>"


def _eval_lm_cache(args: argparse.Namespace, model, vocab, header: dict, convs: list[dict]) -> int:
    """Per-conversation perplexity without and with the conversation cache. On val the (theta, lambda) grid is
    searched and --record stores the best as the checkpoint's `cache_settings`; any other split is scored with
    those settings only (chosen on val, never on the split being reported)."""
    from rnnchat.models.lm_cache import CacheSettings
    from rnnchat.train.lm_cache_eval import default_grid, evaluate_cache
    chosen = header["metrics"].get("cache_settings")
    if args.split == "val":
        grid = default_grid()
    elif chosen is None:
        raise CommandError(f"{args.checkpoint} has no cache settings yet: choose them on val first "
                           f"(rnnchat eval lm --cache --split val --record)")
    else:
        grid = [CacheSettings(**chosen)]
    result = evaluate_cache(model, convs, vocab, grid)
    prefix = args.split if args.max_convs is None else f"{args.split}_first{args.max_convs}"
    best = result["best"]
    summary = {"perplexity_no_cache": result["perplexity"], "perplexity_cache": best["perplexity"],
               "later_turns_perplexity_no_cache": result["later_turns_perplexity"],
               "later_turns_perplexity_cache": best["later_turns_perplexity"], "tokens": result["tokens"],
               "settings": {k: best[k] for k in ("theta", "lam", "size")}}
    if args.record:
        from rnnchat.checkpoint import update_metrics
        record = {f"{prefix}_cache": summary}
        if args.split == "val" and args.max_convs is None:
            record["cache_settings"] = summary["settings"]
        update_metrics(args.checkpoint, record)
    if args.json:
        print(json.dumps({**summary, "split": args.split, "grid": result["grid"]}))
        return 0
    if len(result["grid"]) > 1:
        print(f"{'theta':>6} {'lambda':>6}  perplexity  later turns")
        for row in result["grid"]:
            print(f"{row['theta']:>6g} {row['lam']:>6g}  {row['perplexity']:>10.2f}  {row['later_turns_perplexity']:>11.2f}")
    st = summary["settings"]
    print(f"{args.split}, each conversation from a fresh state ({result['tokens']:,} tokens): perplexity "
          f"{result['perplexity']:.2f} without the cache, {best['perplexity']:.2f} with it (theta {st['theta']:g}, "
          f"lambda {st['lam']:g}, {st['size']} states); turns after the first {result['later_turns_perplexity']:.2f}"
          f" -> {best['later_turns_perplexity']:.2f}")
    return 0


# -- sentiment / seq2seq ---------------------------------------------------------------------------------------
def cmd_sentiment(args: argparse.Namespace) -> int:
    from rnnchat.cli.generate import InputError, read_prompt
    from rnnchat.train.sentiment_eval import score_texts
    if args.text is None and sys.stdin.isatty():
        raise CommandError("give TEXT, or '-' / a pipe for one text per line", EXIT_USAGE)
    try:
        texts = [args.text] if args.text not in (None, "-") else read_prompt("-").split("\n")
    except InputError as e:
        raise CommandError(str(e)) from None
    if not any(t.strip() for t in texts):  # (blank lines among others keep a row each, so rows match lines)
        raise CommandError("no text to score (the input is empty)", EXIT_USAGE)
    for r in score_texts(texts, args.checkpoint):
        if args.json:
            print(json.dumps(r))
        else:
            print(f"{r['label']:8s} {r['score']:+.3f}  {r['text']}" if len(texts) > 1 else
                  f"{r['label']} {r['score']:+.3f}")
    return 0


def cmd_train_sentiment(args: argparse.Namespace) -> int:
    from rnnchat.train.sentiment_flags import train_from_namespace
    try:
        train_from_namespace(args)
    except ValueError as e:  # flags that contradict each other or the run directory
        raise CommandError(str(e), code=2) from None
    return 0


def cmd_train_sentiment_ensemble(args: argparse.Namespace) -> int:
    from rnnchat.train.sentiment_ensemble import ensemble_from_namespace
    try:
        ensemble_from_namespace(args)
    except ValueError as e:
        raise CommandError(str(e)) from None
    return 0


def cmd_train_reply_judge(args: argparse.Namespace) -> int:
    from rnnchat.checkpoint import CheckpointError
    from rnnchat.session.judge_training import train_from_namespace
    try:
        metrics = train_from_namespace(args)
    except (OSError, ValueError, KeyError, CheckpointError) as e:
        raise CommandError(f"cannot train the reply judge: {e}") from None
    print(json.dumps(metrics["cross_validated_pick_ssa"], indent=1))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def cmd_eval_sentiment(args: argparse.Namespace) -> int:
    from rnnchat.train.sentiment_eval import eval_from_namespace
    print(eval_from_namespace(args))
    return 0


def cmd_train_seq2seq(args: argparse.Namespace) -> int:
    from rnnchat.train.seq2seq import run_train_command
    try:
        return run_train_command(args)
    except ValueError as e:  # an unknown task, or a run directory that cannot be used
        raise CommandError(str(e), code=2) from None


def cmd_eval_seq2seq(args: argparse.Namespace) -> int:
    from rnnchat.train.seq2seq import run_eval_command
    return run_eval_command(args)


# -- generate ------------------------------------------------------------------------------------------------
# A char-level model's own defaults for what the flags leave out (the config file's are for word-level models):
# a repeat penalty on characters penalises every common letter, and 60 characters are a few words.
CHAR_DEFAULTS = {"repeat_penalty": 1.0, "max_tokens": 400}


def model_level(path: Path) -> str:
    """The token level ("word" or "char") of the LM checkpoint at `path` ("word" if it cannot be read: loading
    it reports why)."""
    from rnnchat.checkpoint import CheckpointError, read_header
    try:
        return str(read_header(path).get("vocab_level", "word"))
    except (CheckpointError, OSError):
        return "word"


def sampling_settings(args: argparse.Namespace, level: str = "word"):
    """The settings the flags give; the two that default by the model's level (repeat penalty, max tokens)
    come from the config file for word-level models and from CHAR_DEFAULTS for char-level ones."""
    from rnnchat.sampling import SamplingSettings, SettingsError
    config = user_config().sampling
    by_level = {k: getattr(args, k) if getattr(args, k) is not None
                else CHAR_DEFAULTS[k] if level == "char" else getattr(config, k) for k in CHAR_DEFAULTS}
    try:
        return SamplingSettings(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                                repeat_last_n=args.repeat_last_n, skip=tuple(args.skip), stop=tuple(args.stop),
                                seed=args.seed, ban_unk=args.ban_unk, cache=args.cache, guidance=args.guidance,
                                **by_level)
    except SettingsError as e:
        raise CommandError(str(e), EXIT_USAGE) from None


@contextlib.contextmanager
def help_despite_a_bad_config() -> Iterator[None]:
    """While this holds, a config file that cannot be used gives the built-in defaults: `--help` must work to
    mend the file (it was the same usage error as every command)."""
    global _help_only
    _help_only = True
    try:
        yield
    finally:
        _help_only = False


_help_only = False


def user_config():
    """The config file's settings (`rnnchat.session.config`); a bad file is a usage error."""
    from rnnchat.session.config import Config, ConfigError, load_config
    try:
        return load_config()
    except ConfigError as e:
        if _help_only:
            return Config()
        raise CommandError(str(e), EXIT_USAGE) from None


def add_sampling_flags(p: argparse.ArgumentParser) -> None:
    """The sampling flags; their defaults are the config file's (`rnnchat config` shows them)."""
    d = user_config().sampling
    g = p.add_argument_group("sampling (defaults: the config file's, see `rnnchat config`)")
    g.add_argument("--temperature", "--temp", type=float, default=d.temperature, help="0 = greedy (%(default)s)")
    g.add_argument("--top-k", type=int, default=d.top_k, help="0 = off (%(default)s)")
    g.add_argument("--top-p", type=float, default=d.top_p, help="nucleus mass in (0, 1]; 1 = off (%(default)s)")
    g.add_argument("--repeat-penalty", type=float, default=None,
                   help=f"1 = off ({d.repeat_penalty}; char-level models {CHAR_DEFAULTS['repeat_penalty']})")
    g.add_argument("--repeat-last-n", type=int, default=d.repeat_last_n,
                   help="window of the repeat penalty (%(default)s)")
    g.add_argument("--skip", action="append", default=list(d.skip), metavar="WORD",
                   help="never emit WORD (or token id #N); repeatable")
    g.add_argument("--stop", action="append", default=list(d.stop), metavar="TEXT", help="stop at TEXT; repeatable")
    g.add_argument("-n", "--max-tokens", type=int, default=None,
                   help=f"{d.max_tokens}; char-level models {CHAR_DEFAULTS['max_tokens']} (characters)")
    g.add_argument("-s", "--seed", type=int, default=d.seed, help="same seed + prompt + settings = same text")
    g.add_argument("--cache", action=argparse.BooleanOptionalAction, default=d.cache,
                   help="mix in the LM's conversation cache (words seen earlier in the conversation made likelier; "
                        "used where the LM has val-tuned settings for it)")
    g.add_argument("--guidance", type=float, default=d.guidance, metavar="W",
                   help="classifier-free guidance: each LM draw favours words by W x (log p(word | conversation "
                        "or prompt) - log p(word | nothing said)), the ends of a message or turn as likely as the "
                        "model says; 0 = off (%(default)s)")
    g.set_defaults(ban_unk=d.ban_unk)


def cmd_generate(args: argparse.Namespace) -> int:
    from rnnchat.engine.engine import Engine
    from rnnchat.sampling import SettingsError, skip_ids
    from rnnchat.cli.batch import check_batch_arguments, prompt_batch
    from rnnchat.cli.generate import InputError, read_prompt, stream_samples
    settings = sampling_settings(args, model_level(args.checkpoint))
    if args.num_samples < 1 or args.batch_size < 1:
        raise CommandError("--num-samples and --batch-size must be >= 1", EXIT_USAGE)
    try:
        check_batch_arguments(args)
    except InputError as e:
        raise CommandError(str(e), e.code) from None
    if args.batch and (ignored := [f for f, on in (("PROMPT", args.prompt is not None), ("--echo", args.echo),
                                                   ("--num-samples", args.num_samples != 1), ("--json", args.json))
                                   if on]):
        raise CommandError(f"{', '.join(ignored)}: not with --batch (every line of the file is a prompt with one "
                           f"result, written as JSONL to --out)", EXIT_USAGE)
    if not args.batch and args.prompt is None:
        if sys.stdin.isatty():
            raise CommandError("give PROMPT ('' continues from nothing), or '-' / a pipe for the prompt",
                               EXIT_USAGE)
        args.prompt = "-"
    if settings.max_tokens == 0:
        print("note: --max-tokens 0: nothing is generated", file=sys.stderr)
    engine = Engine(args.checkpoint)
    try:
        skip_ids(settings, engine.vocab)
        if args.batch:
            return 1 if prompt_batch(args, engine, settings) else 0
        stream_samples(engine, read_prompt(args.prompt), settings, args.num_samples, args.json, echo=args.echo)
    except SettingsError as e:
        raise CommandError(str(e), EXIT_USAGE) from None
    except InputError as e:
        raise CommandError(str(e), e.code) from None
    return 0
