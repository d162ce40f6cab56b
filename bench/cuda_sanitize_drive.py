"""Every kernel path of the core pack's CUDA computes once, at sizes small enough for
compute-sanitizer, each result compared with the cpu compute of the same op on the same inputs.

    python bench/cuda_sanitize_drive.py [--device cuda] [--only NAME,...] [--big]
    compute-sanitizer --tool memcheck  python bench/cuda_sanitize_drive.py
    compute-sanitizer --tool racecheck python bench/cuda_sanitize_drive.py --only nn,norm,reduce
    compute-sanitizer --tool synccheck python bench/cuda_sanitize_drive.py --only nn,norm,reduce,index

Cases are chosen to reach every launch branch: row kernels with a warp group / a block group and
with rows that stay in registers / are read once per pass (rowwise.cuh), dead rows, odd and
misaligned rows; norm backward fused and through the column-partial kernel; reductions along the
last / a leading dim, split in two launches, vectorised and not; cumsum by warp and by thread,
chunked; the take kernel in its row form and its strided form; scatter sums whose runs cross chunk
edges; nonzero; multi-tensor AdamW; random fills; cuBLASLt with the bias epilogue and batches.
Each case prints its name before it runs and synchronises after it, so a fault names its case.
--big adds cross_entropy on 16384 x 50304 bfloat16 logits (the shape that faulted once; not for
the sanitizer: 1.6 GB). --device cpu runs the same cases against the cpu (a check of this script).
Exit status 1 when a case differs from the cpu or raises.
"""
from __future__ import annotations

import argparse
import sys
import traceback

import numpy as np

import vibetensor as vt

core = vt.ops.core
DEV = "cuda"
FAILS: list = []


def sync():
    if DEV != "cpu":
        vt.cuda.synchronize()


def np_of(x):
    if isinstance(x, (tuple, list)):
        return [np_of(y) for y in x]
    if x is None:
        return None
    x = x.cpu()
    if x.dtype in (vt.bfloat16, vt.float16):
        x = x.to(vt.float64)
    return np.array(x.numpy(), copy=True)


def dev(*xs):
    r = tuple(x.to(DEV) if isinstance(x, vt.Tensor) else
              [y.to(DEV) for y in x] if isinstance(x, list) else x for x in xs)
    return r if len(r) > 1 else r[0]


def rnd(rng, shape, dtype=vt.float32, lo=-3.0, hi=3.0):
    return vt.tensor(rng.uniform(lo, hi, shape).astype(np.float32)).to(dtype)


def compare(name, got, want, tol):
    got, want = np_of(got), np_of(want)
    if not isinstance(got, list):
        got, want = [got], [want]
    for i, (g, w) in enumerate(zip(got, want)):
        if g is None and w is None:
            continue
        if g.shape != w.shape:
            FAILS.append(name)
            print(f"  MISMATCH {name}[{i}]: shape {g.shape} vs cpu {w.shape}", flush=True)
            return
        if g.dtype == bool or np.issubdtype(g.dtype, np.integer):
            bad = int((g != w).sum())
            err = float(bad)
        else:
            with np.errstate(invalid="ignore"):
                d = np.abs(g - w) / (1.0 + np.abs(w))
                d = np.where(np.isnan(g) & np.isnan(w), 0.0, d)
                d = np.where(np.isnan(d), np.inf, d)
            err = float(d.max()) if d.size else 0.0
            bad = err > tol
        if bad:
            FAILS.append(name)
            print(f"  MISMATCH {name}[{i}]: max err {err:.3g} (tol {tol:g})", flush=True)
            return


def widened(args):
    """args with 16-bit float tensors as float64: a reference for ops whose cpu kernel rounds at
    every step (index_add of a hot row in bfloat16 drifts far from the exact sum; the device adds
    in float and rounds once)."""
    return tuple(a.to(vt.float64) if isinstance(a, vt.Tensor) and a.dtype in (vt.bfloat16, vt.float16) else a
                 for a in args)


