"""miniGPT training-step time, vibetensor vs torch CPU in the same run (same threads, same model,
same weights, same batches, AdamW + clipping as in the example). Target: vt <= 1.2x torch.

    python bench/bench_minigpt.py [--preset default|shakespeare_char] [--steps 20] [--device cpu]
"""
from __future__ import annotations

import argparse
import platform
import time

import numpy as np

import vibetensor as vt
from vibetensor.examples.minigpt import GPT, GPTConfig, PRESETS, TRAIN


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="default", choices=sorted(PRESETS))
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    import torch

    from vibetensor.examples.torch_reference import TGPT

    torch.set_num_threads(vt.get_num_threads())
    cfg = GPTConfig(vocab_size=103, **{**PRESETS[args.preset], "dropout": 0.0})
    B = args.batch_size or TRAIN[args.preset]["batch_size"]
    vt.manual_seed(0)
    model = GPT(cfg).to(args.device)
    ref = TGPT(cfg)
    ref.load_state_dict({k: torch.from_numpy(np.array(v.cpu().numpy()))
                         for k, v in model.state_dict().items()})
    ref = ref.to(args.device)
    opt = vt.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    topt = torch.optim.AdamW(ref.parameters(), lr=1e-3, weight_decay=0.1)
    rng = np.random.default_rng(0)
    batches = [(rng.integers(0, cfg.vocab_size, (B, cfg.block_size)),
                rng.integers(0, cfg.vocab_size, (B, cfg.block_size))) for _ in range(4)]

    def vt_step(x, y):
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        vt.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    def torch_step(x, y):
        loss = ref(x, y)
        topt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ref.parameters(), 1.0)
        topt.step()
        return loss.item()

    vb = [(vt.from_numpy(x).to(args.device), vt.from_numpy(y).to(args.device)) for x, y in batches]
    tb = [(torch.from_numpy(x).to(args.device), torch.from_numpy(y).to(args.device))
          for x, y in batches]
    for i in range(3):  # warm up both (allocator caches, lazy init)
        vt_step(*vb[i % 4])
        torch_step(*tb[i % 4])
    t_vt, t_t = [], []
    for i in range(args.steps):  # interleaved, so machine noise hits both alike
        t0 = time.perf_counter()
        vt_step(*vb[i % 4])
        t_vt.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        torch_step(*tb[i % 4])
        t_t.append(time.perf_counter() - t0)
    a, b = float(np.median(t_vt)), float(np.median(t_t))
    print(f"# {platform.machine()}, vt threads {vt.get_num_threads()}, torch {torch.__version__}, "
          f"{time.strftime('%Y-%m-%d')}")
    print(f"miniGPT {args.preset}: {cfg.n_layer}L {cfg.n_head}H {cfg.n_embd}C block {cfg.block_size} "
          f"batch {B} on {args.device}")
    print(f"step time  vt {a * 1e3:8.1f} ms   torch {b * 1e3:8.1f} ms   vt/torch {a / b:5.2f}x "
          f"(target <= 1.20)")


if __name__ == "__main__":
    main()
