"""An experiment of issue 14, kept so its judged pools and round replay: ranked LM candidates drawn with +BIAS
added to the logits of <eom> and <eot> (after the cache's mixture, before the draw and the candidate's
log-probability; the judge reads the LM's own), so replies end sooner. Not a setting: on fresh prompts
(bench/chat_judging/round9) it made replies terse ("Yeah", "Hey": 1.9 words at +2 against 4.8) for a gain in
judged SSA inside the noise (+4.2 points, 95% interval -1.6 .. +9.9), so nothing ships it.

    END_BIAS=1 python bench/chat_end_bias.py chat_pool make --systems S.json --prompts P.jsonl --out-dir DIR
    END_BIAS=2 python bench/chat_end_bias.py chat_judging replies --prompts P.jsonl --systems S.json --out R.jsonl
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import rnnchat.engine.ranking as ranking  # noqa: E402

BIAS = float(os.environ.get("END_BIAS", "1.0"))
_decode_rows = ranking.decode_rows


def _biased_decode_rows(decoder, vocab, logits, state, rows, settings, **kw):
    bias = np.zeros(decoder.vocab_size, np.float32)
    bias[list(vocab.end_ids)] = BIAS
    inner = kw.get("adjust")
    kw["adjust"] = (lambda z, h: inner(z, h) + bias) if inner else (lambda z, h: z + bias)
    return _decode_rows(decoder, vocab, logits, state, rows, settings, **kw)


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in ("chat_pool", "chat_judging"):
        raise SystemExit(__doc__)
    script = sys.argv.pop(1)
    ranking.decode_rows = _biased_decode_rows  # lm_candidates looks it up in its module at each call
    importlib.import_module(script).main()


if __name__ == "__main__":
    main()
