"""Tensor-with-a-Python-number ops (ops/core/src/scalar.cpp and the *_scalar comparisons of
compare.cpp), called through `vt.ops.core`: add/sub/rsub/mul/div/rdiv_scalar,
maximum/minimum_scalar, the in-place add/sub/mul/div_scalar_, eq/ne/lt/le/gt/ge_scalar.

Values against a numpy float64 (integers: int64) reference in every conftest layout plus 0-d and
0-size shapes; result dtypes against torch's promotion rule (a number lifts only the category:
int32 + 1 -> int32, float16 + 1.0 -> float16, int64 + 1.0 -> float32, bool + 1 -> int64; true
division of integers gives float32) and against torch itself where it imports; in-place dtype
errors; gradcheck of every differentiable op; shapes and dtypes on the meta device when vt has it.
"""
from __future__ import annotations

import numpy as np
import pytest

import vibetensor as vt
from conftest import HAS_TORCH, LAYOUTS, assert_close, dname, make, to_numpy, torch_tensor

core = vt.ops.core

ALL = ("float32", "float64", "float16", "bfloat16", "int64", "int32", "uint8", "int8", "bool")
SCALARS = (3, -2, 2.5, -0.75, True, False)
SHAPES = [(), (1,), (5,), (3, 4), (2, 3, 4), (0,), (2, 0, 3)]
_CAT = {"bool": 0, "uint8": 1, "int8": 1, "int32": 1, "int64": 1}


def _cat(name):
    return _CAT.get(name, 2)


def result_dtype(name, s, div=False):
    """torch's result dtype of a `name` tensor with the Python number s."""
    sc = 0 if isinstance(s, bool) else 1 if isinstance(s, int) else 2
    r = name if sc <= _cat(name) else ("float32" if sc == 2 else "int64")
    if div and _cat(r) < 2:
        r = "float32"
    return r


# op -> (vt call, reference on (a, s, alpha) in float64 / int64, is division, has alpha)
OPS = {
    "add_scalar": (lambda x, s, al: core.add_scalar(x, s, al), lambda a, s, al: a + al * s, False),
    "sub_scalar": (lambda x, s, al: core.sub_scalar(x, s, al), lambda a, s, al: a - al * s, False),
    "rsub_scalar": (lambda x, s, al: core.rsub_scalar(x, s, al), lambda a, s, al: s - al * a, False),
    "mul_scalar": (lambda x, s, al: core.mul_scalar(x, s), lambda a, s, al: a * s, False),
    "div_scalar": (lambda x, s, al: core.div_scalar(x, s), lambda a, s, al: a / s, True),
    "rdiv_scalar": (lambda x, s, al: core.rdiv_scalar(x, s), lambda a, s, al: s / a, True),
    "maximum_scalar": (lambda x, s, al: core.maximum_scalar(x, s), lambda a, s, al: np.maximum(a, s), False),
    "minimum_scalar": (lambda x, s, al: core.minimum_scalar(x, s), lambda a, s, al: np.minimum(a, s), False),
}
ALPHA = {"add_scalar", "sub_scalar", "rsub_scalar"}


def _supported(name, s, div):
    r = result_dtype(name, s, div)
    return r != "bool"  # bool results (bool tensor + True) are refused


def _reference(op, a, s, alpha, r):
    ref = OPS[op][1]
    if _cat(r) == 2:
        return ref(np.asarray(a, np.float64), float(s), float(alpha))
    # integer result: exact int64 arithmetic, wrapped to r (numpy casts wrap); maximum/minimum
    # compare with the number as r holds it (uint8 with -2 sees 254, as in torch)
    if op in ("maximum_scalar", "minimum_scalar"):
        s = int(np.asarray(int(s), np.int64).astype(r))
    out = ref(np.asarray(a, np.int64), int(s), int(alpha))
    return np.asarray(out, np.int64).astype(r)


