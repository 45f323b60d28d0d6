"""Inference: the engine, conversations with carried state, sampling, batch generation."""
