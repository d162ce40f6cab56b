"""Shared helpers for the pytest tier: inputs in every layout, a numpy float64 reference checker,
and an optional comparison against torch.

What it is:
- `make(rng, shape, dtype, layout)` -> (vt tensor, numpy array of the same values). Layouts:
  contiguous, transposed (a permuted view), sliced (a stepped view at a storage offset), expanded
  (stride-0 dims). Values are exact in the dtype, so the float64 reference sees what vt sees.
- `rand_shape`, `broadcast_pair`, `zero_size`: random shapes, incl. 0-size and 1-element.
- `assert_close(vt_result, reference, dtype)`: shape, dtype, then values within the dtype's
  tolerance (exact for integers and bool).
- `torch` fixture: the torch module, or None when it is not importable; `torch_check` runs the
  torch comparison only when torch is there, so nothing else is ever skipped.

What it is not: a place for op cases (those live in one table in test_core_ops.py).
"""
from __future__ import annotations

import zlib

import numpy as np
import pytest

import vibetensor as vt

try:  # torch is the optional [compare] extra
    import torch as _torch
except ImportError:  # pragma: no cover - depends on the environment
    _torch = None

HAS_TORCH = _torch is not None
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="torch is not importable")

LAYOUTS = ("contiguous", "transposed", "sliced", "expanded")

# (rtol, atol) per dtype for results of a few roundings; integers and bool compare exactly.
TOL = {
    "float64": (1e-12, 1e-12),
    "float32": (2e-5, 2e-5),
    "float16": (2e-3, 2e-3),
    "bfloat16": (1.6e-2, 1.6e-2),
}


def dname(dtype) -> str:
    """'float32' for vt.float32, torch.float32, np.float32 or 'float32'."""
    s = str(dtype)
    return s.rsplit(".", 1)[-1].replace("bool_", "bool")


def is_float(dtype) -> bool:
    return dname(dtype) in TOL


def vt_dtype(name: str):
    return getattr(vt, "bool_" if name == "bool" else name)


# -- values --------------------------------------------------------------------------------------

def rand_values(rng, shape, dtype, low=-4, high=4, nonzero=False) -> np.ndarray:
    """Random numbers exactly representable in `dtype`, as a float64 (or int64/bool) array."""
    name = dname(dtype)
    shape = tuple(shape)
    if name == "bool":
        return rng.integers(0, 2, shape).astype(bool)
    if not is_float(name):
        a = rng.integers(low, high + 1, shape).astype(np.int64)
        if nonzero:
            a[a == 0] = 1
        return a
    a = rng.uniform(low, high, shape)
    if nonzero:  # keep divisors away from 0 so float32 quotients stay well conditioned
        a = np.where(a < 0, -1.0, 1.0) * rng.uniform(0.5, 2.0, shape)
    return round_to(a, name)


def round_to(a: np.ndarray, name: str) -> np.ndarray:
    """float64 values rounded to what `name` can hold (bfloat16: keep the top 16 bits)."""
    if name == "bfloat16":
        u = np.asarray(a, np.float32).view(np.uint32) & np.uint32(0xFFFF0000)
        return u.view(np.float32).astype(np.float64)
    if name in ("float16", "float32"):
        return np.asarray(a).astype(name).astype(np.float64)
    return np.asarray(a, np.float64)


def vt_from(a: np.ndarray, dtype) -> vt.Tensor:
    """A fresh contiguous vt tensor of `dtype` holding `a`'s values (a vt-owned copy)."""
    name = dname(dtype)
    if name == "bfloat16":
        return vt.tensor(np.asarray(a, np.float32)).to(vt.bfloat16)
    return vt.tensor(np.asarray(a, dtype=name))


def make(rng, shape, dtype, layout="contiguous", **kw):
    """(vt tensor in `layout`, numpy array of its values). Layouts that a shape cannot have
    (a transposed 1-d tensor) fall back to the next one that it can."""
    shape = tuple(shape)
    if layout == "transposed" and (sum(s > 1 for s in shape) < 2 or 0 in shape):
        layout = "sliced"
    if layout == "expanded" and (not any(s > 1 for s in shape) or 0 in shape):
        layout = "sliced"
    if layout == "sliced" and not shape:
        layout = "contiguous"
    if layout == "contiguous":
        a = rand_values(rng, shape, dtype, **kw)
        return vt_from(a, dtype), a
    if layout == "transposed":  # stored reversed, viewed through .T (permute)
        a = rand_values(rng, shape, dtype, **kw)
        t = vt_from(np.ascontiguousarray(a.T), dtype).T
        assert not t.is_contiguous()
        return t, a
    if layout == "sliced":  # every other element of a wider buffer, from offset 1
        a = rand_values(rng, shape, dtype, **kw)
        wide = rand_values(rng, shape[:-1] + (2 * shape[-1] + 1,), dtype, **kw)
        wide[..., 1::2] = a
        base = vt_from(wide, dtype)
        t = base[..., 1::2]
        assert t.numel() < 2 or (t.storage_offset() == 1 and not t.is_contiguous())
        return t, a
    if layout == "expanded":  # dims of size > 1 alternately broadcast from size 1
        big = [i for i, s in enumerate(shape) if s > 1]
        small = list(shape)
        for i in big[::2]:
            small[i] = 1
        a = rand_values(rng, small, dtype, **kw)
        t = vt_from(a, dtype).expand(shape)
        assert 0 in t.stride()
        return t, np.broadcast_to(a, shape)
    raise ValueError(layout)