def _values(rng, shape, name, op, layout="contiguous", device="cpu"):
    # uint8 stays non-negative; divisors (rdiv) stay away from 0
    low = 0 if name == "uint8" else -4
    kw = {"nonzero": True} if op == "rdiv_scalar" and name != "bool" else {}
    if op == "rdiv_scalar" and name == "uint8":
        low = 1
    return make(rng, shape, name, layout, device, low=low, high=4, **kw)


@pytest.mark.parametrize("dtype", ALL)
@pytest.mark.parametrize("op", sorted(OPS))
def test_forward_values_and_dtypes(op, dtype, device, rng):
    fn, _, div = OPS[op]
    for s in SCALARS:
        if not _supported(dtype, s, div):
            continue
        if op == "div_scalar" and s in (0, False):
            continue
        alpha = 2 if op in ALPHA else 1
        r = result_dtype(dtype, s, div)
        for shape in SHAPES:
            for layout in LAYOUTS if 0 not in shape else ("contiguous",):
                x, a = _values(rng, shape, dtype, op, layout, device)
                if op == "rdiv_scalar" and dtype == "bool":
                    continue  # 1 / False
                out = fn(x, s, alpha)
                msg = f"{op} {dtype} {s!r} {shape} {layout}"
                assert out.shape == x.shape and out.device == x.device, msg
                assert dname(out.dtype) == r, f"{msg}: {out.dtype}, expected {r}"
                # float16/bfloat16 results: the input was rounded once, the number not at all
                assert_close(out, _reference(op, a, s, alpha, r), r, scale=8.0, msg=msg)


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not importable")
@pytest.mark.parametrize("dtype", ALL)
def test_against_torch(dtype, device, rng):
    import torch

    tops = {
        "add_scalar": lambda t, s: torch.add(t, s, alpha=2),
        "sub_scalar": lambda t, s: torch.sub(t, s, alpha=2),
        "rsub_scalar": lambda t, s: torch.rsub(t, s, alpha=2),
        "mul_scalar": lambda t, s: t * s,
        "div_scalar": lambda t, s: t / s,
        "rdiv_scalar": lambda t, s: s / t,
        "maximum_scalar": lambda t, s: torch.maximum(t, torch.tensor(s)),
        "minimum_scalar": lambda t, s: torch.minimum(t, torch.tensor(s)),
    }
    for op, (fn, _, div) in sorted(OPS.items()):
        for s in SCALARS:
            if not _supported(dtype, s, div) or (op == "div_scalar" and s in (0, False)):
                continue
            if op == "rdiv_scalar" and dtype == "bool":
                continue
            if op in ("sub_scalar", "rsub_scalar") and (dtype == "bool" or isinstance(s, bool)):
                continue  # torch refuses subtraction with bools
            x, a = _values(rng, (3, 4), dtype, op, device=device)
            alpha = 2 if op in ALPHA else 1
            t = tops[op](torch_tensor(a, dtype), s)
            out = fn(x, s, alpha)
            msg = f"{op} {dtype} {s!r}"
            assert dname(out.dtype) == dname(t.dtype), f"{msg}: vt {out.dtype}, torch {t.dtype}"
            exp = to_numpy(t)
            assert_close(out, exp.astype(np.float64) if _cat(dname(t.dtype)) == 2 else exp,
                         scale=8.0, msg=msg)


def test_promotion_examples():
    i32 = vt.tensor(np.array([1, 2], np.int32))
    f16 = vt.tensor(np.array([1, 2], np.float16))
    i64 = vt.tensor([1, 2])
    b = vt.tensor([True, False])
    assert core.add_scalar(i32, 1).dtype is vt.int32
    assert core.add_scalar(f16, 1.0).dtype is vt.float16
    assert core.add_scalar(i64, 1.0).dtype is vt.float32
    assert core.add_scalar(b, 1).dtype is vt.int64
    assert core.mul_scalar(b, 2.5).dtype is vt.float32
    assert core.div_scalar(i64, 2).dtype is vt.float32
    assert core.div_scalar(i64, 2).numpy().tolist() == [0.5, 1.0]  # true division
    assert core.rdiv_scalar(i32, 3).numpy().tolist() == [3.0, 1.5]
    assert core.rsub_scalar(i64, 10).numpy().tolist() == [9, 8]
    assert core.add_scalar(i64, 2, alpha=3).numpy().tolist() == [7, 8]