def case(name, fn, args, tol=1e-4, kwargs=None, compare_out=True, exact_ref=False):
    """fn(*args) on the device and on cpu (args are cpu tensors / lists / plain values); with
    exact_ref, the cpu runs in float64 (see widened)."""
    kwargs = kwargs or {}
    print(f"case {name}", flush=True)
    try:
        got = fn(*dev(*args), **kwargs) if len(args) > 1 else fn(dev(*args), **kwargs)
        sync()
        if compare_out:
            compare(name, got, fn(*(widened(args) if exact_ref else args), **kwargs), tol)
    except Exception:  # noqa: BLE001 - a report, not a test framework
        FAILS.append(name)
        print(f"  ERROR {name}:\n" + traceback.format_exc(), flush=True)


TOL = {vt.float32: 2e-4, vt.bfloat16: 3e-2, vt.float16: 4e-3, vt.float64: 1e-9}
FLOATS = (vt.float32, vt.bfloat16, vt.float64)


def fam_loss(rng):
    for dt in FLOATS:
        for (P, C) in ((64, 50304), (7, 33), (600, 1000), (3, 4099)):
            x = rnd(rng, (P, C), dt)
            t = vt.tensor(rng.integers(0, C, P))
            t_np = np.asarray(t.numpy()).copy()
            t_np[0] = -100
            t = vt.tensor(t_np)
            for red in ("mean", "none"):
                n = f"cross_entropy {dt} {P}x{C} {red}"
                case(n, lambda x, t: core.cross_entropy(x, t, -100, 0.1, red), (x, t), TOL[dt])
                _, lse = core.cross_entropy(x, t, -100, 0.1, red)
                go = rnd(rng, (P,), dt) if red == "none" else vt.tensor(1.0).to(dt)
                case(n + " backward", lambda g, x, t, l: core.cross_entropy_backward(g, x, t, l, -100, 0.1, red),
                     (go, x, t, lse), TOL[dt])
        x = rnd(rng, (4, 9, 5, 3), dt)  # inner > 1: the column kernels
        t = vt.tensor(rng.integers(0, 9, (4, 5, 3)))
        case(f"cross_entropy {dt} inner>1", lambda x, t: core.cross_entropy(x, t, -100, 0.0, "sum"), (x, t), TOL[dt])
        _, lse = core.cross_entropy(x, t, -100, 0.0, "sum")
        case(f"cross_entropy_backward {dt} inner>1",
             lambda g, x, t, l: core.cross_entropy_backward(g, x, t, l, -100, 0.0, "sum"),
             (vt.tensor(1.0).to(dt), x, t, lse), TOL[dt])
        a, b = rnd(rng, (33, 65), dt), rnd(rng, (65,), dt)
        case(f"mse_loss {dt}", lambda a, b: core.mse_loss(a, b, "mean"), (a, b), TOL[dt])


def fam_nn(rng):
    for dt in FLOATS:
        # warp groups, a block per row, a row read once per pass, odd and offset rows
        for shape in ((1000, 33), (8, 4096), (3, 70001), (513, 1024), (64, 1)):
            x = rnd(rng, shape, dt)
            for name, fn in (("softmax", core.softmax), ("log_softmax", core.log_softmax)):
                case(f"{name} {dt} {shape}", lambda x: fn(x, -1), (x,), TOL[dt])
                y = fn(x, -1)
                g = rnd(rng, shape, dt)
                bw = core.softmax_backward if name == "softmax" else core.log_softmax_backward
                case(f"{name}_backward {dt} {shape}", lambda g, y: bw(g, y, -1), (g, y), TOL[dt] * 4)
        x = rnd(rng, (5, 7, 9), dt)
        case(f"softmax {dt} dim 1 (columns)", lambda x: core.softmax(x, 1), (x,), TOL[dt])
        xo = rnd(rng, (9, 101), dt)[:, 1:]  # misaligned rows (strided -> contiguous copy)
        case(f"softmax {dt} offset view", lambda x: core.softmax(x, -1), (xo,), TOL[dt])
        m = vt.tensor(rng.random((8, 1003)) < 0.5)
        g = rnd(rng, (8, 1003), dt)
        case(f"dropout_backward {dt}", lambda g, m: core.dropout_backward(g, m, 2.0), (g, m), TOL[dt])
        x = rnd(rng, (8, 1003), dt)
        print(f"case dropout {dt}", flush=True)
        try:
            o, mk = core.dropout(x.to(DEV), 0.3, True)
            sync()
            ref = np.where(np_of(mk), np_of(x) / 0.7, 0.0)
            compare(f"dropout {dt}", o, vt.tensor(ref).to(dt), TOL[dt])
        except Exception:  # noqa: BLE001
            FAILS.append("dropout")
            traceback.print_exc()


