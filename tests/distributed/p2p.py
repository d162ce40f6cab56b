"""One rank of tests/test_distributed_cuda.py (2+ GPUs, the launcher): the p2p provider (and nccl,
its fallback, pinned with vt.ops.use) on cuda:LOCAL_RANK against host references: every algorithm
(VT_P2P_ALGO), fp32/bf16/fp16, sum/avg/max, 1 element to past one buffer piece; 200 back-to-back
calls; calls inside a captured CUDA graph, replayed; the other collectives through the fallback;
DDP equal to one replica on the global batch; and a rank that skips a call (the other raises, no
hang). Written without a GPU: the first run is the GPU session's."""
import os
import time

import numpy as np

import vibetensor as vt
import vibetensor.distributed as dist
from ddp_check import ddp_matches_one_replica

OP = "allreduce::all_reduce_"
dist.init_process_group(device="cuda", timeout=120)
assert dist.get_backend() == "p2p", dist.get_backend()
R, W = dist.get_rank(), dist.get_world_size()
dev = dist._group(None).device
has_nccl = dist._group(None).fallback is not None
print("RANK", R, "device", dev, "nccl fallback", has_nccl, flush=True)


def host(k, n, dtype):
    rng = np.random.default_rng([k, n])
    t = vt.from_numpy(rng.standard_normal(n).astype(np.float32)).to(dtype)
    return t, t.float().numpy().astype(np.float64)


def want(n, dtype, op):
    xs = [host(k, n, dtype)[1] for k in range(W)]
    if op == "max":
        return np.maximum.reduce(xs)
    s = sum(xs)
    return s / W if op == "avg" else s


TOL = {vt.float32: 1e-5, vt.bfloat16: 2e-2, vt.float16: 4e-3}
SIZES = (1, 7, 1000, 4097, 1 << 18, (1 << 22) + 5, (40 << 20) // 4 + 3)  # the last: two pieces of 32 MiB
# bytes above which p2p (its own choice of algorithm) hands a message to the nccl fallback
P2P_MAX = (64 if W == 2 else 16) << 20
providers = ["p2p"] + (["nccl"] if has_nccl else [])
for provider in providers:
    for algo in (("oneshot", "twoshot", "ring", "push", "") if provider == "p2p" else ("",)):
        os.environ["VT_P2P_ALGO"] = algo
        for dtype in (vt.float32, vt.bfloat16, vt.float16):
            for i, n in enumerate(SIZES):
                op = ("sum", "avg", "max")[i % 3]
                if provider == "p2p" and not algo and has_nccl and n * dtype.itemsize > P2P_MAX:
                    continue  # declined (pinned: an error); the provider-by-size check below
                x = host(R, n, dtype)[0].to(dev)
                with vt.ops.use(OP, provider, "cuda"):
                    dist.all_reduce(x, op)
                got = x.float().cpu().numpy()
                w = want(n, dtype, op)
                err = np.abs(got - w).max()
                assert err <= TOL[dtype] * W * max(1.0, np.abs(w).max()), (provider, algo, dtype, n, op, err)
                if op == "max":
                    assert np.array_equal(got, w), (provider, algo, dtype, n)
os.environ["VT_P2P_ALGO"] = ""
print("RANK", R, "providers", providers, "x algorithms x dtypes x sizes OK", flush=True)

if has_nccl:  # what p2p does not take goes to the fallback: int64, min, the other collectives
    z = vt.full([1000], R + 1, dtype=vt.int64, device=dev)
    dist.all_reduce(z, "min")
    assert z.cpu().numpy().tolist() == [1] * 1000
    y = host(R, 1000, vt.float32)[0].to(dev)
    dist.broadcast(y, W - 1)
    assert np.array_equal(y.float().cpu().numpy(), host(W - 1, 1000, vt.float32)[1])
    out = vt.empty(W * 777, dtype=vt.bfloat16, device=dev)
    dist.all_gather_into_tensor(out, host(R, 777, vt.bfloat16)[0].to(dev))
    assert np.array_equal(out.float().cpu().numpy(),
                          np.concatenate([host(k, 777, vt.bfloat16)[1] for k in range(W)]))

# back-to-back: 200 calls of changing sizes (every algorithm) and ops, no host sync in between
xs = []
for i in range(200):
    x = vt.full([(1, 3000, 300_000, 3_000_000)[i % 4]], float(R + i), device=dev)
    dist.all_reduce(x, "max" if i % 2 else "sum")
    xs.append((i, x))
for i, x in xs:
    v = x[-1].item()
    assert v == (float(W - 1 + i) if i % 2 else float(sum(range(W)) + W * i)), (i, v)
dist.barrier()
print("RANK", R, "200 back-to-back OK", flush=True)

# the dispatcher's choice by size: p2p up to P2P_MAX; above, with an nccl fallback, p2p declines and
# nccl serves (faster there); VT_P2P_ALGO makes p2p take any size
for n, provider in ((P2P_MAX // 4, "p2p"), (P2P_MAX // 4 + (1 << 18), "nccl" if has_nccl else "p2p")):
    x = vt.full([n], float(R + 1), device=dev)
    with vt.ops.trace() as t:
        dist.all_reduce(x)
    assert x[-1].item() == float(W * (W + 1) // 2), (n, x[-1].item())
    served = [r for r in t.records if r.op == OP]
    assert [r.provider for r in served] == [provider], (n, served)
    assert served[0].reason == ("fallback" if provider == "nccl" else "priority"), served
dist.barrier()
print("RANK", R, "provider by size OK", flush=True)

# inside a captured CUDA graph: each replay reduces the refilled inputs (epochs advance on the device)
a = vt.zeros(5000, device=dev)
b = vt.zeros(3_000_000, dtype=vt.bfloat16, device=dev)
dist.barrier()
g = vt.cuda.CUDAGraph()
with vt.cuda.graph(g):
    dist.all_reduce(a)
    dist.all_reduce(b, "max")
for step in range(5):
    a.copy_(vt.full([5000], float(R * 10 + step), device=dev))
    b.copy_(vt.full([3_000_000], float(R + step), dtype=vt.bfloat16, device=dev))
    g.replay()
    assert a[0].item() == float(sum(k * 10 + step for k in range(W))), (step, a[0].item())
    assert b[-1].item() == float(W - 1 + step), (step, b[-1].item())
dist.barrier()
print("RANK", R, "CUDA graph replays OK", flush=True)

# DDP on cuda (its bucket all-reduces: avg through p2p) equals one replica on the global batch
ddp_matches_one_replica(dev, R, W)
print("RANK", R, "DDP OK", flush=True)
dist.destroy_process_group()

# a rank that skips a call: the other's kernel times out and the next call (here barrier) raises
dist.init_process_group(device="cuda", timeout=3)
if R == 0:
    x = vt.ones(10, device=dev)
    dist.all_reduce(x)
    t0 = time.time()
    try:
        dist.barrier()
        raise AssertionError("no error after a peer skipped a call")
    except RuntimeError as e:
        assert "timed out on the GPU waiting for rank" in str(e), e
    assert time.time() - t0 < 60
dist.destroy_process_group()
print("RANK", R, "OK", flush=True)
