"""core::add_layer_norm (sum = input + residual, out = layer_norm(sum), one fused op) and its
backward op: against numpy float64 with mixed input dtypes on every device, against torch
(`x + r` then F.layer_norm), float64 gradcheck of every gradient with grad_sum and grad_out each
present and absent, the meta device, bad input, autocast, nn.LayerNorm's residual argument, and on
cuda the row kernels' paths (warp, block, rows longer than a chunk, unaligned rows) against cpu."""
from __future__ import annotations

import numpy as np
import pytest

import vibetensor as vt
from conftest import DEVICES, TOL, assert_close, dname, to_numpy, torch_tensor, vt_from

CUDA = "cuda" in DEVICES
# (input, residual, out_dtype): the miniGPT case (a float32 stream plus a bfloat16 branch), every
# dtype alone, and residual wider than input (the kernels swap the operands)
MIXES = [("float32", "bfloat16", "bfloat16"), ("float32", "bfloat16", None), ("float32", "float16", "float16"),
         ("float32", "float32", None), ("float32", "float32", "bfloat16"), ("bfloat16", "float32", None),
         ("float16", "float32", "float32"), ("bfloat16", "bfloat16", None), ("float16", "float16", None),
         ("float64", "float64", None)]


def promoted(a, b):
    if a == b:
        return a
    bits = {"float64": 64, "float32": 32, "float16": 16, "bfloat16": 16}
    return a if bits[a] > bits[b] else b if bits[b] > bits[a] else "float32"


def np_layer_norm(s, n, w=None, b=None, eps=1e-5):
    ax = tuple(range(s.ndim - n, s.ndim))
    mu = s.mean(axis=ax, keepdims=True)
    y = (s - mu) / np.sqrt(((s - mu) ** 2).mean(axis=ax, keepdims=True) + eps)
    return y * (1 if w is None else w) + (0 if b is None else b)


def rand(rng, shape, dtype, device="cpu"):
    """(vt tensor, its values in float64): values exactly representable in dtype"""
    t = vt_from(rng.standard_normal(shape), dtype, device)
    return t, to_numpy(t).astype(np.float64)


@pytest.mark.parametrize("mix", MIXES, ids=lambda m: "-".join(str(d) for d in m))
@pytest.mark.parametrize("shape,n", [((4, 8), 1), ((2, 3, 5), 2), ((3, 384), 1), ((0, 4), 1), ((2, 7), 1)],
                         ids=str)
@pytest.mark.parametrize("affine", [True, False])
def test_forward_against_numpy(rng, device, mix, shape, n, affine):
    xd, rd, od = mix
    sd = promoted(xd, rd)
    ns = list(shape[len(shape) - n:])
    x, xn = rand(rng, shape, xd, device)
    r, rn = rand(rng, shape, rd, device)
    w, wn = rand(rng, ns, sd, device) if affine else (None, None)
    b, bn = rand(rng, ns, sd, device) if affine else (None, None)
    s, y = vt.add_layer_norm(x, r, ns, w, b, out_dtype=od)
    assert_close(s, xn + rn, sd, msg="sum")
    # out is the norm of the sum as stored (rounded to its dtype), computed in float32 or wider
    want = np_layer_norm(to_numpy(s).astype(np.float64), n, wn, bn)
    assert_close(y, want, od or sd, scale=8, msg="out")
    _, _, mean, rstd = vt.ops.core.add_layer_norm(x, r, ns, w, b, 1e-5, None if od is None else getattr(vt, od))
    stat = "float64" if sd == "float64" else "float32"
    assert dname(mean.dtype) == stat and tuple(mean.shape) == tuple(shape[:len(shape) - n]) + (1,) * n
    assert dname(rstd.dtype) == stat