def fam_norm(rng):
    for dt in FLOATS:
        # fused partials (rows in registers), the column-partial kernel (long rows), warp rows,
        # few rows, one row
        for (M, N) in ((300, 64), (64, 4096), (5, 40000), (1, 7), (2000, 24)):
            x, w, b = rnd(rng, (M, N), dt), rnd(rng, (N,), dt), rnd(rng, (N,), dt)
            g = rnd(rng, (M, N), dt)
            case(f"layer_norm {dt} {M}x{N}", lambda x, w, b: core.layer_norm(x, [N], w, b, 1e-5), (x, w, b), TOL[dt] * 4)
            _, mean, rstd = core.layer_norm(x, [N], w, b, 1e-5)
            case(f"layer_norm_backward {dt} {M}x{N}",
                 lambda g, x, m, r, w, b: core.layer_norm_backward(g, x, [N], m, r, w, b), (g, x, mean, rstd, w, b),
                 TOL[dt] * 8)
            case(f"rms_norm {dt} {M}x{N}", lambda x, w: core.rms_norm(x, [N], w, 1e-6), (x, w), TOL[dt] * 4)
            _, rstd = core.rms_norm(x, [N], w, 1e-6)
            case(f"rms_norm_backward {dt} {M}x{N}", lambda g, x, r, w: core.rms_norm_backward(g, x, [N], r, w),
                 (g, x, rstd, w), TOL[dt] * 8)
        x = rnd(rng, (0, 8), dt)
        case(f"layer_norm_backward {dt} no rows",
             lambda g, x, w, b: core.layer_norm_backward(g, x, [8], rnd(rng, (0,), vt.float64 if dt is vt.float64 else vt.float32).to(g.device),
                                                         rnd(rng, (0,), vt.float64 if dt is vt.float64 else vt.float32).to(g.device), w, b),
             (x, x, rnd(rng, (8,), dt), rnd(rng, (8,), dt)), TOL[dt])


