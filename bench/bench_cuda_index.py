"""CUDA indexing and cat of vibetensor vs torch on the same GPU, in one process.

    python bench/bench_cuda_index.py [--quick]

Rows: embedding forward (a 50304 x 768 table, GPT-2's padded vocabulary, 16384 tokens) in bfloat16
and float32; embedding_backward of the same (the deterministic sorted reduction; torch's
embedding_dense_backward); index_select of 32768 rows from 65536 x 1024 float32; gather along the
last dim of 8192 x 4096 float32; cat of three 4096 x 4096 float32 along dims 0 and 1. Each time is
the median of several CUDA-event-timed loops, per call. "of copy" is the bytes the op must move
(what it reads plus what it writes, indices included) per second over the device copy ceiling
measured here (a 1 GiB device-to-device copy, bytes read + written per second). ratio =
vibetensor / torch (lower is better); "diff" is the largest difference from torch's result
relative to its largest magnitude. The embedding_backward row also says whether two vibetensor
runs gave the same bits. Without a GPU it says so and exits 0.
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
    """(label, inputs as numpy arrays with their dtype names, vt fn, torch fn, bytes moved)."""
    V, D = 50304, 768
    N = 4096 if quick else 16384
    tok = rng.integers(0, V, N)
    table = rng.standard_normal((V, D), dtype=np.float32)
    grad = rng.standard_normal((N, D), dtype=np.float32)
    big = rng.standard_normal((65536, 1024), dtype=np.float32)
    rows = rng.integers(0, 65536, 32768)
    m = rng.standard_normal((8192, 4096), dtype=np.float32)
    gidx = rng.integers(0, 4096, (8192, 4096))
    sq = [rng.standard_normal((4096, 4096), dtype=np.float32) for _ in range(3)]
    out = []
    for dt, es in (("bfloat16", 2), ("float32", 4)):
        out.append((f"embedding fwd {V}x{D} {N} tok {dt}", [(tok, "int64"), (table, dt)],
                    lambda i, w: vt.embedding(i, w), lambda i, w: _torch.nn.functional.embedding(i, w),
                    2 * N * D * es + N * 8))
    for dt, es in (("bfloat16", 2), ("float32", 4)):
        out.append((f"embedding_backward {N} tok -> {V}x{D} {dt}", [(grad, dt), (tok, "int64")],
                    lambda g, i: vt.ops.core.embedding_backward(g, i, V),
                    lambda g, i: _torch.ops.aten.embedding_dense_backward(g, i, V, -1, False),
                    N * D * es + N * 8 + V * D * es))
    out.append(("index_select 32768 of 65536x1024 f32", [(big, "float32"), (rows, "int64")],
                lambda x, i: x.index_select(0, i), lambda x, i: x.index_select(0, i),
                2 * 32768 * 1024 * 4 + 32768 * 8))
    out.append(("gather(-1) 8192x4096 f32", [(m, "float32"), (gidx, "int64")],
                lambda x, i: vt.gather(x, 1, i), lambda x, i: _torch.gather(x, 1, i),
                m.size * (4 + 8 + 4)))
    for d in (0, 1):
        out.append((f"cat 3 x 4096x4096 f32 dim {d}", [(a, "float32") for a in sq],
                    lambda a, b, c, d=d: vt.cat([a, b, c], d),
                    lambda a, b, c, d=d: _torch.cat([a, b, c], d),
                    2 * 3 * 4096 * 4096 * 4))
    return out


_torch = None


def to_vt(a, dt):
    t = vt.tensor(a)
    if dt != str(a.dtype):
        t = t.to(getattr(vt, dt))
    return t.cuda()


def to_torch(a, dt):
    return _torch.from_numpy(a).cuda().to(getattr(_torch, dt))


def main(argv=None) -> int:
    global _torch
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer, smaller runs (a smoke run)")
    args = ap.parse_args(argv)
    if not vcuda.is_available():
        print("bench_cuda_index: no CUDA GPU here (vt.cuda.is_available() is False); nothing to measure")
        return 0
    try:
        import torch

        _torch = torch if torch.cuda.is_available() else None
    except ImportError:
        _torch = None
    trials = 5 if args.quick else 15
    loops = 5 if args.quick else 20
    ceiling = copy_ceiling(_torch, trials)
    print(f"GPU: {vcuda.get_device_name()}  torch: {_torch.__version__ if _torch else 'not available'}  "
          f"copy ceiling: {ceiling / 1e12:.2f} TB/s (read + write, 1 GiB)\n")
    print("| op | vt (µs) | vt of copy | torch (µs) | torch of copy | vt / torch | diff |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    rng = np.random.default_rng(0)
    vsync, vevent = vcuda.synchronize, (lambda: vcuda.Event(enable_timing=True))
    for label, inputs, vfn, tfn, moved in cases(rng, args.quick):
        xs = [to_vt(a, dt) for a, dt in inputs]
        y = vfn(*xs)
        vms = time_ms(lambda: vfn(*xs), vsync, vevent, loops, trials)
        vfrac = moved / (vms * 1e-3) / ceiling
        note = ""
        if "backward" in label:
            same = np.array_equal(y.cpu().to(vt.float32).numpy(), vfn(*xs).cpu().to(vt.float32).numpy())
            note = ", same bits twice" if same else ", BITS DIFFER between runs"
        if _torch is not None:
            ts = [to_torch(a, dt) for a, dt in inputs]
            r = tfn(*ts)
            tms = time_ms(lambda: tfn(*ts), _torch.cuda.synchronize,
                          lambda: _torch.cuda.Event(enable_timing=True), loops, trials)
            tfrac = moved / (tms * 1e-3) / ceiling
            got = y.cpu().to(vt.float64).numpy()
            want = r.double().cpu().numpy()
            diff = f"{np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-30):.1e}{note}"
            print(f"| {label} | {vms * 1e3:.1f} | {vfrac:.2f} | {tms * 1e3:.1f} | {tfrac:.2f} | "
                  f"{vms / tms:.2f}x | {diff} |")
            del ts, r
        else:
            print(f"| {label} | {vms * 1e3:.1f} | {vfrac:.2f} | - | - | - | -{note} |")
        del xs, y
    return 0


if __name__ == "__main__":
    sys.exit(main())
