"""Reductions of ops/core (reduce.cpp): sum, mean, var, std, max/min (with and without dim),
argmax/argmin, logsumexp, norm, cumsum.

Each op runs over random shapes and dim sets, every input layout of conftest (contiguous,
transposed, sliced, expanded), 0-size and 0-d/1-element inputs, the dtypes it supports, on every
available device (conftest's `device`), against a numpy float64 reference (and torch where
importable). Then: the long-row parallel path and its
thread-count independence, gradcheck of every differentiable op (float64), double backward, and
bad input.
"""
from __future__ import annotations

import numpy as np
import pytest

import vibetensor as vt
from conftest import (HAS_TORCH, LAYOUTS, Row, assert_close, dname, make, rand_shape, rand_values, round_to,
                      rows, to_numpy, vt_from)

pytestmark = [pytest.mark.filterwarnings("ignore::RuntimeWarning"),  # numpy on 0-size/ddof cases
              pytest.mark.filterwarnings("ignore:.*degrees of freedom:UserWarning")]  # torch, same

try:
    import torch as _torch
except ImportError:  # pragma: no cover
    _torch = None

FLOATS = ("float32", "float64")
HALVES = ("float16", "bfloat16")
INTS = ("int64", "int32")


def rand_dims(rng, ndim):
    """A random subset of dims (None = all), sometimes with negative spellings."""
    if ndim == 0 or rng.random() < 0.25:
        return None
    k = int(rng.integers(1, ndim + 1))
    dims = sorted(rng.choice(ndim, k, replace=False).tolist())
    return tuple(d - ndim if rng.random() < 0.3 else d for d in dims)


def np_axes(dims, ndim):
    return None if dims is None else tuple(d % max(ndim, 1) for d in dims) if ndim else None


def shapes(rng, n=4):
    out = [rand_shape(rng, 1, 4, max_size=5) for _ in range(n)]
    return out + [(), (1,), (3, 1)]


# -- one table of reduction cases ----------------------------------------------------------------
# Rows: fn(x, dims, keepdim) on vt, ref(a, axes, keepdim) on numpy, torch(torch, x, dims, keepdim)

def _np_var(a, axes, keepdim, ddof=1):
    n = a.size if axes is None else int(np.prod([a.shape[i] for i in axes]))
    if n - ddof <= 0:
        m = np.mean(a, axis=axes, keepdims=True) if a.size else a
        return np.full(np.sum(a, axis=axes, keepdims=keepdim).shape, np.nan)
    return np.var(a, axis=axes, keepdims=keepdim, ddof=ddof)


def _np_lse(a, axes, keepdim):
    if a.size == 0:
        return np.log(np.sum(np.exp(a), axis=axes, keepdims=keepdim))
    m = np.max(a, axis=axes, keepdims=True)
    r = m + np.log(np.sum(np.exp(a - m), axis=axes, keepdims=True))
    return r if keepdim else (np.squeeze(r, axis=axes) if axes is not None else r.reshape(()))


def _np_norm(p):
    def ref(a, axes, keepdim):
        x = np.abs(a)
        if p == np.inf:
            return np.max(x, axis=axes, keepdims=keepdim)
        if p == -np.inf:
            return np.min(x, axis=axes, keepdims=keepdim)
        if p == 0:
            return np.sum(x != 0, axis=axes, keepdims=keepdim).astype(np.float64)
        return np.sum(x ** p, axis=axes, keepdims=keepdim) ** (1.0 / p)
    return ref


def _widen(d):
    return d if d in FLOATS + HALVES else "int64"