def fam_reduce(rng):
    for dt in (vt.float32, vt.bfloat16, vt.float64, vt.int64, vt.int32, vt.bool, vt.uint8):
        fl = dt in FLOATS
        for shape, dims in (((64, 4097), [-1]), ((4097, 64), [0]), ((3, 1 << 20), [-1]), ((1 << 18,), []),
                            ((7, 5, 33), [0, 2]), ((2, 3), [1])):
            x = rnd(rng, shape, dt, -20, 20) if dt is not vt.bool else vt.tensor(rng.random(shape) < 0.5)
            tol = TOL.get(dt, 0) if fl else 0
            case(f"sum {dt} {shape} {dims}", lambda x: core.sum(x, dims), (x,), max(tol, 1e-3) if fl else 0)
            case(f"argmax {dt} {shape}", lambda x: core.argmax(x, dims[0] if len(dims) == 1 else None), (x,), 0)
            if len(dims) == 1:
                case(f"max_dim {dt} {shape}", lambda x: core.max_dim(x, dims[0]), (x,), 0)
            if fl:
                case(f"logsumexp {dt} {shape}", lambda x: core.logsumexp(x, dims), (x,), tol)
                case(f"var {dt} {shape}", lambda x: core.var(x, dims, 1), (x,), max(tol, 1e-3))
                case(f"norm {dt} {shape}", lambda x: core.norm(x, 2.0, dims), (x,), tol)
        x = rnd(rng, (40, 33), dt, -5, 5) if dt is not vt.bool else vt.tensor(rng.random((40, 33)) < 0.5)
        case(f"sum {dt} transposed", lambda x: core.sum(core.transpose(x, 0, 1), [1]), (x,), 1e-3)
    for dt in (vt.float32, vt.int64, vt.bfloat16):
        for shape, d in (((5, 300000), 1), ((300000, 3), 0), ((4, 1000), 1), ((1000, 4), 0), ((1 << 17,), 0)):
            x = rnd(rng, shape, dt, -4, 4)
            case(f"cumsum {dt} {shape} dim {d}", lambda x: core.cumsum(x, d), (x,), 1e-3)


def fam_index(rng):
    for dt in (vt.float32, vt.bfloat16, vt.int64, vt.bool):
        w = rnd(rng, (1000, 64), dt) if dt is not vt.bool else vt.tensor(rng.random((1000, 64)) < 0.5)
        idx = vt.tensor(rng.integers(0, 1000, (33, 7)))
        case(f"embedding {dt}", lambda w, i: core.embedding(w, i), (w, idx), 0)
        case(f"index_select {dt} dim 0", lambda w, i: core.index_select(w, 0, i), (w, vt.tensor(rng.integers(0, 1000, 77))), 0)
        case(f"index_select {dt} dim 1", lambda w, i: core.index_select(w, 1, i), (w, vt.tensor(rng.integers(0, 64, 13))), 0)
        gi = vt.tensor(rng.integers(0, 64, (1000, 5)))
        case(f"gather {dt}", lambda w, i: core.gather(w, 1, i), (w, gi), 0)
        case(f"index {dt} two lists", lambda w, a, b: core.index(w, [a, b]),
             (w, vt.tensor(rng.integers(-1000, 1000, (4, 5))), vt.tensor(rng.integers(0, 64, (5,)))), 0)
        case(f"nonzero {dt}", lambda w: core.nonzero(w), (w,), 0)
        m = vt.tensor(rng.random((1000, 64)) < 0.3)
        case(f"masked_fill {dt}", lambda w, m: core.masked_fill(w, m, 1.0), (w, m), 0)
    for dt in (vt.float32, vt.bfloat16, vt.float64):
        tol = TOL[dt] * 8
        # many duplicates: runs cross the chunks of the sorted contributions
        hot = vt.tensor(np.concatenate([np.full(3000, 5), rng.integers(0, 50, 3000)]))
        g = rnd(rng, (6000, 64), dt)
        case(f"embedding_backward {dt} hot rows", lambda g, i: core.embedding_backward(g, i, 50), (g, hot), tol)
        g2 = rnd(rng, (6000, 3), dt)  # rows not a multiple of 16 bytes: W = 1
        case(f"embedding_backward {dt} narrow rows", lambda g, i: core.embedding_backward(g, i, 50), (g2, hot), tol)
        s = rnd(rng, (50, 8), dt)
        src = rnd(rng, (6000, 8), dt)
        case(f"index_add {dt}", lambda s, i, v: core.index_add(s, 0, i, v, 0.5), (s, hot, src), tol, exact_ref=True)
        s2 = rnd(rng, (4, 50), dt)
        si = vt.tensor(rng.integers(0, 50, (4, 3000)))
        case(f"scatter_add {dt}", lambda s, i, v: core.scatter_add(s, 1, i, v), (s2, si, rnd(rng, (4, 3001), dt)), tol)
        case(f"index_put accumulate {dt}", lambda s, i, v: core.index_put(s, [i], v, True), (s, hot, src), tol,
             exact_ref=True)
        last = vt.tensor(np.arange(6000) % 50)
        case(f"index_put {dt}", lambda s, i, v: core.index_put(s, [i], v, False), (s, last, src), 0)
    ci = vt.tensor(rng.integers(0, 10, (3, 7)))
    case("one_hot", lambda i: core.one_hot(i, 12), (ci,), 0)
    case("one_hot -1", lambda i: core.one_hot(i, -1), (ci,), 0)


