"""One rank of tests/test_distributed.py::test_ddp_equals_one_process_with_the_global_batch.
Every rank starts from different weights (DDP must broadcast rank 0's), trains on its slice of the
global batch, and checks against a replica it trains alone on the whole global batch: gradients
and weights equal after every step, with small buckets (several all-reduces per backward), the
overlap on and off, and gradient accumulation under no_sync()."""

import numpy as np

import vibetensor as vt
import vibetensor.distributed as dist
import vibetensor.nn as nn
import vibetensor.nn.functional as F
from vibetensor.nn.parallel import DistributedDataParallel as DDP

dist.init_process_group(timeout=60)
R, W = dist.get_rank(), dist.get_world_size()
B = 3  # per rank


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(11, 8)
        self.l1 = nn.Linear(8, 64)
        self.norm = nn.LayerNorm(64)
        self.l2 = nn.Linear(64, 5)
        self.register_buffer("scale", vt.full([5], 1.0 + R))  # rank 0's value must win

    def forward(self, idx):
        return self.l2(F.gelu(self.norm(self.l1(self.emb(idx))))).mean(1) * self.scale


def close(a, b, what, tol=2e-6):
    a, b = a.numpy(), b.numpy()
    err = np.abs(a - b).max() / max(1e-12, np.abs(b).max())
    assert err <= tol, f"rank {R}: {what}: relative error {err:.2e}"


def run(overlap, accumulate):
    vt.manual_seed(100 + R)  # different weights on every rank
    model = Net()
    ddp = DDP(model, bucket_cap_mb=0.002, overlap=overlap)  # ~2 KB buckets: several per backward
    assert len(ddp._buckets) >= 3 and ddp.module is model
    ref = Net()
    ref.load_state_dict(ddp.state_dict())  # rank 0's weights and buffer, through the pass-through
    assert set(ddp.state_dict()) == set(model.state_dict())
    opt = vt.optim.AdamW(ddp.parameters(), lr=1e-2, weight_decay=0.1)
    ref_opt = vt.optim.AdamW(ref.parameters(), lr=1e-2, weight_decay=0.1)
    rng = np.random.default_rng(7)  # the same global batches on every rank
    for step in range(3):
        micro = 2 if accumulate else 1
        xs = [vt.from_numpy(rng.integers(0, 11, (W * B, 6))) for _ in range(micro)]
        ys = [vt.from_numpy(rng.standard_normal((W * B, 5)).astype(np.float32)) for _ in range(micro)]
        mine = slice(R * B, (R + 1) * B)
        for i in range(micro):
            if i < micro - 1:  # accumulate locally, the last micro-batch syncs the sum
                with ddp.no_sync():
                    (F.mse_loss(ddp(xs[i][mine]), ys[i][mine]) / micro).backward()
            else:
                (F.mse_loss(ddp(xs[i][mine]), ys[i][mine]) / micro).backward()
            (F.mse_loss(ref(xs[i]), ys[i]) / micro).backward()
        for (name, p), q in zip(model.named_parameters(), ref.parameters()):
            close(p.grad, q.grad, f"step {step} grad of {name}")
        opt.step()
        ref_opt.step()
        opt.zero_grad()
        ref_opt.zero_grad()
        for (name, p), q in zip(model.named_parameters(), ref.parameters()):
            close(p, q, f"step {step} {name}", tol=1e-5)


for overlap, accumulate in ((True, False), (False, False), (True, True)):
    run(overlap, accumulate)
dist.destroy_process_group()
print(f"RANK {R} OK", flush=True)
