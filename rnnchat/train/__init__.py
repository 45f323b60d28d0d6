"""Batching and the training loop."""
