"""AdamW over GPT-2 small's parameters, and the random fills, vs torch, in one process on one GPU.

    python bench/bench_cuda_optim.py [--quick]

AdamW rows: 124.4M float32 parameters in 100 tensors (GPT-2 small: wte 50304 x 768, wpe, and per
layer c_attn, attn c_proj, c_fc and mlp c_proj weights plus two layer norms; ln_f), gradients set
once. vibetensor: vt.optim.AdamW (fused=None picks the multi-tensor core::adamw_multi on cuda) per
step from Python; the bare core::adamw_multi call; and a capturable AdamW step captured in a CUDA
graph and replayed (pure GPU time). torch: torch.optim.AdamW(fused=True) and (foreach=True). Each
cell is the median over repeats of the mean time of a burst of steps, timed with CUDA events after
a warm-up. "of copy" divides the bytes a step must move (read p, g, m, v and write p, m, v: 28 bytes
per float32 element) by the time and by the device's copy bandwidth measured here (read + write of
a 1 GiB device-to-device copy). Goal (issue 9): vt <= 0.7x torch fused.
Random rows: normal_ and uniform_ of 64M float32 (bytes written / time, against the same copy
bandwidth). Without a GPU it says so and exits 0; without torch the torch columns stay empty.
"""
from __future__ import annotations

import argparse
import math
import sys

import vibetensor as vt
import vibetensor.cuda as vcuda
from _timing import event_ms

VT_EVENT = lambda: vcuda.Event(enable_timing=True)  # noqa: E731


def time_ms(fn, event, sync, burst, repeats):
    return event_ms(fn, event, sync, burst, repeats)


def gpt2_shapes():
    """GPT-2 small's parameter shapes, biases left out: 100 tensors, 124.4M elements."""
    C, V, T, L = 768, 50304, 1024, 12
    shapes = [(V, C), (T, C)]
    for _ in range(L):
        shapes += [(C,), (C,), (C, 3 * C), (C, C), (C,), (C,), (C, 4 * C), (4 * C, C)]
    return shapes + [(C,), (C,)]


def vt_rows(shapes, dtype, burst, repeats):
    ev, sync = VT_EVENT, vcuda.synchronize
    dt = getattr(vt, dtype)
    vt.manual_seed(0)

    def params():
        ps = [vt.nn.Parameter(vt.randn(*s, device="cuda").to(dt)) for s in shapes]
        for p in ps:
            p.grad = vt.randn(*p.shape, device="cuda").to(dt)
        return ps

    rows = {}
    ps = params()
    opt = vt.optim.AdamW(ps, lr=1e-4, weight_decay=0.1)
    assert opt._multi(opt.param_groups[0], ps), "vt.optim.AdamW did not pick the multi-tensor path"
    rows["step"] = time_ms(opt.step, ev, sync, burst, repeats)
    states = [opt.state[p] for p in ps]
    grads = [p.grad for p in ps]
    ms, vs = [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states]
    multi = vt.ops.core.adamw_multi
    rows["op"] = time_ms(lambda: multi(ps, grads, ms, vs, 1e-4, 0.9, 0.999, 1e-8, 0.1, 10), ev, sync,
                         burst, repeats)
    del opt, ps, states, grads, ms, vs
    ps = params()
    opt = vt.optim.AdamW(ps, lr=1e-4, weight_decay=0.1, capturable=True)
    opt.step()
    g = vcuda.CUDAGraph()
    with vcuda.graph(g):
        opt.step()
    rows["graph"] = time_ms(g.replay, ev, sync, burst, repeats)
    return rows


def torch_rows(torch, shapes, dtype, burst, repeats):
    ev, sync = (lambda: torch.cuda.Event(enable_timing=True)), torch.cuda.synchronize
    dt = getattr(torch, dtype)
    rows = {}
    for name, kw in (("fused", dict(fused=True)), ("foreach", dict(foreach=True))):
        ps = [torch.nn.Parameter(torch.randn(s, device="cuda", dtype=dt)) for s in shapes]
        for p in ps:
            p.grad = torch.randn_like(p)
        opt = torch.optim.AdamW(ps, lr=1e-4, weight_decay=0.1, **kw)
        rows[name] = time_ms(opt.step, ev, sync, burst, repeats)
        del opt, ps
        torch.cuda.empty_cache()
    return rows


