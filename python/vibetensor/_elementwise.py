"""The elementwise op family's frontend: math, activations, comparisons, logical ops, where,
clamp, pow and the in-place arithmetic forms, with torch's names and signatures.

Python numbers are accepted wherever torch takes them; they become 0-d tensors of the other
operand's dtype (int tensor + 2.5 -> float32, as in torch) and mixed dtypes promote before the
native call (`_ops.promote_pair`), so every kernel sees operands of one dtype.

>>> import vibetensor as vt
>>> x = vt.tensor([-1.0, 0.0, 2.0])
>>> vt.relu(x).tolist(), (x ** 2).tolist(), (x > 0).tolist()
([0.0, 0.0, 2.0], [1.0, 0.0, 4.0], [False, False, True])
"""
from __future__ import annotations

import numbers

from vibetensor.runtime import dtypes as T

from . import _ops

_op = _ops.op

__all__ = ["add", "sub", "mul", "div", "subtract", "multiply", "divide", "true_divide",
           "neg", "negative", "abs", "sign", "exp", "log", "log1p", "sqrt", "rsqrt", "sin", "cos",
           "tanh", "sigmoid", "relu", "gelu", "silu", "softplus", "pow", "clamp", "clip",
           "maximum", "minimum", "where", "eq", "ne", "lt", "le", "gt", "ge", "greater",
           "greater_equal", "less", "less_equal", "not_equal", "equal", "logical_and",
           "logical_or", "logical_xor", "logical_not", "sum_to_size"]


def _is_tensor(x) -> bool:
    return hasattr(x, "_h")


def _number(x) -> bool:
    return isinstance(x, numbers.Number) and not _is_tensor(x)


# -- binary arithmetic ----------------------------------------------------------------------------
def add(input, other, *, alpha=1):
    """input + alpha * other (broadcast, promoted; a number stays a typed scalar)."""
    if _number(other) and _is_tensor(input):
        return _op("core::add_scalar")(input, other, alpha)
    a, b = _ops.promote_pair(input, other)
    return _op("core::add")(a, b, alpha)


def sub(input, other, *, alpha=1):
    """input - alpha * other (broadcast, promoted; a number stays a typed scalar)."""
    if _number(other) and _is_tensor(input):
        return _op("core::sub_scalar")(input, other, alpha)
    a, b = _ops.promote_pair(input, other)
    return _op("core::sub")(a, b, alpha)


def mul(input, other):
    if _number(other) and _is_tensor(input):
        return _op("core::mul_scalar")(input, other)
    if _number(input) and _is_tensor(other):
        return _op("core::mul_scalar")(other, input)
    a, b = _ops.promote_pair(input, other)
    return _op("core::mul")(a, b)


def div(input, other, *, rounding_mode=None):
    """True division (integer inputs give float32)."""
    if rounding_mode is not None:
        raise NotImplementedError(f"div: rounding_mode={rounding_mode!r} is not supported yet")
    if _number(other) and _is_tensor(input):
        return _op("core::div_scalar")(input, other)
    a, b = _ops.promote_pair(input, other)
    return _op("core::div")(a, b)


subtract, multiply, divide, true_divide = sub, mul, div, div


def _inplace_other(self, other, what):
    """other as a tensor of self's dtype, refusing a float result into an integer self (torch)."""
    other = _ops.as_tensor_like(other, self)
    if other.dtype is not self.dtype:
        res = T.promote(self.dtype, other.dtype)
        if res.is_floating_point and not self.dtype.is_floating_point:
            raise TypeError(f"{what}: result type {res} can't be cast to the desired output type "
                            f"{self.dtype}")
        other = _ops.cast(other, self.dtype)
    return other


def add_(self, other, *, alpha=1):
    """self += alpha * other, in place; returns self."""
    _op("core::add_")(self, _inplace_other(self, other, "add_"), alpha)
    return self


def sub_(self, other, *, alpha=1):
    _op("core::sub_")(self, _inplace_other(self, other, "sub_"), alpha)
    return self


def mul_(self, other):
    _op("core::mul_")(self, _inplace_other(self, other, "mul_"))
    return self


def div_(self, other):
    if not self.dtype.is_floating_point:
        raise TypeError(f"div_: result type float32 can't be cast to the desired output type "
                        f"{self.dtype}")
    _op("core::div_")(self, _inplace_other(self, other, "div_"))
    return self


