"""The p2p provider's CUDA kernel (ops/allreduce/src/p2p_kernels.cuh), its own source compiled as host
C++ (ops/allreduce/lab/p2p_emulate.cpp): W ranks of std::threads over host buffers that stand for
the IPC-mapped device memory, the flags std::atomic_ref with release/acquire. One-shot, two-shot and
ring for W in 2, 3, 4, 8, 1 element to 1 MiB, fp32/bf16/fp16, sum/avg/max, every call of a W
back-to-back on one group, a rank that never arrives (the others time out naming it, no hang) and
one that arrives late (waited for).
It checks the protocol and the index arithmetic without a GPU; GPU runs are tests/test_distributed_cuda.py."""
import subprocess

import host_emulation
import pytest

ROOT = host_emulation.ROOT


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    return host_emulation.build("ops/allreduce/lab/p2p_emulate.cpp", tmp_path_factory.mktemp("p2p") / "p2p_emulate",
                                "P2P_EMULATE", ["ops/allreduce/src", "ops/allreduce/lab"], ("-O2", "-Wall", "-Werror"))


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
    exe = host_emulation.build("ops/allreduce/lab/p2p_emulate.cpp", tmp_path / "bad", "P2P_EMULATE",
                               [tmp_path, "ops/allreduce/lab"], ("-O1",))
    run = subprocess.run([str(exe)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=240)
    assert run.returncode == 1 and "FAIL" in run.stdout, run.stdout[-2000:]
