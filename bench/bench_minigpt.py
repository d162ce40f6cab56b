"""miniGPT training-step time, vibetensor vs torch in the same run: same threads, same model, same
weights, same batches, AdamW + clipping as in the example. Issue 8's goal on CPU: vt <= 1.0x torch
at batch 12 (nanoGPT's "baby" run: 4 layers, 4 heads, 128 wide, block 64) and at the default batch.

    python bench/bench_minigpt.py [--preset default|shakespeare_char] [--batch-size 12] [--steps 30]
                                  [--rounds 3] [--device cpu]

Each side runs in its own child process, the two alternating for --rounds rounds (vt, torch, vt,
torch, ...), so drift of a shared machine hits both alike; printed: each round's medians and the
median of the rounds' ratios. Why not one process: torch's OpenMP workers spin-wait after every op,
and on a 2-core machine they then hold the cores vibetensor's pool needs right after a torch step
(measured 2026-11-30 with steps interleaved in one process: vt's forward 17.5 ms, and 10.7 ms with
OMP_WAIT_POLICY=PASSIVE making torch's workers sleep at once; torch's own step slowed from 38 to
48 ms that way). Separate processes measure each library as a user runs it.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np


def _setup(args):
    import vibetensor as vt
    from vibetensor.examples.minigpt import GPTConfig, PRESETS, TRAIN

    cfg = GPTConfig(vocab_size=103, **{**PRESETS[args.preset], "dropout": 0.0})
    B = args.batch_size or TRAIN[args.preset]["batch_size"]
    rng = np.random.default_rng(0)
    batches = [(rng.integers(0, cfg.vocab_size, (B, cfg.block_size)),
                rng.integers(0, cfg.vocab_size, (B, cfg.block_size))) for _ in range(4)]
    return vt, cfg, B, batches


def _child(args) -> None:
    """One side's timed steps; prints a JSON line {median_ms, threads}."""
    vt, cfg, B, batches = _setup(args)
    weights = dict(np.load(args.weights))
    if args.side == "vt":
        from vibetensor.examples.minigpt import GPT

        model = GPT(cfg)
        model.load_state_dict({k: vt.from_numpy(v) for k, v in weights.items()})
        model = model.to(args.device)
        opt = vt.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
        data = [(vt.from_numpy(x).to(args.device), vt.from_numpy(y).to(args.device)) for x, y in batches]
        sync = (lambda: vt.cuda.synchronize()) if args.device.startswith("cuda") else (lambda: None)

        def step(x, y):
            _, loss = model(x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            vt.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            return loss.item()
        threads = vt.get_num_threads()
    else:
        import torch

        from vibetensor.examples.torch_reference import TGPT

        torch.set_num_threads(vt.get_num_threads())
        ref = TGPT(cfg)
        ref.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
        ref = ref.to(args.device)
        opt = torch.optim.AdamW(ref.parameters(), lr=1e-3, weight_decay=0.1)
        data = [(torch.from_numpy(x).to(args.device), torch.from_numpy(y).to(args.device)) for x, y in batches]
        sync = (lambda: torch.cuda.synchronize()) if args.device.startswith("cuda") else (lambda: None)

        def step(x, y):
            loss = ref(x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(ref.parameters(), 1.0)
            opt.step()
            return loss.item()
        threads = torch.get_num_threads()
    for i in range(3):  # warm up (allocator caches, lazy init)
        step(*data[i % 4])
    times = []
    for i in range(args.steps):
        sync()
        t0 = time.perf_counter()
        step(*data[i % 4])
        times.append(time.perf_counter() - t0)
    print(json.dumps({"median_ms": float(np.median(times)) * 1e3, "threads": threads}))


def main():
    ap = argparse.ArgumentParser()
    from vibetensor.examples.minigpt import PRESETS

    ap.add_argument("--preset", default="default", choices=sorted(PRESETS))
    ap.add_argument("--steps", type=int, default=30, help="timed steps per round and side")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--side", choices=["vt", "torch"], help=argparse.SUPPRESS)
    ap.add_argument("--weights", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.side:
        return _child(args)
    import torch

    vt, cfg, B, _ = _setup(args)
    from vibetensor.examples.minigpt import GPT

    vt.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        weights = os.path.join(tmp, "weights.npz")
        np.savez(weights, **{k: np.array(v.numpy()) for k, v in GPT(cfg).state_dict().items()})
        base = [sys.executable, __file__, "--preset", args.preset, "--steps", str(args.steps), "--device",
                args.device, "--batch-size", str(B), "--weights", weights]
        rows = []
        for _ in range(args.rounds):
            got = {}
            for side in ("vt", "torch"):
                out = subprocess.run(base + ["--side", side], capture_output=True, text=True, check=True)
                got[side] = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(got)
    print(f"# {platform.machine()}, {os.cpu_count()} cpus, threads vt {rows[0]['vt']['threads']} torch "
          f"{rows[0]['torch']['threads']}, torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M %Z')}")
    print(f"miniGPT {args.preset}: {cfg.n_layer}L {cfg.n_head}H {cfg.n_embd}C block {cfg.block_size} "
          f"batch {B} on {args.device}; each side in its own process, {args.steps} steps a round")
    ratios = []
    for i, r in enumerate(rows):
        a, b = r["vt"]["median_ms"], r["torch"]["median_ms"]
        ratios.append(a / b)
        print(f"round {i + 1}: step time  vt {a:8.1f} ms   torch {b:8.1f} ms   vt/torch {a / b:5.2f}x")
    print(f"median vt/torch {float(np.median(ratios)):.2f}x (goal <= 1.00)")


if __name__ == "__main__":
    sys.exit(main())
