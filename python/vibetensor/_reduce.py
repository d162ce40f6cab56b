"""The reduction op family's frontend: vt.sum/mean/var/std/max/min/argmax/argmin/logsumexp/norm/
cumsum and the matching Tensor methods (torch names and signatures).

>>> import vibetensor as vt
>>> x = vt.tensor([[1.0, 5.0], [3.0, 2.0]])
>>> x.max(dim=1).indices.tolist(), x.var().item(), x.norm().item() ** 2
([1, 0], 2.9166666666666665, 39.0)
"""
from __future__ import annotations

from collections import namedtuple

from vibetensor.runtime import dtypes as T

from . import _ops

__all__ = ["sum", "mean", "var", "std", "var_mean", "std_mean", "max", "min", "amax", "amin",
           "argmax", "argmin", "logsumexp", "norm", "cumsum"]

_op = _ops.op

# torch.return_types.max / min: a (values, indices) pair with names
values_indices = namedtuple("values_indices", ["values", "indices"])


def _dims(dim):
    if dim is None:
        return []
    return [int(dim)] if isinstance(dim, int) else [int(d) for d in dim]


def sum(input, dim=None, keepdim=False, *, dtype=None):  # noqa: A001 (torch's name)
    return _op("core::sum")(input, _dims(dim), keepdim, dtype)


def mean(input, dim=None, keepdim=False, *, dtype=None):
    return _op("core::mean")(input, _dims(dim), keepdim, dtype)


def _correction(unbiased, correction):
    if correction is not None:
        return int(correction)
    if unbiased is None:
        return 1
    return 1 if unbiased else 0


def var(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """Variance over `dim` (all dims when None) with Bessel's correction by default
    (`correction=1`; `unbiased=False` or `correction=0` for the population variance)."""
    if isinstance(dim, bool):  # var(unbiased) — torch's legacy positional form
        dim, unbiased = None, dim
    return _op("core::var")(input, _dims(dim), _correction(unbiased, correction), keepdim)


def std(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    if isinstance(dim, bool):
        dim, unbiased = None, dim
    return _op("core::std")(input, _dims(dim), _correction(unbiased, correction), keepdim)


def var_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    return (var(input, dim, unbiased, keepdim, correction=correction),
            mean(input, dim, keepdim))


def std_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    return (std(input, dim, unbiased, keepdim, correction=correction),
            mean(input, dim, keepdim))


def _extreme(name, input, dim, keepdim):
    if hasattr(dim, "_h"):  # max(a, b): the elementwise maximum
        return _op("core::maximum" if name == "max" else "core::minimum")(
            *_ops.promote_pair(input, dim))
    if dim is None:
        if keepdim:
            raise TypeError(f"{name}(): keepdim needs a dim")
        return _op(f"core::{name}")(input)
    return values_indices(*_op(f"core::{name}_dim")(input, int(dim), keepdim))


def max(input, dim=None, keepdim=False):  # noqa: A001
    """max(x) -> the largest element; max(x, dim) -> (values, indices); max(x, other) ->
    the elementwise maximum."""
    return _extreme("max", input, dim, keepdim)


def min(input, dim=None, keepdim=False):  # noqa: A001
    return _extreme("min", input, dim, keepdim)


def _wrap_dims(op, dims, ndim):
    """Wrap negative dims; refuse out-of-range and repeated ones with the messages core::sum uses
    (a 0-d tensor accepts dims -1 and 0, as in torch)."""
    n = ndim or 1
    out = []
    for d in dims:
        if not -n <= d < n:
            raise IndexError(f"[{op}] dim {d} is out of range for a tensor of ndim {ndim} "
                             f"(expected {-n}..{n - 1})")
        if d % n in out:
            raise ValueError(f"[{op}] dim {d % n} appears multiple times in the list of dims")
        out.append(d % n)
    return out


def _amax_like(name, input, dim, keepdim):
    dims = _wrap_dims(f"a{name}", _dims(dim), input.ndim) or list(range(input.ndim))
    if not input.ndim:
        return input
    out = input
    for d in sorted(dims, reverse=True):
        out = _op(f"core::{name}_dim")(out, d, True)[0]
    return out if keepdim else out.squeeze(dims)


def amax(input, dim=(), keepdim=False):
    """Largest values over `dim` (all when empty); the gradient goes to one maximal element."""
    return _amax_like("max", input, dim, keepdim)


def amin(input, dim=(), keepdim=False):
    return _amax_like("min", input, dim, keepdim)


def argmax(input, dim=None, keepdim=False):
    return _op("core::argmax")(input, dim, keepdim)


def argmin(input, dim=None, keepdim=False):
    return _op("core::argmin")(input, dim, keepdim)


def logsumexp(input, dim=None, keepdim=False):
    return _op("core::logsumexp")(input, _dims(dim), keepdim)


def norm(input, p="fro", dim=None, keepdim=False, dtype=None):
    """The vector p-norm over `dim` (all dims when None): p = 2 ('fro'), 1, inf, -inf, 0 or any
    float."""
    if p == "fro" or p is None:
        p = 2.0
    elif isinstance(p, str):
        raise ValueError(f"norm: p={p!r} is not supported (use a number or 'fro')")
    if dtype is not None:
        input = input.to(dtype)
    return _op("core::norm")(input, float(p), _dims(dim), keepdim)


def cumsum(input, dim, *, dtype=None):
    return _op("core::cumsum")(input, int(dim), T.get_dtype(dtype) if dtype is not None else None)


METHODS = {"var": var, "std": std, "max": max, "min": min, "amax": amax, "amin": amin,
           "argmax": argmax, "argmin": argmin, "logsumexp": logsumexp, "norm": norm,
           "cumsum": cumsum}
