"""The CUDA row kernels of softmax/log_softmax (forward and backward) and layer_norm/rms_norm
(forward), ops/core/cuda/softmax_rows.cuh and norm_rows.cuh, compiled as host C++ with the warp
primitives emulated (ops/core/lab/rowwise_emulate.cpp) and run with the ops' own launch plans against
a float64 reference: a check of the warp-per-row and block-per-row paths' index arithmetic, tails and
guard bytes that runs without a GPU (a few cases; run the binary without arguments for all)."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest


def test_row_kernels_in_host_emulation(tmp_path):
    root = Path(__file__).resolve().parents[1]
    cxx = shutil.which("g++")
    cuda_inc = next((Path(r) / "include" for r in (os.environ.get("CUDA_HOME"), "/usr/local/cuda") if r and
                     (Path(r) / "include" / "cuda_bf16.h").exists()), None)
    if not cxx or cuda_inc is None:
        pytest.skip("needs g++ and the CUDA headers (cuda_bf16.h)")
    exe = tmp_path / "rowwise_emulate"
    build = subprocess.run([cxx, "-std=c++20", "-O2", "-pthread", "-DVT_ROWWISE_EMULATE", f"-I{cuda_inc}",
                            f"-I{root / 'ops/core/lab'}", f"-I{root / 'opsdk/include'}",
                            str(root / "ops/core/lab/rowwise_emulate.cpp"), "-o",
                            str(exe)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    if build.returncode != 0 and "barrier" in build.stdout:
        pytest.skip("the host compiler has no C++20 <barrier>")
    assert build.returncode == 0, build.stdout[-3000:]
    run = subprocess.run([str(exe), "quick"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stdout
    # every kind of plan ran: the warp kernel (short rows and 16 slots per lane), the block kernel
    # with one chunk and with several
    assert "warp  tpr   1 " in run.stdout and "warp  tpr  32 " in run.stdout, run.stdout
    assert "chunks 1" in run.stdout and "chunks 2" in run.stdout, run.stdout
    assert "all cases passed" in run.stdout, run.stdout
