"""CPU kernel benchmarks: elementwise maps, activations and their fused gradients, reductions —
vt vs torch CPU at the same thread count, in one process, ratio = vt time / torch time (issue 3's
target: every ratio <= 1.25).

    python bench/bench_kernels.py [--threads N] [--only NAME[,NAME...]] [--repeat R]

Run it from outside the repository (e.g. `cd /tmp`) so `import vibetensor` finds the installed
package. Shapes: 4M float32 for the maps, (4096, 1024) float32 for the reductions.
"""
from __future__ import annotations

import argparse
import timeit

import numpy as np
import torch
import torch.nn.functional as F

import vibetensor as vt


def cases():
    rng = np.random.default_rng(0)
    a = rng.standard_normal(4 * 1024 * 1024).astype(np.float32)
    b = rng.standard_normal(4 * 1024 * 1024).astype(np.float32)
    m = rng.standard_normal((4096, 1024)).astype(np.float32)
    x, x2, t, t2 = vt.tensor(a), vt.tensor(b), torch.from_numpy(a), torch.from_numpy(b)
    y, ty = vt.tensor(m), torch.from_numpy(m)
    yt, tyt = y.tanh(), ty.tanh()
    core = vt.ops.core
    aten = torch.ops.aten

    # autograd through a reduction: what training pays for sum's backward (an expand + a consumer)
    yg, tyg = vt.tensor(m).requires_grad_(), torch.from_numpy(m.copy()).requires_grad_(True)

    def vt_sum_bwd(dim):
        def f():
            (yg.sum(dim) * 1.0).sum().backward()
            yg.grad = None
        return f

    def torch_sum_bwd(dim):
        def f():
            (tyg.sum(dim) * 1.0).sum().backward()
            tyg.grad = None
        return f

    return [
        ("add", lambda: x + x2, lambda: t + t2),
        ("mul", lambda: x * x2, lambda: t * t2),
        ("exp", lambda: x.exp(), lambda: t.exp()),
        ("tanh", lambda: x.tanh(), lambda: t.tanh()),
        ("sigmoid", lambda: x.sigmoid(), lambda: t.sigmoid()),
        ("silu", lambda: vt.silu(x), lambda: F.silu(t)),
        ("gelu", lambda: vt.gelu(x), lambda: F.gelu(t)),
        ("gelu(tanh)", lambda: vt.gelu(x, approximate="tanh"), lambda: F.gelu(t, approximate="tanh")),
        ("gelu_backward", lambda: core.gelu_backward(x2, x), lambda: aten.gelu_backward(t2, t)),
        ("gelu_backward(tanh)", lambda: core.gelu_backward(x2, x, "tanh"),
         lambda: aten.gelu_backward(t2, t, approximate="tanh")),
        ("tanh_backward", lambda: core.tanh_backward(x2, x), lambda: aten.tanh_backward(t2, t)),
        ("sigmoid_backward", lambda: core.sigmoid_backward(x2, x), lambda: aten.sigmoid_backward(t2, t)),
        ("silu_backward", lambda: core.silu_backward(x2, x), lambda: aten.silu_backward(t2, t)),
        ("sum(1)", lambda: y.sum(1), lambda: ty.sum(1)),
        ("sum(0)", lambda: y.sum(0), lambda: ty.sum(0)),
        ("sum()", lambda: y.sum(), lambda: ty.sum()),
        ("mean", lambda: y.mean(), lambda: ty.mean()),
        ("mean(1)", lambda: y.mean(1), lambda: ty.mean(1)),
        ("sum(1) of transpose", lambda: y.t().sum(1), lambda: ty.t().sum(1)),
        ("max(1)", lambda: y.max(1), lambda: ty.max(1)),
        ("max(0)", lambda: y.max(0), lambda: ty.max(0)),
        ("max()", lambda: y.max(), lambda: ty.max()),
        ("argmax(1)", lambda: y.argmax(1), lambda: ty.argmax(1)),
        ("var(0)", lambda: y.var(0), lambda: ty.var(0)),
        ("var(1)", lambda: y.var(1), lambda: ty.var(1)),
        ("std()", lambda: y.std(), lambda: ty.std()),
        ("logsumexp(1)", lambda: y.logsumexp(1), lambda: ty.logsumexp(1)),
        ("logsumexp(0)", lambda: y.logsumexp(0), lambda: ty.logsumexp(0)),
        ("norm(1)", lambda: vt.linalg.vector_norm(y, dim=1) if hasattr(vt, "linalg") else y.norm(dim=1),
         lambda: ty.norm(dim=1)),
        ("sum(0) fwd+bwd", vt_sum_bwd(0), torch_sum_bwd(0)),
        ("sum(1) fwd+bwd", vt_sum_bwd(1), torch_sum_bwd(1)),
        ("tanh of tanh (contig in)", lambda: yt.tanh(), lambda: tyt.tanh()),
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=0, help="0: vt's default")
    ap.add_argument("--only", default="")
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    if args.threads:
        vt.set_num_threads(args.threads)
    torch.set_num_threads(vt.get_num_threads())
    only = set(args.only.split(",")) if args.only else None
    print(f"threads: vt {vt.get_num_threads()}, torch {torch.get_num_threads()} (torch {torch.__version__})")
    worst = 0.0
    for name, f_vt, f_t in cases():
        if only and name not in only:
            continue
        f_vt(), f_t()  # warm-up
        ta = min(timeit.repeat(f_vt, number=5, repeat=args.repeat)) / 5
        tb = min(timeit.repeat(f_t, number=5, repeat=args.repeat)) / 5
        worst = max(worst, ta / tb)
        flag = "  <-- over 1.25" if ta / tb > 1.25 else ""
        print(f"{name:26s} vt {ta * 1e3:8.3f} ms  torch {tb * 1e3:8.3f} ms  ratio {ta / tb:5.2f}{flag}", flush=True)
    print(f"worst ratio {worst:.2f}")


if __name__ == "__main__":
    main()
