"""Models composed from nn layers: language model, seq2seq, sentiment."""
