"""Builds a lab's host emulation of CUDA kernels (ops/*/lab/*_emulate.cpp: the kernels' own source
compiled as C++20 with the CUDA primitives imitated) for a test; skips where g++, the CUDA headers
(cuda_bf16.h for the 16-bit types) or C++20's <barrier> are missing."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def cuda_include() -> Path | None:
    for r in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if r and (Path(r) / "include" / "cuda_bf16.h").exists():
            return Path(r) / "include"
    return None


def build(source: str, exe: Path, define: str, includes=(), flags=("-O2",)) -> Path:
    """g++ -std=c++20 -pthread -D<define> with the CUDA headers, opsdk/include and `includes`
    (folders relative to the repository, or absolute); returns exe."""
    cxx, inc = shutil.which("g++"), cuda_include()
    if not cxx or inc is None:
        pytest.skip("needs g++ and the CUDA headers (cuda_bf16.h)")
    dirs = [inc, *(ROOT / d for d in includes), ROOT / "opsdk/include"]
    cmd = [cxx, "-std=c++20", *flags, "-pthread", f"-D{define}", *(f"-I{d}" for d in dirs), str(ROOT / source),
           "-o", str(exe)]
    run = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    if run.returncode != 0 and "<barrier>" in run.stdout and "No such file" in run.stdout:
        pytest.skip("the host compiler has no C++20 <barrier>")
    assert run.returncode == 0, run.stdout[-3000:]
    return exe
