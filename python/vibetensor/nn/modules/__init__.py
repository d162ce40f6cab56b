"""The layers of vt.nn, one family per file."""
from .activation import GELU, LogSoftmax, ReLU, Sigmoid, SiLU, Softmax, Tanh
from .attention import MLP, CausalSelfAttention, MultiheadAttention, TransformerBlock
from .container import ModuleDict, ModuleList, Sequential
from .dropout import Dropout
from .linear import Identity, Linear
from .loss import CrossEntropyLoss, MSELoss
from .norm import LayerNorm, RMSNorm
from .sparse import Embedding

__all__ = ["GELU", "LogSoftmax", "ReLU", "Sigmoid", "SiLU", "Softmax", "Tanh", "MLP",
           "CausalSelfAttention", "MultiheadAttention", "TransformerBlock", "ModuleDict",
           "ModuleList", "Sequential", "Dropout", "Identity", "Linear", "CrossEntropyLoss",
           "MSELoss", "LayerNorm", "RMSNorm", "Embedding"]
