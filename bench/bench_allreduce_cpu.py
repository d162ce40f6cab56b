"""CPU all-reduce benchmark (issue 11): the allreduce pack's `shm` provider vs torch.distributed's
gloo, 4 processes on this machine, float32 sum in place, 4 KiB .. 64 MiB, in the same processes and
the same run (alternating, so both see the same load). Time per call is rank 0's mean over a
timed loop that starts after a barrier; ratio = shm time / gloo time (below 1: shm is faster);
bus bandwidth = 2 (W - 1) / W * bytes / time (nccl-tests' convention).

    python bench/bench_allreduce_cpu.py [--nproc 4] [--quick]

It starts itself under the launcher (python -m vibetensor.distributed.run); each rank joins a
vibetensor group (MASTER_PORT) and a torch gloo group (the next port).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

SIZES = [4 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20]
QUICK = [4 << 10, 1 << 20, 16 << 20]


def _iters(nbytes: int) -> int:
    return max(3, min(300, int(64e6 / max(nbytes, 1) / 8)))


def _rank_main(sizes):
    import torch
    import torch.distributed as tdist

    import vibetensor as vt
    import vibetensor.distributed as dist

    dist.init_process_group(timeout=120)
    r, w = dist.get_rank(), dist.get_world_size()
    torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // w))
    port = int(os.environ["MASTER_PORT"]) + 1
    tdist.init_process_group("gloo", init_method=f"tcp://{os.environ['MASTER_ADDR']}:{port}", rank=r,
                             world_size=w)
    rows = []
    for nbytes in sizes:
        n = nbytes // 4
        x = vt.ones(n)
        tx = torch.ones(n)
        it = _iters(nbytes)

        def run_vt():
            for _ in range(it):
                dist.all_reduce(x)

        def run_gloo():
            for _ in range(it):
                tdist.all_reduce(tx)

        best = {}
        for name, fn, bar in (("vt", run_vt, dist.barrier), ("gloo", run_gloo, tdist.barrier)) * 3:
            bar()
            t0 = time.perf_counter()
            fn()
            dt = (time.perf_counter() - t0) / it
            best[name] = min(best.get(name, dt), dt)
        x = vt.full([n], float(r))
        dist.all_reduce(x)
        assert x[n - 1].item() == float(sum(range(w)))
        rows.append((nbytes, best["vt"], best["gloo"]))
    if r == 0:
        print(f"| message | shm (vt) | gloo (torch {torch.__version__}) | shm / gloo | shm bus GB/s | gloo bus GB/s |")
        print("|---|---|---|---|---|---|")
        for nbytes, tv, tg in rows:
            size = f"{nbytes >> 20} MiB" if nbytes >= 1 << 20 else f"{nbytes >> 10} KiB"
            bus = 2 * (w - 1) / w * nbytes / 1e9
            print(f"| {size} | {tv * 1e6:,.1f} µs | {tg * 1e6:,.1f} µs | {tv / tg:.2f} | {bus / tv:.2f} | {bus / tg:.2f} |",
                  flush=True)
    tdist.destroy_process_group()
    dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nproc", type=int, default=4)
    ap.add_argument("--quick", action="store_true", help=f"only {', '.join(str(s >> 10) + ' KiB' for s in QUICK)}")
    a = ap.parse_args()
    sizes = QUICK if a.quick else SIZES
    if "RANK" in os.environ:
        return _rank_main(sizes)
    print(f"{a.nproc} processes on {len(os.sched_getaffinity(0))} cores ({os.cpu_count()} cpus), float32 sum, "
          f"in place; {time.strftime('%Y-%m-%d %H:%M %Z')}", flush=True)
    cmd = [sys.executable, "-m", "vibetensor.distributed.run", "--nproc-per-node", str(a.nproc), __file__]
    if a.quick:
        cmd.append("--quick")
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main())
