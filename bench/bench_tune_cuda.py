"""Issue 12 on the GPU: the tuned provider choice vs the priority choice, per shape (CUDA events).

    python bench/bench_tune_cuda.py [--quick] [--hopper PACK] [--cutlass PACK]
                                    [--shapes BxHxSxD,...] [--dtypes bfloat16,float16]

attention::sdpa over a grid (B 1..8, H 16, S 128..4096, D 64 and 128, bfloat16 and float16, causal and
not) among the providers on cuda: flash (priority 10), composed (0), and hopper (20) when the Hopper
attention pack is loaded (--hopper, default $VT_ATTN_HOPPER_PACK; on compute capability 9.0 only).
core::matmul in bfloat16 over small, skinny and large shapes when the CUTLASS pack is loaded
(--cutlass, default $VT_CUTLASS_PACK): core's cuBLASLt (priority 0) vs cutlass (-1).

Per case: vt.ops.tune(..., save=False) times every provider that takes it (host-timed batches, as
tuning does; the user's cache is not touched), then the priority choice and the tuned choice are
timed back to back, each pinned, with CUDA events (bench/_timing.py: median of bursts after a
warm-up). priority/tuned above 1 is what tuning buys; where both are one provider it is 1 by
definition and timed once. Where they differ, max |tuned - priority| / max |priority| of the outputs
is shown too. causal and non-causal are tuned apart (tune keys its table by shape bucket and the
call's other arguments, causal among them).
Without a GPU it says so and exits 0. --device cpu runs the same code on cpu (host timer; for
checking the script, not a measurement of the issue).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

import vibetensor as vt
import vibetensor.backends  # noqa: F401 - vt.backends.cuda.matmul.allow_tf32
import vibetensor.cuda as vcuda
from vibetensor.registry import capabilities as caps
from vibetensor.registry import tune as _tune
from _timing import event_ms

SDPA, MATMUL = "attention::sdpa", "core::matmul"
# (B, S): one head count (16), sequence lengths 128..4096 at batch sizes 1..8
# (composed materialises B x H x S x S float32 scores: at 8 x 16 x 4096^2, 8.6 GB and ~0.1-0.2 s a
# call, the grid's largest cost)
SDPA_GRID = [(1, 128), (1, 512), (1, 2048), (1, 4096), (4, 1024), (8, 128), (8, 512), (8, 2048),
             (8, 4096)]
SDPA_QUICK = [(1, 128), (8, 512), (1, 4096)]
# (label, m, k, n): bfloat16, every size a multiple of 8 (what the cutlass provider takes)
MATMUL_CASES = [("small", 64, 64, 64), ("small", 256, 256, 256), ("skinny", 16, 4096, 4096),
                ("skinny", 4096, 4096, 16), ("skinny", 8192, 64, 8192), ("large", 4096, 4096, 4096),
                ("large", 8192, 8192, 8192)]


class HostEvent:
    """The Event interface over the host clock, for --device cpu (cpu work is synchronous)."""

    def record(self):
        self.t = time.perf_counter()

    def synchronize(self):
        pass

    def elapsed_time(self, end) -> float:
        return (end.t - self.t) * 1e3


def rel(a, b) -> float:
    """max |a - b| / max |b|, reduced on the device (the outputs can be hundreds of MB)"""
    a, b = a.to(vt.float32), b.to(vt.float32)
    return (a - b).abs().max().item() / max(b.abs().max().item(), 1e-3)


def load_pack(folder, what):
    if not folder:
        return None
    try:
        return vt.ops.load(folder)
    except Exception as e:  # noqa: BLE001 - a missing pack leaves its provider out, said aloud
        print(f"({what} pack {folder} not loaded: {e})")
        return None


class Bench:
    def __init__(self, device, quick, min_time):
        self.device = device
        self.min_time = min_time
        self.burst, self.repeats = (3, 3) if quick else (5, 5)
        if device == "cuda":
            self.event, self.sync = (lambda: vcuda.Event(enable_timing=True)), vcuda.synchronize
        else:
            self.event, self.sync = HostEvent, (lambda: None)
        self.rows = []  # (op, priority ms, tuned ms) of every case timed

    def ms(self, op, provider, fn) -> float:
        with vt.ops.use(op, provider, self.device):
            return event_ms(fn, self.event, self.sync, self.burst, self.repeats, warmup=2)

    def case(self, op, r, fn, label) -> str:
        """One table row: tune's host times, then priority vs tuned pinned, by events."""
        p, w = r.priority_choice, r.winner
        saw = ", ".join(f"{k} {v / 1e3:.3f}" for k, v in sorted(r.times_us.items(), key=lambda kv: kv[1]))
        if r.declined:
            saw += f"; declined: {', '.join(sorted(r.declined))}"
        tp = self.ms(op, p, fn)
        if w == p:
            tw, diff = tp, "same"
        else:
            tw = self.ms(op, w, fn)
            with vt.ops.use(op, p, self.device):
                want = fn()
            with vt.ops.use(op, w, self.device):
                got = fn()
            if isinstance(want, tuple):
                want, got = want[0], got[0]
            diff = f"{rel(got, want):.1e}"
        self.rows.append((op, label, p, tp, w, tw))
        return f"| {label} | {p} | {tp:.3f} | {w} | {tw:.3f} | {tp / tw:.2f} | {diff} | {saw} |"

    def tune(self, op, shapes, dtypes, kwargs=None):
        try:
            return _tune.tune(op, shapes=shapes, dtypes=dtypes, device=self.device, kwargs=kwargs,
                              save=False, min_time=self.min_time, warmup=2, max_calls=200)
        except Exception as e:  # noqa: BLE001 - one failing case must not hide the others
            print(f"| {op} {shapes} {dtypes} {kwargs}: tune failed: {type(e).__name__}: {e} |")
            return []

    def sdpa(self, shapes, dtypes):
        names = [p.name for p in vt.ops.providers(SDPA, self.device)]
        print(f"\n## attention::sdpa on {self.device}: providers by priority {', '.join(names)}\n")
        print("| B x H x S x D, dtype, causal | priority | ms | tuned | ms | priority/tuned | "
              "max diff | tune saw (ms, host) |")
        print("|---|---|---:|---|---:|---:|---:|---|")
        op = vt.ops.Op(SDPA)
        for causal in (False, True):
            for r in self.tune(SDPA, [list(s) for s in shapes], dtypes, {"causal": causal}):
                dt = getattr(vt, r.dtypes[0])
                q, k, v = (vt.randn(*r.shapes[0], dtype=dt, device=self.device) for _ in range(3))
                label = f"{'x'.join(map(str, r.shapes[0]))}, {r.dtypes[0]}, {'causal' if causal else 'full'}"
                print(self.case(SDPA, r, lambda: op(q, k, v, causal=causal), label), flush=True)
                del q, k, v

    def matmul(self, cases):
        names = [p.name for p in vt.ops.providers(MATMUL, self.device)]
        print(f"\n## core::matmul on {self.device}, bfloat16: providers by priority "
              f"{', '.join(names)}\n")
        if len(names) < 2:
            print(f"(one provider on {self.device}: nothing to choose; load the CUTLASS pack with "
                  f"--cutlass or VT_CUTLASS_PACK)")
            return
        print("| label, m x k x n | priority | ms | tuned | ms | priority/tuned | max diff | "
              "tune saw (ms, host) |")
        print("|---|---|---:|---|---:|---:|---:|---|")
        for label, m, k, n in cases:
            for r in self.tune(MATMUL, [[(m, k), (k, n)]], "bfloat16"):
                a = vt.randn(m, k, dtype=vt.bfloat16, device=self.device)
                b = vt.randn(k, n, dtype=vt.bfloat16, device=self.device)
                print(self.case(MATMUL, r, lambda: a @ b, f"{label}, {m}x{k}x{n}"), flush=True)

    def summary(self):
        for op in (SDPA, MATMUL):
            rows = [x for x in self.rows if x[0] == op]
            if not rows:
                continue
            ratios = [tp / tw for _, _, _, tp, _, tw in rows]
            differ = [x for x in rows if x[2] != x[4]]
            win = [x for x in rows if x[3] / x[5] >= 1.05]
            best = max(rows, key=lambda x: x[3] / x[5])
            print(f"\n{op}: {len(rows)} cases; the tuned choice differs from the priority one in "
                  f"{len(differ)}, is >= 5% faster in {len(win)}; geomean priority/tuned "
                  f"{float(np.exp(np.mean(np.log(ratios)))):.3f}; best {best[3] / best[5]:.2f}x at "
                  f"{best[1]} ({best[4]} {best[5]:.3f} ms vs {best[2]} {best[3]:.3f} ms)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer shapes and repeats (a smoke run)")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                    help="cpu: run the same code on cpu (checks the script; no GPU numbers)")
    ap.add_argument("--hopper", metavar="PACK_FOLDER", default=os.environ.get("VT_ATTN_HOPPER_PACK"),
                    help="a built ops/attention_hopper pack (default $VT_ATTN_HOPPER_PACK)")
    ap.add_argument("--cutlass", metavar="PACK_FOLDER", default=os.environ.get("VT_CUTLASS_PACK"),
                    help="a built ops/matmul_cutlass pack (default $VT_CUTLASS_PACK)")
    ap.add_argument("--shapes", default="", help="attention BxHxSxD,... (default: the grid)")
    ap.add_argument("--dtypes", default="bfloat16,float16", help="attention dtypes")
    ap.add_argument("--min-time", type=float, default=None,
                    help="seconds tune spends per provider and case (default 0.03, --quick 0.01)")
    ap.add_argument("--no-matmul", action="store_true")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not vcuda.is_available():
        print("bench_tune_cuda: no CUDA GPU here (vt.cuda.is_available() is False); nothing to measure")
        return 0
    t0 = time.perf_counter()
    packs = []
    if args.device == "cuda":
        vt.backends.cuda.matmul.allow_tf32 = False
        if args.hopper and caps.cuda_devices()[:1] == [(9, 0)]:
            packs.append(load_pack(args.hopper, "hopper attention"))
        packs.append(load_pack(args.cutlass, "CUTLASS matmul"))
        where = f"GPU: {vcuda.get_device_name()}"
    else:
        where = f"CPU: {_tune.device_name('cpu')} (a check of the script, not the issue's numbers)"
    packs = [p for p in packs if p is not None]
    print(f"# bench_tune_cuda  {where}  packs: {', '.join(p.name for p in vt.ops.packs())}  "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    if args.shapes:
        shapes = [tuple(int(x) for x in s.split("x")) for s in args.shapes.split(",") if s]
    else:
        shapes = [(b, 16, s, d) for b, s in (SDPA_QUICK if args.quick else SDPA_GRID)
                  for d in (64, 128)]
    dtypes = [d for d in args.dtypes.split(",") if d]
    bench = Bench(args.device, args.quick,
                  args.min_time if args.min_time is not None else (0.01 if args.quick else 0.03))
    try:
        bench.sdpa(shapes, dtypes)
        if not args.no_matmul:
            bench.matmul(MATMUL_CASES[::3] if args.quick else MATMUL_CASES)
        bench.summary()
    finally:
        for p in packs:
            vt.ops.unload(p)
    print(f"\n({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
