"""Random ops on every device (normal, uniform, normal_, uniform_, randint, randperm): for one seed
a device draws the cpu's numbers (bit for bit in float32, float16, bfloat16 and every randint
dtype; float64 normal to an ulp or two: libm vs CUDA log/sin/cos), both generators advance in step,
moments of large draws, strided in-place fills, 0-size and 0-d, randperm's permutations, and on a
GPU the graph-safe Philox: a random op captured in a CUDA graph draws fresh numbers on each replay
and replays are reproducible after re-seeding.

On a cpu-only machine the device tests run once, on cpu, comparing cpu with itself (they still
check the dtypes, shapes and moments); the cuda half needs a GPU.
"""
from __future__ import annotations

import numpy as np
import pytest

import vibetensor as vt
from conftest import DEVICES

gpu = pytest.mark.skipif("cuda" not in DEVICES, reason="needs a CUDA GPU")

FLOATS = ["float32", "float16", "bfloat16", "float64"]


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


def bits(t) -> np.ndarray:
    """The exact values of t on cpu as unsigned integers (bfloat16 widened exactly to float32)."""
    t = t.cpu()
    if t.dtype is vt.bfloat16:
        t = t.to(vt.float32)
    a = np.ascontiguousarray(t.numpy())
    return a.view({1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize])


def values(t) -> np.ndarray:
    t = t.cpu()
    return (t.to(vt.float64) if t.dtype.is_floating_point else t).numpy().copy()


def on_both(fn, device, seed=1234):
    """fn(device) after manual_seed(seed) on cpu and on `device`."""
    vt.manual_seed(seed)
    a = fn("cpu")
    vt.manual_seed(seed)
    b = fn(device)
    assert b.device.type == device
    return a, b


GENERATORS = [
    ("randn", lambda dt, d: vt.randn(3, 1001, dtype=dt, device=d)),
    ("rand", lambda dt, d: vt.rand(1003, dtype=dt, device=d)),
    ("normal", lambda dt, d: vt.normal(-2.0, 0.5, (7, 11), dtype=dt, device=d)),
    ("uniform", lambda dt, d: vt.uniform(-3.0, 5.0, (257,), dtype=dt, device=d)),
    ("normal_", lambda dt, d: vt.empty(33, 9, dtype=dt, device=d).normal_(1.0, 3.0)),
    ("uniform_", lambda dt, d: vt.empty(65, dtype=dt, device=d).uniform_(0.25, 0.5)),
]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name,gen", GENERATORS, ids=[g[0] for g in GENERATORS])
def test_same_numbers_as_cpu(device, name, gen, dtype):
    dt = getattr(vt, dtype)
    a, b = on_both(lambda d: gen(dt, d), device)
    assert a.dtype is dt and b.dtype is dt and a.shape == b.shape
    if dtype == "float64" and name in ("randn", "normal", "normal_"):
        np.testing.assert_allclose(values(b), values(a), rtol=1e-14, atol=1e-14)
    else:
        np.testing.assert_array_equal(bits(b), bits(a))


def test_generators_stay_in_step(device):
    """A sequence of random ops of different sizes and dtypes leaves cpu and device at the same
    offset: the next draw matches too."""
    def seq(d):
        vt.randn(5, device=d)
        vt.rand(3, dtype=vt.float64, device=d)
        vt.randint(0, 10, (7,), device=d)
        vt.randint(0, 2**40, (3,), device=d)
        vt.randperm(9, device=d)
        return vt.rand(100, device=d)

    a, b = on_both(seq, device, seed=77)
    np.testing.assert_array_equal(bits(b), bits(a))


@pytest.mark.parametrize("dtype", ["int64", "int32", "int8", "uint8", "float32", "float64", "bfloat16",
                                   "float16"])
def test_randint_same_as_cpu(device, dtype):
    dt = getattr(vt, dtype)
    lo, hi = (0, 200) if dtype == "uint8" else (-100, 100)
    a, b = on_both(lambda d: vt.randint(lo, hi, (13, 77), dtype=dt, device=d), device)
    assert b.dtype is dt
    np.testing.assert_array_equal(values(b), values(a))
    assert values(b).min() >= lo and values(b).max() < hi


def test_randint_wide_range_and_rates(device):
    a, b = on_both(lambda d: vt.randint(-2**45, 2**45, (1001,), device=d), device)
    np.testing.assert_array_equal(values(b), values(a))
    assert np.abs(values(b)).max() > 2**40
    vt.manual_seed(3)
    r = values(vt.randint(0, 10, (1 << 20,), device=device))
    counts = np.bincount(r.astype(np.int64), minlength=10) / r.size
    assert np.all(np.abs(counts - 0.1) < 0.003)


@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
def test_moments_of_large_draws(device, dtype):
    dt = getattr(vt, dtype)
    n = 1 << 21
    vt.manual_seed(7)
    z = values(vt.normal(2.0, 3.0, (n,), dtype=dt, device=device))
    tol = 0.02 if dtype == "bfloat16" else 0.01
    assert np.all(np.isfinite(z))
    assert abs(z.mean() - 2) < 5 * 3 / np.sqrt(n) + (0.01 if dtype == "bfloat16" else 0)
    assert abs(z.std() / 3 - 1) < tol
    assert abs(np.mean(np.abs(z - 2) < 3) - 0.6827) < 0.003  # the shape of a normal
    u = values(vt.uniform(-1.0, 5.0, (n,), dtype=dt, device=device))
    assert u.min() >= -1 and u.max() <= 5
    assert abs(u.mean() - 2) < 0.01 and abs(u.var() - 3) < 0.03
    hist = np.histogram(u, bins=12, range=(-1, 5))[0] / n
    assert np.all(np.abs(hist - 1 / 12) < 0.003)