CASES = [
    Row("sum", lambda x, d, k: x.sum(d, k), lambda a, ax, k: np.sum(a, axis=ax, keepdims=k),
        dtypes=FLOATS + HALVES + INTS, out=_widen,
        torch=lambda t, x, d, k: t.sum(x, d or (), keepdim=k)),
    Row("mean", lambda x, d, k: x.mean(d, k), lambda a, ax, k: np.mean(a, axis=ax, keepdims=k),
        dtypes=FLOATS + HALVES, torch=lambda t, x, d, k: t.mean(x, d or (), keepdim=k)),
    Row("var", lambda x, d, k: x.var(d, keepdim=k), lambda a, ax, k: _np_var(a, ax, k),
        dtypes=FLOATS + HALVES, torch=lambda t, x, d, k: t.var(x, d, keepdim=k)),
    Row("var0", lambda x, d, k: vt.var(x, d, keepdim=k, correction=0), lambda a, ax, k: _np_var(a, ax, k, 0),
        dtypes=FLOATS, torch=lambda t, x, d, k: t.var(x, d, keepdim=k, correction=0)),
    Row("std", lambda x, d, k: x.std(d, keepdim=k), lambda a, ax, k: np.sqrt(_np_var(a, ax, k)),
        dtypes=FLOATS + HALVES, torch=lambda t, x, d, k: t.std(x, d, keepdim=k)),
    Row("logsumexp", lambda x, d, k: x.logsumexp(d, k), _np_lse,
        dtypes=FLOATS + HALVES,
        torch=lambda t, x, d, k: t.logsumexp(x, d if d is not None else tuple(range(x.ndim)), keepdim=k)),
    Row("norm2", lambda x, d, k: x.norm(dim=d, keepdim=k), _np_norm(2),
        dtypes=FLOATS + HALVES, torch=lambda t, x, d, k: t.linalg.vector_norm(x, 2, d, keepdim=k)),
    Row("norm1", lambda x, d, k: x.norm(1, d, k), _np_norm(1),
        dtypes=FLOATS, torch=lambda t, x, d, k: t.linalg.vector_norm(x, 1, d, keepdim=k)),
    Row("norm3", lambda x, d, k: x.norm(3.0, d, k), _np_norm(3),
        dtypes=FLOATS, torch=lambda t, x, d, k: t.linalg.vector_norm(x, 3, d, keepdim=k)),
    Row("norminf", lambda x, d, k: x.norm(float("inf"), d, k), _np_norm(np.inf),
        dtypes=FLOATS),
    Row("norm0", lambda x, d, k: x.norm(0, d, k), _np_norm(0),
        dtypes=FLOATS),
]


@pytest.mark.parametrize("case", rows(CASES))
@pytest.mark.parametrize("layout", LAYOUTS)
def test_reduction_matches_numpy(case, layout, device, rng):
    name, fn, ref, dtypes, out_dt, tfn = case.id, case.fn, case.ref, case.dtypes, case.out, case.torch
    for dtype in dtypes:
        for shape in shapes(rng):
            x, a = make(rng, shape, dtype, layout, device)
            dims = rand_dims(rng, len(shape))
            keepdim = bool(rng.random() < 0.5)
            if name in ("norminf",) and a.size == 0:
                continue
            got = fn(x, list(dims) if dims is not None else None, keepdim)
            exp = ref(a.astype(np.float64), np_axes(dims, len(shape)), keepdim)
            want = out_dt(dtype) if out_dt else dtype
            msg = f"{name} {dtype} {layout} {shape} dims={dims} keepdim={keepdim}"
            assert_close(got, np.asarray(exp), want, scale=max(1.0, np.sqrt(max(a.size, 1))), msg=msg)
            if _torch is not None and tfn is not None and dtype in FLOATS and len(shape):
                tx = _torch.from_numpy(np.array(a, dtype=dtype))
                td = tuple(dims) if dims is not None else None
                tr = tfn(_torch, tx, td, keepdim)
                assert_close(got, to_numpy(tr).astype(np.float64), want,
                             scale=max(1.0, np.sqrt(max(a.size, 1))), msg=msg + " (torch)")


def test_zero_size_and_scalar_reductions(device):
    z = vt.zeros(0, 3, device=device)
    assert z.sum().item() == 0 and np.isnan(z.mean().item())
    assert z.sum(0).tolist() == [0.0] * 3 and z.sum(1).shape == (0,)
    assert np.isnan(z.var().item()) and z.var(1).shape == (0,)
    assert z.logsumexp(0).tolist() == [float("-inf")] * 3
    assert z.norm().item() == 0.0 and z.cumsum(0).shape == (0, 3)
    assert z.norm(float("-inf"), 0).tolist() == [float("inf")] * 3
    assert z.sum(0, dtype=vt.int64).tolist() == [0] * 3 and np.isnan(z.std(0).tolist()).all()
    s = vt.tensor(3.0).to(device)
    assert s.sum().item() == 3.0 and s.sum(0).item() == 3.0 and s.max().item() == 3.0
    assert s.argmax().item() == 0 and s.logsumexp(0).item() == pytest.approx(3.0)
    v, i = s.max(0)
    assert v.item() == 3.0 and i.item() == 0 and v.shape == ()
    assert np.isnan(s.var().item()) and s.var(correction=0).item() == 0.0
    assert s.cumsum(0).item() == 3.0 and s.norm().item() == 3.0
    one = vt.tensor([[2.5]]).to(device)
    assert one.std(keepdim=True).shape == (1, 1) and one.norm(dim=1).tolist() == [2.5]


