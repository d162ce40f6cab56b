"""The p2p provider's CUDA kernel (ops/allreduce/src/p2p_kernels.cuh), its own source compiled as host
C++ (ops/allreduce/lab/p2p_emulate.cpp): W ranks of std::threads over host buffers that stand for
the IPC-mapped device memory, the flags std::atomic_ref with release/acquire. One-shot, two-shot,
ring and push for W in 2, 3, 4, 8, 1 element to 1 MiB, fp32/bf16/fp16, sum/avg/max, every call of a
W back-to-back on one group; ranks running 60 mixed calls each at their own pace (sizes, block
counts, dtypes, ops, algorithms and pieces changing from call to call); a slow reader (the others run
ahead into the next call while it has yet to read this one's regions: what the call-parity regions
are for); a rank that never arrives (the others time out naming it, no hang) and one that arrives
late (waited for).
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
    for w in (1, 2, 3, 4, 5, 8):
        assert any(line.startswith(f"pipelined W={w}: 60 mixed calls") and line.endswith("OK") for line in lines), run.stdout
    assert any(line.startswith("slow reader: the others run ahead into the next call") for line in lines), run.stdout
    assert lines[-1] == "ALL OK"


@pytest.mark.parametrize("broken, fixed, mode", [
    # the all-gather reads the left neighbour's stale reduce-scatter buffer instead of its all-gather region
    ("const char* src = acc(left);", "const char* src = s == 0 ? acc(left) : out(left);", "all"),
    # one set of regions for every call (the parity forced to 0): with no closing barrier, a rank
    # overwrites its regions with the next call while the slow reader has yet to read them
    ("  const int64_t region = 0;\n", "  const int64_t region = (int64_t)(e & 1) * p.parity_bytes;\n", "slow-reader"),
    # blocks a launch leaves out keep their old count: after a one-CTA call, the next call's second
    # CTA picks the parity the one-CTA call used and overwrites what its peers still read
    ("", "  if (blockIdx.x == gridDim.x - 1)\n"
         "    for (int b = (int)gridDim.x + (int)threadIdx.x; b < kMaxBlocks; b += (int)blockDim.x) me->epoch[b] = e;\n",
     "slow-reader"),
], ids=["stale-all-gather-source", "constant-parity", "parity-of-left-out-blocks"])
def test_p2p_emulation_catches_protocol_bugs(emulator, tmp_path, broken, fixed, mode):
    """the harness is sharp: the kernel with one deliberate protocol bug must fail it (the parity bugs
    in the slow-reader case alone, which catches them every time, not by a lucky interleaving)"""
    src = (ROOT / "ops/allreduce/src/p2p_kernels.cuh").read_text()
    assert src.count(fixed) == 1
    (tmp_path / "p2p_kernels.cuh").write_text(src.replace(fixed, broken))
    exe = host_emulation.build("ops/allreduce/lab/p2p_emulate.cpp", tmp_path / "bad", "P2P_EMULATE",
                               [tmp_path, "ops/allreduce/lab"], ("-O1",))
    run = subprocess.run([str(exe)] + ([] if mode == "all" else [mode]), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, timeout=240)
    assert run.returncode == 1 and "FAIL" in run.stdout, run.stdout[-2000:]


def test_p2p_emulation_slow_reader_passes(emulator):
    """the slow-reader case alone passes with the kernel as it is (the mutants above fail it)"""
    run = subprocess.run([str(emulator), "slow-reader"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         timeout=120)
    assert run.returncode == 0 and run.stdout.rstrip().endswith("OK"), run.stdout[-2000:]
