"""CUDA reductions of vibetensor vs torch on the same GPU, in one process.

    python bench/bench_cuda_reduce.py [--quick]

Rows: sum over the last dim and over dim 0 of 8192x4096 float32 and bfloat16; a whole-tensor sum
of 64M float32; mean, logsumexp and argmax over the last dim and var over dim 0 of 8192x4096
float32; sum_to_size of a (64, 256, 768) float32 gradient to (768,) (a bias gradient); cumsum
over the last dim. Each time is the median of several CUDA-event-timed loops, per call. "of copy"
is the bytes the reduction must move (its input read once, its output written) per second over
the device copy ceiling measured here (a 1 GiB device-to-device copy, bytes read + written per
second). ratio = vibetensor / torch (lower is better); "diff" is the largest difference from
torch's result relative to its largest magnitude (integers: mismatches). Without a GPU it says so
and exits 0.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

import vibetensor as vt
import vibetensor.cuda as vcuda
from _timing import copy_ceiling, event_ms


def time_ms(fn, sync, event, loops, trials):
    return event_ms(fn, event, sync, loops, trials)


def cases(rng, quick):
    """(label, shape, dtype name, vt fn, torch fn, output bytes)."""
    big = (1 << 24) if quick else (1 << 26)
    m = (8192, 4096)
    c = 768
    return [
        ("sum(-1) 8192x4096 f32", m, "float32", lambda x: x.sum(-1), lambda x: x.sum(-1)),
        ("sum(-1) 8192x4096 bf16", m, "bfloat16", lambda x: x.sum(-1), lambda x: x.sum(-1)),
        ("sum(0) 8192x4096 f32", m, "float32", lambda x: x.sum(0), lambda x: x.sum(0)),
        ("sum(0) 8192x4096 bf16", m, "bfloat16", lambda x: x.sum(0), lambda x: x.sum(0)),
        (f"sum() {big >> 20}M f32", (big,), "float32", lambda x: x.sum(), lambda x: x.sum()),
        ("mean(-1) 8192x4096 f32", m, "float32", lambda x: x.mean(-1), lambda x: x.mean(-1)),
        ("logsumexp(-1) 8192x4096 f32", m, "float32", lambda x: x.logsumexp(-1), lambda x: x.logsumexp(-1)),
        ("logsumexp(-1) 8192x4096 bf16", m, "bfloat16", lambda x: x.logsumexp(-1), lambda x: x.logsumexp(-1)),
        ("argmax(-1) 8192x4096 f32", m, "float32", lambda x: x.argmax(-1), lambda x: x.argmax(-1)),
        ("var(0) 8192x4096 f32", m, "float32", lambda x: x.var(0), lambda x: x.var(0)),
        ("norm() 8192x4096 f32", m, "float32", lambda x: x.norm(), lambda x: x.norm()),
        (f"sum_to_size (64,256,{c})->({c},) f32", (64, 256, c), "float32",
         lambda x: x.sum_to_size(c), lambda x: x.sum_to_size(c)),
        ("cumsum(-1) 8192x4096 f32", m, "float32", lambda x: x.cumsum(-1), lambda x: x.cumsum(-1)),
    ]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer, smaller runs (a smoke run)")
    args = ap.parse_args(argv)
    if not vcuda.is_available():
        print("bench_cuda_reduce: no CUDA GPU here (vt.cuda.is_available() is False); nothing to measure")
        return 0
    try:
        import torch

        if not torch.cuda.is_available():
            torch = None
    except ImportError:
        torch = None
    trials = 5 if args.quick else 15
    loops = 5 if args.quick else 20
    ceiling = copy_ceiling(torch, trials)
    print(f"GPU: {vcuda.get_device_name()}  torch: {torch.__version__ if torch else 'not available'}  "
          f"copy ceiling: {ceiling / 1e12:.2f} TB/s (read + write, 1 GiB)\n")
    print("| reduction | vt (µs) | vt of copy | torch (µs) | torch of copy | vt / torch | diff |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    rng = np.random.default_rng(0)
    vsync, vevent = vcuda.synchronize, (lambda: vcuda.Event(enable_timing=True))
    for label, shape, dtype, vfn, tfn in cases(rng, args.quick):
        a = rng.standard_normal(shape, dtype=np.float32)
        x = vt.tensor(a).to(getattr(vt, dtype)).cuda()
        y = vfn(x)
        vms = time_ms(lambda: vfn(x), vsync, vevent, loops, trials)
        moved = x.numel() * x.element_size() + y.numel() * y.element_size()
        vfrac = moved / (vms * 1e-3) / ceiling
        if torch is not None:
            t = torch.from_numpy(a).cuda().to(getattr(torch, dtype))
            r = tfn(t)
            tms = time_ms(lambda: tfn(t), torch.cuda.synchronize,
                          lambda: torch.cuda.Event(enable_timing=True), loops, trials)
            tfrac = moved / (tms * 1e-3) / ceiling
            got = y.cpu().to(vt.float64).numpy() if y.dtype.is_floating_point else y.cpu().numpy()
            want = r.double().cpu().numpy()
            if y.dtype.is_floating_point:
                diff = f"{np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-30):.1e}"
            else:
                diff = f"{int(np.sum(got != want))} idx"
            print(f"| {label} | {vms * 1e3:.1f} | {vfrac:.2f} | {tms * 1e3:.1f} | {tfrac:.2f} | "
                  f"{vms / tms:.2f}x | {diff} |")
            del t, r
        else:
            print(f"| {label} | {vms * 1e3:.1f} | {vfrac:.2f} | - | - | - | - |")
        del x, y
    return 0


if __name__ == "__main__":
    sys.exit(main())
