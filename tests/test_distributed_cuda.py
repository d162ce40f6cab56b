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


def test_p2p_rendezvous_exchanges_handles_in_rank_order_and_cleans_up(monkeypatch):
    """vibetensor.distributed's p2p set-up, with the pack's p2p ops replaced by recorders (they need
    GPUs): 3 ranks as threads over one TCP store; rank 0 finds NCCL missing and every rank then goes
    without a fallback; each rank's connect gets all three IPC handles in rank order; a rank whose
    connect fails destroys its own group and raises"""
    import threading

    import numpy as np

    import vibetensor.distributed as dist
    from vibetensor.distributed import TCPStore

    W = 3
    seen, destroyed, lock = {}, [], threading.Lock()

    def fake_op(name):
        def call(*a):
            if name == "allreduce::nccl_unique_id":
                raise RuntimeError("[allreduce::nccl_unique_id] cannot load libnccl.so.2")
            if name == "allreduce::p2p_new_group":
                rank, world, device, nbytes, timeout, fallback = a
                assert (world, device, nbytes, fallback) == (W, rank, dist.P2P_BUFFER_BYTES, -1)
                return 20 + rank
            if name == "allreduce::p2p_handle":
                return vt.from_numpy(np.full(64, a[0] - 20, dtype=np.uint8))
            if name == "allreduce::p2p_connect":
                with lock:
                    seen[a[0] - 20] = a[1].numpy().tobytes()
                if a[0] == 22 and fail_rank_2:
                    raise RuntimeError("[allreduce::p2p_connect] cannot map rank 0's buffer")
                return True
            if name == "allreduce::destroy_group":
                with lock:
                    destroyed.append(a[0])
                return True
            raise AssertionError(name)
        return call

    monkeypatch.setattr(dist, "_op", fake_op)
    monkeypatch.delenv("LOCAL_RANK", raising=False)  # then each rank's GPU is its rank
    assert [dist._cuda_index(s, 1) for s in (None, "cuda", "cuda:3", 2, vt.device("cuda:1"))] == [1, 1, 3, 2, 1]
    for fail_rank_2 in (False, True):
        seen.clear()
        destroyed.clear()
        master = TCPStore("127.0.0.1", 0, is_master=True, timeout=20)
        groups, errors = {}, {}

        def rank_main(r):
            store = master if r == 0 else TCPStore("127.0.0.1", master.port, timeout=20)
            try:
                groups[r] = dist._init_p2p(store, r, W, dist._cuda_index("cuda", r), 20.0)
            except RuntimeError as e:
                errors[r] = str(e)

        threads = [threading.Thread(target=rank_main, args=(r,)) for r in range(W)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        want = b"".join(bytes([k]) * 64 for k in range(W))
        assert seen == {r: want for r in range(W)}
        if fail_rank_2:
            assert "cannot map rank 0's buffer" in errors[2] and destroyed == [22] and sorted(groups) == [0, 1]
        else:
            assert not errors and not destroyed
        for r, g in groups.items():
            assert (g.backend, g.handle, g.rank(), g.size(), g.fallback) == ("p2p", 20 + r, r, W, None)
            assert str(g.device) == f"cuda:{r}"
        master.close()

