"""The NumPy neural-network core: layers, recurrent layers, attention, optimizers.

The models use `LSTM`, `QRNN` (the sentiment classifier's other cell),
`Embedding`, `EmbeddingBag`, `Linear`, `TiedOutput`, `Dropout`, `Attention` and `Adam`;
`RNN`, `GRU`, `Stack` and `Bidirectional` are kept as the textbook layers they are, gradient-checked in
tests/nn/test_gradients.py (the seq2seq encoder runs its own bidirectional pass over two LSTMs).
"""

from rnnchat.nn.attention import Attention
from rnnchat.nn.layers import Dropout, Embedding, EmbeddingBag, Layer, Linear, SoftmaxCrossEntropy, TiedOutput
from rnnchat.nn.optim import Adam, ParamAverage, ParamSet, clip_grad_norm
from rnnchat.nn.qrnn import QRNN
from rnnchat.nn.recurrent import GRU, LSTM, RNN, Recurrent
from rnnchat.nn.recurrent_wrappers import Bidirectional, Stack

__all__ = ["Attention", "Dropout", "Embedding", "EmbeddingBag", "Layer", "Linear", "SoftmaxCrossEntropy",
           "TiedOutput", "Adam", "ParamAverage", "ParamSet", "clip_grad_norm", "GRU", "LSTM", "RNN", "Bidirectional",
           "QRNN", "Recurrent", "Stack"]
