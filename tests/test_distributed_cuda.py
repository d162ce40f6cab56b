"""The CUDA providers of the allreduce pack. On 2 GPUs (skipped elsewhere; the GPU session's first
check of code written without a GPU): the nccl provider (tests/distributed/nccl.py) and the p2p
provider with nccl as its fallback (tests/distributed/p2p.py), each under the launcher. Run as
`NCCL_NVLS_ENABLE=0 python -m pytest -q tests/test_distributed_cuda.py`. Everywhere: the p2p ops'
argument checks (they need no GPU)."""
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


def _launch_two(script: str):
    cmd = [sys.executable, "-m", "vibetensor.distributed.run", "--nproc-per-node", "2",
           str(Path(__file__).parent / "distributed" / script)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=dict(os.environ, NCCL_NVLS_ENABLE="0"))


def _p2p_built() -> bool:
    import vibetensor.distributed as dist

    dist._load_pack()
    return bool(vt.ops.get("allreduce").manifest.get("cuda_architectures"))


@pytest.mark.skipif(vt.cuda.device_count() < 2, reason="needs 2 GPUs")
def test_p2p_provider_against_host_references_graphs_and_ddp_on_2_gpus():
    """every algorithm, dtype, op and provider (p2p, and nccl pinned with vt.ops.use) against numpy,
    200 back-to-back calls, a captured CUDA graph replayed, the fallback's collectives, DDP, and a
    rank that skips a call (the other raises within the timeout)"""
    if not _p2p_built():
        pytest.skip("the allreduce pack was built without CUDA (no nvcc): no p2p provider")
    p = _launch_two("p2p.py")
    assert p.returncode == 0, (p.stdout + p.stderr)[-5000:]
    for r in (0, 1):
        for what in ("algorithms x dtypes x sizes OK", "200 back-to-back OK", "CUDA graph replays OK", "DDP OK"):
            assert f"RANK {r}" in p.stdout and what in p.stdout, p.stdout[-3000:]
        assert f"RANK {r} OK" in p.stdout


def test_p2p_ops_check_their_arguments():
    """the p2p group ops refuse bad arguments with errors naming the op, before touching CUDA"""
    if not _p2p_built():
        pytest.skip("the allreduce pack was built without CUDA (no nvcc): no p2p provider")
    new = vt.ops.allreduce.p2p_new_group
    with pytest.raises(ValueError, match=r"\[allreduce::p2p_new_group\] world_size must be in 1..16"):
        new(0, 17, 0, 1 << 20, 10.0, -1)
    with pytest.raises(ValueError, match=r"rank must be in 0..1, got 2"):
        new(2, 2, 0, 1 << 20, 10.0, -1)
    with pytest.raises(ValueError, match=r"buffer_bytes must be a multiple of 4096 and at least 65536"):
        new(0, 2, 0, 1000, 10.0, -1)
    with pytest.raises(ValueError, match=r"timeout must be > 0"):
        new(0, 2, 0, 1 << 20, 0.0, -1)
    with pytest.raises(ValueError, match=r"group 63 is not an open process group"):
        new(0, 2, 0, 1 << 20, 10.0, 63)
    with pytest.raises(ValueError, match=r"\[allreduce::p2p_handle\] group 62 is not an open process group"):
        vt.ops.allreduce.p2p_handle(62)
    with pytest.raises(ValueError, match=r"\[allreduce::p2p_check\] group 61 is not an open process group"):
        vt.ops.allreduce.p2p_check(61)
    if vt.cuda.device_count() == 0:
        with pytest.raises(RuntimeError, match=r"\[allreduce::p2p_new_group\] (CUDA error in cudaGetDeviceCount|device "
                                               r"must be a visible CUDA device)"):
            new(0, 2, 0, 1 << 20, 10.0, -1)
