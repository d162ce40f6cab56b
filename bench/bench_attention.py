"""Attention benchmark (issue 4): vt's attention::sdpa (provider "flash", fused) vs torch CPU
scaled_dot_product_attention, same thread count, in one run; ratios are vt time / torch time
(below 1: vt is faster). Target: within 1.25x of torch.

    python bench/bench_attention.py [--quick] [--composed] [--threads N]

Shapes (B, H, T, D) = (8, 6, 256, 64) and (1, 8, 2048, 64), float32, causal and not; forward, and
forward + backward (vt.autograd.grad / torch.autograd.grad of out against a fixed dout, for q, k, v).
--composed adds the composed provider's times for scale.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import vibetensor as vt
from vibetensor._attention import scaled_dot_product_attention as vt_sdpa

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    torch = None


def best_pair(f_vt, f_torch, repeat):
    """min times of f_vt and f_torch, run alternately so both see the same machine load"""
    f_vt()
    if f_torch:
        f_torch()
    tv, tt = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        f_vt()
        tv.append(time.perf_counter() - t0)
        if f_torch:
            t0 = time.perf_counter()
            f_torch()
            tt.append(time.perf_counter() - t0)
    return min(tv), (min(tt) if tt else None)


def row(name, t_vt, t_torch):
    s = f"{name:<42} vt {t_vt * 1e3:9.2f} ms"
    s += f"   torch {t_torch * 1e3:9.2f} ms   vt/torch {t_vt / t_torch:5.2f}x" if t_torch else "   torch -"
    print(s, flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--composed", action="store_true", help="also time the composed provider")
    ap.add_argument("--threads", type=int, default=None, help="threads for both (default: vt's)")
    args = ap.parse_args()
    if args.threads:
        vt.set_num_threads(args.threads)
    repeat = 3 if args.quick else 10
    if torch is not None:
        torch.set_num_threads(vt.get_num_threads())
    print(f"threads: vt {vt.get_num_threads()}, torch {torch.get_num_threads() if torch else '-'}; "
          f"providers of attention::sdpa: {vt.ops.providers('attention::sdpa')}")
    rng = np.random.default_rng(0)
    for (B, H, T, D) in [(8, 6, 256, 64), (1, 8, 2048, 64)]:
        q, k, v, g = (rng.standard_normal((B, H, T, D)).astype(np.float32) for _ in range(4))
        vq, vk, vv, vg = (vt.tensor(a) for a in (q, k, v, g))
        gq, gk, gv = (vt.tensor(a).requires_grad_() for a in (q, k, v))
        if torch is not None:
            tq, tk, tv, tg = (torch.from_numpy(a) for a in (q, k, v, g))
            rq, rk, rv = (torch.from_numpy(a).clone().requires_grad_() for a in (q, k, v))
        for causal in (False, True):
            name = f"B={B} H={H} T={T} D={D}{' causal' if causal else ''}"
            providers = ["flash"] + (["composed"] if args.composed else [])
            torch_fwd = torch_fb = None
            if torch is not None:
                def torch_fwd():
                    with torch.no_grad():
                        F.scaled_dot_product_attention(tq, tk, tv, is_causal=causal)

                def torch_fb():
                    o = F.scaled_dot_product_attention(rq, rk, rv, is_causal=causal)
                    torch.autograd.grad(o, (rq, rk, rv), tg)
            for prov in providers:
                def vt_fwd():
                    with vt.no_grad():
                        vt_sdpa(vq, vk, vv, is_causal=causal)

                def vt_fb():
                    o = vt_sdpa(gq, gk, gv, is_causal=causal)
                    vt.autograd.grad(o, (gq, gk, gv), vg)
                with vt.ops.use("attention::sdpa", prov):
                    t_fwd, t_fwd_t = best_pair(vt_fwd, torch_fwd, repeat)
                    t_bwd, t_bwd_t = best_pair(vt_fb, torch_fb, repeat)
                tag = "" if prov == "flash" else f" [{prov}]"
                row(f"fwd      {name}{tag}", t_fwd, t_fwd_t)
                row(f"fwd+bwd  {name}{tag}", t_bwd, t_bwd_t)


if __name__ == "__main__":
    main()