# -- max / min / argmax / argmin -----------------------------------------------------------------

@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", FLOATS + HALVES + INTS + ("bool", "uint8"))
def test_max_min_arg(dtype, layout, device, rng):
    for shape in shapes(rng):
        x, a = make(rng, shape, dtype, layout, device, **({"low": 0} if dtype == "uint8" else {}))
        if a.size == 0:
            continue
        a64 = a.astype(np.float64)
        assert_close(x.max(), np.max(a64), dtype, msg=f"max {shape}")
        assert_close(x.min(), np.min(a64), dtype, msg=f"min {shape}")
        if dtype != "bool":  # numpy's argmax picks the first of ties, like ours
            assert x.argmax().item() == int(np.argmax(a64)), f"argmax {shape}"
            assert x.argmin().item() == int(np.argmin(a64)), f"argmin {shape}"
        for d in range(-len(shape), len(shape)):
            keep = bool(rng.random() < 0.5)
            v, imax = x.max(d, keepdim=keep)
            assert_close(v, np.max(a64, axis=d, keepdims=keep), dtype)
            assert_close(imax, np.argmax(a64, axis=d, keepdims=keep), "int64")
            v, i = vt.min(x, dim=d, keepdim=keep)
            assert_close(v, np.min(a64, axis=d, keepdims=keep), dtype)
            assert_close(i, np.argmin(a64, axis=d, keepdims=keep), "int64")
            assert_close(x.argmax(d, keep), np.argmax(a64, axis=d, keepdims=keep), "int64")
            assert_close(x.argmin(d, keep), np.argmin(a64, axis=d, keepdims=keep), "int64")
            if _torch is not None and dtype in FLOATS:
                tv, ti = _torch.from_numpy(np.array(a)).max(d, keepdim=keep)
                assert_close(imax, ti.numpy(), "int64", msg="vs torch")


def test_max_nan_and_ties(device):
    def T(data, **kw):
        return vt.tensor(data, **kw).to(device)

    x = T([1.0, float("nan"), 3.0, float("nan")])
    assert np.isnan(x.max().item()) and np.isnan(x.min().item())
    assert x.argmax().item() == 1 and x.argmin().item() == 1  # the first NaN, like torch
    v, i = T([[2.0, 5.0, 5.0, 1.0]]).max(1)
    assert i.tolist() == [1]  # ties: the first index
    assert T([1, 7, 7]).amax().item() == 7
    assert vt.amax(T(np.arange(6.0).reshape(2, 3)), 1).tolist() == [2.0, 5.0]
    assert vt.amin(T(np.arange(6.0).reshape(2, 3)), (0, 1), keepdim=True).shape == (1, 1)
    m = vt.max(T([1.0, 5.0]), T([3.0, 2.0]))  # the elementwise form
    assert m.tolist() == [3.0, 5.0]
    z = T([0.0, -0.0, 0.0])  # equal values: the first one's (sign and index)
    assert np.signbit(T([-0.0, 0.0]).max().item()) and not np.signbit(z.max().item())
    assert z.argmin().item() == 0 and T([-0.0, 0.0]).min(0)[1].item() == 0
    b = T([[False, True, True], [False, False, False]])
    assert b.argmax(1).tolist() == [1, 0] and b.max().item() is True and b.sum().item() == 2


def test_logsumexp_extremes(device):
    x = vt.tensor([[1000.0, 1000.0], [-1000.0, -float("inf")], [float("inf"), 1.0],
                   [-float("inf"), -float("inf")], [float("inf"), float("nan")],
                   [float("nan"), 2.0]], dtype=vt.float64).to(device)
    for t in (x, x.to(vt.float32)):
        r = t.logsumexp(1).tolist()
        assert r[0] == pytest.approx(1000 + np.log(2)) and r[1] == pytest.approx(-1000)
        assert r[2] == float("inf") and r[3] == float("-inf")
        assert np.isnan(r[4]) and np.isnan(r[5])
    assert np.isnan(vt.tensor([1.0, float("nan")]).to(device).logsumexp(0).item())
    i = vt.tensor([1, 2, 3]).to(device).logsumexp(0)  # integers -> float32
    assert i.dtype is vt.float32 and i.item() == pytest.approx(np.log(np.exp([1, 2, 3]).sum()), rel=1e-6)