@pytest.mark.parametrize("method,args", [("normal_", (1.0, 2.0)), ("uniform_", (-1.0, 3.0))])
@pytest.mark.parametrize("dtype", ["float32", "float16", "float64"])
def test_inplace_on_strided_views(device, method, args, dtype):
    """A transposed or sliced self gets the numbers a contiguous tensor of its shape would get,
    and the elements outside the view stay untouched."""
    dt = getattr(vt, dtype)
    vt.manual_seed(9)
    ref = getattr(vt.empty(40, 30, dtype=dt, device="cpu"), method)(*args)
    for view in ("transposed", "sliced"):
        base = vt.zeros(30, 40, dtype=dt, device=device) if view == "transposed" \
            else vt.zeros(40, 61, dtype=dt, device=device)
        v = base.T if view == "transposed" else base[:, 1::2][:, :30]
        vt.manual_seed(9)
        assert getattr(v, method)(*args) is v
        if dtype == "float64" and method == "normal_":
            np.testing.assert_allclose(values(v), values(ref), rtol=1e-14, atol=1e-14)
        else:
            np.testing.assert_array_equal(bits(v.contiguous()), bits(ref))
        if view == "sliced":
            assert np.all(values(base)[:, 0::2] == 0)


def test_zero_size_and_scalars(device):
    vt.manual_seed(0)
    assert vt.randn(0, 5, device=device).shape == (0, 5)
    assert vt.rand(0, device=device).shape == (0,)
    assert vt.randint(0, 3, (0, 2), device=device).shape == (0, 2)
    assert vt.randperm(0, device=device).shape == (0,)
    assert vt.randperm(1, device=device).tolist() == [0]
    s = vt.randn((), device=device)
    assert s.shape == () and np.isfinite(s.item())
    e = vt.empty(0, 3, device=device)
    assert e.normal_() is e and e.uniform_() is e
    # 0-size ops draw nothing: the next numbers are the same as without them
    a, b = on_both(lambda d: (vt.randn(0, device=d), vt.rand(16, device=d))[1], device, seed=5)
    vt.manual_seed(5)
    np.testing.assert_array_equal(bits(b), bits(vt.rand(16)))


@pytest.mark.parametrize("dtype", ["int64", "int32", "float32", "float64"])
def test_randperm_is_a_reproducible_permutation(device, dtype):
    dt = getattr(vt, dtype)
    for n in (2, 3, 1000, 65537):
        vt.manual_seed(11)
        a = vt.randperm(n, dtype=dt, device=device)
        assert a.dtype is dt and a.shape == (n,) and a.device.type == device
        av = values(a)
        np.testing.assert_array_equal(np.sort(av), np.arange(n))
        vt.manual_seed(11)
        np.testing.assert_array_equal(values(vt.randperm(n, dtype=dt, device=device)), av)
        if n >= 1000:
            assert not np.array_equal(values(vt.randperm(n, dtype=dt, device=device)), av)
            # uniform-looking: element 0's position is spread out, and few fixed points
            assert np.sum(av == np.arange(n)) < 10


def test_randperm_positions_are_uniform(device):
    """Over many permutations of 8, each value lands in each position about equally often."""
    vt.manual_seed(2)
    counts = np.zeros((8, 8))
    for _ in range(800):
        p = values(vt.randperm(8, device=device)).astype(np.int64)
        counts[p, np.arange(8)] += 1
    assert np.all(np.abs(counts / 800 - 1 / 8) < 0.06)


# ---- CUDA graphs ------------------------------------------------------------------------------------

@gpu
@pytest.mark.parametrize("kind", ["randn", "uniform_", "randint"])
def test_captured_random_op_draws_fresh_numbers_each_replay(kind):
    import vibetensor.cuda as vcuda

    def draw(buf):
        if kind == "randn":
            return vt.randn(4099, device="cuda")
        if kind == "uniform_":
            return buf.uniform_(-2.0, 2.0)
        return vt.randint(0, 1000, (999,), device="cuda")

    buf = vt.empty(1000, device="cuda")
    draw(buf)  # warm up outside the capture
    g = vcuda.CUDAGraph()
    with vcuda.graph(g):
        out = draw(buf)
    vcuda.manual_seed(21)
    g.replay()
    r1 = bits(out).copy()
    g.replay()
    r2 = bits(out).copy()
    assert not np.array_equal(r1, r2), "a replay drew the same numbers again"
    vcuda.manual_seed(21)  # replays after re-seeding are the eager draws of that seed, in order
    e1 = bits(draw(buf)).copy()
    e2 = bits(draw(buf)).copy()
    np.testing.assert_array_equal(r1, e1)
    np.testing.assert_array_equal(r2, e2)
    vcuda.manual_seed(21)
    g.replay()
    np.testing.assert_array_equal(bits(out), r1)


@gpu
def test_randperm_in_a_cuda_graph():
    import vibetensor.cuda as vcuda

    vt.randperm(100, device="cuda")
    g = vcuda.CUDAGraph()
    with vcuda.graph(g):
        p = vt.randperm(5000, device="cuda")
    g.replay()
    a = values(p).copy()
    g.replay()
    b = values(p)
    np.testing.assert_array_equal(np.sort(a), np.arange(5000))
    np.testing.assert_array_equal(np.sort(b), np.arange(5000))
    assert not np.array_equal(a, b)