def test_strided_inputs(rng, device):
    base, bn = rand(rng, (6, 10), "float32", device)
    x, xn = base[:, 1:9], bn[:, 1:9]                                 # a sliced view
    r, rn = rand(rng, (8, 6), "bfloat16", device)
    r, rn = r.t(), rn.T                                              # a transposed one
    s, y = vt.add_layer_norm(x, r, 8)
    assert_close(s, xn + rn, "float32")
    assert_close(y, np_layer_norm(xn + rn, 1), "float32", scale=8)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_against_torch(rng, device, torch, dtype):
    if torch is None:
        pytest.skip("torch is not installed")
    import torch.nn.functional as F
    x, xn = rand(rng, (3, 5, 16), dtype, device)
    r, rn = rand(rng, (3, 5, 16), dtype, device)
    w, wn = rand(rng, (16,), dtype, device)
    b, bn = rand(rng, (16,), dtype, device)
    s, y = vt.add_layer_norm(x, r, 16, w, b, 1e-6)
    ts = torch_tensor(xn, dtype) + torch_tensor(rn, dtype)
    ty = F.layer_norm(ts, (16,), torch_tensor(wn, dtype), torch_tensor(bn, dtype), 1e-6)
    assert_close(s, to_numpy(ts), dtype)
    assert_close(y, to_numpy(ty), dtype, scale=8)


def _leaf(rng, *shape):
    return vt.tensor(rng.standard_normal(shape)).requires_grad_()


@pytest.mark.parametrize("grads", ["both", "sum_only", "out_only"])
@pytest.mark.parametrize("affine", ["weight_bias", "weight", "bias", "none"])
def test_gradcheck(rng, grads, affine):
    x, r = _leaf(rng, 3, 2, 5), _leaf(rng, 3, 2, 5)
    w = _leaf(rng, 5) if affine in ("weight_bias", "weight") else None
    b = _leaf(rng, 5) if affine in ("weight_bias", "bias") else None
    gs = vt.tensor(rng.standard_normal((3, 2, 5)))  # weights that make sum's and out's gradients differ
    go = vt.tensor(rng.standard_normal((3, 2, 5)))

    def f(x, r, *wb):
        wb = list(wb)
        ww = wb.pop(0) if w is not None else None
        bb = wb.pop(0) if b is not None else None
        s, y = vt.add_layer_norm(x, r, 5, ww, bb)
        return {"both": (s * gs, y * go), "sum_only": (s * gs,), "out_only": (y * go,)}[grads]

    assert vt.autograd.gradcheck(f, [x, r] + [t for t in (w, b) if t is not None])


def test_gradcheck_two_normalized_dims(rng):
    assert vt.autograd.gradcheck(lambda x, r, w: vt.add_layer_norm(x, r, [2, 3], w),
                                 [_leaf(rng, 2, 2, 3), _leaf(rng, 2, 2, 3), _leaf(rng, 2, 3)])


@pytest.mark.parametrize("mix", [("float32", "bfloat16", "bfloat16"), ("bfloat16", "float32", None),
                                 ("float32", "float16", "float32"), ("bfloat16", "bfloat16", None)],
                         ids=lambda m: "-".join(str(d) for d in m))
def test_mixed_gradients_against_numpy(rng, device, mix):
    """grad_input and grad_residual are the same g in each operand's dtype; g against float64."""
    xd, rd, od = mix
    sd = promoted(xd, rd)
    x, _ = rand(rng, (6, 24), xd, device)
    r, _ = rand(rng, (6, 24), rd, device)
    w, wn = rand(rng, (24,), sd, device)
    b, _ = rand(rng, (24,), sd, device)
    for t in (x, r, w, b):
        t.requires_grad_()
    s, y = vt.add_layer_norm(x, r, 24, w, b, out_dtype=od)
    gs, gsn = rand(rng, (6, 24), sd, device)
    go, gon = rand(rng, (6, 24), od or sd, device)
    ((s * gs).sum() + (y.to(go.dtype) * go).sum()).backward()
    sn = to_numpy(s).astype(np.float64)
    mu = sn.mean(1, keepdims=True)
    rs = 1 / np.sqrt(((sn - mu) ** 2).mean(1, keepdims=True) + 1e-5)
    xh = (sn - mu) * rs
    gw = gon * wn
    g = gsn + rs * (gw - gw.mean(1, keepdims=True) - xh * (gw * xh).mean(1, keepdims=True))
    assert x.grad.dtype is x.dtype and r.grad.dtype is r.dtype
    assert_close(x.grad, g, xd, scale=8, msg="grad_input")
    assert_close(r.grad, g, rd, scale=8, msg="grad_residual")
    assert_close(w.grad, (gon * xh).sum(0), sd, scale=16, msg="grad_weight")
    assert_close(b.grad, gon.sum(0), sd, scale=16, msg="grad_bias")


