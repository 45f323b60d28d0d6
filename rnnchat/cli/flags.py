"""Flags of the subcommands whose logic has no argument parser of its own (generate, sentiment, info, corpus,
train lm/plot, eval lm). `rnnchat.cli.main` calls only the one for the subcommand being run."""

from __future__ import annotations

import argparse
from pathlib import Path

from rnnchat import paths
from rnnchat.cli.commands import add_sampling_flags


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1 (a usage error, exit 2, otherwise)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


MAX_SAMPLES = 10_000


def file_path(text: str) -> Path:
    """An argparse type: a path that names something ('' read as '.', the current folder, and failed later as
    ". : not a regular file")."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path: give a file")
    return Path(text)


def bounded_int(most: int):
    """An argparse type: an integer in [1, most] (a request that would run for ages is a usage error)."""
    def parse(text: str) -> int:
        value = positive_int(text)
        if value > most:
            raise argparse.ArgumentTypeError(f"must be at most {most:,}, got {value:,}")
        return value
    parse.__name__ = f"integer in [1, {most}]"
    return parse


def non_negative_int(text: str) -> int:
    """An argparse type: an integer >= 0."""
    return 0 if _is_zero(text) else positive_int(text)


def non_negative_float(text: str) -> float:
    """An argparse type: a finite number >= 0."""
    return 0.0 if _is_zero(text) else positive_float(text)


def _is_zero(text: str) -> bool:
    try:
        return float(text) == 0.0
    except ValueError:
        return False


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def fraction(text: str) -> float:
    """An argparse type: a number in [0, 1)."""
    value = 0.0 if _is_zero(text) else positive_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def add_generate_arguments(gen: argparse.ArgumentParser) -> None:
    gen.add_argument("prompt", nargs="?", help="the text to continue ('-' or a pipe: stdin; '' continues from "
                                               "nothing)")
    gen.add_argument("--num-samples", type=bounded_int(MAX_SAMPLES), default=1,
                     help=f"independent continuations of the prompt (at most {MAX_SAMPLES:,})")
    gen.add_argument("--json", action="store_true", help="one JSON object per sample (text, tokens, timing)")
    gen.add_argument("-m", "--model", "--checkpoint", dest="checkpoint", type=file_path, default=paths.lm_checkpoint(),
                     help="language-model checkpoint")
    gen.add_argument("--echo", action="store_true", help="print the prompt before its continuation")
    gen.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_batch_arguments(gen, 'prompts file: one per line, or .jsonl objects with "prompt" and their own '
                             'settings/"seed"/"id"')
    add_sampling_flags(gen)


def add_batch_arguments(p: argparse.ArgumentParser, batch_help: str) -> None:
    """--batch FILE (`batch_help` says what it holds), --out, --batch-size, --ray, --workers (generate, chat)."""
    g = p.add_argument_group("batch mode")
    g.add_argument("--batch", metavar="FILE", help=batch_help)
    g.add_argument("--out", metavar="FILE", help="batch results (JSONL, input order; re-run to resume)")
    g.add_argument("--batch-size", type=bounded_int(4096), default=64,
                   help="jobs per batch (prompts run through the network together; with --ray, one task)")
    g.add_argument("--ray", nargs="?", const="", default=None, metavar="auto|ADDRESS",
                   help="run the batches on Ray Data: no value = this machine's Ray cluster (a new local one "
                        "if none runs), auto = the running one, ADDRESS = host:port of a head node "
                        "(pip install 'rnnchat[distributed]')")
    g.add_argument("--workers", type=positive_int, default=None, metavar="K",
                   help="with --ray: Ray workers, each loads the models once and uses one CPU (default: one "
                        "per CPU of the cluster)")


def add_sentiment_arguments(sent: argparse.ArgumentParser) -> None:
    sent.add_argument("text", nargs="?", help="the text; '-' or a pipe: one text per line")
    sent.add_argument("--json", action="store_true", help="JSONL: text, label, score, probs")
    sent.add_argument("-m", "--model", "--checkpoint", dest="checkpoint", type=file_path,
                      default=paths.sentiment_checkpoint())


def add_info_arguments(info: argparse.ArgumentParser) -> None:
    info.add_argument("paths", nargs="+", metavar="PATH")
    info.add_argument("--json", action="store_true", help="print the header as JSON")
    info.add_argument("--vocab", action="store_true", help="with --json, include the vocabulary")


def add_corpus_build_arguments(b: argparse.ArgumentParser) -> None:
    b.add_argument("names", nargs="*", metavar="NAME", help="chitchat and/or vader (default: both)")
    b.add_argument("-q", "--quiet", action="store_true")


def add_corpus_stats_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("names", nargs="*", metavar="NAME", help="chitchat and/or vader (default: both)")
    s.add_argument("--json", action="store_true")


def add_train_lm_arguments(lm: argparse.ArgumentParser) -> None:
    from rnnchat.train.lm import LMTrainArgs
    d = LMTrainArgs()
    lm.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    lm.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    lm.add_argument("--run-dir", type=Path, default=d.run_dir, help="run directory (state, metrics)")
    lm.add_argument("--out", type=Path, default=None,
                    help="best checkpoint path (default RUN_DIR/lm.npz; the shipped model is replaced only when "
                         "named here)")
    own = lm.add_argument_group("your own text (instead of the chitchat conversations)")
    own.add_argument("--text", nargs="+", type=Path, metavar="FILE",
                     help="train on these UTF-8 text files (each: first 90%% train, next 5%% val, last 5%% test)")
    own.add_argument("--level", choices=("char", "word"), default=argparse.SUPPRESS,
                     help="tokens: characters (default with --text) or words (chitchat is word level)")
    own.add_argument("--prime", default=argparse.SUPPRESS, metavar="TEXT",
                     help="priming text of the sample shown at each validation (default: the start of the val text)")
    lm.add_argument("--minutes", type=positive_float, default=None,
                    help="train for this many minutes, the learning rate annealed along a cosine to the end "
                         "(then validated and saved; --resume goes on)")
    sizes = lm.add_argument_group("sizes", "left out: chitchat vocab 10000, hidden 512, 2 layers, dropout 0.3, "
                                  "batch 64, bptt 32, lr 0.002, 10 epochs, eval every 400 steps; --text: by the "
                                  "text's length (char: hidden 256 / 384 / 512 below 300k / 2M characters / above, "
                                  "bptt 128, batch 32, eval every 200 steps)")
    for name in ("vocab_size", "hidden", "layers", "batch_size", "bptt", "eval_every"):
        sizes.add_argument(f"--{name.replace('_', '-')}", type=positive_int, default=argparse.SUPPRESS)
    sizes.add_argument("--dropout", type=fraction, default=argparse.SUPPRESS)
    sizes.add_argument("--lr", type=positive_float, default=argparse.SUPPRESS)
    sizes.add_argument("--epochs", type=positive_float, default=argparse.SUPPRESS)
    lm.add_argument("--seed", type=int, default=d.seed, help="initial weights, dropout masks and sample draws")
    lm.add_argument("--clip", type=positive_float, default=d.clip, help="gradient norm clip")
    lm.add_argument("--max-train-convs", type=positive_int, default=None, help="use only the first N conversations")
    lm.add_argument("--set-lr", type=positive_float, default=None,
                    help="with --resume: replace the saved learning rate (e.g. a final decay step)")
    lm.add_argument("--mark-starts", action="store_true", default=argparse.SUPPRESS,
                    help="train on a stream where each conversation opens with an extra <eot>, so a new "
                         "conversation is told apart from the next turn")
    lm.add_argument("--init-from", type=Path, default=None, metavar="CHECKPOINT",
                    help="start a new run from this checkpoint's weights (same size and vocabulary) with a "
                         "fresh optimizer, e.g. to fine-tune the shipped model with another --bptt")
    awd = lm.add_argument_group("regularisation (AWD-LSTM, Merity et al. 2017; all off by default; "
                                "--resume keeps the run's own unless given)")
    awd.add_argument("--locked-dropout", dest="locked", action=argparse.BooleanOptionalAction,
                     default=argparse.SUPPRESS,
                     help="one --dropout mask per sequence, the same at every step (variational dropout)")
    awd.add_argument("--weight-drop", type=fraction, default=argparse.SUPPRESS,
                     help="DropConnect on the recurrent weights, one mask per batch (AWD-LSTM: 0.5)")
    awd.add_argument("--embed-drop", type=fraction, default=argparse.SUPPRESS,
                     help="drop whole words from the embedding lookup, one mask per batch (AWD-LSTM: 0.1)")
    awd.add_argument("--ar", type=non_negative_float, default=argparse.SUPPRESS,
                     help="activation regularisation: + AR * mean(last layer's dropped output^2) (AWD-LSTM: 2)")
    awd.add_argument("--tar", type=non_negative_float, default=argparse.SUPPRESS,
                     help="temporal AR: + TAR * mean((h_t - h_{t-1})^2) of the last layer (AWD-LSTM: 1)")
    awd.add_argument("--vary-bptt", action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                     help="variable-length BPTT windows around --bptt, cut anew each epoch")
    awd.add_argument("--average-from", type=non_negative_int, default=None, metavar="STEP",
                     help="average the weights from this step on (0: from the first step); validation and the "
                          "best checkpoint use the average (averaged Adam, the A of NT-ASGD)")


def add_train_plot_arguments(plot: argparse.ArgumentParser) -> None:
    plot.add_argument("run_dir", nargs="?", default="runs/lm")


def add_eval_lm_arguments(el: argparse.ArgumentParser) -> None:
    el.add_argument("-m", "--model", "--checkpoint", dest="checkpoint", type=file_path, default=paths.lm_checkpoint())
    el.add_argument("--split", choices=["val", "test"], default="val",
                    help="chitchat split; with --text, the part of each file the model trained on (others: whole)")
    el.add_argument("--text", nargs="+", type=Path, metavar="FILE",
                    help="score these text files instead of chitchat (bits per character for char-level models)")
    el.add_argument("--json", action="store_true")
    el.add_argument("--memory", action="store_true",
                    help="also per-turn perplexity with the state carried across turns vs reset")
    el.add_argument("--max-convs", type=positive_int, default=None,
                    help="only the first N conversations of the split")
    el.add_argument("--record", action="store_true", help="write the results into the checkpoint's header metrics")
    el.add_argument("--cache", action="store_true",
                    help="perplexity per conversation with and without the conversation cache; on val it searches "
                         "theta and lambda (--record keeps the best), other splits use the recorded choice")