def test_integer_wraparound(device):
    x = vt.tensor(np.array([127, -128], np.int8)).to(device)
    assert to_numpy(core.add_scalar(x, 1)).tolist() == [-128, -127]
    assert to_numpy(core.rsub_scalar(x, 1, alpha=-1)).tolist() == [-128, -127]
    big = vt.tensor(np.array([2 ** 62, -3], np.int64)).to(device)
    assert to_numpy(core.mul_scalar(big, 4)).tolist() == [0, -12]
    u = vt.tensor(np.array([250, 3], np.uint8)).to(device)
    assert to_numpy(core.add_scalar(u, 10)).tolist() == [4, 13]


def test_alpha_must_be_integral_for_integers():
    with pytest.raises(TypeError, match=r"\[core::add_scalar\] alpha must be an integer for "
                                        r"integral dtype int64, got 0.5"):
        core.add_scalar(vt.tensor([1, 2]), 1, alpha=0.5)
    # an integral-valued float alpha is accepted, as by core::add
    assert core.sub_scalar(vt.tensor([5]), 1, alpha=2.0).numpy().tolist() == [3]
    # floating results take any alpha
    assert core.add_scalar(vt.tensor([1.0]), 1, alpha=0.5).numpy().tolist() == [1.5]


def test_bool_results_are_refused():
    with pytest.raises(NotImplementedError, match=r"\[core::add_scalar\] not implemented for "
                                                  r"dtype bool"):
        core.add_scalar(vt.tensor([True]), True)


# -- in place ------------------------------------------------------------------------------------
INPLACE = {
    "add_scalar_": (lambda x, s: core.add_scalar_(x, s, 2), lambda a, s: a + 2 * s),
    "sub_scalar_": (lambda x, s: core.sub_scalar_(x, s, 2), lambda a, s: a - 2 * s),
    "mul_scalar_": (lambda x, s: core.mul_scalar_(x, s), lambda a, s: a * s),
    "div_scalar_": (lambda x, s: core.div_scalar_(x, s), lambda a, s: a / s),
}


@pytest.mark.parametrize("dtype", ("float32", "float64", "float16", "bfloat16", "int64", "int32"))
@pytest.mark.parametrize("op", sorted(INPLACE))
def test_inplace(op, dtype, device, rng):
    fn, ref = INPLACE[op]
    floating = _cat(dtype) == 2
    if op == "div_scalar_" and not floating:
        return
    for s in ((3, -1.5) if floating else (3, -2)):
        for layout in ("contiguous", "transposed", "sliced"):
            x, a = make(rng, (3, 4), dtype, layout, device)
            out = fn(x, s)
            assert out.data_ptr() == x.data_ptr() and out.stride() == x.stride()  # self comes back
            exp = ref(a.astype(np.float64 if floating else np.int64), s)
            assert_close(x, exp, dtype, scale=8.0, msg=f"{op} {dtype} {s} {layout}")


@pytest.mark.parametrize("op,dtype,s,res,want", [
    ("add_scalar_", "int64", 0.5, "float32", "int64"),
    ("sub_scalar_", "int32", 1.0, "float32", "int32"),
    ("mul_scalar_", "bool", 2, "int64", "bool"),
    ("div_scalar_", "int64", 2, "float32", "int64"),
])
def test_inplace_dtype_errors(op, dtype, s, res, want):
    x, _ = make(np.random.default_rng(0), (3,), dtype)
    with pytest.raises(TypeError, match=rf"\[core::{op}\] result type {res} can't be cast to the "
                                        rf"desired output type {want}"):
        getattr(core, op)(x, s)


# -- comparisons ---------------------------------------------------------------------------------
CMP = {"eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal,
       "gt": np.greater, "ge": np.greater_equal}


