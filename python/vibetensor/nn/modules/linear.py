"""Linear and Identity layers.

Linear's defaults are torch's: weight (out, in) ~ kaiming_uniform(a=sqrt(5)), i.e.
U(-1/sqrt(in), 1/sqrt(in)), and bias ~ U(-1/sqrt(in), 1/sqrt(in)). Input (..., in) -> (..., out).
"""
from __future__ import annotations

import math

from ... import _nn
from ...creation import empty
from ...tensor import Tensor
from .. import init
from ..module import Module
from ..parameter import Parameter


def _check_input(layer, x, what="input"):
    if not isinstance(x, Tensor):
        raise TypeError(f"{layer._describe()}: expected a Tensor {what}, got {type(x).__name__}")


class Identity(Module):
    """Returns its input; accepts and ignores any constructor arguments."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, input):
        return input


class Linear(Module):
    """y = x @ weight.T + bias, weight (out_features, in_features).

    >>> import vibetensor as vt
    >>> vt.nn.Linear(8, 4)(vt.randn(2, 8)).shape
    (2, 4)
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None,
                 dtype=None):
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.weight = Parameter(empty(out_features, in_features, dtype=dtype, device=device))
        if bias:
            self.bias = Parameter(empty(out_features, dtype=dtype, device=device))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.in_features
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input):
        _check_input(self, input)
        if input.ndim == 0 or input.shape[-1] != self.in_features:
            raise ValueError(f"{self._describe()}: expected input with last dimension "
                             f"{self.in_features}, got shape {tuple(input.shape)}")
        return _nn.linear(input, self.weight, self.bias)

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")
