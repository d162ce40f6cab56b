"""Foundation benchmarks (issue 2): each measured against its peer in the same run.

    python bench/bench_foundation.py [--skip-build]

1. eager dispatch overhead: a 4-element float32 add, vt vs torch (1 thread) vs numpy
2. pack load time and the cost of vt.ops.use switching
3. `vt-ops build` of a one-op CPU pack, cold and incremental, vs torch's cpp_extension.load_inline
4. matmul 1024x1024 float32, vt vs numpy (both multi-threaded BLAS)
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path

import numpy as np

import vibetensor as vt

try:
    import torch
except ImportError:  # the comparisons that need torch are skipped, and say so
    torch = None


def per_call(fn, number=20000, repeat=7):
    fn()
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number


def bench_dispatch():
    print("== eager dispatch: 4-element float32 add ==")
    a, b = vt.ones(4), vt.ones(4)
    t_vt = per_call(lambda: a + b)
    na, nb = np.ones(4, np.float32), np.ones(4, np.float32)
    t_np = per_call(lambda: na + nb)
    print(f"vt     {t_vt * 1e6:7.3f} us/op")
    print(f"numpy  {t_np * 1e6:7.3f} us/op   vt/numpy {t_vt / t_np:5.2f}x")
    if torch is not None:
        torch.set_num_threads(1)
        ta, tb = torch.ones(4), torch.ones(4)
        t_t = per_call(lambda: ta + tb)
        print(f"torch  {t_t * 1e6:7.3f} us/op   vt/torch {t_vt / t_t:5.2f}x (target <= 0.60)")
    else:
        print("torch not importable: vt/torch not measured")
    print("== eager dispatch: 4-element float32 tensor + Python float (x + 1.0) ==")
    t_vt = per_call(lambda: a + 1.0)
    print(f"vt     {t_vt * 1e6:7.3f} us/op")
    if torch is not None:
        t_t = per_call(lambda: ta + 1.0)
        print(f"torch  {t_t * 1e6:7.3f} us/op   vt/torch {t_vt / t_t:5.2f}x (target <= 0.60)")


def bench_empty():
    print("== allocation from Python: empty(262144) float32 (1 MiB) + free ==")
    t_vt = per_call(lambda: vt.empty(262144))
    print(f"vt     {t_vt * 1e6:7.3f} us/op")
    if torch is not None:
        t_t = per_call(lambda: torch.empty(262144))
        print(f"torch  {t_t * 1e6:7.3f} us/op   vt/torch {t_vt / t_t:5.2f}x")


PACK_SRC = r"""
#include <vt/oppack.h>
// bench::scale(x, f) = x * f, float32 contiguous
static vt_status scale(const vt_kernel_ctx* ctx, const vt_value* a, int32_t, vt_value* o, int32_t) {
  const vt_host* h = ctx->host;
  vt_tensor* x = a[0].v.t;
  float f = (float)a[1].v.f;
  vt_tensor* y = h->empty(x->sizes, x->ndim, x->dtype, x->device);
  if (!y) return VT_ERR_MEMORY;
  const float* xp = (const float*)x->data; float* yp = (float*)y->data;
  for (int64_t i = 0; i < x->numel; ++i) yp[i] = xp[i] * f;
  o[0].tag = VT_TENSOR; o[0].v.t = y;
  return VT_OK;
}
static vt_status init(const vt_host* h, vt_pack* p) {
  vt_status s = h->define_op(p, "bench::scale(Tensor x, float f) -> Tensor");
  if (s) return s;
  return h->register_kernel(p, "bench::scale", VT_CPU, "bench", 0, scale, nullptr);
}
VT_OPPACK_DEFINE(init)
"""

CMAKE = """cmake_minimum_required(VERSION 3.18)
project(benchpack LANGUAGES CXX)
find_package(VibeTensor REQUIRED)
vt_add_oppack(NAME benchpack VERSION 0.1.0 SOURCES scale.cpp)
"""

TORCH_SRC = """
torch::Tensor scale(torch::Tensor x, double f) { return x * f; }
"""


def bench_build(tmp: Path):
    print("== vt-ops build of a one-op CPU pack vs torch load_inline ==")
    pack = tmp / "benchpack"
    pack.mkdir()
    (pack / "scale.cpp").write_text(PACK_SRC)
    (pack / "CMakeLists.txt").write_text(CMAKE)
    vt_ops = [sys.executable, "-m", "vibetensor.cli"]
    t0 = time.perf_counter()
    subprocess.run(vt_ops + ["build", str(pack)], check=True, capture_output=True)
    cold = time.perf_counter() - t0
    (pack / "scale.cpp").write_text(PACK_SRC + "\n// touched\n")
    t0 = time.perf_counter()
    subprocess.run(vt_ops + ["build", str(pack)], check=True, capture_output=True)
    incr = time.perf_counter() - t0
    t0 = time.perf_counter()
    subprocess.run(vt_ops + ["build", str(pack)], check=True, capture_output=True)
    noop = time.perf_counter() - t0
    print(f"vt-ops build  cold {cold:6.2f} s   after an edit {incr:6.2f} s   no change {noop:6.2f} s")
    if torch is not None:
        from torch.utils.cpp_extension import load_inline

        os.environ["TORCH_EXTENSIONS_DIR"] = str(tmp / "torch_ext")
        t0 = time.perf_counter()
        load_inline("bench_scale", cpp_sources=TORCH_SRC, functions=["scale"], verbose=False)
        t_torch = time.perf_counter() - t0
        print(f"torch load_inline cold {t_torch:6.2f} s   vt/torch {cold / t_torch:5.3f}x "
              f"(target <= 0.10)")
    return pack / "build"


def bench_load(pack_dir: Path):
    print("== pack load / unload and provider switching ==")
    out = next(p.parent for p in pack_dir.rglob("manifest.json"))
    times = []
    for _ in range(20):
        t0 = time.perf_counter()
        p = vt.ops.load(out)
        times.append(time.perf_counter() - t0)
        vt.ops.unload(p)
    print(f"load (verify manifest + sha256 + dlopen + init) median "
          f"{sorted(times)[len(times) // 2] * 1e3:6.3f} ms (target < 10 ms)")
    t_use = per_call(lambda: (vt.ops.use("core::add", "core"), vt.ops.use("core::add", None)),
                     number=2000) / 2
    print(f"vt.ops.use pin or unpin: {t_use * 1e6:7.2f} us")


def bench_matmul():
    print("== matmul 1024x1024 float32 ==")
    n = 1024
    a_np = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b_np = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    a, b = vt.from_numpy(a_np), vt.from_numpy(b_np)
    t_vt = per_call(lambda: a @ b, number=10, repeat=7)
    t_np = per_call(lambda: a_np @ b_np, number=10, repeat=7)
    flops = 2 * n ** 3
    print(f"vt     {flops / t_vt / 1e9:7.1f} GFLOP/s")
    print(f"numpy  {flops / t_np / 1e9:7.1f} GFLOP/s   vt/numpy throughput {t_np / t_vt:5.2f}x "
          f"(target >= 0.90)")
    if torch is not None:
        torch.set_num_threads(vt.get_num_threads())
        ta, tb = torch.from_numpy(a_np), torch.from_numpy(b_np)
        t_t = per_call(lambda: ta @ tb, number=10, repeat=7)
        print(f"torch  {flops / t_t / 1e9:7.1f} GFLOP/s   vt/torch throughput {t_t / t_vt:5.2f}x")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-build", action="store_true")
    args = ap.parse_args()
    print(f"# {platform.node()} {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, vt threads {vt.get_num_threads()}, "
          f"{time.strftime('%Y-%m-%d')}")
    bench_dispatch()
    bench_empty()
    bench_matmul()
    if not args.skip_build:
        tmp = Path(tempfile.mkdtemp(prefix="vtbench"))
        os.chmod(tmp, 0o755)
        try:
            build = bench_build(tmp)
            bench_load(build)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
