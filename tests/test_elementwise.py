"""The elementwise family (ops/core/src/{unary,compare,pointwise,binary}.cpp and
python/vibetensor/_elementwise.py) against a numpy float64 reference, and against torch where it
imports.

Forward: every op over float32/float64/float16/bfloat16 (and integer/bool where it applies), in
every conftest layout (contiguous, transposed, sliced, expanded) plus 0-size, 0-d and 1-element
shapes, on every available device (conftest's `device`); the tables are conftest `Row`s. Backward:
gradcheck (float64 finite differences) for every differentiable op, with broadcasting; double
backward for the fused activation gradients. Bad input: exception class and message.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import vibetensor as vt
from conftest import (EDGE_PAIRS, HAS_TORCH, LAYOUTS, Row, assert_close, broadcast_pair, by_id,
                      make, on, rand_shape, torch_tensor, to_numpy, zero_size)

if HAS_TORCH:
    import torch
else:  # pragma: no cover - depends on the environment
    torch = None

FLOATS = ("float32", "float64", "float16", "bfloat16")
SHAPES = [(), (1,), (5,), (3, 4), (2, 3, 4), (0,), (2, 0, 3)]
_erf = np.vectorize(math.erf, otypes=[np.float64])


def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def _gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def _softplus(x, beta=1.0, threshold=20.0):
    return np.where(beta * x > threshold, x, np.log1p(np.exp(beta * x)) / beta)


# one Row per op: the vt call, the numpy reference, the torch twin, the input range
UNARY = by_id([
    Row("neg", vt.neg, np.negative, torch=lambda t: -t, range=(-4, 4)),
    Row("abs", vt.abs, np.abs, torch=torch and torch.abs, range=(-4, 4)),
    Row("exp", vt.exp, np.exp, torch=torch and torch.exp, range=(-4, 4)),
    Row("log", vt.log, np.log, torch=torch and torch.log, range=(0.1, 4)),
    Row("log1p", vt.log1p, np.log1p, torch=torch and torch.log1p, range=(-0.9, 4)),
    Row("sqrt", vt.sqrt, np.sqrt, torch=torch and torch.sqrt, range=(0.1, 4)),
    Row("rsqrt", vt.rsqrt, lambda x: 1 / np.sqrt(x), torch=torch and torch.rsqrt, range=(0.1, 4)),
    Row("sin", vt.sin, np.sin, torch=torch and torch.sin, range=(-4, 4)),
    Row("cos", vt.cos, np.cos, torch=torch and torch.cos, range=(-4, 4)),
    Row("tanh", vt.tanh, np.tanh, torch=torch and torch.tanh, range=(-4, 4)),
    Row("sigmoid", vt.sigmoid, _sig, torch=torch and torch.sigmoid, range=(-6, 6)),
    Row("relu", vt.relu, lambda x: np.maximum(x, 0), torch=torch and torch.relu, range=(-4, 4)),
    Row("gelu", vt.gelu, lambda x: 0.5 * x * (1 + _erf(x / math.sqrt(2))),
        torch=torch and torch.nn.functional.gelu, range=(-4, 4)),
    Row("gelu_tanh", lambda x: vt.gelu(x, approximate="tanh"), _gelu_tanh,
        torch=torch and (lambda t: torch.nn.functional.gelu(t, approximate="tanh")), range=(-4, 4)),
    Row("silu", vt.silu, lambda x: x * _sig(x),
        torch=torch and torch.nn.functional.silu, range=(-6, 6)),
    Row("softplus", vt.softplus, _softplus,
        torch=torch and torch.nn.functional.softplus, range=(-6, 6)),
    Row("softplus_beta", lambda x: vt.softplus(x, beta=2.0, threshold=3.0), lambda x: _softplus(x, 2.0, 3.0),
        torch=torch and (lambda t: torch.nn.functional.softplus(t, beta=2.0, threshold=3.0)), range=(-4, 4)),
    Row("square", lambda x: x ** 2, np.square, torch=lambda t: t ** 2, range=(-4, 4)),
    Row("pow3", lambda x: x.pow(3), lambda x: x ** 3, torch=lambda t: t.pow(3), range=(-2, 2)),
    Row("pow_half", lambda x: x ** 0.5, np.sqrt, torch=lambda t: t ** 0.5, range=(0.1, 4)),
    Row("pow_neg", lambda x: x ** -1.5, lambda x: x ** -1.5,
        torch=lambda t: t ** -1.5, range=(0.5, 4)),
    Row("clamp", lambda x: x.clamp(-1.0, 2.0), lambda x: np.clip(x, -1, 2),
        torch=lambda t: t.clamp(-1.0, 2.0), range=(-4, 4)),
    Row("clamp_min", lambda x: vt.clamp(x, min=0.5), lambda x: np.maximum(x, 0.5),
        torch=lambda t: torch.clamp(t, min=0.5), range=(-4, 4)),
    Row("clamp_max", lambda x: vt.clamp(x, max=-0.5), lambda x: np.minimum(x, -0.5),
        torch=lambda t: torch.clamp(t, max=-0.5), range=(-4, 4)),
])
# the reduced-precision results are rounded once from a float32 computation; exp/pow of
# values up to 4 reach 55, so widen atol by the result's magnitude
WIDE = {"exp": 60.0, "square": 16.0, "pow3": 8.0, "pow_neg": 3.0}


def _layouts():
    return LAYOUTS + ("zero_size",)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_forward(name, dtype, device, rng):
    c = UNARY[name]
    fn, ref, (lo, hi), tfn = c.fn, c.ref, c.range, c.torch
    shapes = [rand_shape(rng) for _ in range(2)] + [(), (1,), (3, 1, 4)]
    for shape in shapes:
        for layout in _layouts():
            s = zero_size([shape])[0] if layout == "zero_size" else shape
            x, a = make(rng, s, dtype, "contiguous" if layout == "zero_size" else layout,
                        device, low=lo, high=hi)
            out = fn(x)
            scale = WIDE.get(name, 1.0) if dtype in ("float16", "bfloat16") else 1.0
            assert_close(out, ref(a), dtype, scale=scale, msg=f"{name} {dtype} {s} {layout}")
            if torch is not None and layout == "contiguous":
                tout = tfn(torch_tensor(a, dtype))
                assert_close(out, to_numpy(tout).astype(np.float64), dtype, scale=scale,
                             msg=f"{name} vs torch")


@pytest.mark.parametrize("dtype", ("int32", "int64", "bool"))
def test_unary_integer_inputs_give_float32(dtype, device, rng):
    x, a = make(rng, (3, 4), dtype, device=device, low=0, high=4)
    for fn, ref in ((vt.exp, np.exp), (vt.sqrt, np.sqrt), (vt.sigmoid, _sig),
                    (vt.tanh, np.tanh), (vt.log1p, np.log1p)):
        assert_close(fn(x), ref(a.astype(np.float64)), "float32")


@pytest.mark.parametrize("dtype", ("int32", "int64"))
def test_integer_preserving_ops(dtype, device, rng):
    x, a = make(rng, (4, 5), dtype, "transposed", device, low=-5, high=5)
    assert_close(vt.abs(x), np.abs(a), dtype)
    assert_close(-x, -a, dtype)
    assert_close(vt.relu(x), np.maximum(a, 0), dtype)
    assert_close(vt.sign(x), np.sign(a), dtype)
    assert_close(x.clamp(-2, 3), np.clip(a, -2, 3), dtype)
    assert_close(x ** 3, a ** 3, dtype)
    assert_close(x ** 2.0, (a ** 2).astype(np.float64), "float32")  # float exponent: float32
    assert_close(x.clamp(min=0.5), np.maximum(a, 0.5), "float32")   # as torch: promotes
    e, b = make(rng, (5,), dtype, device=device, low=0, high=3)
    xb = on(device, vt.tensor(np.abs(a) + 1))
    assert_close(vt.pow(xb.to(vt.int64), e.to(vt.int64)), (np.abs(a) + 1) ** b, "int64")


def test_nan_propagation(device):
    nan = float("nan")
    for dtype in ("float32", "bfloat16"):
        x = on(device, vt.tensor([nan, -1.0, 3.0]).to(getattr(vt, dtype)))
        assert np.isnan(to_numpy(vt.relu(x))[0])
        assert np.isnan(to_numpy(x.clamp(0.0, 1.0))[0])
        m = to_numpy(vt.maximum(x, on(device, vt.tensor([0.0, nan, 1.0]).to(x.dtype))))
        assert np.isnan(m[0]) and np.isnan(m[1]) and m[2] == 3.0
        assert np.isnan(to_numpy(vt.minimum(x[1:2], on(device, vt.tensor([nan]).to(x.dtype))))[0])
        for fn in (vt.gelu, vt.exp, vt.silu, vt.sigmoid, vt.tanh, vt.sign):
            got = to_numpy(fn(x))
            assert np.isnan(got[0]) == (fn is not vt.sign), fn.__name__  # sign(NaN) is 0 here
        assert to_numpy(x != x).tolist() == [True, False, False]
        assert to_numpy(x == x).tolist() == [False, True, True]
        assert to_numpy(vt.logical_not(x)).tolist() == [False, False, False]  # NaN is true


# -- binary / ternary forward -----------------------------------------------------------------------
def _pairs(rng):
    return [broadcast_pair(rng) for _ in range(3)] + EDGE_PAIRS


BINARY = by_id([
    Row("maximum", vt.maximum, np.maximum, torch=torch and torch.maximum),
    Row("minimum", vt.minimum, np.minimum, torch=torch and torch.minimum),
    Row("pow", vt.pow, np.power, torch=torch and torch.pow),
    Row("eq", lambda a, b: a == b, np.equal, torch=lambda a, b: a == b),
    Row("ne", lambda a, b: a != b, np.not_equal, torch=lambda a, b: a != b),
    Row("lt", lambda a, b: a < b, np.less, torch=lambda a, b: a < b),
    Row("le", lambda a, b: a <= b, np.less_equal, torch=lambda a, b: a <= b),
    Row("gt", lambda a, b: a > b, np.greater, torch=lambda a, b: a > b),
    Row("ge", vt.ge, np.greater_equal, torch=torch and torch.ge),
    Row("logical_and", vt.logical_and, np.logical_and, torch=torch and torch.logical_and),
    Row("logical_or", vt.logical_or, np.logical_or, torch=torch and torch.logical_or),
    Row("logical_xor", vt.logical_xor, np.logical_xor, torch=torch and torch.logical_xor),
])


@pytest.mark.parametrize("dtype", FLOATS + ("int64", "int32"))
@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_forward(name, dtype, device, rng):
    c = BINARY[name]
    fn, ref, tfn = c.fn, c.ref, c.torch
    kw = {}
    if name == "pow":
        kw = dict(low=0, high=3) if dtype in ("int64", "int32") else dict(low=0.2, high=2)
    pairs = _pairs(rng)
    ties = 0
    for i, (sa, sb) in enumerate(pairs):
        la, lb = LAYOUTS[i % 4], LAYOUTS[(i + 1) % 4]
        a, na = make(rng, sa, dtype, la, device, **kw)
        b, nb = make(rng, sb, dtype, lb, device, **kw)
        if name in ("eq", "ne", "le", "ge") and i % 2:  # values from {-1, 0, 1}: ties are likely
            a, na = make(rng, sa, dtype, la, device, low=-1, high=1, ints=True)
            b, nb = make(rng, sb, dtype, lb, device, low=-1, high=1, ints=True)
            ties += int(np.sum(np.equal(*np.broadcast_arrays(na, nb))))
        out = fn(a, b)
        exp = ref(na, nb)
        assert_close(out, exp, out.dtype, scale=4.0, msg=f"{name} {sa} {sb}")
        if torch is not None:
            tout = tfn(torch_tensor(na, dtype), torch_tensor(nb, dtype))
            assert str(out.dtype).split(".")[-1] == str(tout.dtype).split(".")[-1]
    if name in ("eq", "ne", "le", "ge"):
        assert ties > 0, "the tie cases produced no ties"


def test_comparisons_promote_and_take_scalars(device, rng):
    x, a = make(rng, (3, 4), "int64", "transposed", device)
    assert_close(x < 2.5, a < 2.5, "bool")
    assert_close(x == 2, a == 2, "bool")
    assert_close(x.to(vt.float32) >= x, np.ones(a.shape, bool), "bool")
    assert_close(2 < x, 2 < a, "bool")  # reflected


def test_where(device, rng):
    for sc, sa, sb in [((3, 4), (3, 4), (3, 4)), ((3, 1), (4,), ()), ((2, 3, 1), (1, 5), (3, 1)),
                       ((0, 2), (2,), (1,)), ((), (), ())]:
        for dtype in ("float32", "float64", "bfloat16", "int64", "bool"):
            c, nc = make(rng, sc, "bool", device=device)
            a, na = make(rng, sa, dtype, "sliced", device)
            b, nb = make(rng, sb, dtype, "transposed", device)
            assert_close(vt.where(c, a, b), np.where(nc, na, nb), dtype)
    c, nc = make(rng, (5,), "bool", device=device)
    x, nx = make(rng, (5,), "float32", device=device)
    assert_close(vt.where(c, x, 0.0), np.where(nc, nx, 0.0), "float32")
    assert_close(vt.where(c, 1.0, x), np.where(nc, 1.0, nx), "float32")
    assert_close(x.where(c, -1), np.where(nc, nx, -1.0), "float32")
    assert_close(vt.where(c, 2, 3), np.where(nc, 2, 3).astype(np.float64), "float32")


def test_logical_not_and_bool_operators(device, rng):
    a, na = make(rng, (4, 3), "bool", "transposed", device)
    b, nb = make(rng, (3,), "bool", device=device)
    assert_close(~a, ~na, "bool")
    assert_close(a & b, na & nb, "bool")
    assert_close(a | b, na | nb, "bool")
    assert_close(a ^ b, na ^ nb, "bool")
    assert_close(vt.logical_not(on(device, vt.tensor([0.0, 2.0]))), np.array([True, False]), "bool")
    with pytest.raises(TypeError, match="bool tensors"):
        vt.tensor([1, 2]) & vt.tensor([1, 0])
    with pytest.raises(TypeError, match="bool tensors"):
        ~vt.tensor([1, 2])


def test_eq_operator_and_hashing():
    x, y = vt.tensor([1.0, 2.0]), vt.tensor([1.0, 3.0])
    assert (x == y).tolist() == [True, False]
    assert (x != y).tolist() == [False, True]
    assert hash(x) != hash(y) and {x: 1}[x] == 1
    assert x in [x] and (x == None) is False  # noqa: E711
    assert vt.equal(x, x.clone()) and not vt.equal(x, y)


@pytest.mark.parametrize("src,dst", [("float32", "float64"), ("float64", "bfloat16"),
                                     ("float32", "float16"), ("bfloat16", "float32"),
                                     ("float32", "int32"), ("int64", "float64"),
                                     ("float64", "bool"), ("bool", "int64"), ("int32", "int8")])
def test_to_dtype(src, dst, device, rng):
    for layout in ("contiguous", "transposed", "expanded"):
        x, a = make(rng, (3, 5), src, layout, device, low=-3, high=3)
        out = x.to(getattr(vt, "bool_" if dst == "bool" else dst))
        if dst == "bool":
            exp = a != 0
        elif dst.startswith("int"):
            exp = np.trunc(a).astype(np.int64)
        else:
            exp = a
        assert_close(out, exp, dst)


def test_sum_to_size(device, rng):
    for big, small in [((2, 3, 4), (3, 1)), ((2, 3, 4), (1, 4)), ((2, 3, 4), ()), ((5,), (5,)),
                       ((4, 1, 3), (1, 3)), ((2, 0, 3), (1, 3)), ((2, 3), (2, 3))]:
        for dtype in ("float32", "float64", "bfloat16"):
            x, a = make(rng, big, dtype, "transposed", device)
            out = x.sum_to_size(small)
            lead = len(big) - len(small)
            axes = tuple(range(lead)) + tuple(lead + i for i, s in enumerate(small)
                                              if s == 1 and big[lead + i] != 1)
            exp = a.sum(axis=axes, keepdims=True).reshape(small) if axes else a.reshape(small)
            assert_close(out, exp, dtype, scale=8.0)
            if torch is not None:
                assert_close(out, to_numpy(torch_tensor(a, dtype).sum_to_size(small)).astype(
                    np.float64), dtype, scale=8.0)


# -- in-place ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ("float32", "float64", "bfloat16", "int64"))
def test_inplace_arithmetic(dtype, device, rng):
    for layout in ("contiguous", "transposed", "sliced"):
        x, a = make(rng, (3, 4), dtype, layout, device)
        b, nb = make(rng, (4,), dtype, device=device, nonzero=True)
        a = a.copy()
        ret = x.add_(b, alpha=2)
        assert ret is x
        a = a + 2 * nb
        assert_close(x, a, dtype, scale=4)
        x.sub_(b)
        a = a - nb
        x.mul_(b)
        a = a * nb
        assert_close(x, a, dtype, scale=16)
        if dtype != "int64":
            x.div_(b)
            a = a / nb
            assert_close(x, a, dtype, scale=16)
        x += 1
        a = a + 1
        x *= 2
        a = a * 2
        assert_close(x, a, dtype, scale=32)
        assert x.zero_() is x
        assert_close(x, np.zeros_like(a), dtype)


def test_inplace_errors():
    x = vt.tensor([1, 2, 3])
    with pytest.raises(TypeError, match="can't be cast"):
        x.add_(0.5)
    with pytest.raises(TypeError, match="can't be cast"):
        x /= 2
    with pytest.raises(ValueError, match=r"\[core::add_\] other of shape \(2, 3\) cannot be "
                                         r"broadcast to self of shape \(3,\)"):
        x.add_(vt.zeros(2, 3, dtype=vt.int64))


# -- the fused activation gradients: grad * f'(x) in one kernel ------------------------------------
def _gelu_grad(x):
    return 0.5 * (1 + _erf(x / math.sqrt(2))) + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def _gelu_tanh_grad(x):
    k = math.sqrt(2 / math.pi)
    t = np.tanh(k * (x + 0.044715 * x ** 3))
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * 0.044715 * x * x)


_aten = torch.ops.aten if torch is not None else None
FUSED = by_id([  # fn(grad, x) with x the saved input (tanh/sigmoid: the saved output y)
    Row("tanh_backward", vt.ops.core.tanh_backward, lambda g, y: g * (1 - y * y),
        torch=_aten and _aten.tanh_backward, range=(-1, 1)),
    Row("sigmoid_backward", vt.ops.core.sigmoid_backward, lambda g, y: g * y * (1 - y),
        torch=_aten and _aten.sigmoid_backward, range=(0, 1)),
    Row("silu_backward", vt.ops.core.silu_backward,
        lambda g, x: g * _sig(x) * (1 + x * (1 - _sig(x))), torch=_aten and _aten.silu_backward),
    Row("gelu_backward", vt.ops.core.gelu_backward, lambda g, x: g * _gelu_grad(x),
        torch=_aten and _aten.gelu_backward),
    Row("gelu_backward_tanh", lambda g, x: vt.ops.core.gelu_backward(g, x, "tanh"),
        lambda g, x: g * _gelu_tanh_grad(x),
        torch=_aten and (lambda g, x: _aten.gelu_backward(g, x, approximate="tanh"))),
    Row("softplus_backward", lambda g, x: vt.ops.core.softplus_backward(g, x, 2.0, 3.0),
        lambda g, x: np.where(2 * x > 3, g, g * _sig(2 * x)),
        torch=_aten and (lambda g, x: _aten.softplus_backward(g, x, 2.0, 3.0))),
])


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", sorted(FUSED))
def test_fused_gradients(name, dtype, device, rng):
    c = FUSED[name]
    lo, hi = c.range
    shapes = [((3, 4), (3, 4)), ((2, 3, 4), (4,)), ((3, 1), (1, 5)), ((), (2, 2)), ((0, 3), (3,))]
    for i, (sg, sx) in enumerate(shapes):
        g, ng = make(rng, sg, dtype, LAYOUTS[i % 4], device)
        x, nx = make(rng, sx, dtype, LAYOUTS[(i + 1) % 4], device, low=lo, high=hi)
        out = c.fn(g, x)
        assert_close(out, c.ref(ng, nx), dtype, scale=2.0, msg=f"{name} {dtype} {sg} {sx}")
        if torch is not None and sg == sx:
            tout = c.torch(torch_tensor(ng, dtype), torch_tensor(nx, dtype))
            assert_close(out, to_numpy(tout).astype(np.float64), dtype, scale=2.0,
                         msg=f"{name} vs torch")


# -- long tensors: the vectorised kernels' full vectors and tail, and misaligned views -------------
LONG = [  # (name, vt call on (x, y, cond), numpy reference, result dtype: None = x's)
    ("gelu", lambda x, y, c: vt.gelu(x), lambda a, b, k: 0.5 * a * (1 + _erf(a / math.sqrt(2))), None),
    ("gelu_tanh", lambda x, y, c: vt.gelu(x, approximate="tanh"), lambda a, b, k: _gelu_tanh(a), None),
    ("exp", lambda x, y, c: vt.exp(x), lambda a, b, k: np.exp(a), None),
    ("silu", lambda x, y, c: vt.silu(x), lambda a, b, k: a * _sig(a), None),
    ("relu", lambda x, y, c: vt.relu(x), lambda a, b, k: np.maximum(a, 0), None),
    ("square", lambda x, y, c: x ** 2, lambda a, b, k: a * a, None),
    ("add_scalar", lambda x, y, c: x + 1.0, lambda a, b, k: a + 1, None),
    ("rsub_scalar", lambda x, y, c: vt.ops.core.rsub_scalar(x, 0.5, 3), lambda a, b, k: 0.5 - 3 * a, None),
    ("div_scalar", lambda x, y, c: x / 4.0, lambda a, b, k: a / 4, None),
    ("maximum", lambda x, y, c: vt.maximum(x, y), lambda a, b, k: np.maximum(a, b), None),
    ("lt", lambda x, y, c: x < y, lambda a, b, k: a < b, "bool"),
    ("ge_scalar", lambda x, y, c: x >= 0.25, lambda a, b, k: a >= 0.25, "bool"),
    ("where", lambda x, y, c: vt.where(c, x, y), lambda a, b, k: np.where(k, a, b), None),
    ("gelu_backward", lambda x, y, c: vt.ops.core.gelu_backward(y, x),
     lambda a, b, k: b * _gelu_grad(a), None),
]


@pytest.mark.parametrize("dtype", ("float32", "bfloat16", "float16", "float64"))
def test_long_and_misaligned(dtype, device, rng):
    n = 4099  # not a multiple of any vector width
    for offset in (0, 1):  # 1: views whose data is not 16-byte aligned
        xs, ax = make(rng, (n + 1,), dtype, device=device)
        ys, ay = make(rng, (n + 1,), dtype, device=device)
        cs, ac = make(rng, (n + 1,), "bool", device=device)
        x, y, c = xs[offset:offset + n], ys[offset:offset + n], cs[offset:offset + n]
        a, b, k = ax[offset:offset + n], ay[offset:offset + n], ac[offset:offset + n]
        for name, fn, ref, out_dtype in LONG:
            scale = 16.0 if name in ("exp", "square") else 2.0
            assert_close(fn(x, y, c), ref(a, b, k), out_dtype or dtype, scale=scale,
                         msg=f"{name} {dtype} offset {offset}")


@pytest.mark.parametrize("dtype", ("bool", "uint8", "int8"))
def test_compare_and_minmax_small_integers(dtype, device, rng):
    for la, lb in (("contiguous", "contiguous"), ("transposed", "sliced")):
        a, na = make(rng, (4, 5), dtype, la, device, low=0 if dtype == "uint8" else -3, high=3)
        b, nb = make(rng, (4, 5), dtype, lb, device, low=0 if dtype == "uint8" else -3, high=3)
        for fn, ref in ((vt.eq, np.equal), (vt.ne, np.not_equal), (vt.lt, np.less),
                        (vt.le, np.less_equal), (vt.gt, np.greater), (vt.ge, np.greater_equal),
                        (vt.logical_and, np.logical_and), (vt.logical_or, np.logical_or),
                        (vt.logical_xor, np.logical_xor)):
            assert_close(fn(a, b), ref(na, nb), "bool", msg=f"{fn.__name__} {dtype}")
        assert_close(vt.logical_not(a), np.logical_not(na), "bool")
        assert_close(vt.maximum(a, b), np.maximum(na, nb), dtype)
        assert_close(vt.minimum(a, b), np.minimum(na, nb), dtype)
        assert_close(vt.where(vt.gt(a, b), a, b), np.where(na > nb, na, nb), dtype)


# -- bad input --------------------------------------------------------------------------------------
def test_errors():
    op = vt.ops.core if hasattr(vt.ops, "core") else None
    from vibetensor import _ops

    f32, f64 = vt.ones(3), vt.ones(3, dtype=vt.float64)
    with pytest.raises(TypeError, match=r"\[core::maximum\] dtype mismatch: self is float32, "
                                        r"other is float64"):
        _ops.op("core::maximum")(f32, f64)
    with pytest.raises(ValueError, match=r"\[core::gelu\] approximate must be 'none' or 'tanh', "
                                         r"got 'fast'"):
        vt.gelu(f32, approximate="fast")
    with pytest.raises(ValueError, match=r"\[core::lt\] shapes cannot be broadcast"):
        vt.ones(2, 3) < vt.ones(4)
    with pytest.raises(TypeError, match=r"\[core::where\] condition must be bool, got float32"):
        _ops.op("core::where")(f32, f32, f32)
    with pytest.raises(ValueError, match=r"\[core::sum_to_size\] size \(4,\) is not expandable"):
        vt.ones(2, 3).sum_to_size(4)
    with pytest.raises(ValueError, match=r"\[core::sum_to_size\] size \(1, 2, 3\) has more dims"):
        vt.ones(2, 3).sum_to_size(1, 2, 3)
    with pytest.raises(ValueError, match="at least one of min and max"):
        vt.ones(2).clamp()
    with pytest.raises(ValueError, match=r"\[core::clamp\] at least one of min and max"):
        _ops.op("core::clamp")(f32)
    with pytest.raises(ValueError, match=r"\[core::pow_scalar\] integers to negative integer "
                                         r"powers are not allowed"):
        vt.tensor([1, 2]) ** -1
    with pytest.raises(TypeError, match=r"\[core::neg\] negation of a bool tensor"):
        -vt.tensor([True])
    with pytest.raises(NotImplementedError, match=r"\[core::tanh_backward\] not implemented for "
                                                  r"dtype int64"):
        _ops.op("core::tanh_backward")(vt.tensor([1]), vt.tensor([1]))
    with pytest.raises(ValueError, match=r"\[core::softplus\] beta must be nonzero"):
        vt.softplus(f32, beta=0.0)
    del op


# -- autograd ---------------------------------------------------------------------------------------
def _leaf(rng, shape, low=-2.0, high=2.0):
    return vt.tensor(rng.uniform(low, high, shape)).requires_grad_()


GRAD_UNARY = ["neg", "abs", "exp", "log", "log1p", "sqrt", "rsqrt", "sin", "cos", "tanh",
              "sigmoid", "relu", "gelu", "gelu_tanh", "silu", "softplus", "softplus_beta",
              "square", "pow3", "pow_half", "pow_neg", "clamp", "clamp_min", "clamp_max"]


@pytest.mark.parametrize("name", GRAD_UNARY)
def test_gradcheck_unary(name, rng):
    fn, (lo, hi) = UNARY[name].fn, UNARY[name].range
    lo = max(lo, 0.2) if lo >= 0 or name in ("log1p",) else lo
    x = _leaf(rng, (2, 3), lo, hi)
    if name in ("abs", "relu", "clamp", "clamp_min", "clamp_max"):  # keep away from the kinks
        v = x.detach().numpy()
        v[np.abs(v) < 0.05] = 0.3
        for k in (-1.0, 2.0, 0.5, -0.5):
            v[np.abs(v - k) < 0.05] += 0.1
    assert vt.autograd.gradcheck(fn, (x,))


BINARY_GRAD = {
    "add": lambda a, b: a + b,
    "add_alpha": lambda a, b: vt.add(a, b, alpha=-2.5),
    "sub": lambda a, b: a - b,
    "sub_alpha": lambda a, b: vt.sub(a, b, alpha=3.0),
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "pow": lambda a, b: vt.pow(a, b),
    "maximum": vt.maximum,
    "minimum": vt.minimum,
    "where": lambda a, b: vt.where(a > 0.3, a, b),
}


@pytest.mark.parametrize("shapes", [((2, 3), (2, 3)), ((2, 3), (3,)), ((1, 3), (2, 1)),
                                    ((), (2, 2))])
@pytest.mark.parametrize("name", sorted(BINARY_GRAD))
def test_gradcheck_binary(name, shapes, rng):
    lo = 0.5 if name in ("pow", "div") else -2.0
    a, b = _leaf(rng, shapes[0], lo, 2.0), _leaf(rng, shapes[1], lo, 2.0)
    assert vt.autograd.gradcheck(BINARY_GRAD[name], (a, b))


def test_maximum_splits_ties_like_torch():
    a = vt.tensor([1.0, 2.0, 3.0], dtype=vt.float64).requires_grad_()
    b = vt.tensor([1.0, 5.0, 0.0], dtype=vt.float64).requires_grad_()
    vt.maximum(a, b).sum().backward()
    assert a.grad.tolist() == [0.5, 0.0, 1.0] and b.grad.tolist() == [0.5, 1.0, 0.0]


def test_gradcheck_inplace_and_copy(rng):
    a, b = _leaf(rng, (2, 3)), _leaf(rng, (3,), 0.5, 2.0)

    def f_add(a, b):
        y = a * 1.0
        y.add_(b, alpha=2.0)
        return y

    def f_sub_div(a, b):
        y = a * 1.0
        y.sub_(b)
        y.div_(b)
        return y

    def f_mul_self(a, b):  # mul_ with a constant other (b's gradient is refused, see below)
        y = a * 1.0
        y.mul_(b)
        return y

    def f_copy(a, b):
        y = a * 2.0
        y.copy_(b)  # b broadcast into y: y's old values get no gradient
        return y * a

    for f in (f_add, f_sub_div, f_copy):
        assert vt.autograd.gradcheck(f, (a, b)), f.__name__
    assert vt.autograd.gradcheck(f_mul_self, (a, b.detach()))


def test_mul_inplace_other_grad_is_refused(rng):
    a, b = _leaf(rng, (3,)), _leaf(rng, (3,))
    y = a * 1.0
    y.mul_(b)
    with pytest.raises(NotImplementedError, match=r"\[core::mul_\] the gradient for 'other'"):
        y.sum().backward()


def test_to_dtype_backward(rng):
    x = _leaf(rng, (2, 3))
    y = x.to(vt.float32)
    (y * vt.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert x.grad.dtype is vt.float64
    assert x.grad.tolist() == [[1.0, 2.0, 3.0]] * 2
    assert vt.autograd.gradcheck(lambda t: t.to(vt.float64) * 3.0, (x,))
    z = vt.tensor([1.0, 2.0]).to(vt.bfloat16).requires_grad_()
    (z.to(vt.float32) * 2.0).sum().backward()
    assert z.grad.dtype is vt.bfloat16 and z.grad.float().tolist() == [2.0, 2.0]


def test_sum_to_size_backward(rng):
    x = _leaf(rng, (2, 3, 4))
    assert vt.autograd.gradcheck(lambda t: t.sum_to_size(3, 1) * 2.0, (x,))


def test_integer_outputs_never_require_grad(rng):
    x = _leaf(rng, (3,))
    assert not (x > 0).requires_grad
    assert not vt.sign(x).requires_grad
    assert vt.exp(x).requires_grad


def test_half_gradients_keep_dtype(rng):
    for dt in (vt.bfloat16, vt.float16):
        x = vt.tensor(rng.uniform(-2, 2, (4,))).to(dt).requires_grad_()
        for fn in (vt.gelu, vt.silu, vt.tanh, vt.sigmoid, vt.exp):
            x.grad = None
            fn(x).sum().backward()
            assert x.grad.dtype is dt and x.grad.shape == (4,)


# second derivatives of the fused activation gradients: gradcheck the first derivative
DOUBLE = {
    "tanh": vt.tanh, "sigmoid": vt.sigmoid, "silu": vt.silu, "gelu": vt.gelu,
    "gelu_tanh": lambda x: vt.gelu(x, approximate="tanh"),
    "softplus": lambda x: vt.softplus(x, beta=1.5, threshold=2.0),
    "exp": vt.exp, "sqrt": vt.sqrt, "rsqrt": vt.rsqrt, "log1p": vt.log1p,
    "pow": lambda x: x ** 3, "div": lambda x: 1.0 / x, "max": lambda x: vt.maximum(x, x * x),
}


@pytest.mark.parametrize("name", sorted(DOUBLE))
def test_double_backward(name, rng):
    fn = DOUBLE[name]
    x = _leaf(rng, (5,), 0.3, 2.0)
    w = vt.tensor(rng.uniform(-1, 1, (5,)))

    def first(x):
        with vt.enable_grad():  # gradcheck evaluates under no_grad for its finite differences
            (gx,) = vt.autograd.grad((fn(x) * w).sum(), x, create_graph=True)
        return gx

    assert vt.autograd.gradcheck(first, (x,))
