"""The CUDA row kernels of softmax/log_softmax and layer_norm/rms_norm (forward and backward,
with the backward's fused grad_weight/grad_bias partials), ops/core/cuda/softmax_rows.cuh and
norm_rows.cuh, compiled as host C++ with the warp primitives emulated
(ops/core/lab/rowwise_emulate.cpp) and run with the ops' own launch plans against a float64
reference: a check of the warp-per-row and block-per-row paths' index arithmetic, tails, reductions,
the 16-bit forward's plans and guard bytes that runs without a GPU (a few cases; run the binary
without arguments for all). Each VT_ROWS_PLAN the forward reads runs: the wide plan (the default:
norm_rows_wide / softmax_rows_wide, 4 slots per thread, which must also give the generic kernels'
bits at the same plan), the same kernels at 8 slots per thread ("wide8") and the classic kernels
with their row pipeline ("piped": blocks taking many rows, the next one prefetched)."""
import os
import subprocess

import host_emulation


def _run(exe, mode, plan):
    env = dict(os.environ)
    env.pop("VT_ROWS_PLAN", None)
    if plan:
        env["VT_ROWS_PLAN"] = plan
    run = subprocess.run([str(exe), mode], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         timeout=600, env=env)
    assert run.returncode == 0, run.stdout
    assert "all cases passed" in run.stdout and "FAIL" not in run.stdout, run.stdout
    return run.stdout


def test_row_kernels_in_host_emulation(tmp_path):
    exe = host_emulation.build("ops/core/lab/rowwise_emulate.cpp", tmp_path / "rowwise_emulate", "VT_ROWWISE_EMULATE",
                               ["ops/core/lab"])
    # the default: the wide plan for the 16-bit forward rows that one chunk covers with 16-byte
    # slots (a 4096-element row in 128 threads; 1024 elements: a warp; 4104 over few rows: 288
    # threads, some slots absent), the classic kernels elsewhere (misaligned rows: scalar accesses;
    # float32)
    out = _run(exe, "quick", None)
    assert "log_softmax bfloat16 fwd M 515 N 4096 shift 0 wide         block tpr 128 threads 128" in out, out
    assert "layer_norm bfloat16 w+b M 515 N 4096 shift 0 wide          block tpr 128 threads 128" in out, out
    assert "layer_norm bfloat16 w+b M 517 N 1024 shift 0 wide          warp  tpr  32" in out, out
    assert "softmax float16 fwd M 37 N 4104 shift 0 wide               block tpr 288" in out, out
    assert "layer_norm bfloat16 w M 37 N 3000 shift 1                  block" in out, out
    # every kind of classic plan ran too: the warp kernel (short rows and a full warp), the block
    # kernel with one chunk and with several; the backward of 384-element float32 rows (miniGPT's)
    # in warps whose block adds their grad_weight/grad_bias partials
    assert "warp  tpr   1 " in out and "warp  tpr  32 " in out, out
    assert "chunks 1" in out and "chunks 2" in out, out
    assert "layer_norm bwd float32 w M 512 N 384 shift 0               warp  tpr  32" in out, out
    assert " piped" not in out, out
    # VT_ROWS_PLAN=piped: the classic kernels (a 4096-element 16-bit row in 128 threads) with the
    # row pipeline (each of 5 blocks takes ~100 rows, the next one prefetched)
    out = _run(exe, "rows4096", "piped")
    assert "log_softmax bfloat16 fwd M 515 N 4096 shift 0 piped        block tpr 128 threads 128" in out, out
    assert "layer_norm bfloat16 w+b M 515 N 4096 shift 0 piped         block tpr 128 threads 128" in out, out
    # VT_ROWS_PLAN=wide8: the wide kernels at 8 slots per thread (64 threads a row), the generic
    # kernels' bits at that plan
    out = _run(exe, "rows4096", "wide8")
    assert "log_softmax bfloat16 fwd M 515 N 4096 shift 0 wide         block tpr  64 threads  64" in out, out
    assert "layer_norm bfloat16 w+b M 515 N 4096 shift 0 wide          block tpr  64 threads  64" in out, out
