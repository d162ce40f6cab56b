"""The CUDA row kernels of softmax/log_softmax and layer_norm/rms_norm (forward and backward, with
the backward's fused grad_weight/grad_bias partials), ops/core/cuda/softmax_rows.cuh and
norm_rows.cuh, compiled as host C++ with the warp primitives emulated
(ops/core/lab/rowwise_emulate.cpp) and run with the ops' own launch plans against a float64
reference: a check of the warp-per-row and block-per-row paths' index arithmetic, tails, reductions,
the 16-bit forward's row pipeline (blocks taking many rows, the next one prefetched) and guard bytes that runs without a GPU (a few cases; run the binary without arguments for all)."""
import os
import subprocess

import host_emulation


def test_row_kernels_in_host_emulation(tmp_path):
    exe = host_emulation.build("ops/core/lab/rowwise_emulate.cpp", tmp_path / "rowwise_emulate", "VT_ROWWISE_EMULATE",
                               ["ops/core/lab"])
    # VT_ROWS_PLAN=piped: the norm/softmax row pipeline is off by default (rowwise::rows_plan)
    run = subprocess.run([str(exe), "quick"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         timeout=600, env=dict(os.environ, VT_ROWS_PLAN="piped"))
    assert run.returncode == 0, run.stdout
    # every kind of plan ran: the warp kernel (short rows and a full warp), the block kernel (a
    # 4096-element 16-bit row in 128 threads) with one chunk and with several
    assert "warp  tpr   1 " in run.stdout and "warp  tpr  32 " in run.stdout, run.stdout
    assert "block tpr 128 threads 128 chunks 1 vec 1" in run.stdout, run.stdout
    assert "chunks 1" in run.stdout and "chunks 2" in run.stdout, run.stdout
    # 16-bit rows of one chunk pipelined (each of 5 blocks takes ~100 rows, the next one prefetched)
    assert "log_softmax bfloat16 fwd M 515 N 4096 shift 0 piped" in run.stdout, run.stdout
    assert "layer_norm bfloat16 w+b M 515 N 4096 shift 0 piped" in run.stdout, run.stdout
    assert "all cases passed" in run.stdout, run.stdout