# -- shapes --------------------------------------------------------------------------------------

def rand_shape(rng, min_ndim=0, max_ndim=4, max_size=6, min_size=1) -> tuple:
    n = int(rng.integers(min_ndim, max_ndim + 1))
    return tuple(int(x) for x in rng.integers(min_size, max_size + 1, n))


def broadcast_pair(rng, min_ndim=1, max_ndim=4) -> tuple:
    """Two shapes that broadcast: the second drops leading dims and sets some to 1; either may
    come first."""
    s = rand_shape(rng, min_ndim, max_ndim, min_size=2)
    t = list(s[int(rng.integers(0, len(s) + 1)):])
    for i in range(len(t)):
        if rng.random() < 0.35:
            t[i] = 1
    s = list(s)
    for i in range(len(s)):  # the longer one may hold 1s too, where the other is full-size
        j = i - (len(s) - len(t))
        if j >= 0 and t[j] != 1 and rng.random() < 0.2:
            s[i] = 1
    pair = (tuple(s), tuple(t))
    return pair if rng.random() < 0.5 else pair[::-1]


# shape tuples that every elementwise case also meets: 0-d, 1-element, size-1 broadcast, 0-size
EDGE_PAIRS = [((), ()), ((1,), ()), ((), (3, 2)), ((1, 1), (4, 1)), ((5,), (2, 1)),
              ((0,), (1,)), ((3, 0), (3, 1)), ((2, 0, 4), (4,))]


def zero_size(shapes):
    """The same shapes with the last dim of the broadcast result made 0 (where not 1)."""
    out = []
    for s in shapes:
        s = list(s)
        if s and s[-1] != 1:
            s[-1] = 0
        out.append(tuple(s))
    if not any(0 in s for s in out):
        out[0] = out[0][:-1] + (0,) if out[0] else (0,)
    return out


@pytest.fixture
def rng(request):
    """A generator seeded by the test's id: random, but the same on every run."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


# -- checking ------------------------------------------------------------------------------------

def to_numpy(x) -> np.ndarray:
    """A copy of a vt or torch tensor's values (bfloat16 widened to float64)."""
    if isinstance(x, vt.Tensor):
        if x.dtype is vt.bfloat16:
            x = x.to(vt.float64)
        return np.array(x.numpy(), copy=True)
    if _torch is not None and isinstance(x, _torch.Tensor):
        if x.dtype == _torch.bfloat16:
            x = x.double()
        return x.detach().cpu().numpy().copy()
    return np.asarray(x)


def assert_close(actual, expected, dtype=None, *, scale=1.0, msg=""):
    """`actual` (vt or torch tensor) against the float64 reference `expected`: shape, dtype (when
    given), then values within the dtype's tolerance; NaNs must match. `scale` widens atol for
    results that summed many terms."""
    exp = np.asarray(expected)
    got = to_numpy(actual)
    name = dname(actual.dtype)
    if dtype is not None:
        assert name == dname(dtype), f"{msg}: dtype {name}, expected {dname(dtype)}"
    assert got.shape == exp.shape, f"{msg}: shape {got.shape}, expected {exp.shape}"
    if name in TOL:
        rtol, atol = TOL[name]
        np.testing.assert_allclose(got.astype(np.float64), exp.astype(np.float64), rtol=rtol,
                                   atol=atol * scale, equal_nan=True, err_msg=msg)
    else:
        np.testing.assert_array_equal(got, exp.astype(got.dtype) if exp.size else exp,
                                      err_msg=msg)


def torch_tensor(a: np.ndarray, dtype):
    """A contiguous torch tensor of `dtype` holding `a`'s values."""
    name = dname(dtype)
    if name == "bfloat16":
        return _torch.tensor(np.asarray(a, np.float32)).to(_torch.bfloat16)
    return _torch.from_numpy(np.array(a, dtype=name))


@pytest.fixture
def torch():
    """The torch module, or None when it is not importable (the comparison is then skipped,
    and only it)."""
    return _torch


class Lib:
    """vt or torch, plus `.dt`: the dtype under test as that library spells it, so one op-case
    lambda (`lambda m, a: m.zeros(2, dtype=m.dt) + a`) runs on both."""

    def __init__(self, mod, dtype_name="float32"):
        self.mod = mod
        self.is_vt = mod is vt
        self.dt = vt_dtype(dtype_name) if self.is_vt else getattr(mod, dtype_name)

    def __getattr__(self, name):
        return getattr(self.mod, name)


def torch_check(fn, vt_result, inputs, dtypes, *, dtype_name="float32", scale=1.0, msg=""):
    """Run `fn(Lib(torch), *torch_inputs)` and require vt's result to match torch's dtype and
    values. A no-op without torch."""
    if _torch is None:
        return
    args = [torch_tensor(a, d) for a, d in zip(inputs, dtypes)]
    ref = fn(Lib(_torch, dtype_name), *args)
    assert dname(vt_result.dtype) == dname(ref.dtype), \
        f"{msg}: vt gives {vt_result.dtype}, torch gives {ref.dtype}"
    assert_close(vt_result, to_numpy(ref).astype(np.float64) if is_float(ref.dtype)
                 else to_numpy(ref), scale=scale, msg=f"{msg} (vs torch)")
