"""vt.nn.utils — clip_grad_norm_ / clip_grad_value_ over an iterable of parameters.

>>> import vibetensor as vt
>>> p = vt.nn.Parameter(vt.zeros(2)); p.grad = vt.tensor([3.0, 4.0])
>>> vt.nn.utils.clip_grad_norm_([p], 1.0).item()
5.0
>>> [round(v, 4) for v in p.grad.tolist()]
[0.6, 0.8]
"""
from __future__ import annotations

import math

from .. import _elementwise, _ops, _reduce, _shape
from ..autograd import no_grad
from ..tensor import Tensor

__all__ = ["clip_grad_norm_", "clip_grad_value_", "parameters_to_vector"]


def _grads(parameters):
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    return [g for g in (p.grad for p in parameters) if g is not None]


def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False, foreach=None):
    """Scale all gradients together so their joint norm is at most max_norm; returns the total
    norm before clipping (a 0-d float32 tensor, as torch). As in torch, nothing leaves the
    device: each gradient is reduced once (core::norm), the per-tensor norms are reduced again,
    and every gradient is multiplied in place by min(1, max_norm / (total + 1e-6)) as a 0-d
    tensor (so no host sync unless error_if_nonfinite asks for one)."""
    grads = _grads(parameters)
    max_norm, norm_type = float(max_norm), float(norm_type)
    if not grads:
        from ..creation import tensor

        return tensor(0.0)
    fused = (norm_type == 2.0 or math.isinf(norm_type) and norm_type > 0) and not error_if_nonfinite \
        and len({g.device for g in grads}) == 1
    with no_grad():
        if fused:  # the joint norm and the scaling in a few multi-tensor launches (core::clip_grad_norm)
            return _ops.op("core::clip_grad_norm")(grads, max_norm, norm_type)
        norms = [_reduce.norm(g, norm_type).float() for g in grads]
        total = _reduce.norm(_shape.stack(norms), norm_type)
        if error_if_nonfinite and not math.isfinite(total.item()):
            raise RuntimeError(f"clip_grad_norm_: the total norm of order {norm_type} of the "
                               f"gradients is non-finite ({total.item()}), so it cannot be "
                               f"clipped")
        coef = _elementwise.clamp(max_norm / (total + 1e-6), max=1.0)
        for g in grads:
            g.mul_(coef.to(g.dtype))
    return total


def clip_grad_value_(parameters, clip_value: float, foreach=None) -> None:
    """Clamp every gradient elementwise into [-clip_value, clip_value], in place."""
    c = float(clip_value)
    with no_grad():
        for g in _grads(parameters):
            g.copy_(g.clamp(-c, c))


def parameters_to_vector(parameters):
    return _shape.cat([p.reshape(-1) for p in parameters])