# -- cumsum --------------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", LAYOUTS + ("zero",))
@pytest.mark.parametrize("dtype", FLOATS + HALVES + INTS + ("bool",))
def test_cumsum(dtype, layout, device, rng):
    for shape in shapes(rng):
        if layout == "zero":
            shape = shape[:-1] + (0,) if shape else (0,)
        x, a = make(rng, shape, dtype, "contiguous" if layout == "zero" else layout, device)
        for d in range(-len(shape), len(shape)):
            got = x.cumsum(d)
            want = _widen(dtype)
            exp = np.cumsum(a.astype(np.float64), axis=d)
            assert_close(got, exp, want, scale=4, msg=f"cumsum {dtype} {layout} {shape} dim={d}")
            if _torch is not None and dtype in FLOATS + INTS:
                t = _torch.cumsum(_torch.from_numpy(np.array(a, dtype=dtype)), d)
                assert dname(t.dtype) == dname(got.dtype)
    assert vt.tensor([1, 2, 3]).cumsum(0, dtype=vt.float64).dtype is vt.float64


# -- the long-row (block-parallel) path ------------------------------------------------------------

def test_long_rows_and_thread_count_independence(rng):
    a = rng.standard_normal(300_001) * 3 + 1
    x = vt.tensor(a, dtype=vt.float64)
    x32 = vt.tensor(a, dtype=vt.float32)
    a32 = a.astype(np.float32).astype(np.float64)
    res = {}
    for threads in (1, vt.get_num_threads() or 2, 3):
        old = vt.get_num_threads()
        vt.set_num_threads(threads)
        try:
            res[threads] = [x.var().item(), x.std().item(), x.max().item(), x.argmin().item(),
                            x.logsumexp(0).item(), x.norm().item(), x.norm(3).item(),
                            x32.var().item(), x32.sum().item(), x[::3].var().item()]
        finally:
            vt.set_num_threads(old)
    vals = list(res.values())
    assert all(v == vals[0] for v in vals), "results depend on the thread count"
    r = vals[0]
    assert r[0] == pytest.approx(np.var(a, ddof=1), rel=1e-12)
    assert r[1] == pytest.approx(np.std(a, ddof=1), rel=1e-12)
    assert r[2] == a.max() and r[3] == int(np.argmin(a))
    assert r[4] == pytest.approx(np.log(np.sum(np.exp(a - a.max()))) + a.max(), rel=1e-12)
    assert r[5] == pytest.approx(np.linalg.norm(a), rel=1e-12)
    assert r[6] == pytest.approx(np.sum(np.abs(a) ** 3) ** (1 / 3), rel=1e-10)
    assert r[7] == pytest.approx(np.var(a32, ddof=1), rel=1e-6)
    assert r[9] == pytest.approx(np.var(a[::3], ddof=1), rel=1e-12)
    # many short outputs over a large tensor (the per-output parallel path)
    b = rng.standard_normal((512, 300))
    y = vt.tensor(b, dtype=vt.float64)
    np.testing.assert_allclose(y.var(0).numpy(), np.var(b, 0, ddof=1), rtol=1e-12)
    np.testing.assert_allclose(y.logsumexp(1).numpy(),
                               np.log(np.exp(b).sum(1)), rtol=1e-12)
    np.testing.assert_array_equal(y.argmax(0).numpy(), np.argmax(b, 0))


# -- large shapes: every device kernel path (long rows split over blocks, 16-byte vectors after an
#    unaligned head, column tiles, chunked scans) against numpy; the same bits run to run ---------

def _big(rng, shape, dtype, device):
    """A tensor of standard normals exact in `dtype`, contiguous on `device`, and its values."""
    a = rng.standard_normal(shape).astype(np.float32).astype(np.float64)
    return vt_from(a, dtype, device), round_to(a, dname(dtype))


