"""attention::sdpa on a Hopper GPU (issue 10): the hopper provider (ops/attention_hopper, CUTLASS's
Hopper FMHA kernels) vs the flash provider vs torch's scaled_dot_product_attention, bfloat16 and
float16, in one process on the same GPU.

    python bench/bench_attention_hopper.py [--quick] [--pack PACK_FOLDER] [--dtypes bfloat16,float16]
                                           [--shapes 8x16x2048x128,4x32/8x2048x128,...]

The hopper column pins attention::sdpa to hopper and leaves the backward to the dispatcher (hopper's
own wgmma backward in bfloat16 and float16; VT_HOPPER_BWD=cutlass: example 88's, float16 only);
the "bwd by" column says which served.
The pack: --pack, else VT_ATTN_HOPPER_PACK, else `vt-ops build ops/attention_hopper` now (minutes
on few cores). Shapes (B, H, S, D): the issue's 8x16x2048x128, 4x16x2048x64, 2x16x8192x128; causal
and not; partial tiles too, e.g. --shapes 64x6x65x64,32x6x100x64 (ViT's 65 tokens, miniGPT's
100); head dim 256 (hopper's forward; its backward is flash's compute, which runs the composed one),
e.g. 4x16x2048x256; GQA/MQA as BxH/HkvxSxD, k and v with Hkv heads (e.g. 4x32/8x2048x128, Llama's
grouping; torch runs with enable_gqa=True). VT_HOPPER_FWD_D64=128x64 or 192x128 runs every D = 64 forward on that tile
(ops/attention_hopper/NOTES.md). Rows: forward (attention::sdpa), backward alone (attention::sdpa_backward from the saved
out and lse; torch: autograd.grad of a retained graph), forward + backward (autograd through both).
FLOPs counted like the issue: forward 4 B H S^2 D (halved when causal), backward 2.5x that,
forward + backward 3.5x. Each cell: TF/s, and hopper / torch time (below 1: hopper is faster).
Times are medians of CUDA-event-timed bursts after a warm-up (bench/_timing.py). Before timing each
shape, hopper is checked against torch (max |vt - torch| / max |torch| of out, dq, dk, dv; goal
<= 1e-2) and the trace must show hopper serving both ops. Without a Hopper GPU it says so, exits 0.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import vibetensor as vt
import vibetensor.cuda as vcuda
from vibetensor._attention import scaled_dot_product_attention as vt_sdpa
from vibetensor.registry import capabilities as caps
from _timing import event_ms, torch_sdpa_times

ROOT = Path(__file__).resolve().parent.parent
SHAPES = [(8, 16, 2048, 128), (4, 16, 2048, 64), (2, 16, 8192, 128)]
SDPA, BACKWARD = "attention::sdpa", "attention::sdpa_backward"
PROVIDERS = ("hopper", "flash")


def pack_folder(arg):
    """The attention_hopper pack folder: given, VT_ATTN_HOPPER_PACK, or built now (None if it fails)."""
    folder = arg or os.environ.get("VT_ATTN_HOPPER_PACK")
    if folder:
        return Path(folder)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "vibetensor.cli", "build", str(ROOT / "ops" / "attention_hopper")],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        print(f"(ops/attention_hopper did not build:\n{proc.stdout[-2000:]})")
        return None
    print(f"built ops/attention_hopper in {time.perf_counter() - t0:.0f} s")
    return ROOT / "ops" / "attention_hopper" / "build" / "packs" / "attention_hopper"


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if np.isnan(a).any():
        return float("nan")
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def vt_np(t):
    return np.asarray(t.to(vt.float32).cpu().numpy(), np.float64)


def parse_shape(text):
    """'BxHxSxD' or 'BxH/HkvxSxD' (GQA: k and v with Hkv heads) -> (B, H, Hkv, S, D)"""
    B, heads, S, D = text.split("x")
    H, _, Hkv = heads.partition("/")
    return int(B), int(H), int(Hkv or H), int(S), int(D)


def shape_name(B, H, Hkv, S, D):
    return f"{B}x{H}{'/%d' % Hkv if Hkv != H else ''}x{S}x{D}"


def run_shape(B, H, Hkv, S, D, dname, rng, measure, torch, F, providers=PROVIDERS) -> int:
    """Checks and times one shape in one dtype, causal and not; prints its rows; returns the number
    of failed checks."""
    bad = 0
    dt = getattr(vt, dname)
    gqa = Hkv != H
    name = shape_name(B, H, Hkv, S, D)
    host = [rng.standard_normal((B, h, S, D), dtype=np.float32) for h in (H, Hkv, Hkv, H)]
    q, k, v, g = (vt.tensor(a).to(dt).to("cuda") for a in host)
    if torch:
        tq, tk, tv, tg = (torch.from_numpy(a).to("cuda", getattr(torch, dname)) for a in host)
    # enable_gqa only where the heads differ: the op's 8th argument (the attention pack's GQA)
    gqa_args = (None, 0.0, True) if gqa else ()
    gqa_kw = {"enable_gqa": True} if gqa else {}
    for causal in (False, True):
        fwd_flops = 4 * B * H * S * S * D / (2 if causal else 1)
        flops = {"fwd": fwd_flops, "bwd": 2.5 * fwd_flops, "fwd+bwd": 3.5 * fwd_flops}
        scale = 1 / np.sqrt(D)
        res, backward_by = {}, {}
        for prov in providers:
            with contextlib.ExitStack() as pins:
                pins.enter_context(vt.ops.use(SDPA, prov, "cuda"))
                if prov == "flash":  # flash's numbers are flash's throughout; hopper's backward is the dispatcher's
                    pins.enter_context(vt.ops.use(BACKWARD, "flash", "cuda"))
                qg, kg, vg = (x.detach().requires_grad_() for x in (q, k, v))
                with vt.ops.trace() as t:
                    out, lse, _ = vt.ops.Op(SDPA)(q, k, v, None, causal, *gqa_args)
                    grads = vt.autograd.grad(vt_sdpa(qg, kg, vg, is_causal=causal, **gqa_kw), (qg, kg, vg), g)
                by = {r.op: r.provider for r in t.records if r.op in (SDPA, BACKWARD)}
                backward_by[prov] = by.get(BACKWARD)
                # hopper's own backward takes bfloat16 and float16 at D 64 and 128; D = 256 is flash's compute's
                want_bwd = "flash" if D == 256 else prov
                if by != {SDPA: prov, BACKWARD: want_bwd}:
                    print(f"  {prov}: unexpected providers for {name} {dname} causal={causal}: {by}")
                    bad += 1
                if prov == "hopper" and torch:  # the same run's check against torch
                    tqg, tkg, tvg = (x.detach().requires_grad_() for x in (tq, tk, tv))
                    tout = F.scaled_dot_product_attention(tqg, tkg, tvg, is_causal=causal, **gqa_kw)
                    tgr = torch.autograd.grad(tout, (tqg, tkg, tvg), tg)
                    errs = [rel(vt_np(out), tout.detach().double().cpu().numpy())]
                    errs += [rel(vt_np(a), b.double().cpu().numpy()) for a, b in zip(grads, tgr)]
                    ok = all(e <= 1e-2 for e in errs)
                    bad += not ok
                    print(f"  hopper vs torch {name} {dname} causal={causal} (out, dq, dk, dv): "
                          + " ".join(f"{e:.1e}" for e in errs) + ("" if ok else "  <-- over 1e-2"))
                del grads

                def fwd():
                    vt.ops.Op(SDPA)(q, k, v, None, causal, *gqa_args)

                def bwd():
                    vt.ops.Op(BACKWARD)(g, q, k, v, out, lse, None, causal, scale, 0.0, 0, 0)

                def fwd_bwd():
                    vt.autograd.grad(vt_sdpa(qg, kg, vg, is_causal=causal, **gqa_kw), (qg, kg, vg), g)

                res[prov] = {"fwd": measure(fwd, "vt"), "bwd": measure(bwd, "vt"), "fwd+bwd": measure(fwd_bwd, "vt")}
                del out, lse
            vcuda.synchronize()
        if torch:
            res["torch"] = torch_sdpa_times(torch, tq, tk, tv, tg, causal, measure, enable_gqa=gqa)
        for pas in ("fwd", "bwd", "fwd+bwd"):
            tf = {p: flops[pas] / (r[pas] * 1e-3) / 1e12 for p, r in res.items()}
            by = "hopper" if pas == "fwd" else backward_by["hopper"]
            line = f"| {name} | {dname} | {causal} | {pas} | {by} | {tf['hopper']:.0f} | "
            line += f"{tf['flash']:.0f} | " if "flash" in tf else "- | "
            line += (f"{tf['torch']:.0f} | {res['hopper'][pas] / res['torch'][pas]:.2f}x | " if "torch" in tf
                     else "- | - | ")
            line += f"{res['hopper'][pas] / res['flash'][pas]:.2f}x |" if "flash" in tf else "- |"
            print(line, flush=True)
    return bad


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    ap.add_argument("--pack", metavar="PACK_FOLDER", help="a built ops/attention_hopper pack folder")
    ap.add_argument("--shapes", default="", help="BxHxSxD or BxH/HkvxSxD (GQA),... (default: the issue's three)")
    ap.add_argument("--dtypes", default="bfloat16,float16")
    ap.add_argument("--providers", default=",".join(PROVIDERS),
                    help="hopper alone, or hopper,flash (default): flash's rows cost most of a long run's time")
    args = ap.parse_args(argv)
    providers = [p for p in args.providers.split(",") if p]
    if providers[:1] != ["hopper"] or not set(providers) <= set(PROVIDERS):
        ap.error(f"--providers: hopper first, then optionally flash, not {args.providers!r}")
    if not vcuda.is_available() or caps.cuda_devices()[:1] != [(9, 0)]:
        print("bench_attention_hopper: no Hopper GPU (compute capability 9.0) here; nothing to measure")
        return 0
    folder = pack_folder(args.pack)
    if folder is None:
        return 1
    pack = vt.ops.load(str(folder))
    try:
        import torch
        import torch.nn.functional as F

        if not torch.cuda.is_available():
            torch = None
    except ImportError:
        torch = None
    shapes = [parse_shape(s) for s in args.shapes.split(",") if s] or [(B, H, H, S, D) for B, H, S, D in SHAPES]
    burst, repeats = (2, 3) if args.quick else (5, 7)

    def measure(fn, lib):
        if lib == "torch":
            return event_ms(fn, lambda: torch.cuda.Event(enable_timing=True), torch.cuda.synchronize, burst, repeats,
                            warmup=2)
        return event_ms(fn, lambda: vcuda.Event(enable_timing=True), vcuda.synchronize, burst, repeats, warmup=2)

    print(f"GPU: {vcuda.get_device_name()}  torch: {torch.__version__ if torch else 'not available'}  "
          f"pack: {pack.path}\n")
    print("| shape | dtype | causal | pass | bwd by | hopper TF/s | flash TF/s | torch TF/s | "
          "hopper / torch time | hopper / flash time |")
    print("|---|---|---|---|---|---:|---:|---:|---:|---:|")
    rng = np.random.default_rng(0)
    bad = 0
    for (B, H, Hkv, S, D) in shapes:
        for dname in [d for d in args.dtypes.split(",") if d]:
            bad += run_shape(B, H, Hkv, S, D, dname, rng, measure, torch, F if torch else None, providers)
            if torch:
                torch.cuda.empty_cache()
    vt.ops.unload(pack)
    if bad:
        print(f"{bad} check(s) failed (see above)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
