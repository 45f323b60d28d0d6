"""Crash-safe writes: a writer killed with SIGKILL mid-save never leaves a file that fails to load."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from rnnchat.checkpoint import load_checkpoint

WRITER = """
import sys, numpy as np
from rnnchat.checkpoint import save_checkpoint
path = sys.argv[1]
i = 0
while True:
    i += 1
    save_checkpoint(path, {"w": np.full((512, 512), float(i), np.float32)},
                    {"model": "lm", "config": {}, "vocab": [], "corpus": {}, "metrics": {"i": i}})
    print(i, flush=True)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_mid_save_always_leaves_a_loadable_file(tmp_path):
    path = tmp_path / "ckpt.npz"
    rng = np.random.default_rng(0)
    last_seen = 0
    for attempt in range(15):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True,
                                cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        proc.stdout.readline()  # at least one complete save
        time.sleep(float(rng.uniform(0, 0.05)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        arrays, header = load_checkpoint(path)  # must never fail
        i = header["metrics"]["i"]
        assert (arrays["w"] == i).all()  # contents consistent with the header
        last_seen = i
    assert last_seen >= 1
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "ckpt.npz"]
    assert all(name.endswith(".tmp") for name in leftovers)  # only orphaned temp files, never a torn target
