"""One rank of tests/test_distributed.py::test_every_collective (run by the launcher, 4 ranks):
every op against a numpy reference built from every rank's (deterministic) input, sizes from 1
element to several MB, every dtype, back-to-back calls, async calls, ranks that disagree, and the
argument errors of the meta steps."""
import os

import numpy as np

import vibetensor as vt
import vibetensor.distributed as dist
from vibetensor import ops

dist.init_process_group(timeout=60)
R, W = dist.get_rank(), dist.get_world_size()
assert os.environ["LOCAL_RANK"] == str(R) and os.environ["LOCAL_WORLD_SIZE"] == str(W) == os.environ["WORLD_SIZE"]
assert dist.is_initialized() and dist.get_backend() == "shm"
FLOATS = ["float32", "float64", "bfloat16", "float16"]
INTS = ["int32", "int64"]


def values(k, n, dtype, salt=0):
    """Rank k's input: exact in `dtype`, returned as (vt tensor, float64/int64 numpy of its values)."""
    rng = np.random.default_rng([k, n, salt, len(dtype)])
    if dtype in INTS:
        a = rng.integers(-40, 40, n).astype(np.int64)
        return vt.from_numpy(a).to(getattr(vt, dtype)), a
    t = vt.from_numpy(rng.standard_normal(n).astype(np.float32)).to(getattr(vt, dtype))
    return t, t.to(vt.float64).numpy()


def rounded(a, dtype):
    """numpy values (float32 arithmetic for the 16-bit floats and float32) rounded to dtype."""
    if dtype in INTS:
        return a.astype(np.int32 if dtype == "int32" else np.int64)
    return vt.from_numpy(np.ascontiguousarray(a)).to(getattr(vt, dtype)).to(vt.float64).numpy()


def expect_reduce(xs, op, dtype):
    """The provider's rule: rank order, in float32 for float32 and 16-bit floats (float64 for
    float64, wrap-around integers), one rounding at the end."""
    acc_t = np.float64 if dtype == "float64" else (np.int32 if dtype == "int32" else np.int64) \
        if dtype in INTS else np.float32
    acc = xs[0].astype(acc_t)
    for x in xs[1:]:
        x = x.astype(acc_t)
        acc = {"sum": acc + x, "avg": acc + x, "product": acc * x, "max": np.maximum(acc, x),
               "min": np.minimum(acc, x)}[op]
    if op == "avg":
        acc = acc / acc_t(W)
    return rounded(acc, dtype)


def check(got, want, what):
    g = got.to(vt.float64).numpy() if got.dtype not in (vt.int32, vt.int64) else got.numpy()
    assert g.shape == want.shape and np.array_equal(g, want), f"rank {R}: {what}: {g.ravel()[:6]} vs {want.ravel()[:6]}"


def all_reduce_case(n, dtype, op, salt=0):
    mine, _ = values(R, n, dtype, salt)
    want = expect_reduce([values(k, n, dtype, salt)[1] for k in range(W)], op, dtype)
    dist.all_reduce(mine, op)
    check(mine, want, f"all_reduce {op} {dtype} n={n}")


# -- all_reduce: every dtype at sizes below, across and far above the one-shot limit and a buffer --
for dtype in FLOATS + INTS:
    for n in (1, 3, 1000, 100_003):
        all_reduce_case(n, dtype, "sum")
for n in (65_536, 65_537, 2_200_001):  # 256 KiB one-shot limit; 8.8 MB = two-shot in pieces
    all_reduce_case(n, "float32", "sum")
all_reduce_case(300_001, "bfloat16", "sum")
for op in ("avg", "max", "min", "product"):
    for dtype in ("float32", "bfloat16", "int32", "int64", "float64"):
        if op == "avg" and dtype in INTS:
            continue
        all_reduce_case(1000 if op == "product" else 100_003, dtype, op)
all_reduce_case(300_000, "float16", "avg")
x = vt.zeros(0)
dist.all_reduce(x)  # no elements: still a call every rank makes
# a non-contiguous tensor goes through a contiguous copy
base, _ = values(R, 12, "float32")
view = base.view(3, 4).t()
dist.all_reduce(view)
want = expect_reduce([values(k, 12, "float32")[1] for k in range(W)], "sum", "float32").reshape(3, 4).T
check(view, np.ascontiguousarray(want), "all_reduce of a transposed view")

# -- broadcast ------------------------------------------------------------------------------------
for src in range(W):
    for dtype, n in (("float32", 1), ("bfloat16", 1000), ("int64", 1_100_001)):
        mine, _ = values(R, n, dtype, salt=src)
        dist.broadcast(mine, src)
        check(mine, values(src, n, dtype, salt=src)[1], f"broadcast src {src} {dtype} n={n}")

# -- all_gather ------------------------------------------------------------------------------------
for dtype, n in (("float32", 1), ("float16", 1000), ("int32", 1_000_000), ("bfloat16", 100_001)):
    mine, _ = values(R, n, dtype)
    out = vt.empty(W, n, dtype=getattr(vt, dtype))
    dist.all_gather_into_tensor(out, mine)
    check(out, np.stack([values(k, n, dtype)[1] for k in range(W)]), f"all_gather {dtype} n={n}")
parts = [vt.empty(2, 3) for _ in range(W)]
dist.all_gather(parts, vt.full([2, 3], float(R)))
assert [p.tolist() for p in parts] == [[[float(k)] * 3] * 2 for k in range(W)]

