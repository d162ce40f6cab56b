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
- Devices and providers: the `device` fixture runs a test once per available device (cpu always,
  cuda where `vt.cuda.is_available()`; `VT_TEST_DEVICES=cuda` or `cpu,cuda` picks). `make(...,
  device=)` builds the values on cpu, moves the base tensor to the device and takes the layout's
  view there; `on(device, ...)` moves ready tensors; `to_numpy`/`assert_close` bring results back
  to cpu. `providers(op, device)` lists an op's provider names there (each table runs per
  provider, pinned with `vt.ops.use(op, name, device)`).

- `Row`: the one table style of the op tests. A table is a list of rows with named fields (id,
  the vt call, its numpy float64 reference, the torch twin, dtypes, result dtype, input range);
  `rows(table)` parametrizes a test over it by id, `by_id(table)` indexes it. (test_core_ops's
  `Case` is the same idea with the fields its generic runner needs: shapes, layouts, in-place.)

What it is not: a place for op cases (those live in the family test files' tables).
"""
from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from typing import Callable

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


# -- devices and providers -------------------------------------------------------------------------

def available_devices() -> tuple:
    """cpu, plus cuda where the runtime sees a GPU; VT_TEST_DEVICES (comma-separated) narrows."""
    found = ["cpu"]
    cuda = getattr(vt, "cuda", None)
    try:
        if cuda is not None and cuda.is_available():
            found.append("cuda")
    except Exception:  # noqa: BLE001 - a runtime without CUDA support: cpu only
        pass
    want = os.environ.get("VT_TEST_DEVICES")
    if want:
        found = [d for d in (w.strip() for w in want.split(",")) if d in found]
    return tuple(found)


DEVICES = available_devices()


@pytest.fixture(params=DEVICES)
def device(request):
    """The device a table test runs on (one test per available device)."""
    return request.param


def on(device, *xs):
    """The tensors moved to `device` (None and non-tensors pass through); one value for one."""
    out = tuple(x.to(device) if isinstance(x, vt.Tensor) and device != "cpu" else x for x in xs)
    return out[0] if len(out) == 1 else out


def providers(op: str, device="cpu") -> list:
    """Names of `op`'s providers on `device`, best first ([] where it has none there)."""
    return [p.name for p in vt.ops.providers(op, device)]


def device_providers(op: str) -> list:
    """pytest params (device, provider) for every provider of `op` on every available device."""
    return [pytest.param(d, p, id=f"{d}-{p}") for d in DEVICES for p in providers(op, d)]


# -- op tables ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Row:
    """One op case of a table. Only `id` and `fn` are needed; a table uses the fields it needs."""
    id: str
    fn: Callable                  # the vt call
    ref: Callable = None          # numpy float64 reference
    torch: Callable = None        # the same call in torch (None: no torch comparison)
    dtypes: tuple = ()            # dtypes the case runs over, where the table varies them
    out: Callable = None          # dtype under test -> result dtype (None: the same)
    range: tuple = (-4, 4)        # (low, high) of the input values

    def __repr__(self):
        return self.id


def rows(table) -> list:
    """pytest params, one per row, named by the row's id."""
    return [pytest.param(r, id=r.id) for r in table]


def by_id(table) -> dict:
    return {r.id: r for r in table}


# -- values --------------------------------------------------------------------------------------

def rand_values(rng, shape, dtype, low=-4, high=4, nonzero=False, ints=False) -> np.ndarray:
    """Random numbers exactly representable in `dtype`, as a float64 (or int64/bool) array.
    ints: whole numbers in [low, high] for float dtypes too (so comparisons see ties)."""
    name = dname(dtype)
    shape = tuple(shape)
    if name == "bool":
        return rng.integers(0, 2, shape).astype(bool)
    if ints and is_float(name):
        return rng.integers(low, high + 1, shape).astype(np.float64)
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


def vt_from(a: np.ndarray, dtype, device="cpu") -> vt.Tensor:
    """A fresh contiguous vt tensor of `dtype` holding `a`'s values (a vt-owned copy) on
    `device`."""
    name = dname(dtype)
    if name == "bfloat16":
        t = vt.tensor(np.asarray(a, np.float32)).to(vt.bfloat16)
    else:
        t = vt.tensor(np.asarray(a, dtype=name))
    return t if device == "cpu" else t.to(device)


def make(rng, shape, dtype, layout="contiguous", device="cpu", **kw):
    """(vt tensor in `layout` on `device`, numpy array of its values). The layout's view is
    taken on the device (the base tensor moves, then is viewed). Layouts that a shape cannot have
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
        return vt_from(a, dtype, device), a
    if layout == "transposed":  # stored reversed, viewed through .T (permute)
        a = rand_values(rng, shape, dtype, **kw)
        t = vt_from(np.ascontiguousarray(a.T), dtype, device).T
        assert not t.is_contiguous()
        return t, a
    if layout == "sliced":  # every other element of a wider buffer, from offset 1
        a = rand_values(rng, shape, dtype, **kw)
        wide = rand_values(rng, shape[:-1] + (2 * shape[-1] + 1,), dtype, **kw)
        wide[..., 1::2] = a
        base = vt_from(wide, dtype, device)
        t = base[..., 1::2]
        assert t.numel() < 2 or (t.storage_offset() == 1 and not t.is_contiguous())
        return t, a
    if layout == "expanded":  # dims of size > 1 alternately broadcast from size 1
        big = [i for i, s in enumerate(shape) if s > 1]
        small = list(shape)
        for i in big[::2]:
            small[i] = 1
        a = rand_values(rng, small, dtype, **kw)
        t = vt_from(a, dtype, device).expand(shape)
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
    """A copy of a vt or torch tensor's values on cpu (bfloat16 widened to float64)."""
    if isinstance(x, vt.Tensor):
        if x.device.type != "cpu":
            x = x.cpu()
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
    lambda (`lambda m, a: m.zeros(2, dtype=m.dt) + a`) runs on both. vt's factories make their
    tensors on `device` (torch, the reference, stays on cpu)."""

    FACTORIES = frozenset({"zeros", "ones", "full", "empty", "arange", "linspace", "eye", "rand",
                           "randn", "normal", "uniform", "randint", "randperm", "tensor"})

    def __init__(self, mod, dtype_name="float32", device="cpu"):
        self.mod = mod
        self.is_vt = mod is vt
        self.dt = vt_dtype(dtype_name) if self.is_vt else getattr(mod, dtype_name)
        self.device = device if self.is_vt else "cpu"

    def __getattr__(self, name):
        fn = getattr(self.mod, name)
        if self.is_vt and self.device != "cpu" and name in self.FACTORIES:
            return lambda *a, **kw: fn(*a, **{"device": self.device, **kw})
        return fn


def torch_check(fn, vt_result, inputs, dtypes, *, dtype_name="float32", scale=1.0, msg=""):
    """Run `fn(Lib(torch), *torch_inputs)` and require vt's result to match torch's dtype and
    values. Skips the test (saying so) without torch."""
    if _torch is None:
        pytest.skip("torch is not importable: the comparison with torch cannot run")
    args = [torch_tensor(a, d) for a, d in zip(inputs, dtypes)]
    ref = fn(Lib(_torch, dtype_name), *args)
    assert dname(vt_result.dtype) == dname(ref.dtype), \
        f"{msg}: vt gives {vt_result.dtype}, torch gives {ref.dtype}"
    assert_close(vt_result, to_numpy(ref).astype(np.float64) if is_float(ref.dtype)
                 else to_numpy(ref), scale=scale, msg=f"{msg} (vs torch)")


@pytest.fixture
def tune_cache(tmp_path, monkeypatch):
    """A private, empty tuned-table cache file (VT_TUNE_CACHE) for the test: the runtime's tables
    are rebuilt from it at the start (no entry of the user's cache steers a call) and from the real
    one after (nothing tuned in the test leaks into others)."""
    from vibetensor.registry import tune

    path = tmp_path / "tuned.json"
    monkeypatch.setenv("VT_TUNE_CACHE", str(path))
    tune.apply()
    yield path
    monkeypatch.undo()
    tune.apply()