@pytest.mark.parametrize("dtype", ALL)
@pytest.mark.parametrize("name", sorted(CMP))
def test_compare_scalar(name, dtype, device, rng):
    fn = getattr(core, f"{name}_scalar")
    for s in (1, -2, 1.5, 0.0, True):
        for shape in ((), (5,), (3, 4), (0, 2)):
            for layout in LAYOUTS if 0 not in shape else ("contiguous",):
                x, a = make(rng, shape, dtype, layout, device, low=0 if dtype == "uint8" else -3,
                            high=3)
                out = fn(x, s)
                assert out.dtype is vt.bool_ and out.shape == x.shape
                assert_close(out, CMP[name](np.asarray(a, np.float64), float(s)), "bool",
                             msg=f"{name} {dtype} {s!r} {shape} {layout}")


def test_compare_scalar_rounding_like_torch(device):
    # an int tensor with a float compares in float32; a float16 tensor with the number in float16
    x = vt.tensor([1, 2, 3]).to(device)
    assert to_numpy(core.lt_scalar(x, 2.5)).tolist() == [True, True, False]
    h = vt.tensor(np.array([0.1], np.float16)).to(device)
    assert to_numpy(core.eq_scalar(h, 0.1)).tolist() == [True]
    # int tensors with int numbers compare exactly, past float precision too
    big = vt.tensor(np.array([2 ** 53 + 1], np.int64)).to(device)
    assert to_numpy(core.eq_scalar(big, 2 ** 53)).tolist() == [False]
    i32 = vt.tensor(np.array([5], np.int32)).to(device)
    assert to_numpy(core.gt_scalar(i32, 2 ** 40)).tolist() == [False]
    # int64 with a float: compared in float32, where 2^24 + 1 rounds to 2^24 (as torch)
    assert to_numpy(core.eq_scalar(vt.tensor([2 ** 24 + 1]).to(device), 16777216.0)).tolist() == [True]
    nan = vt.tensor([float("nan"), 1.0]).to(device)
    assert to_numpy(core.ne_scalar(nan, 1.0)).tolist() == [True, False]
    assert to_numpy(core.le_scalar(nan, 1.0)).tolist() == [False, True]


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not importable")
def test_compare_scalar_against_torch(device, rng):
    import torch

    for dtype in ALL:
        for s in (1, 1.5, True):
            x, a = make(rng, (4, 3), dtype, device=device, low=0 if dtype == "uint8" else -3, high=3)
            t = torch_tensor(a, dtype)
            for name in CMP:
                got = to_numpy(getattr(core, f"{name}_scalar")(x, s))
                np.testing.assert_array_equal(got, getattr(torch, name)(t, s).numpy(),
                                              err_msg=f"{name} {dtype} {s!r}")


# -- autograd ------------------------------------------------------------------------------------
GRAD = {
    "add_scalar": lambda x: core.add_scalar(x, 1.5, alpha=2),
    "add_scalar_int": lambda x: core.add_scalar(x, 3),
    "sub_scalar": lambda x: core.sub_scalar(x, 0.5, alpha=-3),
    "rsub_scalar": lambda x: core.rsub_scalar(x, 2.0, alpha=1.5),
    "rsub_scalar_int": lambda x: core.rsub_scalar(x, 2),
    "mul_scalar": lambda x: core.mul_scalar(x, -1.25),
    "mul_scalar_int": lambda x: core.mul_scalar(x, 3),
    "div_scalar": lambda x: core.div_scalar(x, 0.75),
    "div_scalar_int": lambda x: core.div_scalar(x, -2),
    "rdiv_scalar": lambda x: core.rdiv_scalar(x, 1.5),
    "maximum_scalar": lambda x: core.maximum_scalar(x, 1.2),
    "minimum_scalar": lambda x: core.minimum_scalar(x, 1),
    "add_scalar_": lambda x: core.add_scalar_(x * 1.0, 2.0, alpha=3),
    "sub_scalar_": lambda x: core.sub_scalar_(x * 1.0, 2),
    "mul_scalar_": lambda x: core.mul_scalar_(x * 1.0, -2.5),
    "div_scalar_": lambda x: core.div_scalar_(x * 1.0, 4),
    "chain": lambda x: core.rdiv_scalar(core.add_scalar(core.mul_scalar(x, 2.0), 3.0), 1.0),
}


