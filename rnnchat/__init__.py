"""rnnchat: offline RNN chat and text generation, written from scratch in NumPy."""

import os

# OpenBLAS worker threads busy-wait for ~2^28 cycles (~0.1 s) after every product by default, which takes the
# cores away from the element-wise passes that rnnchat runs on its own threads between products (softmax,
# Adam) and from anything else the user runs. 2^20 cycles (~0.3 ms) still bridges back-to-back products.
# Takes effect when rnnchat is imported before NumPy (as the `rnnchat` command does).
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "20")

__version__ = "0.1.0"