BIG = [  # (id, shape, dtype, view of the base tensor, reduction on vt, on numpy float64)
    ("sum_rows_split", (3, 300_001), "float32", None, lambda x: x.sum(-1), lambda a: a.sum(-1)),
    ("sum_all", (1_000_003,), "float32", None, lambda x: x.sum(), lambda a: a.sum()),
    ("mean_all_bf16", (777, 1025), "bfloat16", None, lambda x: x.mean(), lambda a: a.mean()),
    ("sum_rows_f16", (64, 4100), "float16", None, lambda x: x.sum(1), lambda a: a.sum(1)),
    ("sum_unaligned_rows", (300, 1001), "float32", lambda x: x[:, 1:], lambda x: x.sum(1),
     lambda a: a[:, 1:].sum(1)),
    ("sum_cols", (4096, 512), "float32", None, lambda x: x.sum(0), lambda a: a.sum(0)),
    ("sum_cols_bf16", (3000, 256), "bfloat16", None, lambda x: x.sum(0), lambda a: a.sum(0)),
    ("sum_cols_odd", (4099, 257), "float32", None, lambda x: x.sum(0), lambda a: a.sum(0)),
    ("sum_to_size", (32, 128, 96), "float32", None, lambda x: x.sum_to_size(96),
     lambda a: a.sum((0, 1))),
    ("sum_transposed", (700, 3000), "float32", lambda x: x.T, lambda x: x.sum(1),
     lambda a: a.T.sum(1)),
    ("sum_mid_dims", (16, 300, 5, 40), "float64", lambda x: x.permute(0, 2, 1, 3),
     lambda x: x.sum((1, 3)), lambda a: a.transpose(0, 2, 1, 3).sum((1, 3))),
    ("sum_f64_out", (2000, 300), "float32", None, lambda x: x.sum(0, dtype=vt.float64),
     lambda a: a.sum(0)),
    ("var_rows", (3, 200_000), "float32", None, lambda x: x.var(1), lambda a: a.var(1, ddof=1)),
    ("std_cols", (5000, 64), "float32", None, lambda x: x.std(0), lambda a: a.std(0, ddof=1)),
    ("var_all_f64", (600_001,), "float64", None, lambda x: x.var(), lambda a: a.var(ddof=1)),
    ("lse_rows", (5, 70_000), "float32", None, lambda x: x.logsumexp(1),
     lambda a: np.log(np.exp(a).sum(1))),
    ("lse_cols_bf16", (3000, 80), "bfloat16", None, lambda x: x.logsumexp(0),
     lambda a: np.log(np.exp(a).sum(0))),
    ("norm_all", (1_000_000,), "float32", None, lambda x: x.norm(), lambda a: np.sqrt((a * a).sum())),
    ("norm3_rows", (4, 50_000), "float32", None, lambda x: x.norm(3, 1),
     lambda a: (np.abs(a) ** 3).sum(1) ** (1 / 3)),
    ("cumsum_long_rows", (2, 100_000), "float32", None, lambda x: x.cumsum(1), lambda a: a.cumsum(1)),
    ("cumsum_long_cols", (100_000, 3), "float32", None, lambda x: x.cumsum(0), lambda a: a.cumsum(0)),
    ("cumsum_many_rows", (20_000, 37), "float64", None, lambda x: x.cumsum(1), lambda a: a.cumsum(1)),
]


@pytest.mark.parametrize("case", BIG, ids=[c[0] for c in BIG])
def test_large_shapes(case, device, rng):
    name, shape, dtype, view, fn, ref = case
    x, a = _big(rng, shape, dtype, device)
    got = fn(view(x) if view else x)
    exp = ref(a)
    out = "float64" if name == "sum_f64_out" else dtype
    n = a.size / max(np.asarray(exp).size, 1)
    # sums of n terms: an absolute tolerance growing like sqrt(n); scans: their running sums
    assert_close(got, exp, out, scale=np.sqrt(n) if "cumsum" not in name else np.sqrt(a.size), msg=name)


