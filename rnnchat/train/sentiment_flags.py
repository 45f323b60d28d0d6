"""`rnnchat train sentiment`'s flags: one per `SentimentTrainArgs` field, with help, and the command itself."""

from __future__ import annotations

from pathlib import Path

from rnnchat.models.sentiment import CELLS
from rnnchat.models.sentiment_segments import RESTARTS
from rnnchat.train.sentiment import SentimentTrainArgs, train_sentiment
from rnnchat.train.trainer import as_resumed

_FLAG_HELP = {
    "init": "scratch: vocabulary from the vader train split; lm: embedding + first LSTM from --lm-checkpoint",
    "select": "what the best checkpoint minimises on val: loss (CE+lambda*MSE) or acc_f1 (1-(acc+F1)/2)",
    "pool": "'+'-joined subset of last, max, mean",
    "restart": "none, sentence or clause: the recurrence starts again after each sentence (or clause) end, pooling "
               "over the whole text (a live edit then re-runs only the rest of its segment)",
    "max_train": "use only the first N training sentences",
    "window": "with --cell qrnn: how many tokens each gate reads (the current one and those before it)",
    "cell": "lstm, or qrnn (Bradbury et al. 2016: gates from the last --window tokens, an element-wise "
            "recurrence: a live edit in the middle of a text re-runs in microseconds per token)",
    "subwords": "hashed character 3-5-gram rows (fastText style, e.g. 16384): a token reads as its vector plus "
                "the mean of its n-grams', and a word never seen in training as <unk> plus its n-grams",
    "lexicon": "add VADER's rated lexicon entries (vaderSentiment's vader_lexicon.txt) as training examples, "
               "this many copies; their tokens join the vocabulary (tried: no clear gain on val)",
    "teacher": "a sentiment checkpoint (e.g. the shipped one) that labels --teacher-texts chat messages with its "
               "class probabilities and score; the model trains on them next to the rated sentences (distillation)",
    "teacher_texts": "how many chitchat train messages the --teacher labels",
    "lexicon_channel": "each token's VADER lexicon rating / 4 as a fixed extra input the LSTM reads (lexicon "
                       "words join the vocabulary, so unseen ones still carry their rating)",
}


def add_train_arguments(p) -> None:
    """Add `rnnchat train sentiment` flags (one per SentimentTrainArgs field) to an argparse parser."""
    d = SentimentTrainArgs()
    for name, value in vars(d).items():
        flag = "--" + name.replace("_", "-")
        helptext = _FLAG_HELP.get(name)
        if isinstance(value, bool):
            if value:
                p.add_argument(f"--no-{name.replace('_', '-')}", dest=name, action="store_false", help=helptext)
            else:
                p.add_argument(flag, dest=name, action="store_true", help=helptext)
        elif name == "init":
            p.add_argument(flag, choices=["scratch", "lm"], default=value, help=helptext)
        elif name == "cell":
            p.add_argument(flag, choices=list(CELLS), default=value, help=helptext)
        elif name == "restart":
            p.add_argument(flag, choices=list(RESTARTS), default=value, help=helptext)
        elif name == "select":
            p.add_argument(flag, choices=["loss", "acc_f1"], default=value, help=helptext)
        elif name == "max_train":
            p.add_argument(flag, type=int, default=None, help=helptext)
        elif name == "teacher":
            p.add_argument(flag, type=Path, default=None, help=helptext)
        elif name == "out":
            p.add_argument(flag, type=Path, default=None, help="the final checkpoint (default RUN_DIR/sentiment.npz)")
        else:
            p.add_argument(flag, type=type(value), default=value, help=helptext)


# what a resumed run takes from its saved state unless given the same (its length, validation and output may change)
RESUME_FREE = ("run_dir", "out", "resume", "epochs", "eval_every", "float16", "compare_vader")


def train_from_namespace(args) -> dict:
    """`rnnchat train sentiment`: SentimentTrainArgs from the parsed flags (on --resume, the run's own settings
    where the flags leave them out), then train_sentiment."""
    names = SentimentTrainArgs.__dataclass_fields__
    given = {k: v for k, v in vars(args).items() if k in names}
    if given.get("resume"):
        given = as_resumed(given, vars(SentimentTrainArgs()), given["run_dir"],
                           [k for k in names if k not in RESUME_FREE])
    return train_sentiment(SentimentTrainArgs(**given))
