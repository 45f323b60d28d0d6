"""rnnchat: offline RNN chat and text generation, written from scratch in NumPy."""

__version__ = "0.1.0"