def copy_gbps(torch):
    """Device copy bandwidth (bytes read + written per second) of a 1 GiB copy, the faster of vt
    and torch."""
    n = 1 << 28
    a, b = vt.empty(n, device="cuda"), vt.empty(n, device="cuda")
    best = time_ms(lambda: b.copy_(a), VT_EVENT, vcuda.synchronize, 10, 5)
    if torch:
        x, y = torch.empty(n, device="cuda"), torch.empty(n, device="cuda")
        ev = lambda: torch.cuda.Event(enable_timing=True)  # noqa: E731
        best = min(best, time_ms(lambda: y.copy_(x), ev, torch.cuda.synchronize, 10, 5))
    return 2 * 4 * n / (best * 1e-3) / 1e9


def random_rows(torch, n, burst, repeats):
    """(name, vt ms, torch ms) for normal_ / uniform_ of n float32."""
    out = []
    x = vt.empty(n, device="cuda")
    tx = torch.empty(n, device="cuda") if torch else None
    tev = (lambda: torch.cuda.Event(enable_timing=True)) if torch else None
    for name in ("normal_", "uniform_"):
        v = time_ms(lambda: getattr(x, name)(), VT_EVENT, vcuda.synchronize, burst, repeats)
        t = time_ms(lambda: getattr(tx, name)(), tev, torch.cuda.synchronize, burst, repeats) if torch else None
        out.append((name, v, t))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    args = ap.parse_args(argv)
    if not vcuda.is_available():
        print("bench_cuda_optim: no CUDA GPU here (vt.cuda.is_available() is False); nothing to measure")
        return 0
    try:
        import torch

        if not torch.cuda.is_available():
            torch = None
    except ImportError:
        torch = None
    burst, repeats = (5, 3) if args.quick else (20, 7)
    bw = copy_gbps(torch)
    shapes = gpt2_shapes()
    numel = sum(math.prod(s) for s in shapes)
    print(f"GPU: {vcuda.get_device_name()}  torch: {torch.__version__ if torch else 'not available'}  "
          f"copy bandwidth: {bw:.0f} GB/s (read + write)\n")
    print(f"AdamW, {numel / 1e6:.1f}M parameters in {len(shapes)} tensors (ms per step; of copy = "
          f"bytes moved / time / copy bandwidth):\n")
    print("| dtype | path | ms | of copy | vs torch fused |")
    print("|---|---|---:|---:|---:|")
    for dtype in ("float32", "bfloat16"):
        es = 4 if dtype == "float32" else 2
        moved = 7 * es * numel
        v = vt_rows(shapes, dtype, burst, repeats)
        vcuda.empty_cache()
        t = torch_rows(torch, shapes, dtype, burst, repeats) if torch else {}
        ref = t.get("fused")
        for label, ms in (("vt.optim.AdamW (multi-tensor) step", v["step"]),
                          ("vt core::adamw_multi call", v["op"]),
                          ("vt capturable step, CUDA graph replay", v["graph"]),
                          ("torch AdamW(fused=True)", t.get("fused")),
                          ("torch AdamW(foreach=True)", t.get("foreach"))):
            if ms is None:
                continue
            frac = moved / (ms * 1e-3) / 1e9 / bw
            ratio = f"{ms / ref:.2f}x" if ref else "-"
            print(f"| {dtype} | {label} | {ms:.3f} | {frac:.2f} | {ratio} |")
    n = 64 << 20
    print(f"\nRandom fills of {n >> 20}M float32 (of copy = bytes written / time / copy bandwidth):\n")
    print("| op | vt ms | of copy | torch ms | of copy | vt / torch |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, v, t in random_rows(torch, n, burst, repeats):
        fv = 4 * n / (v * 1e-3) / 1e9 / bw
        if t:
            ft = 4 * n / (t * 1e-3) / 1e9 / bw
            print(f"| {name} | {v:.3f} | {fv:.2f} | {t:.3f} | {ft:.2f} | {v / t:.2f}x |")
        else:
            print(f"| {name} | {v:.3f} | {fv:.2f} | - | - | - |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
