"""The nn / linear-algebra / RNG op family's frontend: public functions (exported as vt.<name>) and
Tensor methods, with torch's names and signatures.

What it is: thin wrappers that check Python-side arguments and call the core ops (core::linear,
core::softmax, core::layer_norm, core::cross_entropy, ...). Ops that also return statistics for
their backward (layer_norm -> (out, mean, rstd), cross_entropy -> (loss, lse), dropout ->
(out, mask)) return only the first output here. What it is not: nn.Module layers or optimisers
(those call these functions and core::adamw_ / core::sgd_).

>>> import vibetensor as vt
>>> x = vt.tensor([[1.0, 2.0, 3.0]])
>>> round(vt.softmax(x, dim=-1).sum().item(), 6)
1.0
"""
from __future__ import annotations

import numbers

from vibetensor.runtime import dtypes as T

from . import _ops
from . import autograd as _autograd

__all__ = ["softmax", "log_softmax", "layer_norm", "add_layer_norm", "rms_norm", "dropout", "cross_entropy",
           "mse_loss", "linear", "bmm", "mm", "addmm", "randint", "randperm"]


def _op(name):
    return _ops.op(name)


def _dev(device):
    return T.device(device if device is not None else "cpu")


def _cast(x, dtype):
    return x if dtype is None else x.to(T.get_dtype(dtype))


def softmax(input, dim, dtype=None):
    """softmax along `dim` (fused: max, exp, sum and scale in one pass per row).

    >>> import vibetensor as vt
    >>> vt.softmax(vt.tensor([0.0, 0.0]), 0).tolist()
    [0.5, 0.5]
    """
    return _op("core::softmax")(_cast(input, dtype), int(dim))


def log_softmax(input, dim, dtype=None):
    return _op("core::log_softmax")(_cast(input, dtype), int(dim))