# -- reduce_scatter --------------------------------------------------------------------------------
for dtype, n, op in (("float32", 1, "sum"), ("bfloat16", 1000, "sum"), ("int64", 300_001, "sum"),
                     ("float32", 300_001, "max"), ("float64", 5000, "avg")):
    mine, _ = values(R, W * n, dtype)
    out = vt.empty(n, dtype=getattr(vt, dtype))
    dist.reduce_scatter_tensor(out, mine, op)
    full = expect_reduce([values(k, W * n, dtype)[1] for k in range(W)], op, dtype)
    check(out, full[R * n:(R + 1) * n], f"reduce_scatter {op} {dtype} n={n}")
out = vt.empty(3)
dist.reduce_scatter(out, [vt.full([3], float(R * 10 + k)) for k in range(W)])
assert out.tolist() == [float(sum(r * 10 + R for r in range(W)))] * 3

# -- back-to-back: alternating sizes, algorithms and ops, and barriers, with nothing in between --
for i in range(60):
    n = (7, 70_000, 1)[i % 3]
    x = vt.full([n], float(R + i))
    dist.all_reduce(x, "max" if i % 2 else "sum")
    v = float(W - 1 + i) if i % 2 else float(sum(range(W)) + W * i)
    assert x[0].item() == v and x[n - 1].item() == v, (i, x[0].item(), v)
    dist.barrier()
# async calls run in order on the group's thread; a sync call waits for them first
xs = [vt.full([1000 * (i + 1)], float(R)) for i in range(5)]
works = [dist.all_reduce(x, async_op=True) for x in xs]
y = vt.ones(3)
dist.all_reduce(y)
for w in works:
    w.wait()
assert all(x[0].item() == float(sum(range(W))) for x in xs) and y.tolist() == [float(W)] * 3

# -- ranks that disagree raise ValueError on every rank, and the group stays usable ---------------
import pytest  # noqa: E402

bad = [
    lambda: dist.all_reduce(vt.ones(10 + (R == 1))),                          # sizes
    lambda: dist.all_reduce(vt.ones(10, dtype=vt.float64 if R == 2 else vt.float32)),  # dtypes
    lambda: dist.all_reduce(vt.ones(10), "max" if R == 3 else "sum"),          # ops
    lambda: dist.broadcast(vt.ones(4), src=R % 2),                            # src
    lambda: dist.all_gather_into_tensor(vt.empty(W * (4 + R)), vt.ones(4 + R)),  # all_gather sizes
]
for f in bad:
    with pytest.raises(ValueError, match=r"ranks disagree at call \d+: rank \d+ calls"):
        f()
    x = vt.ones(5)
    dist.all_reduce(x)
    assert x.tolist() == [float(W)] * 5

# -- argument errors of the meta steps (raised locally, before any rank waits) ---------------------
g = dist._group(None).handle
f = ops.allreduce.all_reduce_
with pytest.raises(ValueError, match=r"\[allreduce::all_reduce_\] self must be contiguous"):
    f(vt.ones(3, 4).t(), g)
with pytest.raises(TypeError, match=r"self has dtype bool; supported: float32"):
    f(vt.ones(3, dtype=vt.bool), g)
with pytest.raises(ValueError, match=r"op must be one of sum, avg, max, min, product; got 'mean'"):
    f(vt.ones(3), g, "mean")
with pytest.raises(TypeError, match=r"op 'avg' needs a floating dtype, got int64"):
    f(vt.ones(3, dtype=vt.int64), g, "avg")
with pytest.raises(ValueError, match=r"group 63 is not an open process group"):
    f(vt.ones(3), 63)
with pytest.raises(ValueError, match=r"\[allreduce::broadcast_\] src must be a rank of the group \(0..3\), got 4"):
    dist.broadcast(vt.ones(3), src=4)
with pytest.raises(ValueError, match=r"out must hold world_size \* input.numel\(\) = 4 \* 3 elements, got 11"):
    dist.all_gather_into_tensor(vt.empty(11), vt.ones(3))
with pytest.raises(ValueError, match=r"input must hold world_size \* out.numel\(\) = 4 \* 2 elements, got 9"):
    dist.reduce_scatter_tensor(vt.empty(2), vt.ones(9))
with pytest.raises(TypeError, match=r"dtype mismatch: out is float32, input is float64"):
    dist.all_gather_into_tensor(vt.empty(4), vt.ones(1, dtype=vt.float64))
with pytest.raises(TypeError, match="all_reduce: tensor must be a Tensor, got list"):
    dist.all_reduce([1.0, 2.0], async_op=True)
# the meta device runs the checks and makes no call (no rank waits)
m = f(vt.empty(5, device="meta"), g)
assert m.device.type == "meta" and m.shape == (5,)
dist.barrier()
dist.destroy_process_group()
assert not dist.is_initialized()
with pytest.raises(RuntimeError, match="not initialised"):
    dist.all_reduce(vt.ones(1))

# -- a second group after the first, with the smallest buffers (many pieces per call) -------------
dist.SHM_BUFFER_BYTES = 4096
dist.init_process_group(timeout=60)
for op in ("sum", "max"):
    all_reduce_case(5003, "float32", op, salt=1)
    all_reduce_case(3001, "bfloat16", op, salt=1)
mine, _ = values(R, 2001, "int64")
dist.broadcast(mine, 3)
check(mine, values(3, 2001, "int64")[1], "broadcast in pieces")
out = vt.empty(W, 1500)
dist.all_gather_into_tensor(out, values(R, 1500, "float32")[0])
check(out, np.stack([values(k, 1500, "float32")[1] for k in range(W)]), "all_gather in pieces")
out = vt.empty(700)
dist.reduce_scatter_tensor(out, values(R, W * 700, "float32")[0])
full = expect_reduce([values(k, W * 700, "float32")[1] for k in range(W)], "sum", "float32")
check(out, full[R * 700:(R + 1) * 700], "reduce_scatter in pieces")
dist.destroy_process_group()
print(f"RANK {R} OK", flush=True)