def zero_(self):
    """Fill self with zeros, in place; returns self."""
    _op("core::zero_")(self)
    return self


# -- unary ----------------------------------------------------------------------------------------
def _unary(name):
    o = [None]

    def f(input):
        if o[0] is None:
            o[0] = _op(name)
        return o[0](input)

    f.__name__ = name.split("::")[1]
    f.__doc__ = f"Elementwise {f.__name__} (torch.{f.__name__}); integer inputs give float32 " \
                f"where the result is fractional."
    return f


neg = negative = _unary("core::neg")
abs = _unary("core::abs")  # noqa: A001  (torch's name)
sign = _unary("core::sign")
exp = _unary("core::exp")
log = _unary("core::log")
log1p = _unary("core::log1p")
sqrt = _unary("core::sqrt")
rsqrt = _unary("core::rsqrt")
sin = _unary("core::sin")
cos = _unary("core::cos")
tanh = _unary("core::tanh")
sigmoid = _unary("core::sigmoid")
silu = _unary("core::silu")


def relu(input, inplace=False):
    """max(input, 0). `inplace=True` writes the result back into input (as F.relu)."""
    out = _op("core::relu")(input)
    return input.copy_(out) if inplace else out


def gelu(input, approximate="none"):
    """x * Phi(x); approximate='tanh' uses 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    return _op("core::gelu")(input, approximate)


def softplus(input, beta=1.0, threshold=20.0):
    """log(1 + exp(beta x)) / beta, and x itself where beta x > threshold (as torch)."""
    return _op("core::softplus")(input, beta, threshold)


def pow(input, exponent):  # noqa: A001  (torch's name)
    """input ** exponent; either may be a Python number."""
    if not _is_tensor(input):  # number ** tensor
        base = _ops.as_tensor_like(input, exponent)
        a, b = _ops.promote_pair(base, exponent)
        return _op("core::pow")(a, b)
    if _is_tensor(exponent):
        a, b = _ops.promote_pair(input, exponent)
        return _op("core::pow")(a, b)
    if not _number(exponent) or isinstance(exponent, complex):
        raise TypeError(f"pow: exponent must be a Tensor or a real number, got "
                        f"{type(exponent).__name__}")
    if not input.dtype.is_floating_point:
        if isinstance(exponent, float):  # as torch: int tensor ** 2.0 is float32
            input = _ops.cast(input, T.float32)
        elif input.dtype is T.bool_:
            input = _ops.cast(input, T.int64)
    return _op("core::pow_scalar")(input, float(exponent))


def clamp(input, min=None, max=None):  # noqa: A002
    """Limit input to [min, max]; either bound may be None, a number or a tensor."""
    if min is None and max is None:
        raise ValueError("clamp: at least one of min and max must not be None")
    if _is_tensor(min) or _is_tensor(max):
        out = input
        if min is not None:
            out = maximum(out, min)
        if max is not None:
            out = minimum(out, max)
        return out
    if not input.dtype.is_floating_point and any(
            isinstance(v, float) and v != int(v) for v in (min, max) if v is not None):
        input = _ops.cast(input, T.float32)
    return _op("core::clamp")(input, min, max)


clip = clamp


def maximum(input, other):
    """Elementwise max (NaN propagates; the gradient is split evenly on ties)."""
    a, b = _ops.promote_pair(input, other)
    return _op("core::maximum")(a, b)


def minimum(input, other):
    a, b = _ops.promote_pair(input, other)
    return _op("core::minimum")(a, b)


def where(condition, input, other):
    """condition ? input : other, all three broadcast; input/other may be numbers."""
    if not _is_tensor(condition):
        raise TypeError(f"where: condition must be a bool Tensor, got {type(condition).__name__}")
    if condition.dtype is not T.bool_:
        condition = _ops.cast(condition, T.bool_)
    if not _is_tensor(input) and not _is_tensor(other):
        ref = _ops.op("core::full")([], 0.0, T.float32, condition.device)
        input = _ops.as_tensor_like(input, ref)
    a, b = _ops.promote_pair(input, other)
    return _op("core::where")(condition, a, b)


def sum_to_size(input, *size):
    """Sum input down to `size` (which must broadcast to input's shape)."""
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    return _op("core::sum_to_size")(input, list(size))


# -- comparisons and logic ------------------------------------------------------------------------
def _cmp(name, scalar_form=False):
    scalar_name = name + "_scalar"

    def f(input, other):
        if scalar_form and _number(other) and _is_tensor(input):
            return _op(scalar_name)(input, other)
        a, b = _ops.promote_pair(input, other)
        return _op(name)(a, b)

    f.__name__ = name.split("::")[1]
    f.__doc__ = f"Elementwise {f.__name__} -> bool (broadcast, promoted)."
    return f


eq, ne, lt, le, gt, ge = (_cmp("core::" + n, scalar_form=True)
                          for n in ("eq", "ne", "lt", "le", "gt", "ge"))
greater, greater_equal, less, less_equal, not_equal = gt, ge, lt, le, ne
logical_and, logical_or, logical_xor = (_cmp("core::logical_" + n) for n in ("and", "or", "xor"))


def logical_not(input):
    return _op("core::logical_not")(input)


def equal(input, other) -> bool:
    """True when both have the same shape and values (torch.equal)."""
    if input.shape != other.shape:
        return False
    return bool(eq(input, other).logical_not().sum().item() == 0) if input.numel() else True


# -- Tensor methods -------------------------------------------------------------------------------
def _dunder_cmp(fn):
    def f(self, other):
        if not (_is_tensor(other) or _number(other)):
            return NotImplemented  # `t == None`, `t in [..]` with non-tensors fall back to identity
        return fn(self, other)

    return f


def _logic(fn, what):
    def f(self, other):
        if not (_is_tensor(other) or isinstance(other, bool)):
            return NotImplemented
        if self.dtype is not T.bool_ or (_is_tensor(other) and other.dtype is not T.bool_):
            raise TypeError(f"{what} is only supported for bool tensors here (bitwise ops on "
                            f"integers are not implemented); got {self.dtype}")
        return fn(self, other)

    return f


def _invert(self):
    if self.dtype is not T.bool_:
        raise TypeError(f"~ is only supported for bool tensors here (bitwise not on integers is "
                        f"not implemented); got {self.dtype}")
    return logical_not(self)


METHODS = {
    "neg": neg, "negative": neg, "abs": abs, "sign": sign, "exp": exp, "log": log,
    "log1p": log1p, "sqrt": sqrt, "rsqrt": rsqrt, "sin": sin, "cos": cos, "tanh": tanh,
    "sigmoid": sigmoid, "relu": lambda self: relu(self), "gelu": gelu, "silu": silu,
    "softplus": softplus, "pow": pow, "clamp": clamp, "clip": clamp,
    "clamp_min": lambda self, min: clamp(self, min=min),
    "clamp_max": lambda self, max: clamp(self, max=max),
    "maximum": maximum, "minimum": minimum,
    "where": lambda self, condition, other: where(condition, self, other),
    "eq": eq, "ne": ne, "lt": lt, "le": le, "gt": gt, "ge": ge, "greater": gt, "less": lt,
    "logical_and": logical_and, "logical_or": logical_or, "logical_xor": logical_xor,
    "logical_not": logical_not, "equal": equal, "sum_to_size": sum_to_size,
    "add_": add_, "sub_": sub_, "mul_": mul_, "div_": div_, "zero_": zero_,
    "__iadd__": add_, "__isub__": sub_, "__imul__": mul_, "__itruediv__": div_,
    "__neg__": neg, "__abs__": abs,
    "__pow__": pow, "__rpow__": lambda self, other: pow(other, self),
    "__eq__": _dunder_cmp(eq), "__ne__": _dunder_cmp(ne), "__lt__": _dunder_cmp(lt),
    "__le__": _dunder_cmp(le), "__gt__": _dunder_cmp(gt), "__ge__": _dunder_cmp(ge),
    "__hash__": object.__hash__,  # __eq__ returns a tensor; hashing stays by identity
    "__and__": _logic(logical_and, "&"), "__or__": _logic(logical_or, "|"),
    "__xor__": _logic(logical_xor, "^"), "__invert__": _invert,
    "__rand__": _logic(logical_and, "&"), "__ror__": _logic(logical_or, "|"),
    "__rxor__": _logic(logical_xor, "^"),
}