def test_backward_op_without_gradients(rng):
    x, r = vt.randn(3, 4), vt.randn(3, 4).to(vt.bfloat16)
    s, _, mean, rstd = vt.ops.core.add_layer_norm(x, r, [4], vt.ones(4), vt.zeros(4))
    gi, gr, gw, gb = vt.ops.core.add_layer_norm_backward(None, None, s, [4], mean, rstd, vt.float32,
                                                         vt.bfloat16, vt.ones(4), vt.zeros(4))
    assert gi.dtype is vt.float32 and gr.dtype is vt.bfloat16
    assert not gi.numpy().any() and not gw.numpy().any() and not gb.numpy().any()


def test_meta():
    x, r = vt.empty(2, 3, 8, device="meta"), vt.empty(2, 3, 8, dtype=vt.bfloat16, device="meta")
    w = vt.empty(8, device="meta")
    s, y, mean, rstd = vt.ops.core.add_layer_norm(x, r, [8], w, w, 1e-5, vt.bfloat16)
    assert (s.shape, s.dtype, y.shape, y.dtype) == ((2, 3, 8), vt.float32, (2, 3, 8), vt.bfloat16)
    assert mean.shape == (2, 3, 1) and rstd.dtype is vt.float32 and s.device.type == "meta"
    gi, gr, gw, gb = vt.ops.core.add_layer_norm_backward(s, y, s, [8], mean, rstd, vt.float32, vt.bfloat16, w, None)
    assert (gi.dtype, gr.dtype, gw.shape, gb.shape) == (vt.float32, vt.bfloat16, (8,), (0,))
    with pytest.raises(ValueError, match=r"\[core::add_layer_norm\] input \(2, 3, 8\) and residual"):
        vt.ops.core.add_layer_norm(x, vt.empty(2, 8, device="meta"), [8])


@pytest.mark.parametrize("device_", ["cpu", "meta"])
def test_bad_input(device_):
    d = device_
    x = vt.zeros(3, 4, device=d)
    with pytest.raises(ValueError, match=r"\[core::add_layer_norm\] input \(3, 4\) and residual \(3, 5\) "
                                         r"must have the same shape"):
        vt.add_layer_norm(x, vt.zeros(3, 5, device=d), 4)
    with pytest.raises(ValueError, match=r"\[core::add_layer_norm\] normalized_shape \(5,\) does not match"):
        vt.add_layer_norm(x, x, 5)
    with pytest.raises(ValueError, match=r"\[core::add_layer_norm\] weight must have shape normalized_shape"):
        vt.add_layer_norm(x, x, 4, vt.ones(3, device=d))
    with pytest.raises(TypeError, match=r"\[core::add_layer_norm\] residual must have a floating dtype"):
        vt.add_layer_norm(x, vt.zeros(3, 4, dtype=vt.int64, device=d), 4)
    with pytest.raises(TypeError, match=r"\[core::add_layer_norm\].*weight"):  # weight: the sum's dtype
        vt.add_layer_norm(x, x.to(vt.bfloat16), 4, vt.ones(4, dtype=vt.bfloat16, device=d))
    with pytest.raises(TypeError, match=r"\[core::add_layer_norm\] out_dtype must be a floating dtype"):
        vt.add_layer_norm(x, x, 4, out_dtype=vt.int32)


