"""Build time of a CUDA op pack: `vt-ops build` vs torch's `load_inline(cuda_sources=...)`, same run.

    python bench/bench_pack_build_cuda.py [--arch 90] [--json out.json]

The vt pack is what `vt-ops new benchcuda --cuda` makes: one op (a scale) with a meta step, a CPU
compute, a backward rule and a CUDA compute on the SDK's launcher (vt/cuda/elementwise.cuh). The
torch extension is the same op: a CUDA kernel + its launcher in `cuda_sources`, the binding in
`cpp_sources`. Both compile for one GPU architecture (--arch; TORCH_CUDA_ARCH_LIST for torch) and
both start from an empty build folder:

  cold          first build (vt: CMake configure + vt_describe + compile + link + manifest;
                torch: ninja file + compile + link + import)
  incremental   after an edit to the CUDA source only
  no change     (vt only) a re-run with nothing to do

Needs nvcc; the torch side is skipped, with the reason printed, when torch or its CUDA toolkit is
not usable (a CPU-only torch, no CUDA_HOME). Runs without a GPU: nothing is launched.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VT_OPS = [sys.executable, "-m", "vibetensor.cli"]

TORCH_CPP = "torch::Tensor scale(torch::Tensor x, double k);"
TORCH_CU = r"""
#include <torch/extension.h>

__global__ void scale_kernel(const float* x, float* out, int64_t n, float k) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    out[i] = x[i] * k;
}

torch::Tensor scale(torch::Tensor x, double k) {
  TORCH_CHECK(x.is_cuda() && x.scalar_type() == torch::kFloat, "x must be a float32 CUDA tensor");
  auto xc = x.contiguous();
  auto out = torch::empty_like(xc);
  const int64_t n = xc.numel();
  const int blocks = (int)std::min<int64_t>((n + 255) / 256, 8192);
  if (n > 0) scale_kernel<<<blocks, 256>>>(xc.data_ptr<float>(), out.data_ptr<float>(), n, (float)k);
  return out;
}
"""


def timed(cmd, env=None) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed:\n{proc.stdout}")
    return dt


def bench_vt(tmp: Path, arch: str) -> dict:
    subprocess.run(VT_OPS + ["new", "benchcuda", "--cuda"], cwd=tmp, check=True, capture_output=True)
    src = tmp / "benchcuda"
    build = VT_OPS + ["build", str(src), "--cuda-arch", arch]
    cold = timed(build)
    man = json.loads((src / "build" / "packs" / "benchcuda" / "manifest.json").read_text())
    if "cuda" not in man["devices"]:
        sys.exit("vt-ops build made a CPU-only pack: nvcc was not found")
    cu = src / "src" / "benchcuda_cuda.cu"
    cu.write_text(cu.read_text() + "\n// edited\n")
    incr = timed(build)
    noop = timed(build)
    return {"cold_s": cold, "incremental_s": incr, "noop_s": noop}


def torch_unusable() -> str | None:
    try:
        import torch
        from torch.utils import cpp_extension
    except ImportError as e:
        return f"torch is not importable ({e})"
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a CPU-only build (no CUDA toolkit support)"
    if cpp_extension.CUDA_HOME is None:
        return "torch found no CUDA toolkit (CUDA_HOME)"
    return None


def bench_torch(tmp: Path, arch: str) -> dict:
    from torch.utils.cpp_extension import load_inline

    os.environ["TORCH_EXTENSIONS_DIR"] = str(tmp / "torch_ext")
    os.environ["TORCH_CUDA_ARCH_LIST"] = f"{int(arch) // 10}.{int(arch) % 10}" if arch.isdigit() else arch

    def build(cu: str, name: str) -> float:
        t0 = time.perf_counter()
        load_inline(name, cpp_sources=TORCH_CPP, cuda_sources=cu, functions=["scale"], verbose=False)
        return time.perf_counter() - t0

    cold = build(TORCH_CU, "bench_scale_cuda")
    # load_inline keys its build folder by name and rebuilds when a source changes (as name_v1)
    incr = build(TORCH_CU + "\n// edited\n", "bench_scale_cuda")
    return {"cold_s": cold, "incremental_s": incr}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="90", help="GPU architecture for both builds (default 90)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    print(f"# {platform.node()} {platform.machine()}, {os.cpu_count()} cores, sm_{args.arch}, "
          f"{time.strftime('%Y-%m-%d')}")
    res = {"arch": args.arch, "cores": os.cpu_count()}
    tmp = Path(tempfile.mkdtemp(prefix="vtbenchcuda"))
    os.chmod(tmp, 0o755)
    try:
        print("== vt-ops build of a --cuda pack (meta + CPU + CUDA compute + backward) ==")
        res["vt"] = v = bench_vt(tmp, args.arch)
        print(f"vt-ops build       cold {v['cold_s']:6.2f} s   after a .cu edit {v['incremental_s']:6.2f} s   "
              f"no change {v['noop_s']:5.2f} s")
        why = torch_unusable()
        if why:
            print(f"torch load_inline  skipped: {why}")
            res["torch"] = {"skipped": why}
        else:
            res["torch"] = t = bench_torch(tmp, args.arch)
            print(f"torch load_inline  cold {t['cold_s']:6.2f} s   after a .cu edit {t['incremental_s']:6.2f} s")
            print(f"vt/torch           cold {v['cold_s'] / t['cold_s']:5.2f}x   "
                  f"incremental {v['incremental_s'] / t['incremental_s']:5.2f}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