@pytest.mark.parametrize("dtype", FLOATS + HALVES + ("int32", "bool"))
def test_large_extremes_first_index(dtype, device, rng):
    """argmax/argmin/max_dim over long rows and tall columns: ties and NaNs keep the first index."""
    a = rand_values(rng, (5, 70_001), dtype, low=-100, high=100)
    if dtype != "bool":
        a[:, [5, 40_000, 70_000]] = 200  # ties of the max
        a[:, [7, 60_000]] = -200  # ties of the min
        if dtype in FLOATS + HALVES:
            a[1, [33_333, 50_000]] = np.nan
    x = vt_from(a, dtype, device)
    for d in (1, 0):  # long rows, then tall contiguous columns
        xd = x if d == 1 else vt_from(np.ascontiguousarray(a.T), dtype, device)
        ad = a if d == 1 else a.T
        assert_close(xd.argmax(1 if d == 1 else 0), np.argmax(ad, 1 if d == 1 else 0), "int64")
        v, i = xd.min(1 if d == 1 else 0)
        assert_close(i, np.argmin(ad, 1 if d == 1 else 0), "int64")
        assert_close(v, np.min(ad, 1 if d == 1 else 0), dtype)
    assert x.argmax().item() == int(np.argmax(a)) and x.argmin().item() == int(np.argmin(a))
    assert_close(x.max(), np.max(a), dtype)


DETERMINISTIC = [
    ("sum", lambda x: x.sum()), ("sum_rows", lambda x: x.sum(1)), ("sum_cols", lambda x: x.sum(0)),
    ("mean_cols", lambda x: x.mean(0)), ("var", lambda x: x.var()), ("std_cols", lambda x: x.std(0)),
    ("logsumexp", lambda x: x.logsumexp((0, 1))), ("norm", lambda x: x.norm()),
    ("norm_rows", lambda x: x.norm(dim=1)), ("cumsum_cols", lambda x: x.cumsum(0)),
    ("cumsum_rows", lambda x: x.cumsum(1)), ("sum_transposed", lambda x: x.T.sum(0)),
]


@pytest.mark.parametrize("dtype", ("float32", "bfloat16"))
def test_device_determinism(dtype, device, rng):
    """The same reduction of the same tensor twice gives the same bits (fixed reduction trees, no
    atomics), on shapes that take many blocks and the split paths."""
    x, _ = _big(rng, (2048, 1536), dtype, device)
    for name, fn in DETERMINISTIC:
        r1, r2 = to_numpy(fn(x)), to_numpy(fn(x))
        assert r1.tobytes() == r2.tobytes(), f"{name} {dtype}: results differ between runs"


# -- gradients -------------------------------------------------------------------------------------

def leaf(rng, shape, layout="contiguous"):
    a = rng.standard_normal(shape)
    return vt.tensor(a, dtype=vt.float64).requires_grad_()


GRADS = [
    ("sum", lambda x: x.sum()),
    ("sum_dims", lambda x: x.sum([0, 2])),
    ("sum_keep", lambda x: vt.sum(x, -1, keepdim=True)),
    ("mean", lambda x: x.mean((1,))),
    ("mean_all_keep", lambda x: x.mean(keepdim=True)),
    ("var", lambda x: x.var(1)),
    ("var_keep", lambda x: x.var((0, 2), keepdim=True, correction=0)),
    ("std", lambda x: x.std(0)),
    ("std_all", lambda x: x.std()),
    ("max_dim", lambda x: x.max(1).values),
    ("min_dim_keep", lambda x: x.min(-1, keepdim=True)[0]),
    ("max", lambda x: x.max()),
    ("min", lambda x: x.min()),
    ("amax", lambda x: x.amax((0, 1))),
    ("logsumexp", lambda x: x.logsumexp(2)),
    ("logsumexp_all", lambda x: x.logsumexp(None, True)),
    ("norm", lambda x: x.norm()),
    ("norm_dim", lambda x: x.norm(dim=1)),
    ("norm1", lambda x: x.norm(1, 2)),
    ("norm3", lambda x: x.norm(3, (0, 1))),
    ("norminf", lambda x: x.norm(float("inf"), 2)),
    ("cumsum", lambda x: x.cumsum(1)),
    ("cumsum_last", lambda x: x.cumsum(-1)),
]


@pytest.mark.parametrize("case", GRADS, ids=[g[0] for g in GRADS])
def test_gradcheck(case, rng):
    name, fn = case
    x = leaf(rng, (2, 3, 4))
    assert vt.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-5, rtol=1e-3)


