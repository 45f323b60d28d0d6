"""The NumPy neural-network core: layers, recurrent layers, attention, optimizers."""

from rnnchat.nn.attention import Attention
from rnnchat.nn.layers import Dropout, Embedding, Layer, Linear, SoftmaxCrossEntropy, TiedOutput
from rnnchat.nn.optim import SGD, Adam, ParamSet, clip_grad_norm
from rnnchat.nn.recurrent import GRU, LSTM, RNN, Bidirectional, Recurrent, Stack

__all__ = ["Attention", "Dropout", "Embedding", "Layer", "Linear", "SoftmaxCrossEntropy", "TiedOutput",
           "SGD", "Adam", "ParamSet", "clip_grad_norm", "GRU", "LSTM", "RNN", "Bidirectional", "Recurrent",
           "Stack"]
