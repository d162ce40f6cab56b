"""LayerNorm and RMSNorm over the trailing `normalized_shape` dims (fused core kernels).
Defaults as torch: elementwise_affine with weight = 1 (and LayerNorm bias = 0); RMSNorm's eps None
means the dtype's machine epsilon."""
from __future__ import annotations

import numbers

from ...creation import ones, zeros
from ...tensor import Tensor
from .. import functional as F
from .. import init
from ..module import Module
from ..parameter import Parameter


def _shape(s):
    return (int(s),) if isinstance(s, numbers.Integral) else tuple(int(v) for v in s)


def _check(layer, x):
    if not isinstance(x, Tensor):
        raise TypeError(f"{layer._describe()}: expected a Tensor input, got {type(x).__name__}")
    n = len(layer.normalized_shape)
    if x.ndim < n or tuple(x.shape[x.ndim - n:]) != layer.normalized_shape:
        raise ValueError(f"{layer._describe()}: expected input with trailing shape "
                         f"{layer.normalized_shape}, got shape {tuple(x.shape)}")


class LayerNorm(Module):
    """
    >>> import vibetensor as vt
    >>> vt.nn.LayerNorm(4)(vt.randn(2, 4)).shape
    (2, 4)
    """

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, device=None, dtype=None):
        super().__init__()
        self.normalized_shape = _shape(normalized_shape)
        self.eps, self.elementwise_affine = float(eps), elementwise_affine
        if elementwise_affine:
            self.weight = Parameter(ones(self.normalized_shape, dtype=dtype, device=device))
            if bias:
                self.bias = Parameter(zeros(self.normalized_shape, dtype=dtype, device=device))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def reset_parameters(self):
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)

    def forward(self, input, residual=None):
        """layer_norm(input); with a residual, (input + residual, layer_norm(input + residual)) by one
        fused op (F.add_layer_norm): a pre-norm block hands its branch output to the next norm."""
        _check(self, input)
        if residual is None:
            return F.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)
        return F.add_layer_norm(input, residual, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}, bias={self.bias is not None}")


class RMSNorm(Module):
    def __init__(self, normalized_shape, eps=None, elementwise_affine: bool = True, device=None,
                 dtype=None):
        super().__init__()
        self.normalized_shape = _shape(normalized_shape)
        self.eps, self.elementwise_affine = eps, elementwise_affine
        if elementwise_affine:
            self.weight = Parameter(ones(self.normalized_shape, dtype=dtype, device=device))
        else:
            self.register_parameter("weight", None)

    def reset_parameters(self):
        if self.weight is not None:
            init.ones_(self.weight)

    def forward(self, input):
        _check(self, input)
        return F.rms_norm(input, self.normalized_shape, self.weight, self.eps)

    def extra_repr(self):
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}")