def test_grad_dtype_follows_the_input(rng):
    x = leaf(rng, (2, 3))
    x.sum(1, dtype=vt.float32).sum().backward()
    assert x.grad.dtype is vt.float64 and x.grad.tolist() == [[1.0] * 3] * 2
    y = vt.tensor([1.0, 2.0]).requires_grad_()
    y.cumsum(0, dtype=vt.float64).sum().backward()
    assert y.grad.dtype is vt.float32 and y.grad.tolist() == [2.0, 1.0]


def test_grad_through_non_contiguous_input(rng):
    x = leaf(rng, (4, 3))
    assert vt.autograd.gradcheck(lambda t: t.T.var(1), (x,))
    assert vt.autograd.gradcheck(lambda t: t[:, ::2].logsumexp(0), (x,))
    assert vt.autograd.gradcheck(lambda t: t.expand(2, 4, 3).norm(dim=(0, 2)), (x,))


def test_double_backward(rng):
    x = leaf(rng, (3, 4))

    def grad_of(fn):
        def g(t):
            with vt.enable_grad():  # gradcheck's finite differences run under no_grad
                (gx,) = vt.autograd.grad(fn(t), [t], create_graph=True)
            return gx
        return g

    for fn in (lambda t: (t.var(1) * t.var(1)).sum(), lambda t: t.logsumexp(1).sum(),
               lambda t: t.norm(), lambda t: (t.cumsum(1) * t).sum(), lambda t: t.std()):
        assert vt.autograd.gradcheck(grad_of(fn), (x,), atol=1e-4)


def test_reductions_against_torch_gradients(rng):
    if _torch is None:
        pytest.skip("torch is not importable: the comparison with torch cannot run")
    a = rng.standard_normal((3, 5))
    for vfn, tfn in [(lambda t: t.var(1).sum(), lambda t: t.var(1).sum()),
                     (lambda t: t.logsumexp(0).sum(), lambda t: t.logsumexp(0).sum()),
                     (lambda t: t.max(1).values.sum(), lambda t: t.max(1).values.sum()),
                     (lambda t: t.norm(), lambda t: t.norm()),
                     (lambda t: (t.cumsum(1) ** 2).sum() if hasattr(t, "__pow__") else
                      (t.cumsum(1) * t.cumsum(1)).sum(),
                      lambda t: (t.cumsum(1) * t.cumsum(1)).sum())]:
        x = vt.tensor(a, dtype=vt.float64).requires_grad_()
        vfn(x).backward()
        tx = _torch.tensor(a, requires_grad=True)
        tfn(tx).backward()
        np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-10, atol=1e-12)


# -- bad input -------------------------------------------------------------------------------------

def test_errors():
    x = vt.ones(2, 3)
    with pytest.raises(IndexError, match=r"\[core::var\] dim 5 is out of range for a tensor of ndim 2"):
        x.var(5)
    with pytest.raises(ValueError, match=r"\[core::std\] dim 1 appears multiple times"):
        x.std([1, -1])
    with pytest.raises(TypeError, match=r"\[core::var\] self must be a floating tensor, got int64"):
        vt.ones(3, dtype=vt.int64).var()
    with pytest.raises(TypeError, match=r"\[core::norm\] self must be a floating tensor, got int32"):
        vt.ones(3, dtype=vt.int32).norm()
    with pytest.raises(ValueError, match=r"\[core::max\] cannot reduce a tensor with no elements"):
        vt.zeros(0, 2).max()
    with pytest.raises(IndexError, match=r"\[core::max_dim\] cannot reduce over dim 0 of size 0"):
        vt.zeros(0, 2).max(0)
    with pytest.raises(ValueError, match=r"\[core::argmin\] cannot take the argmin of an empty"):
        vt.zeros(0).argmin()
    with pytest.raises(IndexError, match=r"\[core::cumsum\] dim -3 is out of range"):
        x.cumsum(-3)
    with pytest.raises(IndexError, match=r"\[core::logsumexp\] dim 2 is out of range"):
        x.logsumexp(2)
    with pytest.raises(IndexError, match=r"\[core::argmax\] dim 2"):
        x.argmax(2)
    with pytest.raises(ValueError, match="norm: p='nuc' is not supported"):
        x.norm("nuc")
    with pytest.raises(TypeError, match=r"\[core::mean\] mean needs a floating result dtype"):
        vt.ones(2, dtype=vt.int64).mean()
