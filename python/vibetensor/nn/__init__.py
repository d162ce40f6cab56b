"""vt.nn — layers (Module, Parameter, Linear, Embedding, LayerNorm, attention, ...), with torch's
names and semantics; `vt.nn.functional`, `vt.nn.init` and `vt.nn.utils` alongside.

>>> import vibetensor as vt
>>> model = vt.nn.Sequential(vt.nn.Linear(4, 16), vt.nn.GELU(), vt.nn.Linear(16, 1))
>>> loss = model(vt.randn(8, 4)).pow(2).mean()
>>> loss.backward()
>>> model[0].weight.grad.shape
(16, 4)
"""
from . import functional, init, parallel, utils
from .module import Module
from .modules import (GELU, MLP, CausalSelfAttention, CrossEntropyLoss, Dropout, Embedding,
                      Identity, LayerNorm, Linear, LogSoftmax, ModuleDict, ModuleList, MSELoss,
                      MultiheadAttention, ReLU, RMSNorm, Sequential, Sigmoid, SiLU, Softmax,
                      Tanh, TransformerBlock)
from .parameter import Parameter

__all__ = ["functional", "init", "parallel", "utils", "Module", "Parameter", "GELU", "MLP",
           "CausalSelfAttention", "CrossEntropyLoss", "Dropout", "Embedding", "Identity",
           "LayerNorm", "Linear", "LogSoftmax", "ModuleDict", "ModuleList", "MSELoss",
           "MultiheadAttention", "ReLU", "RMSNorm", "Sequential", "Sigmoid", "SiLU", "Softmax",
           "Tanh", "TransformerBlock"]