def test_autocast(device):
    """Inputs are not cast; out comes in the autocast dtype, with the values of a float32
    layer_norm of the sum followed by a cast."""
    rng = np.random.default_rng(0)
    x, _ = rand(rng, (4, 32), "float32", device)
    r, _ = rand(rng, (4, 32), "bfloat16", device)
    w, _ = rand(rng, (32,), "float32", device)
    with vt.autocast(device, dtype=vt.bfloat16):
        s, y = vt.add_layer_norm(x, r, 32, w)
        _, y32 = vt.add_layer_norm(x, r, 32, w, out_dtype=vt.float32)  # an explicit out_dtype stays
        _, y64 = vt.add_layer_norm(x.double(), r.double(), 32, w.double())  # float64 is never lowered
    assert y64.dtype is vt.float64
    assert s.dtype is vt.float32 and y.dtype is vt.bfloat16 and y32.dtype is vt.float32
    ref = vt.layer_norm(x + r.float(), [32], w).to(vt.bfloat16)
    np.testing.assert_allclose(to_numpy(y), to_numpy(ref), rtol=TOL["bfloat16"][0], atol=TOL["bfloat16"][1])
    if device == "cpu":  # the same arithmetic as layer_norm's: the same bits
        np.testing.assert_array_equal(to_numpy(y), to_numpy(ref))


def test_layer_norm_module_residual(rng, device):
    ln = vt.nn.LayerNorm(8).to(device)
    x, xn = rand(rng, (2, 8), "float32", device)
    r, rn = rand(rng, (2, 8), "float32", device)
    s, y = ln(x, residual=r)
    assert_close(s, xn + rn, "float32")
    assert_close(y, to_numpy(ln(x + r)), "float32", scale=8)
    assert ln(x).shape == (2, 8)  # without a residual: a tensor, as torch


# -- the cuda row kernels -----------------------------------------------------------------------------

