"""Core op benchmarks (issue 3): vt vs torch CPU (same thread count) vs numpy, in one run, ratios
printed (vt time / peer time: below 1 means vt is faster).

    python bench/bench_core.py [--quick]

1. elementwise add and gelu on 4M floats        4. matmul 1024^3 and the (64*256, 384) x (384, 1536) linear
2. softmax and layer_norm on (4096, 1024)       5. cross_entropy on (16384, 65)
3. (numpy has no fused softmax/layer_norm: its   6. forward + backward of one transformer block
   composite versions are shown for scale)         (B=16, T=256, C=384, 6 heads), attention composed
                                                   from core ops (linear, matmul, softmax)
Targets (issue 3): each within 1.25x of torch CPU, matmul within 1.1x.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import vibetensor as vt

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # the torch columns are left empty, and say so
    torch = None


def best(fn, repeat=7, number=1):
    fn()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        ts.append((time.perf_counter() - t0) / number)
    return min(ts)


def row(name, t_vt, t_torch=None, t_np=None):
    cols = [f"{name:<44}", f"vt {t_vt * 1e3:9.3f} ms"]
    cols.append(f"torch {t_torch * 1e3:9.3f} ms  vt/torch {t_vt / t_torch:5.2f}x" if t_torch else "torch -")
    if t_np:
        cols.append(f"numpy {t_np * 1e3:9.3f} ms  vt/numpy {t_vt / t_np:5.2f}x")
    print("  ".join(cols), flush=True)


def op(name):
    return getattr(vt.ops.core, name)


def bench_elementwise(rng, repeat):
    a = rng.standard_normal(4 * 1024 * 1024).astype(np.float32)
    b = rng.standard_normal(4 * 1024 * 1024).astype(np.float32)
    va, vb = vt.tensor(a), vt.tensor(b)
    ta, tb = (torch.from_numpy(a), torch.from_numpy(b)) if torch else (None, None)
    row("add 4M float32", best(lambda: va + vb, repeat, 5), torch and best(lambda: ta + tb, repeat, 5),
        best(lambda: a + b, repeat, 5))
    gelu = op("gelu")
    row("gelu (erf) 4M float32", best(lambda: gelu(va), repeat, 3), torch and best(lambda: F.gelu(ta), repeat, 3))


def bench_nn(rng, repeat):
    x = rng.standard_normal((4096, 1024)).astype(np.float32)
    w = rng.standard_normal(1024).astype(np.float32)
    b = rng.standard_normal(1024).astype(np.float32)
    vx, vw, vb = vt.tensor(x), vt.tensor(w), vt.tensor(b)
    tx, tw, tb = (torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)) if torch else (None,) * 3

    def np_softmax():
        e = np.exp(x - x.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    def np_layer_norm():
        mu = x.mean(1, keepdims=True)
        return (x - mu) / np.sqrt(x.var(1, keepdims=True) + 1e-5) * w + b

    row("softmax (4096, 1024) dim=-1", best(lambda: vt.softmax(vx, -1), repeat, 3),
        torch and best(lambda: torch.softmax(tx, -1), repeat, 3), best(np_softmax, repeat))
    row("layer_norm (4096, 1024) affine", best(lambda: vt.layer_norm(vx, [1024], vw, vb), repeat, 3),
        torch and best(lambda: F.layer_norm(tx, [1024], tw, tb), repeat, 3), best(np_layer_norm, repeat))


def bench_matmul(rng, repeat):
    a = rng.standard_normal((1024, 1024)).astype(np.float32)
    b = rng.standard_normal((1024, 1024)).astype(np.float32)
    va, vb = vt.tensor(a), vt.tensor(b)
    ta, tb = (torch.from_numpy(a), torch.from_numpy(b)) if torch else (None, None)
    row("matmul 1024^3 float32", best(lambda: va @ vb, repeat, 3), torch and best(lambda: ta @ tb, repeat, 3),
        best(lambda: a @ b, repeat, 3))
    x = rng.standard_normal((64 * 256, 384)).astype(np.float32)
    w = rng.standard_normal((1536, 384)).astype(np.float32)
    bias = rng.standard_normal(1536).astype(np.float32)
    vx, vw, vbias = vt.tensor(x), vt.tensor(w), vt.tensor(bias)
    tx, tw, tbias = (torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(bias)) if torch else (None,) * 3
    row("linear (16384, 384) x (384, 1536) + bias", best(lambda: vt.linear(vx, vw, vbias), repeat),
        torch and best(lambda: F.linear(tx, tw, tbias), repeat), best(lambda: x @ w.T + bias, repeat))


def bench_cross_entropy(rng, repeat):
    x = rng.standard_normal((16384, 65)).astype(np.float32)
    t = rng.integers(0, 65, 16384)
    vx, vtt = vt.tensor(x), vt.tensor(t)
    tx, ttt = (torch.from_numpy(x), torch.from_numpy(t)) if torch else (None, None)
    row("cross_entropy (16384, 65) mean", best(lambda: vt.cross_entropy(vx, vtt), repeat, 5),
        torch and best(lambda: F.cross_entropy(tx, ttt), repeat, 5))


# -- one transformer block (pre-norm GPT style), written once for both libraries -------------------
def block_params(rng, C):
    def lin(o, i):
        return [(rng.standard_normal((o, i)) / np.sqrt(i)).astype(np.float32), np.zeros(o, np.float32)]

    p = {"ln1": [np.ones(C, np.float32), np.zeros(C, np.float32)], "qkv": lin(3 * C, C), "proj": lin(C, C),
         "ln2": [np.ones(C, np.float32), np.zeros(C, np.float32)], "fc": lin(4 * C, C), "out": lin(C, 4 * C)}
    return p


def block(lib, x, p, mask, H):
    """x (B, T, C) -> (B, T, C). `lib` is a namespace with linear/layer_norm/softmax/gelu."""
    B, T, C = x.shape
    hd = C // H
    h = lib.layer_norm(x, [C], *p["ln1"])
    qkv = lib.linear(h, *p["qkv"]).view(B, T, 3, H, hd).permute(2, 0, 3, 1, 4)  # (3, B, H, T, hd)
    q, k, v = qkv[0], qkv[1], qkv[2]
    att = (q @ k.transpose(-2, -1)) * (1.0 / hd ** 0.5) + mask  # (B, H, T, T)
    att = lib.softmax(att, -1)
    y = (att @ v).transpose(1, 2).reshape(B, T, C)
    x = x + lib.linear(y, *p["proj"])
    h = lib.layer_norm(x, [C], *p["ln2"])
    return x + lib.linear(lib.gelu(lib.linear(h, *p["fc"])), *p["out"])


class _VtLib:
    linear = staticmethod(vt.linear)
    layer_norm = staticmethod(vt.layer_norm)
    softmax = staticmethod(vt.softmax)
    gelu = staticmethod(lambda x: vt.ops.core.gelu(x))


class _TorchLib:
    linear = staticmethod(F.linear) if torch else None
    layer_norm = staticmethod(F.layer_norm) if torch else None
    softmax = staticmethod(torch.softmax) if torch else None
    gelu = staticmethod(F.gelu) if torch else None


def bench_block(rng, repeat, B=16, T=256, C=384, H=6):
    pn = block_params(rng, C)
    xn = rng.standard_normal((B, T, C)).astype(np.float32)
    maskn = np.triu(np.full((T, T), -np.inf, np.float32), 1)

    pv = {k: [vt.tensor(a).requires_grad_() for a in v] for k, v in pn.items()}
    xv = vt.tensor(xn).requires_grad_()
    mv = vt.tensor(maskn)

    def step_vt():
        for v in pv.values():
            for t in v:
                t.grad = None
        block(_VtLib, xv, pv, mv, H).sum().backward()

    t_vt = best(step_vt, repeat)
    t_torch = None
    if torch:
        pt = {k: [torch.tensor(a, requires_grad=True) for a in v] for k, v in pn.items()}
        xt = torch.tensor(xn, requires_grad=True)
        mt = torch.from_numpy(maskn)

        def step_torch():
            for v in pt.values():
                for t in v:
                    t.grad = None
            block(_TorchLib, xt, pt, mt, H).sum().backward()

        t_torch = best(step_torch, repeat)
        # the two agree (same weights): a correctness guard on what is being timed
        np.testing.assert_allclose(block(_VtLib, xv, pv, mv, H).detach().numpy(),
                                   block(_TorchLib, xt, pt, mt, H).detach().numpy(), rtol=2e-3, atol=2e-3)
    row(f"transformer block fwd+bwd B={B} T={T} C={C}", t_vt, t_torch)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    args = ap.parse_args()
    repeat = 3 if args.quick else 7
    n = vt.get_num_threads()
    if torch:
        torch.set_num_threads(n)
    print(f"threads: vt {n}, torch {torch.get_num_threads() if torch else '-'}; numpy uses its own BLAS pool; "
          f"torch {torch.__version__ if torch else 'not importable'} ({torch.backends.cpu.get_cpu_capability() if torch else ''})")
    rng = np.random.default_rng(0)
    for fn in (bench_elementwise, bench_nn, bench_matmul, bench_cross_entropy, bench_block):
        try:
            fn(rng, repeat)
        except Exception as e:  # a family that is not there yet: say so and go on
            print(f"{fn.__name__}: could not run: {type(e).__name__}: {e}", flush=True)


if __name__ == "__main__":
    main()