def fam_optim(rng):
    for dt in (vt.float32, vt.bfloat16):
        shapes = [(1000, 7), (3,), (16384 * 2 + 5,), (64, 64)] * 45  # 180 tensors: two launches of 160
        ps = [rnd(rng, s, dt) for s in shapes]
        gs = [rnd(rng, s, dt) for s in shapes]
        ms = [rnd(rng, s, dt) for s in shapes]
        vs = [rnd(rng, s, dt, 0.0, 1.0) for s in shapes]
        ps[1] = rnd(rng, (9, 4), dt)[:, 1:]  # a strided one: the StridedLoop kernel
        gs[1], ms[1], vs[1] = rnd(rng, (9, 3), dt), rnd(rng, (9, 3), dt), rnd(rng, (9, 3), dt, 0.0, 1.0)

        def step(ps, gs, ms, vs):
            core.adamw_multi(ps, gs, ms, vs, 1e-3, 0.9, 0.999, 1e-8, 0.01, 3)
            return ps[:8] + ms[:8] + vs[:8]

        case(f"adamw_multi {dt}", step, ([p.clone() for p in ps], gs, [m.clone() for m in ms], [v.clone() for v in vs]),
             TOL[dt])


def fam_random(rng):
    for dt in (vt.float32, vt.bfloat16, vt.float64):
        for n in (1, 5, 4099):
            print(f"case normal/uniform {dt} {n}", flush=True)
            try:
                vt.manual_seed(7)
                a = np_of(core.normal([n], 0.0, 1.0, dt, DEV))
                b = np_of(core.uniform([n], -1.0, 2.0, dt, DEV))
                sync()
                if not (np.isfinite(a).all() and (b >= -1).all() and (b <= 2).all()):
                    FAILS.append("random")
                    print("  MISMATCH random values out of range", flush=True)
            except Exception:  # noqa: BLE001
                FAILS.append("random")
                traceback.print_exc()
    print("case randint/randperm", flush=True)
    try:
        r = np_of(core.randint(-5, 1 << 40, [1001], vt.int64, DEV))
        p = np_of(core.randperm(10007, vt.int64, DEV))
        sync()
        if r.min() < -5 or sorted(p.tolist()) != list(range(10007)):
            FAILS.append("randint/randperm")
            print("  MISMATCH randint/randperm", flush=True)
    except Exception:  # noqa: BLE001
        FAILS.append("randint/randperm")
        traceback.print_exc()


def fam_matmul(rng):
    for dt in (vt.float32, vt.bfloat16, vt.float64):
        tol = 1e-2 if dt is vt.bfloat16 else 1e-3
        a, w, b = rnd(rng, (4, 33, 64), dt, -1, 1), rnd(rng, (48, 64), dt, -1, 1), rnd(rng, (48,), dt, -1, 1)
        case(f"linear bias {dt}", lambda a, w, b: core.linear(a, w, b), (a, w, b), tol)
        case(f"addmm {dt}", lambda s, x, y: core.addmm(s, x, y, beta=0.5, alpha=2.0),
             (rnd(rng, (33, 48), dt), rnd(rng, (33, 64), dt, -1, 1), rnd(rng, (64, 48), dt, -1, 1)), tol)
        case(f"matmul batch broadcast {dt}", lambda x, y: core.matmul(x, y),
             (rnd(rng, (3, 1, 17, 9), dt, -1, 1), rnd(rng, (5, 9, 13), dt, -1, 1)), tol)
        case(f"matmul transposed views {dt}", lambda x, y: core.matmul(core.transpose(x, 0, 1), y),
             (rnd(rng, (9, 17), dt, -1, 1), rnd(rng, (10, 13), dt, -1, 1)[1:]), tol)
        case(f"matmul vector {dt}", lambda x, y: core.matmul(x, y), (rnd(rng, (17, 9), dt), rnd(rng, (9,), dt)), tol)