def test_row_kernels_in_host_emulation(tmp_path):
    """ops/core/cuda/add_norm_rows.cuh compiled for the host (threads emulated, the plans
    add_norm.cu launches) against float64: warp and block plans, several chunks, tails, misaligned
    rows, the dtype mixes, grad_sum / grad_out absent, the fused grad_weight/grad_bias partials."""
    import subprocess

    import host_emulation
    exe = host_emulation.build("ops/core/lab/add_norm_emulate.cpp", tmp_path / "add_norm_emulate",
                               "VT_ROWWISE_EMULATE", ["ops/core/lab"])
    run = subprocess.run([str(exe)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    assert run.returncode == 0 and "all cases passed" in run.stdout, run.stdout
    assert "M 520 N 384 shift 0 f32+bf16->bf16 bwd warp tpr 32 chunks 1 vec 1 gs go grad_weight" in run.stdout
    assert "chunks 2 vec 0" in run.stdout and "warp tpr 1 " in run.stdout
    # the lean kernels, against float64 like v1, and on the host (no contraction) v1's very bits
    assert "ok   M 520 N 384 shift 0 f32+bf16->bf16 fwd lean K 3 out" in run.stdout
    assert "ok   M 520 N 384 shift 0 f32+bf16->bf16 bwd lean K 3 gs go grad_weight" in run.stdout
    infos = [line for line in run.stdout.splitlines() if line.startswith("info ") and "from v1" in line]
    assert len(infos) >= 8 and all(line.count(" 0.0") == 2 for line in infos), infos



needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device")


@needs_cuda
@pytest.mark.parametrize("rows,n", [(64 * 256, 384), (7, 384), (300, 2048), (3, 20000), (33, 130), (5, 3)],
                         ids=str)
@pytest.mark.parametrize("mix", [("float32", "bfloat16", "bfloat16"), ("float32", "float32", None),
                                 ("bfloat16", "float32", "float16"), ("bfloat16", "bfloat16", None)],
                         ids=lambda m: "-".join(str(d) for d in m))
def test_cuda_paths_against_cpu(rng, rows, n, mix):
    """warp plans (n 384, 130, 3), block plans (2048), a row longer than a chunk (20000), rows that
    are not a multiple of the 4-element slot (130, 3: scalar accesses), forward and backward."""
    xd, rd, od = mix
    sd = promoted(xd, rd)
    x, _ = rand(rng, (rows, n), xd)
    r, _ = rand(rng, (rows, n), rd)
    w, _ = rand(rng, (n,), sd)
    b, _ = rand(rng, (n,), sd)
    gs, _ = rand(rng, (rows, n), sd)
    go, _ = rand(rng, (rows, n), od or sd)
    results = {}
    for dev in ("cpu", "cuda"):
        leaves = [t.detach().to(dev).requires_grad_() for t in (x, r, w, b)]
        s, y = vt.add_layer_norm(*leaves[:2], n, *leaves[2:], out_dtype=od)
        ((s * gs.to(dev)).sum() + (y.to(go.dtype) * go.to(dev)).sum()).backward()
        results[dev] = [s, y] + [t.grad for t in leaves]
    for name, a, c in zip(["sum", "out", "grad_input", "grad_residual", "grad_weight", "grad_bias"],
                          results["cuda"], results["cpu"]):
        assert a.dtype is c.dtype, name
        assert_close(a, to_numpy(c), c.dtype, scale=16 if name.startswith("grad_w") or name == "grad_bias" else 4,
                     msg=name)


@needs_cuda
def test_cuda_deterministic(rng):
    x = vt_from(rng.standard_normal((4096, 384)), "float32", "cuda").requires_grad_()
    r = vt_from(rng.standard_normal((4096, 384)), "bfloat16", "cuda").requires_grad_()
    w = vt.ones(384, device="cuda").requires_grad_()
    b = vt.zeros(384, device="cuda").requires_grad_()
    go = vt_from(rng.standard_normal((4096, 384)), "bfloat16", "cuda")
    runs = []
    for _ in range(2):
        for t in (x, r, w, b):
            t.grad = None
        s, y = vt.add_layer_norm(x, r, 384, w, b, out_dtype=vt.bfloat16)
        ((y * go).float().sum() + s.sum()).backward()
        runs.append([to_numpy(t) for t in (s, y, x.grad, r.grad, w.grad, b.grad)])
    for a, c in zip(*runs):
        np.testing.assert_array_equal(a, c)


_PLAN_RUN = """
import sys, numpy as np, vibetensor as vt
rng = np.random.default_rng(3)
def t(shape, dtype):
    return vt.tensor(rng.standard_normal(shape)).to(getattr(vt, dtype)).to("cuda")
x, r, go = t((4096, 384), "float32").requires_grad_(), t((4096, 384), "bfloat16").requires_grad_(), t((4096, 384), "bfloat16")
w, b, gs = t((384,), "float32").requires_grad_(), t((384,), "float32").requires_grad_(), t((4096, 384), "float32")
s, y = vt.add_layer_norm(x, r, 384, w, b, out_dtype=vt.bfloat16)
((y * go).float().sum() + (s * gs).sum()).backward()
np.savez(sys.argv[1], *[t.float().cpu().numpy() for t in (s, y, x.grad, r.grad, w.grad, b.grad)])
"""


@needs_cuda
def test_cuda_lean_kernels_match_v1(tmp_path):
    """The lean kernels (the default) and v1 (VT_ADD_NORM_PLAN=v1) on miniGPT's rows: the same plan
    and order, so within a rounding step or so of each other (nvcc contracts their multiply-adds
    differently); each is also checked against float64 by the tests above."""
    import os
    import subprocess
    import sys
    outs = []
    for plan in ("v1", "v2"):
        out = tmp_path / f"{plan}.npz"
        subprocess.run([sys.executable, "-c", _PLAN_RUN, str(out)], check=True,
                       env={**os.environ, "VT_ADD_NORM_PLAN": plan})
        outs.append(np.load(out))
    # sum: float32 adds of the same operands, exact; the rest: 2 steps of their dtype (bf16 out and
    # grad_residual; float32 grads, grad_weight/grad_bias summed over 4096 rows)
    steps = {"arr_0": 0, "arr_1": 2 * 2.0 ** -7, "arr_2": 4 * 2.0 ** -23, "arr_3": 2 * 2.0 ** -7,
             "arr_4": 64 * 2.0 ** -23, "arr_5": 64 * 2.0 ** -23}
    for k in outs[0].files:
        a, b = outs[0][k], outs[1][k]
        np.testing.assert_allclose(a, b, rtol=steps[k], atol=steps[k] * np.abs(a).max(), err_msg=k)