def _shape(s):
    return [int(s)] if isinstance(s, numbers.Integral) else [int(v) for v in s]


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Layer normalisation over the trailing `normalized_shape` dims (fused forward/backward)."""
    return _op("core::layer_norm")(input, _shape(normalized_shape), weight, bias, float(eps))[0]


def add_layer_norm(input, residual, normalized_shape, weight=None, bias=None, eps=1e-5, out_dtype=None):
    """(input + residual, layer_norm(input + residual)) in one fused op, forward and backward: a
    pre-norm block's residual add and the next norm (vLLM's fused_add_rms_norm, for layer_norm).
    input and residual may differ in dtype (a float32 residual stream plus a bfloat16 branch output
    is read as is, no cast); the sum has the promoted dtype, the normalised output `out_dtype`
    (default: the sum's; under vt.autocast, the autocast dtype).

    >>> import vibetensor as vt
    >>> s, y = vt.add_layer_norm(vt.tensor([[1.0, 2.0]]), vt.tensor([[1.0, 0.0]]), 2)
    >>> s.tolist(), y.tolist()
    ([[2.0, 2.0]], [[0.0, 0.0]])
    """
    dt = None if out_dtype is None else T.get_dtype(out_dtype)
    r = _op("core::add_layer_norm")(input, residual, _shape(normalized_shape), weight, bias, float(eps), dt)
    return r[0], r[1]


def rms_norm(input, normalized_shape, weight=None, eps=None):
    """x / sqrt(mean(x^2) + eps) * weight over the trailing dims; eps None = the dtype's eps."""
    return _op("core::rms_norm")(input, _shape(normalized_shape), weight,
                                 None if eps is None else float(eps))[0]


def dropout(input, p=0.5, training=True, inplace=False):
    """Zeroes elements with probability p (Philox, reproducible under vt.manual_seed) and scales
    the rest by 1/(1-p). `inplace` is accepted for torch compatibility and returns a new tensor."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be in [0, 1], got {p}")
    return _op("core::dropout")(input, float(p), bool(training))[0]


_REDUCTIONS = ("mean", "sum", "none")


def _reduction(reduction, size_average, reduce, fn):
    if size_average is not None or reduce is not None:  # torch's legacy arguments
        size_average = True if size_average is None else size_average
        reduce = True if reduce is None else reduce
        reduction = "none" if not reduce else ("mean" if size_average else "sum")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{fn}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    return reduction


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
                  reduction="mean", label_smoothing=0.0):
    """Fused log-softmax + NLL over class dim 1 of (N, C) or (N, C, d...) logits (or (C,)), int64
    class-index targets; ignore_index and label_smoothing as torch.

    When autograd will want the input's gradient of a 'mean'/'sum' loss, core::cross_entropy_fused
    writes it in the same pass over the logits and the backward only scales it by grad_output
    (for loss.backward() it reads one value): forward + backward read the logits once instead of
    twice. 'none' keeps the two-pass path: its per-position grad_output is rarely all ones, and
    scaling the buffer would cost one more pass than recomputing. Without grad (inference,
    no_grad) no gradient buffer is made."""
    if weight is not None:
        raise NotImplementedError("cross_entropy: class weights are not supported yet")
    reduction = _reduction(reduction, size_average, reduce, "cross_entropy")
    args = (input, target, int(ignore_index), float(label_smoothing), reduction)
    if reduction != "none" and getattr(input, "requires_grad", False) and _autograd.is_grad_enabled():
        return _op("core::cross_entropy_fused")(*args)[0]
    return _op("core::cross_entropy")(*args)[0]


def mse_loss(input, target, size_average=None, reduce=None, reduction="mean"):
    reduction = _reduction(reduction, size_average, reduce, "mse_loss")
    return _op("core::mse_loss")(input, target, reduction)


def linear(input, weight, bias=None):
    """input @ weight.T + bias with the bias added by the GEMM itself (any leading batch dims)."""
    return _op("core::linear")(input, weight, bias)


def bmm(input, mat2):
    return _op("core::bmm")(input, mat2)


def mm(input, mat2):
    if input.ndim != 2 or mat2.ndim != 2:
        raise ValueError(f"mm: expected 2-D tensors, got {tuple(input.shape)} and {tuple(mat2.shape)}")
    return _op("core::matmul")(input, mat2)


def addmm(input, mat1, mat2, *, beta=1, alpha=1):
    """beta * input + alpha * (mat1 @ mat2), input broadcast to the product's shape."""
    return _op("core::addmm")(input, mat1, mat2, beta=float(beta), alpha=float(alpha))


def _size(size):
    if isinstance(size, numbers.Integral):
        return [int(size)]
    return [int(s) for s in size]


def randint(*args, size=None, dtype=None, device=None, generator=None):
    """randint(high, size) or randint(low, high, size): uniform integers in [low, high), int64 by
    default; reproducible under vt.manual_seed whatever the thread count."""
    if generator is not None:
        raise NotImplementedError("randint: generator= is not supported; use vt.manual_seed")
    args = list(args)
    if size is None:
        if not args:
            raise TypeError("randint() missing argument 'size'")
        size = args.pop()
    if len(args) == 1:
        low, high = 0, args[0]
    elif len(args) == 2:
        low, high = args
    else:
        raise TypeError("randint(low=0, high, size, *, dtype=None, device=None)")
    return _op("core::randint")(int(low), int(high), _size(size), dtype, _dev(device))


def randperm(n, *, dtype=None, device=None, generator=None):
    """A random permutation of 0..n-1 (int64 by default)."""
    if generator is not None:
        raise NotImplementedError("randperm: generator= is not supported; use vt.manual_seed")
    return _op("core::randperm")(int(n), dtype, _dev(device))


def _normal_(self, mean=0.0, std=1.0, *, generator=None):
    """Fills self in place with N(mean, std^2) samples; returns self."""
    _op("core::normal_")(self, float(mean), float(std))
    return self


def _uniform_(self, a=0.0, b=1.0, *, generator=None, **kw):
    """Fills self in place with U[a, b) samples (torch spells them `from`/`to`); returns self."""
    a = kw.pop("from", a)
    b = kw.pop("to", b)
    if kw:
        raise TypeError(f"uniform_() got unexpected keyword argument(s) {', '.join(kw)}")
    _op("core::uniform_")(self, float(a), float(b))
    return self


METHODS = {
    "softmax": softmax,
    "log_softmax": log_softmax,
    "bmm": bmm,
    "mm": mm,
    "addmm": addmm,
    "normal_": _normal_,
    "uniform_": _uniform_,
}
