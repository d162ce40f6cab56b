"""The CUDA caching allocator's allocation-free containers (runtime/src/recycling.hpp: the
free-block sets' node cache and the address map), compiled as host C++ and checked against the
standard containers they replace, with random operations (runtime/lab/recycling_check.cpp). The
allocator itself needs a GPU (tests/test_cuda_runtime.py); these run anywhere."""
import subprocess

import host_emulation


def test_recycling_containers_match_std(tmp_path):
    exe = host_emulation.build("runtime/lab/recycling_check.cpp", tmp_path / "recycling_check", "VT_RECYCLING_CHECK",
                               ["runtime/src"])
    run = subprocess.run([str(exe)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    assert run.returncode == 0, run.stdout
    assert "PtrMap: 200000 random steps agree" in run.stdout, run.stdout
    assert "CachedAlloc: two sets sharing one cache agree" in run.stdout, run.stdout
    assert "all checks passed" in run.stdout, run.stdout
