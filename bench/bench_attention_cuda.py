"""attention::sdpa on CUDA (issue 10): the flash provider's tensor-core kernels (and the composed
provider) vs torch's scaled_dot_product_attention, in one process on the same GPU.

    python bench/bench_attention_cuda.py [--quick] [--no-composed] [--dtypes bfloat16,float16]
                                         [--shapes 8x16x2048x128,...] [--kv-heads 2]

Shapes (B, H, S, D): 8x16x2048x128, 4x16x2048x64, 2x16x8192x128 (the issue's); causal and not;
bfloat16 and float16. Rows: forward (attention::sdpa), backward alone (attention::sdpa_backward from
the saved out and lse; torch: autograd.grad of a retained graph) and forward + backward (autograd
through both). FLOPs counted like the issue: forward 4 B H S^2 D (halved when causal), backward
2.5x that, forward + backward 3.5x. Each cell: TF/s, the fraction of the bf16 GEMM rate (742 TF/s
measured at 8192^3 on the H200, --gemm to change), and vt / torch time (below 1: vt is faster).
Times are medians of CUDA-event-timed bursts after a warm-up. Before timing, each shape is
checked once against torch (max |vt - torch| / max |torch| of out and of dq, dk, dv), so a wrong
kernel is visible in the same run. The composed provider materialises the (B, H, S, S) float32
scores: it is skipped where they would exceed --composed-gib. --kv-heads N: grouped-query attention,
k and v with N heads (dividing H; 1 is MQA) and enable_gqa on both sides (FLOPs as for H heads).
Without a GPU it says so, exits 0.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

import vibetensor as vt
import vibetensor.cuda as vcuda
from vibetensor._attention import scaled_dot_product_attention as vt_sdpa
from _timing import event_ms, torch_sdpa_times

SHAPES = [(8, 16, 2048, 128), (4, 16, 2048, 64), (2, 16, 8192, 128)]
SDPA, BACKWARD = "attention::sdpa", "attention::sdpa_backward"


def time_ms(fn, event, sync, burst, repeats):
    return event_ms(fn, event, sync, burst, repeats, warmup=2)


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if np.isnan(a).any():
        return float("nan")
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def vt_np(t):
    return np.asarray(t.to(vt.float32).cpu().numpy(), np.float64)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    ap.add_argument("--no-composed", action="store_true", help="skip the composed provider")
    ap.add_argument("--composed-gib", type=float, default=24.0,
                    help="skip composed where its float32 scores exceed this many GiB")
    ap.add_argument("--dtypes", default="bfloat16,float16")
    ap.add_argument("--shapes", default="", help="BxHxSxD,... (default: the issue's three)")
    ap.add_argument("--gemm", type=float, default=742.0, help="the bf16 GEMM rate, TF/s")
    ap.add_argument("--kv-heads", type=int, default=0, help="k, v heads (GQA/MQA; 0: as many as q)")
    args = ap.parse_args(argv)
    if not vcuda.is_available():
        print("bench_attention_cuda: no CUDA GPU here (vt.cuda.is_available() is False); nothing to measure")
        return 0
    try:
        import torch
        import torch.nn.functional as F

        if not torch.cuda.is_available():
            torch = None
    except ImportError:
        torch = None
    shapes = [tuple(int(x) for x in s.split("x")) for s in args.shapes.split(",") if s] or SHAPES
    burst, repeats = (2, 3) if args.quick else (5, 7)
    vev = lambda: vcuda.Event(enable_timing=True)  # noqa: E731
    tev = (lambda: torch.cuda.Event(enable_timing=True)) if torch else None  # noqa: E731

    def measure(fn, lib):
        if lib == "torch":
            return time_ms(fn, tev, torch.cuda.synchronize, burst, repeats)
        return time_ms(fn, vev, vcuda.synchronize, burst, repeats)

    print(f"GPU: {vcuda.get_device_name()}  torch: {torch.__version__ if torch else 'not available'}  "
          f"GEMM rate: {args.gemm:.0f} TF/s\n")
    print("| shape | dtype | causal | pass | flash TF/s | of GEMM | composed TF/s | torch TF/s | "
          "torch of GEMM | flash / torch time |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|")
    rng = np.random.default_rng(0)
    checks = []
    for (B, H, S, D) in shapes:
        for dname in [d for d in args.dtypes.split(",") if d]:
            dt = getattr(vt, dname)
            Hkv = args.kv_heads or H
            gqa = Hkv != H
            host = [rng.standard_normal((B, h, S, D), dtype=np.float32) for h in (H, Hkv, Hkv, H)]
            q, k, v, g = (vt.tensor(a).to(dt).to("cuda") for a in host)
            if torch:
                tq, tk, tv, tg = (torch.from_numpy(a).to("cuda", getattr(torch, dname)) for a in host)
            scores_gib = B * H * S * S * 4 / 2**30
            for causal in (False, True):
                fwd_flops = 4 * B * H * S * S * D / (2 if causal else 1)
                flops = {"fwd": fwd_flops, "bwd": 2.5 * fwd_flops, "fwd+bwd": 3.5 * fwd_flops}
                scale = 1 / np.sqrt(D)
                provs = ["flash"] + ([] if args.no_composed or scores_gib > args.composed_gib else ["composed"])
                res = {}
                for prov in provs:
                    with vt.ops.use(SDPA, prov, "cuda"), vt.ops.use(BACKWARD, prov, "cuda"):
                        out, lse, _ = vt.ops.Op(SDPA)(q, k, v, None, causal, None, 0.0, gqa)
                        qg, kg, vg = (x.detach().requires_grad_() for x in (q, k, v))

                        def fwd():
                            vt.ops.Op(SDPA)(q, k, v, None, causal, None, 0.0, gqa)

                        def bwd():
                            vt.ops.Op(BACKWARD)(g, q, k, v, out, lse, None, causal, scale, 0.0, 0, 0)

                        def fwd_bwd():
                            vt.autograd.grad(vt_sdpa(qg, kg, vg, is_causal=causal, enable_gqa=gqa), (qg, kg, vg), g)

                        res[prov] = {"fwd": measure(fwd, "vt"), "bwd": measure(bwd, "vt"),
                                     "fwd+bwd": measure(fwd_bwd, "vt")}
                        if prov == "flash" and torch:  # the same run's check against torch
                            grads = vt.autograd.grad(vt_sdpa(qg, kg, vg, is_causal=causal, enable_gqa=gqa),
                                                     (qg, kg, vg), g)
                            tqg, tkg, tvg = (x.detach().requires_grad_() for x in (tq, tk, tv))
                            tout = F.scaled_dot_product_attention(tqg, tkg, tvg, is_causal=causal,
                                                                  **({"enable_gqa": True} if gqa else {}))
                            tgr = torch.autograd.grad(tout, (tqg, tkg, tvg), tg)
                            errs = [rel(vt_np(out), tout.detach().double().cpu().numpy())]
                            errs += [rel(vt_np(a), b.double().cpu().numpy()) for a, b in zip(grads, tgr)]
                            checks.append((f"{B}x{H}x{S}x{D} Hkv={Hkv} {dname} causal={causal}", errs))
                        del out, lse
                    vcuda.synchronize()
                if torch:
                    res["torch"] = torch_sdpa_times(torch, tq, tk, tv, tg, causal, measure, enable_gqa=gqa)
                for pas in ("fwd", "bwd", "fwd+bwd"):
                    tf = {p: flops[pas] / (r[pas] * 1e-3) / 1e12 for p, r in res.items()}
                    name = f"{B}x{H}x{S}x{D}" + (f" kv{Hkv}" if gqa else "")
                    line = (f"| {name} | {dname} | {causal} | {pas} | {tf['flash']:.0f} | "
                            f"{tf['flash'] / args.gemm:.2f} | ")
                    line += f"{tf['composed']:.0f} | " if "composed" in tf else "- | "
                    if "torch" in tf:
                        line += (f"{tf['torch']:.0f} | {tf['torch'] / args.gemm:.2f} | "
                                 f"{res['flash'][pas] / res['torch'][pas]:.2f}x |")
                    else:
                        line += "- | - | - |"
                    print(line, flush=True)
            del q, k, v, g
            if torch:
                del tq, tk, tv, tg
                torch.cuda.empty_cache()
    if checks:
        print("\nflash vs torch, max |vt - torch| / max |torch| (out, dq, dk, dv); bf16 goal <= 1e-2:")
        bad = 0
        for name, errs in checks:
            ok = all(e <= 1e-2 for e in errs)
            bad += not ok
            print(f"  {name}: " + " ".join(f"{e:.1e}" for e in errs) + ("" if ok else "  <-- over 1e-2"))
        if bad:
            print(f"{bad} check(s) over 1e-2")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