def fam_shape(rng):
    for dt in (vt.float32, vt.bfloat16, vt.int8, vt.float64):
        xs = [rnd(rng, (5, k, 3), dt) for k in (1, 7, 16)] + [rnd(rng, (3, 5, 3), dt).permute(1, 0, 2)]
        case(f"cat {dt} dim 1", lambda *xs: core.cat(list(xs), 1), tuple(xs), 0)
        case(f"cat {dt} dim 0 (40 inputs)", lambda *xs: core.cat(list(xs), 0),
             tuple(rnd(rng, (k % 5 + 1, 8), dt) for k in range(40)), 0)
        case(f"tril {dt}", lambda x: core.tril(x, 1), (rnd(rng, (3, 7, 9), dt),), 0)
        x = rnd(rng, (6, 7), dt)
        case(f"where {dt}", lambda c, x, y: core.where(c, x, y), (vt.tensor(rng.random((6, 1)) < 0.5), x, rnd(rng, (7,), dt)), 0)


def big(rng):
    """cross_entropy on 16384 x 50304 bfloat16 logits (the shape that faulted once)."""
    P, C = 16384, 50304
    x = vt.tensor(rng.standard_normal((P, C), dtype=np.float32)).to(vt.bfloat16).to(DEV)
    t = vt.tensor(rng.integers(0, C, P)).to(DEV)
    sync()
    for red, eps in (("mean", 0.0), ("none", 0.1)):
        print(f"case big cross_entropy {red}", flush=True)
        loss, lse = core.cross_entropy(x, t, -100, eps, red)
        sync()
        go = vt.ones(*loss.shape, dtype=vt.bfloat16, device=DEV) if red == "none" else vt.tensor(1.0).to(vt.bfloat16).to(DEV)
        print(f"case big cross_entropy_backward {red}", flush=True)
        core.cross_entropy_backward(go, x, t, lse, -100, eps, red)
        sync()
        rows = slice(0, 16)  # lse of a few rows against the cpu
        _, lse_cpu = core.cross_entropy(x[rows].cpu(), t[rows].cpu(), -100, eps, "none")
        compare(f"big cross_entropy lse {red}", lse[rows], lse_cpu, 1e-3)


FAMILIES = {"loss": fam_loss, "nn": fam_nn, "norm": fam_norm, "reduce": fam_reduce, "index": fam_index,
            "optim": fam_optim, "random": fam_random, "matmul": fam_matmul, "shape": fam_shape}


def main(argv=None) -> int:
    global DEV
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--only", default="", help="comma-separated: " + ",".join(FAMILIES))
    ap.add_argument("--big", action="store_true", help="also cross_entropy at 16384 x 50304 bf16")
    args = ap.parse_args(argv)
    DEV = args.device
    if DEV != "cpu" and not vt.cuda.is_available():
        print("cuda_sanitize_drive: no CUDA device here; use --device cpu to check the script")
        return 0
    rng = np.random.default_rng(0)
    for name, fam in FAMILIES.items():
        if args.only and name not in args.only.split(","):
            continue
        print(f"== {name}", flush=True)
        fam(rng)
    if args.big:
        big(rng)
    print(f"cuda_sanitize_drive: {len(FAILS)} failing case(s)" + (": " + ", ".join(FAILS) if FAILS else ""))
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
