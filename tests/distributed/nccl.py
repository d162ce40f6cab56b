"""One rank of tests/test_distributed_cuda.py (2 GPUs, the launcher): the nccl provider's four
collectives on cuda:LOCAL_RANK against host references, fp32 and bf16, back-to-back, and DDP on cuda
equal to one replica on the global batch. Written without a GPU: the first run is the GPU session's."""
import numpy as np

import vibetensor as vt
import vibetensor.distributed as dist
from ddp_check import ddp_matches_one_replica

dist.init_process_group("nccl", timeout=120)
R, W = dist.get_rank(), dist.get_world_size()
dev = dist._group(None).device


def host(k, n, dtype):
    rng = np.random.default_rng([k, n])
    t = vt.from_numpy(rng.standard_normal(n).astype(np.float32)).to(dtype)
    return t, t.float().numpy().astype(np.float64)


for dtype, tol in ((vt.float32, 1e-6), (vt.bfloat16, 1e-2)):
    for n in (1, 1000, 1 << 20, (64 << 20) // 4 + 3):
        x, _ = host(R, n, dtype)
        x = x.to(dev)
        dist.all_reduce(x)
        want = sum(host(k, n, dtype)[1] for k in range(W))
        got = x.float().cpu().numpy()
        assert np.abs(got - want).max() <= tol * max(1.0, np.abs(want).max()), (dtype, n)
    y, _ = host(R, 1000, dtype)
    y = y.to(dev)
    dist.broadcast(y, 1)
    assert np.array_equal(y.float().cpu().numpy(), host(1, 1000, dtype)[1])
    out = vt.empty(W * 777, dtype=dtype, device=dev)
    dist.all_gather_into_tensor(out, host(R, 777, dtype)[0].to(dev))
    assert np.array_equal(out.float().cpu().numpy(), np.concatenate([host(k, 777, dtype)[1] for k in range(W)]))
    rs = vt.empty(500, dtype=dtype, device=dev)
    dist.reduce_scatter_tensor(rs, host(R, W * 500, dtype)[0].to(dev))
    full = sum(host(k, W * 500, dtype)[1] for k in range(W))
    assert np.abs(rs.float().cpu().numpy() - full[R * 500:(R + 1) * 500]).max() <= tol * 10
for i in range(200):  # back-to-back, nothing in between
    x = vt.full([1 + (i % 3) * 50_000], float(R + i), device=dev)
    dist.all_reduce(x, "max" if i % 2 else "sum")
    assert x[0].item() == (float(W - 1 + i) if i % 2 else float(sum(range(W)) + W * i))
dist.barrier()

ddp_matches_one_replica(dev, R, W)
dist.destroy_process_group()
print(f"RANK {R} OK", flush=True)
