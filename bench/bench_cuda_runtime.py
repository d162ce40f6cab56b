"""The CUDA runtime's per-call costs vs torch.cuda, in one process on the same GPU.

    python bench/bench_cuda_runtime.py [--quick]

Rows: caching-allocator alloc+free of 1 MiB from Python; an eager 4-element add; Event.record;
`with stream(s)` (enter + exit); a graph replay of 100 small adds. Each cell is the best of
several timed loops, in microseconds per operation; ratio = vibetensor / torch (lower is better).
Prints a markdown table. Without a GPU it says so and exits 0.
"""
from __future__ import annotations

import argparse
import sys
import time

import vibetensor as vt
import vibetensor.cuda as vcuda


def best_us(fn, n, repeats, sync, host_only=False):
    """Best per-iteration time of `fn(n)` (which runs n iterations), in microseconds. host_only: the
    final sync is left out of the timed region, so with n below the launch queue's depth (~1000)
    the GPU never holds the host back and the time is the host's cost of issuing the work."""
    fn(max(n // 10, 1))  # warm up: caches, lazy init, code paths
    sync()
    best = float("inf")
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn(n)
        if not host_only:
            sync()
        best = min(best, (time.perf_counter() - t0) / n * 1e6)
        if host_only:
            sync()
    return best


def vt_cases():
    a = vt.ones(4, device="cuda")
    b = vt.ones(4, device="cuda")
    ev = vcuda.Event()
    s = vcuda.Stream()

    def alloc(n):
        for _ in range(n):
            t = vt.empty(262144, device="cuda")
            del t

    from vibetensor.runtime import ffi, lib

    sizes = ffi.new("int64_t[1]", [262144])
    f32 = vt.float32._vt()
    dev = vt.device("cuda:0")._vt()
    empty, release = lib.vtrt_empty, lib.vtrt_release

    def raw_alloc(n):  # the runtime's share: one cffi call each way, arguments made once
        for _ in range(n):
            release(empty(sizes, 1, f32, dev))

    def add(n):
        for _ in range(n):
            a + b

    from vibetensor import _ops

    op_add, call_tt = _ops.hot.add, lib.vtrt_call_tt
    ah, bh = a._h, b._h

    def add_native(n):  # the runtime's share of an add: dispatch, meta, allocation, launch, free
        for _ in range(n):
            release(call_tt(op_add, ah, bh))

    ma, mb = vt.empty(4, device="meta"), vt.empty(4, device="meta")
    mah, mbh = ma._h, mb._h

    def add_meta_native(n):  # dispatch and the meta step alone: no memory, no launch
        for _ in range(n):
            release(call_tt(op_add, mah, mbh))

    side = vcuda.Stream()

    def add_side(n):  # on a created (non-blocking) stream rather than the legacy default one
        with vcuda.stream(side):
            for _ in range(n):
                a + b

    ac, bc = vt.ones(4), vt.ones(4)  # kept in "_keep": the raw handles below do not hold them
    ach, bch = ac._h, bc._h

    def add_cpu_native(n):  # the same on cpu: dispatch, meta, allocation, a 4-element loop
        for _ in range(n):
            release(call_tt(op_add, ach, bch))

    def record(n):
        for _ in range(n):
            ev.record()

    def switch(n):
        ctx = vcuda.stream
        for _ in range(n):
            with ctx(s):
                pass

    g = vcuda.CUDAGraph()
    x = vt.ones(4, device="cuda")
    y = vt.ones(4, device="cuda")
    with vcuda.graph(g):
        z = x
        for _ in range(100):
            z = z + y
    g.replay()
    vcuda.synchronize()
    assert z.cpu().tolist() == [101.0] * 4, "graph replay gave a wrong result"

    def replay(n):
        for _ in range(n):
            g.replay()

    return {"alloc": alloc, "raw_alloc": raw_alloc, "add": add, "add_host": add,
            "add_native_host": add_native, "add_meta_native": add_meta_native,
            "add_side_host": add_side, "add_cpu_native": add_cpu_native, "record": record,
            "switch": switch, "replay": replay, "_keep": (g, z, a, b, ac, bc, ma, mb, side)}


def torch_cases(torch):
    a = torch.ones(4, device="cuda")
    b = torch.ones(4, device="cuda")
    ev = torch.cuda.Event()
    s = torch.cuda.Stream()

    def alloc(n):
        for _ in range(n):
            t = torch.empty(262144, device="cuda")
            del t

    def add(n):
        for _ in range(n):
            a + b

    side_stream = torch.cuda.Stream()

    def add_side(n):
        with torch.cuda.stream(side_stream):
            for _ in range(n):
                a + b

    def record(n):
        for _ in range(n):
            ev.record()

    def switch(n):
        ctx = torch.cuda.stream
        for _ in range(n):
            with ctx(s):
                pass

    g = torch.cuda.CUDAGraph()
    x = torch.ones(4, device="cuda")
    y = torch.ones(4, device="cuda")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm up on a side stream, as torch's docs ask
        for _ in range(3):
            z = x
            for _ in range(100):
                z = z + y
    torch.cuda.current_stream().wait_stream(side)
    with torch.cuda.graph(g):
        z = x
        for _ in range(100):
            z = z + y
    g.replay()
    torch.cuda.synchronize()

    def replay(n):
        for _ in range(n):
            g.replay()

    return {"alloc": alloc, "add": add, "add_host": add, "add_side_host": add_side, "record": record,
            "switch": switch,
            "replay": replay,
            "_keep": (g, z)}


ROWS = [
    ("alloc", "alloc+free 1 MiB (empty(262144) + del)", 20000),
    ("raw_alloc", "... of which the runtime (vtrt_empty + vtrt_release via cffi)", 20000),
    ("add", "eager add, 4 elements, per op", 20000),
    ("add_host", "eager add, host time per op (300 queued, the GPU never waited on)", 300),
    ("add_native_host", "... of which the runtime (vtrt_call_tt + vtrt_release via cffi; 300 queued)", 300),
    ("add_meta_native", "... the same runtime call on meta tensors (dispatch + meta step only)", 20000),
    ("add_cpu_native", "... the same runtime call on cpu tensors (dispatch without CUDA)", 20000),
    ("add_side_host", "eager add on a created non-blocking stream, host time (300 queued)", 300),
    ("record", "Event.record()", 20000),
    ("switch", "`with stream(s): pass`", 20000),
    ("replay", "graph replay of 100 small adds", 2000),
]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run)")
    args = ap.parse_args(argv)
    if not vcuda.is_available():
        print("bench_cuda_runtime: no CUDA GPU here (vt.cuda.is_available() is False); nothing "
              "to measure")
        return 0
    try:
        import torch

        if not torch.cuda.is_available():
            torch = None
    except ImportError:
        torch = None
    scale = 10 if args.quick else 1
    repeats = 3 if args.quick else 7
    v = vt_cases()
    t = torch_cases(torch) if torch else None
    print(f"GPU: {vcuda.get_device_name()}  allocator: {vcuda.get_allocator_backend()}  "
          f"torch: {torch.__version__ if torch else 'not available'}\n")
    print("| operation | vibetensor (µs) | torch (µs) | vt / torch |")
    print("|---|---:|---:|---:|")
    for key, label, n in ROWS:
        host = key.endswith("_host")
        n, reps = (n, repeats * 5) if host else (max(n // scale, 10), repeats)
        vu = best_us(v[key], n, reps, vcuda.synchronize, host)
        if t and key in t:
            tu = best_us(t[key], n, reps, torch.cuda.synchronize, host)
            print(f"| {label} | {vu:.2f} | {tu:.2f} | {vu / tu:.2f}x |")
        else:
            print(f"| {label} | {vu:.2f} | - | - |")
    # the floor under every eager op: an empty kernel launched from C++ (no Python, no dispatch)
    from vibetensor.runtime import check, ffi, lib

    us = ffi.new("double*")
    check(lib.vtrt_cuda_launch_floor(vcuda.current_device(), 20000 // scale, 0, us))
    print(f"\nlaunch floor: an empty kernel launched from C++ costs {us[0]:.2f} µs of host time "
          f"per launch over 20000 back-to-back launches (the queue fills: the GPU's own rate)")
    side = vcuda.Stream()
    for via_driver, how in ((0, "runtime <<<>>>"), (1, "driver cuLaunchKernel")):
        for stream_name, stream in (("the legacy default stream", None), ("a created non-blocking stream", side)):
            best = float("inf")
            for _ in range(20):  # 300 launches stay in the queue: the host's cost of one launch alone
                if stream is None:
                    check(lib.vtrt_cuda_launch_floor(vcuda.current_device(), 300, via_driver, us))
                else:
                    with vcuda.stream(stream):
                        check(lib.vtrt_cuda_launch_floor(vcuda.current_device(), 300, via_driver, us))
                best = min(best, us[0])
            print(f"launch floor, host only, {how} on {stream_name}: {best:.2f} µs per launch over "
                  f"300 queued launches")
    s = vcuda.memory_stats()
    print(f"\nvibetensor allocator after the run: {s['num_device_alloc']} cudaMalloc calls, "
          f"{s['reserved_bytes.all.current'] >> 20} MiB reserved, "
          f"{s['allocated_bytes.all.current'] >> 10} KiB allocated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
