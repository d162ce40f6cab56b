"""Where a training step's GPU time goes, vibetensor next to torch, kernel by kernel.

    python bench/profile_step_cuda.py [--model gpt|vit] [--amp bf16|none] [--graph] [--steps 5] [--top 25]

Both libraries' steps (bench_train_cuda.py's models, weights and batches) are traced with torch's
profiler: CUPTI records every kernel of the process, whichever library launched it. Per step it
prints the wall time, the summed kernel time (busy GPU; the rest of the wall is launch/host time),
the kernel count, and the heaviest kernels with their share. `--graph`: vibetensor's whole-step
graph against torch.compile(mode="reduce-overhead").
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_train_cuda as btc  # noqa: E402  (the same models, weights and batches)

import vibetensor as vt  # noqa: E402


def profile(name, step, batches, sync, steps, top):
    import torch
    from torch.profiler import ProfilerActivity, profile as tprofile

    for i in range(6):  # warm-up (graph capture, compile, lazy state)
        step(*batches[i % len(batches)])
    sync()
    t0 = time.perf_counter()
    for i in range(steps):
        step(*batches[i % len(batches)])
    sync()
    wall = (time.perf_counter() - t0) / steps * 1e3
    with tprofile(activities=[ProfilerActivity.CUDA]) as prof:
        for i in range(steps):
            step(*batches[i % len(batches)])
        sync()
        torch.cuda.synchronize()
    kernels = {}
    for e in prof.events():
        if e.device_type != torch.autograd.DeviceType.CUDA:
            continue
        k = kernels.setdefault(e.name, [0, 0.0])
        k[0] += 1
        k[1] += e.device_time_total if hasattr(e, "device_time_total") else e.cuda_time_total
    if not kernels:  # this torch build kept no device events: its own summary instead
        print(f"\n### {name}: {wall:.2f} ms/step wall (no per-kernel events; torch's table)\n")
        print(prof.key_averages().table(sort_by="self_device_time_total", row_limit=top))
        return
    busy = sum(v[1] for v in kernels.values()) / steps / 1e3
    count = sum(v[0] for v in kernels.values()) / steps
    print(f"\n### {name}: {wall:.2f} ms/step wall, {busy:.2f} ms/step in kernels "
          f"({busy / wall:.0%} busy), {count:.0f} kernels/step\n")
    print("| kernel | calls/step | ms/step | share |")
    print("|---|---:|---:|---:|")
    for kname, (n, us) in sorted(kernels.items(), key=lambda kv: -kv[1][1])[:top]:
        ms = us / steps / 1e3
        print(f"| {kname[:110]} | {n / steps:.0f} | {ms:.3f} | {ms / busy:.1%} |")
    sys.stdout.flush()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=("gpt", "vit"), default="gpt")
    ap.add_argument("--amp", choices=("bf16", "none"), default="bf16")
    ap.add_argument("--graph", action="store_true")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--only", choices=("vt", "torch"), default=None)
    args = ap.parse_args(argv)
    if not vt.cuda.is_available():
        print("profile_step_cuda: no CUDA GPU here; nothing to profile")
        return 0
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    print(f"# {btc.load_optional_packs()}")
    case = (btc.gpt_case if args.model == "gpt" else btc.vit_case)()
    amp = None if args.amp == "none" else args.amp
    mode = f"{'graph' if args.graph else 'eager'} {args.amp}"
    print(f"# {case['name']}, {mode}; {vt.cuda.get_device_name()}, torch {torch.__version__}, "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    if args.only in (None, "vt"):
        profile(f"vibetensor {mode}", *btc.vt_step(case, amp, args.graph), args.steps, args.top)
    if args.only in (None, "torch"):
        label = "torch.compile reduce-overhead" if args.graph else "torch eager"
        profile(f"{label} {args.amp}", *btc.torch_step(case, amp, "compile" if args.graph else "eager"), args.steps, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
