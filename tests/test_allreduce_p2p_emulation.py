"""The p2p provider's CUDA kernel (ops/allreduce/src/p2p_kernels.cuh), its own source compiled as host
C++ (ops/allreduce/lab/p2p_emulate.cpp): W ranks of std::threads over host buffers that stand for
the IPC-mapped device memory, the flags std::atomic_ref with release/acquire. One-shot, two-shot and
ring for W in 2, 3, 4, 8, 1 element to 1 MiB, fp32/bf16/fp16, sum/avg/max, every call of a W
back-to-back on one group, a rank that never arrives (the others time out naming it, no hang) and
one that arrives late (waited for).
It checks the protocol and the index arithmetic without a GPU; GPU runs are tests/test_distributed_cuda.py."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _cuda_include():
    for r in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if r and (Path(r) / "include" / "cuda_bf16.h").exists():
            return Path(r) / "include"
    return None


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    cxx, inc = shutil.which("g++"), _cuda_include()
    if not cxx or inc is None:
        pytest.skip("needs g++ and the CUDA headers (cuda_bf16.h)")
    exe = tmp_path_factory.mktemp("p2p") / "p2p_emulate"
    build = subprocess.run([cxx, "-std=c++20", "-O2", "-pthread", "-Wall", "-Werror", "-DP2P_EMULATE", f"-I{inc}",
                            f"-I{ROOT / 'ops/allreduce/src'}", f"-I{ROOT / 'opsdk/include'}", f"-I{ROOT / 'ops/allreduce/lab'}",
                            str(ROOT / "ops/allreduce/lab/p2p_emulate.cpp"), "-o", str(exe)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    if build.returncode != 0 and "<barrier>" in build.stdout and "No such file" in build.stdout:
        pytest.skip("the host compiler has no C++20 <barrier>")
    assert build.returncode == 0, build.stdout[-3000:]
    return exe


def test_p2p_kernel_in_host_emulation(emulator):
    run = subprocess.run([str(emulator)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=240)
    assert run.returncode == 0, run.stdout[-3000:]
    lines = run.stdout.splitlines()
    for w in (2, 3, 4, 8):
        assert any(line.startswith(f"W={w}: ") and line.endswith("OK") for line in lines), run.stdout
    assert any(line.startswith("no-show rank: both others time out naming rank 2") for line in lines), run.stdout
    assert any(line.startswith("late rank (0.15 s behind): waited for") for line in lines), run.stdout
    assert any(line.startswith("pipelined: 30 calls per rank, each rank at its own pace") for line in lines), run.stdout
    assert lines[-1] == "ALL OK"


@pytest.mark.parametrize("broken, fixed", [
    # the all-gather reads the left neighbour's stale reduce-scatter buffer instead of its all-gather region
    ("const char* src = p.acc[left];", "const char* src = s == 0 ? p.acc[left] : p.out[left];"),
    # no end barrier: a rank overwrites its buffer with the next call while a peer still reads it
    ("  (void)0;  // no end barrier\n", "  if (!barrier_all(p, kSlotEnd, e)) return;\n"),
], ids=["stale-all-gather-source", "no-end-barrier"])
def test_p2p_emulation_catches_protocol_bugs(emulator, tmp_path, broken, fixed):
    """the harness is sharp: the kernel with one deliberate protocol bug must fail it"""
    src = (ROOT / "ops/allreduce/src/p2p_kernels.cuh").read_text()
    assert src.count(fixed) == 1
    (tmp_path / "p2p_kernels.cuh").write_text(src.replace(fixed, broken))
    exe = tmp_path / "bad"
    subprocess.run([shutil.which("g++"), "-std=c++20", "-O1", "-pthread", "-DP2P_EMULATE", f"-I{_cuda_include()}",
                    f"-I{tmp_path}", f"-I{ROOT / 'opsdk/include'}", f"-I{ROOT / 'ops/allreduce/lab'}",
                    str(ROOT / "ops/allreduce/lab/p2p_emulate.cpp"),
                    "-o", str(exe)], check=True, timeout=300)
    run = subprocess.run([str(exe)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=240)
    assert run.returncode == 1 and "FAIL" in run.stdout, run.stdout[-2000:]
