"""The launcher: N copies of a script (or module), one process per rank, with torchrun's variables.

    python -m vibetensor.distributed.run --nproc-per-node 2 train.py --lr 1e-3
    python -m vibetensor.distributed.run --nproc-per-node 4 -m vibetensor.examples.minigpt --steps 20

Each child gets RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, GROUP_RANK (0), ROLE_RANK,
ROLE_WORLD_SIZE, MASTER_ADDR and MASTER_PORT (a free port unless --master-port says), as torchrun
sets them for one node, and VT_NUM_THREADS = cores / N unless it is set. When a rank exits with an error (or is killed), the launcher stops the
others (SIGTERM, then SIGKILL after --grace seconds) and exits with that rank's code; it exits 0
when every rank did. Ctrl-C is passed on to the ranks. One node only (no --nnodes).
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def parse(argv):
    ap = argparse.ArgumentParser(prog="python -m vibetensor.distributed.run", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nproc-per-node", "--nproc_per_node", type=int, default=1, help="ranks to start")
    ap.add_argument("--master-addr", "--master_addr", default="127.0.0.1")
    ap.add_argument("--master-port", "--master_port", type=int, default=None, help="default: a free port")
    ap.add_argument("--grace", type=float, default=5.0, help="seconds between SIGTERM and SIGKILL when stopping")
    ap.add_argument("-m", "--module", action="store_true", help="run the target as a module (python -m)")
    ap.add_argument("script", help="the script (or, with -m, the module) each rank runs")
    ap.add_argument("args", nargs=argparse.REMAINDER, help="its arguments")
    a = ap.parse_args(argv)
    if a.nproc_per_node < 1:
        ap.error(f"--nproc-per-node must be >= 1, got {a.nproc_per_node}")
    return a


def _stop(procs, grace: float):
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def main(argv=None) -> int:
    a = parse(sys.argv[1:] if argv is None else argv)
    n = a.nproc_per_node
    port = a.master_port or _free_port(a.master_addr)
    cmd = [sys.executable, "-u"] + (["-m", a.script] if a.module else [a.script]) + list(a.args)
    procs = []
    for r in range(n):
        env = dict(os.environ)
        if n > 1 and "VT_NUM_THREADS" not in env:  # the ranks share the cores (torchrun: OMP_NUM_THREADS=1)
            env["VT_NUM_THREADS"] = str(max(1, len(os.sched_getaffinity(0)) // n))
        env.update(RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE=str(n), LOCAL_WORLD_SIZE=str(n),
                   GROUP_RANK="0", ROLE_RANK=str(r), ROLE_WORLD_SIZE=str(n), MASTER_ADDR=a.master_addr,
                   MASTER_PORT=str(port))
        procs.append(subprocess.Popen(cmd, env=env))
    failed = None
    try:
        while failed is None:
            codes = [p.poll() for p in procs]
            bad = [(r, c) for r, c in enumerate(codes) if c not in (None, 0)]
            if bad:
                failed = bad[0]
                break
            if all(c == 0 for c in codes):
                return 0
            time.sleep(0.02)
    except KeyboardInterrupt:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        _stop(procs, a.grace)
        return 130
    r, code = failed
    why = f"signal {-code}" if code < 0 else f"exit code {code}"
    print(f"vibetensor.distributed.run: rank {r} (pid {procs[r].pid}) failed with {why}; stopping the other "
          f"ranks", file=sys.stderr, flush=True)
    _stop(procs, a.grace)
    return code if code > 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
