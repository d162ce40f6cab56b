"""The nn family's CUDA kernels (ops/core/cuda/{nn,norm,loss}.cu) vs torch, in one process on the
same GPU, against the device's copy bandwidth.

    python bench/bench_cuda_nn.py [--quick] [--only NAME[,NAME...]] [--rows-plans PLAN[,PLAN...]]

Rows (issue 9's goals): layer_norm forward and forward+backward, rms_norm forward, softmax forward
(8192 x 4096, float32 and bfloat16), layer_norm backward at miniGPT's 16384 x 384; cross_entropy forward and forward+backward (16384 x 50304
logits, bfloat16 and float32, 'mean'); dropout forward (8192 x 4096, p = 0.1). Both sides call the
ops themselves (vt.ops.core.*, torch.ops.aten.native_* where torch has them), except cross-entropy
forward+backward, which both time as a training step calls it (loss = F.cross_entropy(x, t);
loss.backward(); vt's forward then writes the gradient: core::cross_entropy_fused); the row
"(two-pass ops)" times vt's core::cross_entropy + core::cross_entropy_backward against the same torch
call. Each cell is the median over repeats
of the mean time of a burst of calls, timed with CUDA events after a warm-up. "of copy" divides the
bytes an op must move (each input read once, each output written once) by the time and by the
device's copy bandwidth measured here (a device-to-device copy of a 128 MiB tensor, the faster of
vt's copy_ and torch's). vt / torch is the time ratio (lower is better). Without a GPU it says so
and exits 0; without torch the torch columns are left empty.

--rows-plans runs the norm group once per VT_ROWS_PLAN value ("default": the variable unset, the
16-bit wide plan at 4 slots per thread; "wide8", "wide4", "classic", "piped", "plain"; see ops/core/cuda/rowwise.cuh), each in a process of
its own (the plan is read once per process), for an A/B of the row kernels in one call.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

import vibetensor as vt
import vibetensor.cuda as vcuda
from _timing import event_ms


def time_us(fn, event, sync, burst, repeats):
    """event_ms in microseconds."""
    return event_ms(fn, event, sync, burst, repeats) * 1e3


def randn(rng, shape, dname, torch):
    """The same standard-normal values as a vt and (when torch is there) a torch cuda tensor."""
    a = rng.standard_normal(shape, dtype=np.float32)
    v = vt.tensor(a).to(getattr(vt, dname)).to("cuda")
    t = torch.from_numpy(a).to("cuda", getattr(torch, dname)) if torch else None
    return v, t


def norm_rows(rng, dname, torch):
    """(name, vt call, torch call, bytes moved) for layer_norm / rms_norm / softmax at 8192 x 4096."""
    M, N = 8192, 4096
    core = vt.ops.core
    x, tx = randn(rng, (M, N), dname, torch)
    g, tg = randn(rng, (M, N), dname, torch)
    w, tw = randn(rng, (N,), dname, torch)
    b, tb = randn(rng, (N,), dname, torch)
    es = x.element_size()
    _, mean, rstd = core.layer_norm(x, [N], w, b, 1e-5)

    def vt_ln_fb():
        _, m, r = core.layer_norm(x, [N], w, b, 1e-5)
        core.layer_norm_backward(g, x, [N], m, r, w, b)

    rows = [("layer_norm fwd", lambda: core.layer_norm(x, [N], w, b, 1e-5), 2 * M * N * es),
            ("layer_norm fwd+bwd", vt_ln_fb, 5 * M * N * es),
            ("rms_norm fwd", lambda: core.rms_norm(x, [N], w, 1e-6), 2 * M * N * es),
            ("softmax fwd", lambda: core.softmax(x, 1), 2 * M * N * es)]
    # miniGPT's layer_norm backward (B64 T256 rows of n_embd 384): grad_input, grad_weight and
    # grad_bias from grad_out and input (read once each, grad_input written once)
    Ms, Ns = 16384, 384
    xs, txs = randn(rng, (Ms, Ns), dname, torch)
    gs, tgs = randn(rng, (Ms, Ns), dname, torch)
    ws, tws = randn(rng, (Ns,), dname, torch)
    bs, tbs = randn(rng, (Ns,), dname, torch)
    _, ms, rs = core.layer_norm(xs, [Ns], ws, bs, 1e-5)
    rows.append(("layer_norm bwd (16384x384)", lambda: core.layer_norm_backward(gs, xs, [Ns], ms, rs, ws, bs),
                 3 * Ms * Ns * es))
    trows = [None] * len(rows)
    if torch:
        aten = torch.ops.aten
        F = torch.nn.functional

        def t_ln_fb():
            _, m, r = aten.native_layer_norm(tx, [N], tw, tb, 1e-5)
            aten.native_layer_norm_backward(tg, tx, [N], m, r, tw, tb, [True, True, True])

        _, tms, trs = aten.native_layer_norm(txs, [Ns], tws, tbs, 1e-5)
        trows = [lambda: aten.native_layer_norm(tx, [N], tw, tb, 1e-5), t_ln_fb,
                 lambda: F.rms_norm(tx, [N], tw, 1e-6), lambda: torch.softmax(tx, 1),
                 lambda: aten.native_layer_norm_backward(tgs, txs, [Ns], tms, trs, tws, tbs, [True, True, True])]
    del mean, rstd
    return [(name, fn, tfn, nbytes) for (name, fn, nbytes), tfn in zip(rows, trows)]


def ce_rows(rng, dname, torch):
    """cross_entropy forward and forward+backward over 16384 x 50304 logits ('mean')."""
    P, C = 16384, 50304
    core = vt.ops.core
    x, tx = randn(rng, (P, C), dname, torch)
    tn = rng.integers(0, C, P)
    t = vt.tensor(tn).to("cuda")
    es = x.element_size()
    one = vt.tensor(1.0).to(getattr(vt, dname)).to("cuda")  # d loss / d loss

    xg = x.detach().requires_grad_()

    def vt_fb():  # as a training step calls it: the fused forward, then a backward from 1
        xg.grad = None
        vt.cross_entropy(xg, t).backward()

    def vt_fb_ops():  # the two-pass ops (what no-grad forwards and 'none' use)
        _, lse = core.cross_entropy(x, t, -100, 0.0, "mean")
        core.cross_entropy_backward(one, x, t, lse, -100, 0.0, "mean")

    # bytes: the logits read once and the gradient written once (the two-pass ops read them twice)
    rows = [("cross_entropy fwd", lambda: core.cross_entropy(x, t, -100, 0.0, "mean"), P * C * es),
            ("cross_entropy fwd+bwd", vt_fb, 2 * P * C * es),
            ("cross_entropy fwd+bwd (two-pass ops)", vt_fb_ops, 3 * P * C * es)]
    trows = [None, None, None]
    if torch:
        F = torch.nn.functional
        tt = torch.from_numpy(tn).to("cuda")
        txg = tx.detach().clone().requires_grad_(True)

        def t_fb():
            txg.grad = None
            F.cross_entropy(txg, tt).backward()

        trows = [lambda: F.cross_entropy(tx, tt), t_fb, t_fb]
    return [(name, fn, tfn, nbytes) for (name, fn, nbytes), tfn in zip(rows, trows)]


def dropout_rows(rng, dname, torch):
    M, N = 8192, 4096
    x, tx = randn(rng, (M, N), dname, torch)
    es = x.element_size()
    tfn = (lambda: torch.ops.aten.native_dropout(tx, 0.1, True)) if torch else None
    return [("dropout fwd (p 0.1)", lambda: vt.ops.core.dropout(x, 0.1, True), tfn, M * N * (2 * es + 1))]


GROUPS = {"norm": norm_rows, "dropout": dropout_rows, "cross_entropy": ce_rows}


def run_rows_plans(args) -> int:
    """The norm group once per VT_ROWS_PLAN value, each in a child process (the value is read once
    per process); returns the first failing child's status, else 0."""
    import os
    import subprocess

    status = 0
    for plan in [p for p in args.rows_plans.split(",") if p]:
        env = dict(os.environ)
        env.pop("VT_ROWS_PLAN", None)
        if plan != "default":
            env["VT_ROWS_PLAN"] = plan
        print(f"\n## VT_ROWS_PLAN={plan}", flush=True)
        cmd = [sys.executable, __file__, "--only", args.only or "norm"] + (["--quick"] if args.quick else [])
        rc = subprocess.run(cmd, env=env).returncode
        status = status or rc
    return status


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    ap.add_argument("--only", default="", help="comma-separated groups: " + ",".join(GROUPS))
    ap.add_argument("--rows-plans", default="",
                    help="comma-separated VT_ROWS_PLAN values (default, wide8, wide4, classic, piped, plain): the norm group "
                         "once per value, each in a process of its own")
    args = ap.parse_args(argv)
    if args.rows_plans:
        return run_rows_plans(args)
    if not vcuda.is_available():
        print("bench_cuda_nn: no CUDA GPU here (vt.cuda.is_available() is False); nothing to measure")
        return 0
    try:
        import torch

        if not torch.cuda.is_available():
            torch = None
    except ImportError:
        torch = None
    burst, repeats = (3, 3) if args.quick else (10, 7)
    vev = lambda: vcuda.Event(enable_timing=True)  # noqa: E731
    tev = (lambda: torch.cuda.Event(enable_timing=True)) if torch else None  # noqa: E731

    def measure(fn, which):
        if which == "vt":
            return time_us(fn, vev, vcuda.synchronize, burst, repeats)
        return time_us(fn, tev, torch.cuda.synchronize, burst, repeats)

    # the copy ceiling: 128 MiB copied device to device, the faster of the two libraries
    n = 32 * 1024 * 1024
    src = vt.empty(n, device="cuda").fill_(1.0)
    dst = vt.empty_like(src)
    copy_us = measure(lambda: dst.copy_(src), "vt")
    if torch:
        ts = torch.ones(n, device="cuda")
        td = torch.empty_like(ts)
        copy_us = min(copy_us, measure(lambda: td.copy_(ts), "torch"))
    ceiling = 2 * n * 4 / copy_us / 1e3  # GB/s, read + write
    print(f"GPU: {vcuda.get_device_name()}  torch: {torch.__version__ if torch else 'not available'}  "
          f"copy ceiling: {ceiling:.0f} GB/s (read + write)\n")
    print("| op | dtype | vt (µs) | vt of copy | torch (µs) | torch of copy | vt / torch |")
    print("|---|---|---:|---:|---:|---:|---:|")
    only = [g for g in args.only.split(",") if g] or list(GROUPS)
    rng = np.random.default_rng(0)
    for group in only:
        dnames = ("bfloat16", "float32") if group == "cross_entropy" else ("float32", "bfloat16")
        for dname in dnames:
            for name, vfn, tfn, nbytes in GROUPS[group](rng, dname, torch):
                vus = measure(vfn, "vt")
                line = f"| {name} | {dname} | {vus:.1f} | {nbytes / vus / 1e3 / ceiling:.2f} |"
                if tfn is not None:
                    tus = measure(tfn, "torch")
                    line += f" {tus:.1f} | {nbytes / tus / 1e3 / ceiling:.2f} | {vus / tus:.2f}x |"
                else:
                    line += " | | |"
                print(line, flush=True)
            vcuda.synchronize()
            if torch:
                torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
