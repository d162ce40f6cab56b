"""GEMMs on the GPU: vibetensor's cuBLASLt compute and its CUTLASS provider vs torch.matmul, in
one process on the same GPU and the same data.

    python bench/bench_cuda_matmul.py [--quick] [--cutlass PACK_FOLDER | --no-cutlass]

Rows: bf16 8192^3 and 4096^3, fp32 4096^3 with TF32 off (torch's default and ours), fp16 4096^3,
and a training-shaped linear with bias (bf16, x 16384x384 @ w^T 384x1536 + b: cuBLASLt's bias
epilogue against torch's F.linear). Cells are TFLOP/s (2mnk / time, CUDA events around a run of
back-to-back products, best of several rounds, vt and torch rounds interleaved); ratios are against
torch (goal: vt >= 0.98x). The CUTLASS column pins the `cutlass` provider of ops/matmul_cutlass
(bfloat16 only): the pack folder from --cutlass or VT_CUTLASS_PACK, else `vt-ops build` here.
Without a GPU it says so and exits 0.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import vibetensor as vt
import vibetensor.backends
import vibetensor.cuda as vcuda

ROOT = Path(__file__).resolve().parent.parent

# (label, dtype, m, k, n, kind): kind "mm" is a @ b, "linear" is linear(x, w, bias) with w (n, k)
CASES = [
    ("GEMM bf16 8192^3", "bfloat16", 8192, 8192, 8192, "mm"),
    ("GEMM bf16 4096^3", "bfloat16", 4096, 4096, 4096, "mm"),
    ("GEMM fp32 4096^3 (TF32 off)", "float32", 4096, 4096, 4096, "mm"),
    ("GEMM fp16 4096^3", "float16", 4096, 4096, 4096, "mm"),
    ("linear+bias bf16 16384x384 -> 1536", "bfloat16", 16384, 384, 1536, "linear"),
]


def time_ms(fn, sync, event, reps):
    """Mean time of one fn() over a run of `reps` back-to-back calls (CUDA events), in ms."""
    start, end = event(), event()
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    sync()
    return start.elapsed_time(end) / reps


@contextlib.contextmanager
def provider(name):
    """core::matmul and core::linear on cuda pinned to provider `name` (None: left as they are)."""
    if name is None:
        yield
        return
    with vt.ops.use("core::matmul", name, "cuda"), vt.ops.use("core::linear", name, "cuda"):
        yield


def cutlass_pack(arg):
    """The CUTLASS pack folder to load: given, VT_CUTLASS_PACK, or built now (None if it fails)."""
    folder = arg or os.environ.get("VT_CUTLASS_PACK")
    if folder:
        return Path(folder)
    out = Path("/tmp/vt_bench_matmul_cutlass")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "vibetensor.cli", "build", str(ROOT / "ops" / "matmul_cutlass"),
                           "-o", str(out)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        print(f"(the CUTLASS pack did not build, its column is empty:\n{proc.stdout[-2000:]})\n")
        return None
    print(f"built ops/matmul_cutlass in {time.perf_counter() - t0:.0f} s")
    return out / "packs" / "matmul_cutlass"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    ap.add_argument("--cutlass", metavar="PACK_FOLDER", help="a built ops/matmul_cutlass pack folder")
    ap.add_argument("--no-cutlass", action="store_true", help="leave the CUTLASS provider out")
    args = ap.parse_args(argv)
    if not vcuda.is_available():
        print("bench_cuda_matmul: no CUDA GPU here (vt.cuda.is_available() is False); nothing to measure")
        return 0
    try:
        import torch

        if not torch.cuda.is_available():
            torch = None
    except ImportError:
        torch = None
    if torch is not None:
        torch.backends.cuda.matmul.allow_tf32 = False  # torch's default, said out loud
    vt.backends.cuda.matmul.allow_tf32 = False
    pack = None
    if not args.no_cutlass:
        folder = cutlass_pack(args.cutlass)
        pack = vt.ops.load(str(folder)) if folder else None
    rounds = 3 if args.quick else 7
    print(f"GPU: {vcuda.get_device_name()}  torch: {torch.__version__ if torch else 'not available'}  "
          f"cutlass: {'loaded' if pack else 'not loaded'}\n")
    print("| case | vt cuBLASLt (TF/s) | torch (TF/s) | vt / torch | vt CUTLASS (TF/s) | CUTLASS / torch |")
    print("|---|---:|---:|---:|---:|---:|")
    rng = np.random.default_rng(0)
    for label, dtype, m, k, n, kind in CASES:
        flop = 2.0 * m * n * k
        host = [rng.standard_normal(s, dtype=np.float32) for s in ((m, k), (k, n) if kind == "mm" else (n, k), (n,))]
        dt = getattr(vt, dtype)
        va, vb, vbias = (vt.from_numpy(h).to("cuda").to(dt) for h in host)
        if kind == "mm":
            vt_fn = lambda: va @ vb  # noqa: E731
        else:
            vt_fn = lambda: vt.linear(va, vb, vbias)  # noqa: E731
        ev = lambda: vcuda.Event(enable_timing=True)  # noqa: E731
        fns = {"vt": (vt_fn, vcuda.synchronize, ev, None)}
        if torch is not None:
            tdt = getattr(torch, dtype)
            ta, tb, tbias = (torch.from_numpy(h).cuda().to(tdt) for h in host)
            if kind == "mm":
                t_fn = lambda: ta @ tb  # noqa: E731
            else:
                t_fn = lambda: torch.nn.functional.linear(ta, tb, tbias)  # noqa: E731
            fns["torch"] = (t_fn, torch.cuda.synchronize, lambda: torch.cuda.Event(enable_timing=True), None)
        if pack is not None and dtype == "bfloat16":
            fns["cutlass"] = (vt_fn, vcuda.synchronize, ev, "cutlass")
        # reps: about 50 ms of work per round at 700 TF/s (bf16) / 50 TF/s (fp32)
        rate = 50e12 if dtype == "float32" else 700e12
        reps = max(3, int(0.05 / (flop / rate)))
        for fn, sync, _, prov in fns.values():  # warm-up: plans, heuristics, clocks
            with provider(prov):
                for _ in range(3):
                    fn()
                sync()
        best = {}
        for _ in range(rounds):
            for name, (fn, sync, event, prov) in fns.items():
                with provider(prov):
                    ms = time_ms(fn, sync, event, reps)
                best[name] = min(best.get(name, float("inf")), ms)
        tf = {name: flop / (ms * 1e-3) / 1e12 for name, ms in best.items()}
        t = tf.get("torch")
        cell = lambda name: f"{tf[name]:.0f}" if name in tf else "-"  # noqa: E731
        ratio = lambda name: f"{tf[name] / t:.3f}x" if name in tf and t else "-"  # noqa: E731
        print(f"| {label} | {cell('vt')} | {cell('torch')} | {ratio('vt')} | {cell('cutlass')} | {ratio('cutlass')} |",
              flush=True)
        del va, vb, vbias
    if pack is not None:
        vt.ops.unload(pack)
    return 0


if __name__ == "__main__":
    sys.exit(main())
