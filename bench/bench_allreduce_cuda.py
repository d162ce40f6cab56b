"""CUDA all-reduce benchmark (issue 11): the allreduce pack's providers on cuda — `p2p` (its automatic
choice, and each algorithm pinned with VT_P2P_ALGO) and `nccl` (pinned with vt.ops.use, on the p2p
group's fallback communicator) — against torch.distributed's NCCL, one process a GPU, in the same
processes and the same run (alternating), sum in place, 4 KiB .. 1 GiB, float32 and bfloat16.
Time per call: rank 0's best of 3 timed loops of back-to-back calls (a barrier and a device sync
before, a sync after); bus bandwidth = 2 (W - 1) / W * bytes / time (nccl-tests' convention);
ratio = provider time / torch NCCL time (below 1: faster). Issue 11's goals: p2p <= 0.3x NCCL's
time up to 1 MiB, >= 1.0x its bus bandwidth from 64 MiB.
A second table, up to 8 MiB, times the same calls captured in CUDA graphs (100 calls a graph, best
of 3 replays; torch's NCCL captured with torch.cuda.graph): the device's time per all-reduce without
the host's launch cost, which is how small all-reduces run in graphed training (and how vLLM's
custom all-reduce is measured).

    NCCL_NVLS_ENABLE=0 python bench/bench_allreduce_cuda.py [--nproc 2] [--quick] [--algos]

It starts itself under the launcher (python -m vibetensor.distributed.run); each rank joins a
vibetensor group on cuda:LOCAL_RANK (MASTER_PORT) and a torch nccl group (the next port).
NCCL_NVLS_ENABLE=0 is set for both unless given (no NVLink multicast on shared machines).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

SIZES = [4 << 10, 64 << 10, 256 << 10, 1 << 20, 8 << 20, 64 << 20, 256 << 20, 1 << 30]
QUICK = [4 << 10, 1 << 20, 64 << 20]


def _iters(nbytes: int) -> int:
    return max(5, min(500, int(4e9 / max(nbytes, 1) / 8)))


def _size(nbytes: int) -> str:
    return f"{nbytes >> 30} GiB" if nbytes >= 1 << 30 else f"{nbytes >> 20} MiB" if nbytes >= 1 << 20 else \
        f"{nbytes >> 10} KiB"


def _rank_main(sizes, algos: bool):
    import torch
    import torch.distributed as tdist

    import vibetensor as vt
    import vibetensor.distributed as dist

    dist.init_process_group(device="cuda", timeout=300)
    r, w = dist.get_rank(), dist.get_world_size()
    dev = dist._group(None).device
    torch.cuda.set_device(dev.index)
    port = int(os.environ["MASTER_PORT"]) + 1
    tdist.init_process_group("nccl", init_method=f"tcp://{os.environ['MASTER_ADDR']}:{port}", rank=r, world_size=w)
    has_nccl = dist._group(None).fallback is not None
    # "auto": the dispatcher's choice (p2p, which hands messages over 16 MiB to nccl); p2p with an
    # algorithm forced serves every size
    variants = [("auto", None, "")]
    if algos:
        variants += [(f"p2p {a}", "p2p", a) for a in ("oneshot", "twoshot", "ring", "push")]
    if has_nccl:
        variants.append(("nccl (vt)", "nccl", ""))
    names = [v[0] for v in variants] + ["torch nccl"]
    for dtype, tdtype in ((vt.float32, torch.float32), (vt.bfloat16, torch.bfloat16)):
        rows = []
        for nbytes in sizes:
            n = nbytes // (4 if dtype == vt.float32 else 2)
            x = vt.ones(n, dtype=dtype, device=dev)
            tx = torch.ones(n, dtype=tdtype, device=f"cuda:{dev.index}")
            it = _iters(nbytes)

            def run_vt(provider, algo):
                os.environ["VT_P2P_ALGO"] = algo
                with _pinned(vt, provider):
                    for _ in range(it):
                        dist.all_reduce(x)

            def run_torch():
                for _ in range(it):
                    tdist.all_reduce(tx)

            def sync_vt():
                dist.barrier()
                vt.cuda.synchronize(dev)

            def sync_torch():
                tdist.barrier()
                torch.cuda.synchronize()

            best = {}
            for _ in range(3):
                for name, provider, algo in variants:
                    sync_vt()
                    t0 = time.perf_counter()
                    run_vt(provider, algo)
                    vt.cuda.synchronize(dev)
                    best[name] = min(best.get(name, 1e9), (time.perf_counter() - t0) / it)
                sync_torch()
                t0 = time.perf_counter()
                run_torch()
                torch.cuda.synchronize()
                best["torch nccl"] = min(best.get("torch nccl", 1e9), (time.perf_counter() - t0) / it)
            os.environ["VT_P2P_ALGO"] = ""
            y = vt.full([n], float(r + 1), dtype=dtype, device=dev)  # still right after all that
            dist.all_reduce(y)
            assert y[n - 1].item() == float(w * (w + 1) // 2), y[n - 1].item()
            rows.append((nbytes, best))
        if r == 0:
            _print_table(f"{dtype}, {w} GPUs; time per call (bus GB/s); ratio = time / torch nccl time", rows, names, w)
    _graphed_table(vt, dist, torch, tdist, r, w, dev, variants, names, [s for s in sizes if s <= 8 << 20])
    tdist.destroy_process_group()
    dist.destroy_process_group()


def _print_table(title, rows, names, w):
    """rows: (bytes, {name: seconds per call}); the last name is torch's, the ratios' base."""
    print(f"\n{title}")
    print("| message | " + " | ".join(names) + " | " + " | ".join(f"{v} / torch" for v in names[:-1]) + " |")
    print("|---" * (2 * len(names)) + "|")
    for nbytes, best in rows:
        bus = 2 * (w - 1) / w * nbytes / 1e9
        cells = [f"{best[k] * 1e6:,.1f} µs ({bus / best[k]:.0f})" for k in names]
        ratios = [f"{best[k] / best['torch nccl']:.2f}" for k in names[:-1]]
        print(f"| {_size(nbytes)} | " + " | ".join(cells + ratios) + " |", flush=True)


def _pinned(vt, provider):
    import contextlib

    return contextlib.nullcontext() if provider is None else vt.ops.use("allreduce::all_reduce_", provider, "cuda")


def _graphed_table(vt, dist, torch, tdist, r, w, dev, variants, names, sizes, calls=100):
    """Time per all-reduce with `calls` of them captured in one CUDA graph, replayed."""
    for dtype, tdtype in ((vt.float32, torch.float32), (vt.bfloat16, torch.bfloat16)):
        rows = []
        for nbytes in sizes:
            n = nbytes // (4 if dtype == vt.float32 else 2)
            x = vt.ones(n, dtype=dtype, device=dev)
            tx = torch.ones(n, dtype=tdtype, device=f"cuda:{dev.index}")
            best = {}
            for name, provider, algo in variants:
                os.environ["VT_P2P_ALGO"] = algo
                with _pinned(vt, provider):
                    dist.all_reduce(x)  # warm: plans, communicators
                    dist.barrier()
                    g = vt.cuda.CUDAGraph()
                    with vt.cuda.graph(g):
                        for _ in range(calls):
                            dist.all_reduce(x)
                for _ in range(3):
                    dist.barrier()
                    vt.cuda.synchronize(dev)
                    t0 = time.perf_counter()
                    g.replay()
                    vt.cuda.synchronize(dev)
                    best[name] = min(best.get(name, 1e9), (time.perf_counter() - t0) / calls)
                del g
            os.environ["VT_P2P_ALGO"] = ""
            try:
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    tdist.all_reduce(tx)
                torch.cuda.current_stream().wait_stream(side)
                tdist.barrier()
                torch.cuda.synchronize()
                tg = torch.cuda.CUDAGraph()
                with torch.cuda.graph(tg):
                    for _ in range(calls):
                        tdist.all_reduce(tx)
                for _ in range(3):
                    tdist.barrier()
                    torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    tg.replay()
                    torch.cuda.synchronize()
                    best["torch nccl"] = min(best.get("torch nccl", 1e9), (time.perf_counter() - t0) / calls)
                del tg
            except Exception as e:  # noqa: BLE001 - reported in the table
                if r == 0:
                    print(f"torch nccl under graph capture failed at {_size(nbytes)}: {e}", flush=True)
                best["torch nccl"] = float("nan")
            y = vt.full([n], float(r + 1), dtype=dtype, device=dev)  # the group still right after graphs
            dist.all_reduce(y)
            assert y[n - 1].item() == float(w * (w + 1) // 2), y[n - 1].item()
            rows.append((nbytes, best))
        if r == 0:
            _print_table(f"{dtype}, {w} GPUs, {calls} calls captured in one CUDA graph; time per call (bus GB/s); "
                         f"ratio = time / torch nccl's graphed time", rows, names, w)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help=f"only {', '.join(_size(s) for s in QUICK)}")
    ap.add_argument("--algos", action="store_true", help="also each p2p algorithm pinned (VT_P2P_ALGO)")
    a = ap.parse_args()
    sizes = QUICK if a.quick else SIZES
    if "RANK" in os.environ:
        return _rank_main(sizes, a.algos)
    os.environ.setdefault("NCCL_NVLS_ENABLE", "0")
    print(f"{a.nproc} processes, one GPU each, sum in place; NCCL_NVLS_ENABLE={os.environ['NCCL_NVLS_ENABLE']}; "
          f"{time.strftime('%Y-%m-%d %H:%M %Z')}", flush=True)
    cmd = [sys.executable, "-m", "vibetensor.distributed.run", "--nproc-per-node", str(a.nproc), __file__]
    cmd += ["--quick"] * a.quick + ["--algos"] * a.algos
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main())
