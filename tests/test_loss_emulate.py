"""cross_entropy's CUDA kernels (ops/core/cuda/loss_rows.cuh) compiled as host C++ with the warp
primitives emulated (ops/core/lab/loss_emulate.cpp), run with the launch plans loss.cu uses: the
fused forward gives the plain forward's loss and lse and the backward kernel's gradient at
grad_output 1 bit for bit (warp and block plans, one chunk and several, tails, fewer blocks than
rows, strided positions; with the row kept in shared memory, whose blocks pipeline several rows, and
16-bit rows prefetched whole into a second buffer, from that forward's lse), within float64
tolerance of the exact gradient; the in-place scale leaves
the buffer alone at grad_output 1 and scales it otherwise. Guard bytes catch stray accesses."""
import subprocess

import host_emulation


def test_loss_kernels_in_host_emulation(tmp_path):
    exe = host_emulation.build("ops/core/lab/loss_emulate.cpp", tmp_path / "loss_emulate", "VT_ROWWISE_EMULATE",
                               ["ops/core/lab"])
    run = subprocess.run([str(exe)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    assert run.returncode == 0, run.stdout
    out = run.stdout
    # every kind of launch ran: warp plans, block plans with one chunk and with several (and the
    # grid smaller than the rows), the strided-position kernel, both scale kernels and paths
    assert "warp  tpr   1 " in out and "chunks 2 vec 1" in out and "chunks 2 vec 0 blocks 1 " in out, out
    assert "block tpr" in out and "cols inner 3" in out, out
    assert "cached block tpr 512 threads 512 chunks 2 vec 1" in out and "chunks 2 vec 0 blocks 1 " in out, out
    assert "P    7 C 17000 none eps 0.1 cached block" in out, out  # 7 rows pipelined on 2 blocks
    # 16-bit rows with the next row copied whole into a second buffer, 7 rows on 2 blocks
    assert "P    7 C 33000 sum  eps 0.0 piped block tpr 512 threads 512 chunks 2 vec 1 blocks 2" in out, out
    assert "scale float32  scalar" in out and "shift 1" in out and "scale bfloat16 positions" in out, out
    assert "all cases passed" in out, out
