"""What the three training examples share: flags, the progress line, the CSV log, the loss-curve
PNG (when matplotlib is installed) and safetensors checkpoints."""
from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import time
from pathlib import Path


def common_flags(ap: argparse.ArgumentParser, steps: int, out: str) -> None:
    ap.add_argument("--steps", type=int, default=steps, help="optimiser steps")
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--data", default=None, help="data path (see --help of each example)")
    ap.add_argument("--out", default=out, help="folder for the CSV log, PNG and checkpoint")
    ap.add_argument("--eval-every", type=int, default=None, help="steps between evaluations")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")
    ap.add_argument("--quiet", action="store_true", help="no progress line")
    ap.add_argument("--amp", choices=("none", "bf16", "fp16"), default="none",
                    help="mixed precision: autocast to bfloat16 or float16 (fp16 adds loss scaling)")
    ap.add_argument("--cuda-graph", action="store_true",
                    help="capture the whole training step in a CUDA graph and replay it (cuda)")


class Progress:
    """One self-overwriting status line: step, loss, throughput, ETA."""

    def __init__(self, total: int, unit: str, quiet: bool = False):
        self.total, self.unit, self.quiet = total, unit, quiet
        self.t0 = time.perf_counter()
        self.items = 0
        self.tty = sys.stdout.isatty()
        self.last_print = 0.0

    def update(self, step: int, loss: float, items: int, extra: str = "") -> None:
        self.items += items
        if self.quiet:
            return
        now = time.perf_counter()
        if self.tty and now - self.last_print < 0.1 and step != self.total:
            return
        if not self.tty and step % max(1, self.total // 20) and step != self.total:
            return
        self.last_print = now
        el = now - self.t0
        rate = self.items / el if el > 0 else 0.0
        eta = (self.total - step) * el / max(step, 1)
        width = 24
        done = int(width * step / self.total)
        bar = "#" * done + "." * (width - done)
        line = (f"[{bar}] {step:>6}/{self.total} loss {loss:7.4f} {rate:9.0f} {self.unit}/s "
                f"eta {eta:5.0f}s {extra}")
        print(("\r" + line) if self.tty else line, end="" if self.tty else "\n", flush=True)

    def close(self) -> None:
        if self.tty and not self.quiet:
            print()


class Log:
    """CSV of every step (and eval rows), plus a PNG of the curves at the end."""

    def __init__(self, out: Path, name: str):
        out.mkdir(parents=True, exist_ok=True)
        self.path = out / f"{name}.csv"
        self.png = out / f"{name}.png"
        self.rows: list[dict] = []
        self.f = open(self.path, "w", newline="")
        self.w = csv.DictWriter(self.f, fieldnames=["step", "kind", "loss", "metric", "lr", "time_s"])
        self.w.writeheader()
        self.t0 = time.perf_counter()

    def add(self, step: int, kind: str, loss: float, metric: float = float("nan"), lr: float = 0.0):
        row = {"step": step, "kind": kind, "loss": f"{loss:.6f}", "metric": f"{metric:.6f}",
               "lr": f"{lr:.6g}", "time_s": f"{time.perf_counter() - self.t0:.3f}"}
        self.rows.append(row)
        self.w.writerow(row)

    def close(self) -> str | None:
        self.f.close()
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return None
        fig, ax = plt.subplots(figsize=(7, 4))
        for kind in ("train", "eval"):
            pts = [(int(r["step"]), float(r["loss"])) for r in self.rows if r["kind"] == kind]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, label=f"{kind} loss", marker="o" if kind == "eval" else None,
                        linewidth=1 if kind == "train" else 2)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(self.png, dpi=110)
        plt.close(fig)
        return str(self.png)


def setup(args) -> None:
    import vibetensor as vt

    if args.threads:
        vt.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not vt.cuda.is_available():
        raise SystemExit(f"--device {args.device}: CUDA is not available in this build/machine")
    vt.manual_seed(args.seed)


def distributed(args) -> tuple[int, int]:
    """(rank, world_size). Under a launcher (python -m vibetensor.distributed.run, torchrun:
    $WORLD_SIZE > 1) it joins the default process group first — shm for cpu; for cuda each rank
    takes cuda:LOCAL_RANK (args.device is updated) and the nccl backend (the DDP runs measured on
    2 H200s in bench/RESULTS.md) — otherwise (0, 1)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1
    import vibetensor.distributed as dist

    backend = None
    if args.device.startswith("cuda"):
        args.device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        backend = "nccl"
    if not dist.is_initialized():
        dist.init_process_group(backend, device=args.device)
    return dist.get_rank(), dist.get_world_size()


def make_optimizer(cls, params, args, **kw):
    """cls(params, **kw), capturable when the step is replayed from a CUDA graph."""
    if args.cuda_graph:
        kw["capturable"] = True
    return cls(params, **kw)


def cosine_lr(step: int, total: int, base: float, warmup: int, min_ratio: float = 0.1) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    p = (step - warmup) / max(1, total - warmup)
    return base * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(p, 1.0))))


def threads_note() -> str:
    import vibetensor as vt

    return f"{vt.get_num_threads()} threads, {os.cpu_count()} cpus"
