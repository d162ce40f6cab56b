"""Elementwise CUDA kernels (ops/core/cuda/{unary,scalar,pointwise,compare}.cu) vs torch, in one
process on the same GPU, against the device's copy bandwidth.

    python bench/bench_cuda_elementwise.py [--numel N] [--quick]

Rows: gelu, exp, x + 1.0 (add_scalar), where, maximum on N-element (default 16M) float32 and
bfloat16 tensors. Each cell is the median over repeats of the mean time of a burst of calls,
timed with CUDA events after a warm-up. Bandwidth counts the bytes an op must move (inputs read
once, the output written once); "of copy" divides it by the device's copy bandwidth measured here
at the same size (a device-to-device copy of one tensor: vt's copy_, or torch's where that is
faster); vt / torch is the time ratio (lower is better). torch columns are left out when torch (or
its CUDA) is missing. Prints a markdown table. Without a GPU it says so and exits 0.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

import vibetensor as vt
import vibetensor.cuda as vcuda
from _timing import event_ms


def time_us(fn, event, sync, burst, repeats):
    """event_ms in microseconds."""
    return event_ms(fn, event, sync, burst, repeats) * 1e3


def inputs(n, dtype_name, torch):
    """x, y, cond on cuda for vt (and for torch when given), the same values for both."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal(n, dtype=np.float32)
    b = rng.standard_normal(n, dtype=np.float32)
    c = a > 0
    dt = getattr(vt, dtype_name)
    v = [vt.tensor(a).to(dt).to("cuda"), vt.tensor(b).to(dt).to("cuda"), vt.tensor(c).to("cuda")]
    t = None
    if torch is not None:
        tdt = getattr(torch, dtype_name)
        t = [torch.from_numpy(a).to("cuda", tdt), torch.from_numpy(b).to("cuda", tdt),
             torch.from_numpy(c).to("cuda")]
    return v, t


def rows(lib, F, x, y, c):
    """(name, call, operands read + written) for vt (F = vt) or torch (F = torch.nn.functional)."""
    return [
        ("gelu", lambda: F.gelu(x), 2),
        ("exp", lambda: lib.exp(x), 2),
        ("add_scalar (x + 1.0)", lambda: x + 1.0, 2),
        ("where", lambda: lib.where(c, x, y), 3),
        ("maximum", lambda: lib.maximum(x, y), 3),
    ]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--numel", type=int, default=16 * 1024 * 1024, help="elements per tensor")
    ap.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    args = ap.parse_args(argv)
    if not vcuda.is_available():
        print("bench_cuda_elementwise: no CUDA GPU here (vt.cuda.is_available() is False); "
              "nothing to measure")
        return 0
    try:
        import torch

        if not torch.cuda.is_available():
            torch = None
    except ImportError:
        torch = None
    burst, repeats = (5, 3) if args.quick else (20, 9)
    n = args.numel
    vev = lambda: vcuda.Event(enable_timing=True)  # noqa: E731
    tev = (lambda: torch.cuda.Event(enable_timing=True)) if torch else None  # noqa: E731

    def measure(fn, which):
        if which == "vt":
            return time_us(fn, vev, vcuda.synchronize, burst, repeats)
        return time_us(fn, tev, torch.cuda.synchronize, burst, repeats)

    print(f"GPU: {vcuda.get_device_name()}  torch: {torch.__version__ if torch else 'not available'}"
          f"  elements: {n}\n")
    print("| op | dtype | vt (µs) | vt GB/s | of copy | torch (µs) | torch of copy | vt / torch |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for dname in ("float32", "bfloat16"):
        (x, y, c), tin = inputs(n, dname, torch)
        es = x.element_size()
        # the copy ceiling at this size: one tensor copied device to device
        dst = vt.empty_like(x)
        copy_us = measure(lambda: dst.copy_(x), "vt")
        if tin is not None:
            tdst = torch.empty_like(tin[0])
            copy_us = min(copy_us, measure(lambda: tdst.copy_(tin[0]), "torch"))
        ceiling = 2 * n * es / copy_us / 1e3  # GB/s
        print(f"| device copy (the ceiling) | {dname} | {copy_us:.1f} | {ceiling:.0f} | 1.00 | | | |")
        vrows = rows(vt, vt, x, y, c)
        trows = rows(torch, torch.nn.functional, *tin) if tin is not None else [None] * len(vrows)
        for (name, vfn, operands), trow in zip(vrows, trows):
            nbytes = operands * n * es + (n if name == "where" else 0)
            vus = measure(vfn, "vt")
            vbw = nbytes / vus / 1e3
            line = f"| {name} | {dname} | {vus:.1f} | {vbw:.0f} | {vbw / ceiling:.2f} |"
            if trow is not None:
                tus = measure(trow[1], "torch")
                line += f" {tus:.1f} | {nbytes / tus / 1e3 / ceiling:.2f} | {vus / tus:.2f}x |"
            else:
                line += " - | - | - |"
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
