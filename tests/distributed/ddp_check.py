"""What the CUDA rank scripts (nccl.py, p2p.py) share: DDP over the group equals one replica trained
on the global batch (gradients within 1e-5)."""
import numpy as np

import vibetensor as vt
import vibetensor.nn as nn
import vibetensor.nn.functional as F
from vibetensor.nn.parallel import DistributedDataParallel as DDP


def ddp_matches_one_replica(dev, R, W):
    vt.manual_seed(5 + R)  # different weights per rank: DDP must broadcast rank 0's
    model = nn.Sequential(nn.Linear(16, 64), nn.GELU(), nn.Linear(64, 4)).to(dev)
    ddp = DDP(model, bucket_cap_mb=0.005)
    ref = nn.Sequential(nn.Linear(16, 64), nn.GELU(), nn.Linear(64, 4)).to(dev)
    ref.load_state_dict(ddp.state_dict())
    rng = np.random.default_rng(3)
    x = vt.from_numpy(rng.standard_normal((W * 4, 16)).astype(np.float32)).to(dev)
    y = vt.from_numpy(rng.standard_normal((W * 4, 4)).astype(np.float32)).to(dev)
    F.mse_loss(ddp(x[R * 4:(R + 1) * 4]), y[R * 4:(R + 1) * 4]).backward()
    F.mse_loss(ref(x), y).backward()
    for p, q in zip(model.parameters(), ref.parameters()):
        a, b = p.grad.cpu().numpy(), q.grad.cpu().numpy()
        assert np.abs(a - b).max() <= 1e-5 * max(1.0, np.abs(b).max())
