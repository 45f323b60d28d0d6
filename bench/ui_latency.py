"""Chat UI latency, measured with Textual's Pilot (headless, the real render pipeline), in LM chat and in seq2seq
chat mode:

* keystroke -> sentiment indicator repainted with the new result (target < 16 ms, one frame at 60 Hz);
* Enter -> first reply token painted on screen (target < 100 ms);
* with `--candidates N` (default 16) also the ranked reply: Enter -> the chosen one of N candidates painted
  (target <= 300 ms at N = 16), in both chat modes, ranked with the backward model when it is present;
* the streaming rate of one 200-token LM chat sample in the app against the same session decoding alone
  (target >= 0.8x).

Times run from just before the key is posted to the first paint (`render_lines`) of the widget showing the new
state. Uses rnnchat/checkpoints/lm.npz, rnnchat/checkpoints/seq2seq_chat.npz and rnnchat/checkpoints/sentiment.npz when present;
otherwise random-weight models of the default sizes (the arithmetic per keystroke/token is the same).

    OPENBLAS_NUM_THREADS=1 python bench/ui_latency.py [--lm PATH] [--seq2seq PATH] [--sentiment PATH] \
        [--replies 10] [--candidates 16] [--guidance W] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rnnchat.engine.engine import Engine, load_chat_model, make_ranker  # noqa: E402
from rnnchat.engine.seq2seq_chat import Seq2SeqChat  # noqa: E402
from rnnchat.sampling import SamplingSettings  # noqa: E402
from rnnchat.session.session import ChatSession  # noqa: E402
from rnnchat.session.transcript import MODE_TITLES, Mode  # noqa: E402
from rnnchat.ui.tui.app import ChatApp  # noqa: E402
from rnnchat.ui.tui.widgets import SentimentIndicator, StreamText  # noqa: E402

MESSAGES = ["i really love this movie, it was great", "that is so bad, i hate it",
            "how are you doing today?", "i'm not sure what you mean", "thanks, that was very kind of you"]


def random_lm(path: Path) -> Path:
    from rnnchat.models.lm import LanguageModel, LMConfig
    from rnnchat.text import SPECIALS, Vocab, tokenize
    from rnnchat.models.lm import save_lm
    words = list(dict.fromkeys(t for m in MESSAGES for t in tokenize(m)))
    vocab = Vocab(list(SPECIALS) + words + [f"w{i}" for i in range(10_000 - len(SPECIALS) - len(words))])
    save_lm(LanguageModel(LMConfig(vocab_size=len(vocab)), seed=0), vocab, path, {}, float16=False)
    return path


def seq2seq_for(path: Path) -> tuple[Seq2SeqChat, str]:
    chat, _ = load_chat_model(path)
    if chat is not None:
        return chat, str(path)
    from rnnchat.models.seq2seq import Seq2Seq, Seq2SeqConfig
    from rnnchat.text import SPECIALS, Vocab, tokenize
    words = list(dict.fromkeys(t for m in MESSAGES for t in tokenize(m)))
    vocab = Vocab(list(SPECIALS) + words + [f"w{i}" for i in range(8_000 - len(SPECIALS) - len(words))])
    config = Seq2SeqConfig(len(vocab), len(vocab), embed=128, hidden=256, proj=128, tie=True)
    return Seq2SeqChat(Seq2Seq(config, seed=0), vocab), "random weights (vocab 8000, hidden 256)"


def sentiment_for(path: Path | None, vocab) -> tuple[object, str]:
    from rnnchat.engine.sentiment_live import LiveSentiment
    if path and path.exists():
        return LiveSentiment.from_checkpoint(path), str(path)
    from rnnchat.models.sentiment import SentimentConfig, SentimentModel
    model = SentimentModel(SentimentConfig(vocab_size=len(vocab)), seed=0)
    return LiveSentiment(model, vocab), "random weights (embed 128, hidden 256)"


def paints(widget_type) -> list[tuple[float, object, str]]:
    """Record (time, widget, its text then) of every paint of widgets of this type."""
    log, real = [], widget_type.render_lines

    def render_lines(self, crop):
        log.append((time.perf_counter(), self, getattr(self, "text", "")))
        return real(self, crop)
    widget_type.render_lines = render_lines
    return log


async def measure(session: ChatSession, replies: int, indicator_paints: list, text_paints: list) -> dict:
    keys, firsts = [], []
    app = ChatApp(session, cursor_blink=False)
    async with app.run_test(size=(120, 40)) as pilot:
        indicator = app.query_one(SentimentIndicator)
        for i in range(replies):
            for ch in MESSAGES[i % len(MESSAGES)]:
                before = indicator.mood
                n = len(indicator_paints)
                t0 = time.perf_counter()
                await pilot.press("space" if ch == " " else ch)
                if indicator.mood == before:  # same result: nothing to repaint
                    continue
                while len(indicator_paints) == n:
                    await asyncio.sleep(0)
                keys.append(indicator_paints[n][0] - t0)
            n = len(text_paints)
            t0 = time.perf_counter()
            await pilot.press("enter")
            while not any(w is app._view and text for _, w, text in text_paints[n:]):  # the new reply painted
                if not app.generating and not "".join(t.text for t in session.last_tokens):
                    break  # an empty reply (<eot> first): nothing to paint
                await asyncio.sleep(0)
            else:
                firsts.append(next(t for t, w, text in text_paints[n:] if w is app._view and text) - t0)
            await app.workers.wait_for_complete()
            await pilot.pause()
    ms = lambda xs: {"median_ms": round(1e3 * statistics.median(xs), 2), "p95_ms": round(1e3 * sorted(xs)[
        int(0.95 * (len(xs) - 1))], 2), "max_ms": round(1e3 * max(xs), 2), "n": len(xs)}
    return {"keystroke_to_indicator": ms(keys), "enter_to_first_token": ms(firsts),
            "tokens_per_s_last_reply": round(session.last_stats.tokens_per_s, 1)}


STREAM_SETTINGS = SamplingSettings(seed=0, max_tokens=200, skip=("<eot>",))  # every reply 200 tokens long


async def app_stream_rates(session: ChatSession, replies: int) -> list[float]:
    """tokens/s of single-sample LM chat replies streamed into the app (the session's own clock)."""
    rates = []
    app = ChatApp(session, cursor_blink=False)
    async with app.run_test(size=(120, 40)) as pilot:
        for i in range(replies):
            for ch in MESSAGES[i % len(MESSAGES)]:
                await pilot.press("space" if ch == " " else ch)
            await pilot.press("enter")
            await app.workers.wait_for_complete()
            await pilot.pause()
            rates.append(session.last_stats.tokens_per_s)
    return rates


def stream_rates(engine: Engine, sentiment, replies: int) -> dict:
    """The same replies streamed by the session alone (one BLAS thread, as the app decodes one stream) and into
    the app, alternating so that both see the same machine: the app's rate over the engine's (target >= 0.8)."""
    from rnnchat.runtime import decode_threads
    alone, in_app = [], []
    for i in range(replies):
        s = ChatSession(engine, sentiment, settings=STREAM_SETTINGS, candidates=1)
        s.set_mode(Mode.LM)
        with decode_threads(1):
            for _ in s.respond(MESSAGES[i % len(MESSAGES)]):
                pass
        alone.append(s.last_stats.tokens_per_s)
        s = ChatSession(engine, sentiment, settings=STREAM_SETTINGS, candidates=1)
        s.set_mode(Mode.LM)
        in_app += asyncio.run(app_stream_rates(s, 1))
    a, b = statistics.median(alone), statistics.median(in_app)
    return {"session_alone_tok_s": round(a, 1), "in_app_tok_s": round(b, 1), "ratio": round(b / a, 3),
            "replies": replies, "tokens_per_reply": STREAM_SETTINGS.max_tokens}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lm", type=Path, default=ROOT / "rnnchat" / "checkpoints" / "lm.npz")
    p.add_argument("--seq2seq", type=Path, default=ROOT / "rnnchat" / "checkpoints" / "seq2seq_chat.npz")
    p.add_argument("--sentiment", type=Path, default=ROOT / "rnnchat" / "checkpoints" / "sentiment.npz")
    p.add_argument("--replies", type=int, default=10)
    p.add_argument("--candidates", type=int, default=16, help="also measure ranked replies of N candidates (1: not)")
    p.add_argument("--guidance", type=float, default=SamplingSettings().guidance,
                   help="classifier-free guidance weight of LM chat (default: the shipped default)")
    p.add_argument("--stream-only", action="store_true", help="only the streaming rate")
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["RNNCHAT_DATA_DIR"] = tmp
        lm_path, lm_note = (a.lm, str(a.lm)) if a.lm.exists() else (random_lm(Path(tmp) / "lm.npz"),
                                                                    "random weights (vocab 10000, hidden 512 x 2)")
        engine = Engine(lm_path)
        sentiment, sentiment_note = sentiment_for(a.sentiment, engine.vocab)
        seq2seq, seq2seq_note = seq2seq_for(a.seq2seq)
        logs = paints(SentimentIndicator), paints(StreamText)
        modes = {}
        ranker, _ = make_ranker(engine)
        for n in sorted({1, a.candidates}) if not a.stream_only else ():
            for mode in (Mode.LM, Mode.CHAT):
                session = ChatSession(engine, sentiment, seq2seq=seq2seq, ranker=ranker, candidates=n,
                                      settings=SamplingSettings(seed=0, max_tokens=40, guidance=a.guidance))
                session.set_mode(mode)
                modes[mode.value + ("" if n == 1 else f"_ranked{n}")] = asyncio.run(measure(session, a.replies,
                                                                                           *logs))
        stream = stream_rates(engine, sentiment, a.replies)
    result = {"modes": modes, "stream_rate": stream, "guidance": a.guidance, "lm": lm_note, "seq2seq": seq2seq_note,
              "sentiment": sentiment_note, "cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)}
    print(f"LM: {lm_note}\nseq2seq: {seq2seq_note}\nsentiment: {sentiment_note}\n"
          f"cpus {result['cpus']}, load average {result['load_avg_1m']}")
    for mode, r in modes.items():
        k, f = r["keystroke_to_indicator"], r["enter_to_first_token"]
        name, _, ranked = mode.partition("_")
        print(f"{MODE_TITLES[Mode(name)]}{' (' + ranked + ', target <= 300 ms)' if ranked else ''}:\n"
              f"  keystroke -> indicator painted: median {k['median_ms']} ms, p95 {k['p95_ms']} ms, "
              f"max {k['max_ms']} ms over {k['n']} keys (target < 16 ms)\n"
              f"  Enter -> first token painted:   median {f['median_ms']} ms, p95 {f['p95_ms']} ms, "
              f"max {f['max_ms']} ms over {f['n']} replies (target < 100 ms)\n"
              f"  last reply: {r['tokens_per_s_last_reply']} tokens/s")
    print(f"LM chat, one sample of 200 tokens streamed: the session alone {stream['session_alone_tok_s']} tok/s, "
          f"in the app {stream['in_app_tok_s']} tok/s: {stream['ratio']:.2f}x (target >= 0.8x; medians of "
          f"{stream['replies']})")
    if a.json:
        a.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
