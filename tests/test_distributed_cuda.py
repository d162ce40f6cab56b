"""The nccl provider on 2 GPUs (skipped elsewhere): tests/distributed/nccl.py under the launcher.
The provider was written without a GPU; this is its first check (the GPU session's)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

import vibetensor as vt


@pytest.mark.skipif(vt.cuda.device_count() < 2, reason="needs 2 GPUs")
def test_nccl_collectives_and_ddp_on_2_gpus():
    from vibetensor.distributed import _nccl_library

    lib = _nccl_library()
    if lib == "libnccl.so.2" and not any(Path(d, lib).exists() for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib64")):
        pytest.skip("no libnccl.so.2 (pip install nvidia-nccl-cu13)")
    cmd = [sys.executable, "-m", "vibetensor.distributed.run", "--nproc-per-node", "2",
           str(Path(__file__).parent / "distributed" / "nccl.py")]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=dict(os.environ, NCCL_NVLS_ENABLE="0"))
    assert p.returncode == 0, (p.stdout + p.stderr)[-5000:]
    assert "RANK 0 OK" in p.stdout and "RANK 1 OK" in p.stdout