@pytest.mark.parametrize("name", sorted(GRAD))
def test_gradcheck(name, rng):
    x = vt.tensor(rng.uniform(0.5, 2.0, (2, 3))).requires_grad_()
    assert vt.autograd.gradcheck(GRAD[name], (x,))


def test_maximum_scalar_nan_and_ties(device):
    x = vt.tensor([float("nan"), 1.0, 3.0]).to(device).requires_grad_()
    y = core.maximum_scalar(x, 1.0)
    got = to_numpy(y.detach())
    assert np.isnan(got[0]) and got[1:].tolist() == [1.0, 3.0]
    y.sum().backward()
    assert to_numpy(x.grad)[1:].tolist() == [0.5, 1.0]  # a tie splits the gradient, as maximum
    assert np.isnan(to_numpy(core.minimum_scalar(vt.tensor([1.0]).to(device), float("nan")))[0])
    assert to_numpy(core.minimum_scalar(vt.tensor([2, -5]).to(device), 1)).tolist() == [1, -5]


def test_double_backward_rdiv(rng):
    x = vt.tensor(rng.uniform(0.5, 2.0, (4,))).requires_grad_()

    def first(t):
        with vt.enable_grad():
            y = core.rdiv_scalar(t, 2.0).sum()
            (g,) = vt.autograd.grad(y, (t,), create_graph=True)
        return g

    assert vt.autograd.gradcheck(first, (x,))


def test_gradient_keeps_half_dtype(rng):
    x = vt.tensor(rng.uniform(0.5, 2.0, (5,))).to(vt.float16).requires_grad_()
    y = core.mul_scalar(core.add_scalar(x, 1.0), 3)
    assert y.dtype is vt.float16
    y.sum().backward()
    assert x.grad.dtype is vt.float16
    assert_close(x.grad, np.full(5, 3.0), "float16")


def test_integer_results_do_not_require_grad():
    x = vt.tensor([1.0, 2.0]).requires_grad_()
    assert not core.gt_scalar(x, 1.0).requires_grad


# -- the meta device -----------------------------------------------------------------------------
def _meta_or_skip(shape, dtype):
    try:
        return vt.empty(*shape, dtype=dtype, device="meta")
    except Exception as e:  # pragma: no cover - until the meta device lands
        pytest.skip(f"no meta device yet: {e}")


@pytest.mark.parametrize("dtype", ("float32", "float16", "int64", "int32", "bool"))
def test_meta_shapes_and_dtypes(dtype, rng):
    m = _meta_or_skip((2, 3), getattr(vt, "bool_" if dtype == "bool" else dtype))
    x, _ = make(rng, (2, 3), dtype, low=1, high=3)
    calls = [(getattr(core, op), (s,)) for op in OPS for s in (2, 1.5, True)]
    calls += [(getattr(core, f"{n}_scalar"), (s,)) for n in CMP for s in (2, 1.5)]
    for fn, args in calls:
        try:
            want = fn(x, *args)
        except NotImplementedError:
            with pytest.raises(NotImplementedError):
                fn(m, *args)
            continue
        got = fn(m, *args)
        assert got.shape == want.shape and got.dtype is want.dtype, f"{fn} {dtype} {args}"
    # in place: self comes back, or the same error as on cpu
    for op in INPLACE:
        for s in (2, 1.5):
            try:
                getattr(core, op)(x.clone(), s)
            except TypeError as e:
                with pytest.raises(TypeError, match="can't be cast"):
                    getattr(core, op)(m, s)
                assert "can't be cast" in str(e)
                continue
            got = getattr(core, op)(m, s)
            assert got.shape == m.shape and got.dtype is m.dtype and got.device == m.device
