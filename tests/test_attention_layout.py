"""attention::sdpa's output layouts (the meta steps in ops/attention/src/pack.cpp, the rules in
attn.hpp), for every provider on every available device:

- out is dense with its dims in q's memory order: miniGPT's head-transposed q (a view of the
  (B, T, 3C) projection) gives an out whose transpose(1, 2) is contiguous, so the caller's
  `.transpose(1, 2).contiguous()` copies nothing; a contiguous q gives a contiguous out.
- dq, dk, dv of packed q, k, v (the three slices of one projection that split(C, dim=2), view and
  transpose make) are the same slices of one new buffer, so the backward of the split is a view
  of it (no cat) and the views' backwards are free reshapes; any other q, k, v get gradients dense
  in their own memory order.
- the values stay right whatever the layout (float64 numpy reference, torch where importable),
  and the meta device gives the same sizes and strides as cpu.
"""
from __future__ import annotations

import contextlib

import numpy as np
import pytest

import vibetensor as vt
from vibetensor._attention import scaled_dot_product_attention as sdpa
from conftest import device_providers, providers, to_numpy

try:
    import torch
except ImportError:
    torch = None

OP = "attention::sdpa"
BACKWARD = "attention::sdpa_backward"
DEVICE_PROVIDERS = device_providers(OP)
DTYPES = {"float32": (vt.float32, 2e-5), "bfloat16": (vt.bfloat16, 2e-2)}  # dtype, relative tolerance
# (B, T, H, D): one the CUDA kernels take (D 64, T past a tile), one tiny and odd
SHAPES = [(2, 70, 2, 64), (1, 5, 3, 5)]
COPIES = {"core::cat", "core::contiguous", "core::clone", "core::copy_"}


def serves(device, provider, D, dtype):
    """whether `provider` computes such a call itself (the hopper provider declines the rest, and
    pinned to it the decline is the caller's error); every other provider serves every call"""
    return provider != "hopper" or (D in (64, 128) and dtype == "bfloat16")


@contextlib.contextmanager
def pinned(provider, device):
    """both ops on `provider` (the backward rule calls sdpa_backward through the dispatcher)"""
    assert provider in providers(BACKWARD, device), f"{provider} has no {BACKWARD} on {device}"
    with vt.ops.use(OP, provider, device), vt.ops.use(BACKWARD, provider, device):
        yield


def tensor(a, dtype, device, grad=False):
    t = vt.tensor(a.astype(np.float32)).to(dtype)
    t = t.to(device) if device != "cpu" else t
    return t.requires_grad_() if grad else t


def heads(x, B, T, H, D):
    """miniGPT's (and nanoGPT's) q, k, v: split(C, dim=2) of the (B, T, 3C) projection, each viewed
    (B, T, H, D) and transposed to (B, H, T, D)"""
    return tuple(p.view(B, T, H, D).transpose(1, 2) for p in x.split(H * D, dim=2))


# ---- float64 reference ---------------------------------------------------------------------------
def ref_forward(q, k, v):
    s = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    s = np.where(np.triu(np.ones(s.shape[-2:], bool), 1), -np.inf, s)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return p @ v, p


def ref_backward(q, k, v, g):
    """dq, dk, dv of sum(out * g), causal"""
    _, p = ref_forward(q, k, v)
    dp = g @ np.swapaxes(v, -1, -2)
    ds = p * (dp - (dp * p).sum(-1, keepdims=True)) / np.sqrt(q.shape[-1])
    return ds @ k, np.swapaxes(ds, -1, -2) @ q, np.swapaxes(p, -1, -2) @ g


def ref_minigpt(x, g, H):
    """out and d(sum(y * g))/dx of miniGPT's attention on x (B, T, 3C), y (B, T, C)"""
    B, T, C3 = x.shape
    C = C3 // 3
    q, k, v = (x[..., i * C:(i + 1) * C].reshape(B, T, H, -1).transpose(0, 2, 1, 3) for i in range(3))
    out, _ = ref_forward(q, k, v)
    go = g.reshape(B, T, H, -1).transpose(0, 2, 1, 3)
    grads = ref_backward(q, k, v, go)
    return out, np.concatenate([d.transpose(0, 2, 1, 3).reshape(B, T, C) for d in grads], axis=-1)


def calls(records):
    """[(op, [ops it called])] of the top-level calls of a trace (a call's nested calls are
    recorded before it, as they finish first)"""
    out, nested = [], []
    for r in records:
        if r.depth == 0:
            out.append((r.op, nested))
            nested = []
        else:
            nested.append(r.op)
    return out


def assert_close(got, want, tol, what):
    got = to_numpy(got).astype(np.float64)
    err = np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-30)
    assert err <= tol, f"{what}: relative error {err:.2e} > {tol:.0e}"


# ---- (a), (b): miniGPT's packed q, k, v ---------------------------------------------------------
@pytest.mark.parametrize("device,provider", DEVICE_PROVIDERS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", list(DTYPES))
def test_minigpt_attention_packed(device, provider, shape, dtype):
    """miniGPT's attention forward + backward: out's transpose(1, 2) is contiguous (the
    `.contiguous()` after it copies nothing), the gradient of the (B, T, 3C) projection is the
    buffer sdpa_backward wrote (no cat, no copy anywhere in the backward), values as float64"""
    B, T, H, D = shape
    if not serves(device, provider, D, dtype):
        pytest.skip(f"{provider} declines D = {D} {dtype} (flash serves it)")
    C = H * D
    vdt, tol = DTYPES[dtype]
    rng = np.random.default_rng(B * 1000 + T)
    x = tensor(rng.standard_normal((B, T, 3 * C)), vdt, device, grad=True)
    g = tensor(rng.standard_normal((B, T, C)), vdt, device)
    with pinned(provider, device):
        q, k, v = heads(x, B, T, H, D)
        out = sdpa(q, k, v, is_causal=True)
        assert out.shape == (B, H, T, D)
        assert out.transpose(1, 2).is_contiguous(), out.stride()
        with vt.ops.trace() as fwd:
            y = out.transpose(1, 2).contiguous().view(B, T, C)
        assert not {r.op for r in fwd.records} & COPIES, [r.op for r in fwd.records]
        loss = (y.float() * g.float()).sum()
        with vt.ops.trace() as bwd:
            (gx,) = vt.autograd.grad(loss, [x])
    # outside the attention's own compute (whose provider may copy into its outputs) nothing
    # copied: the views' backwards reshaped in place, the split's backward joined the three
    # gradients as one view (core::as_strided) instead of a cat
    top = calls(bwd.records)
    ops = [op for op, _ in top]
    assert BACKWARD in ops and "core::as_strided" in ops, ops
    for op, nested in top:
        assert op == BACKWARD or not ({op, *nested} & COPIES), f"the backward copied: {top}"
    assert gx.shape == (B, T, 3 * C) and gx.is_contiguous()
    out_ref, gx_ref = ref_minigpt(to_numpy(x), to_numpy(g), H)
    assert_close(out, out_ref, tol, "out")
    assert_close(gx, gx_ref, tol, "x.grad")
    if torch is not None:  # the same through torch in float64
        tx = torch.tensor(to_numpy(x), requires_grad=True)
        tq, tk, tv = (p.view(B, T, H, D).transpose(1, 2) for p in tx.split(C, dim=2))
        ty = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, is_causal=True)
        (ty.transpose(1, 2).reshape(B, T, C) * torch.tensor(to_numpy(g))).sum().backward()
        assert_close(out, ty.detach().numpy(), tol, "out vs torch")
        assert_close(gx, tx.grad.numpy(), tol, "x.grad vs torch")


@pytest.mark.parametrize("device,provider", DEVICE_PROVIDERS)
def test_packed_gradients_are_one_buffer(device, provider):
    """sdpa_backward called on packed q, k, v: dq, dk, dv are the slices of one (B, T, 3C) buffer
    with q, k, v's strides, C elements apart — so split's backward joins them as a view of it"""
    B, T, H, D = 2, 70, 2, 64
    C = H * D
    rng = np.random.default_rng(5)
    x = tensor(rng.standard_normal((B, T, 3 * C)), vt.bfloat16, device)
    q, k, v = heads(x, B, T, H, D)
    with pinned(provider, device):
        out, lse, _ = vt.ops.Op(OP)(q, k, v, None, True, None, 0.0)
        go = out.transpose(1, 2).contiguous().transpose(1, 2)  # out's layout, as the view backward gives it
        dq, dk, dv = vt.ops.Op(BACKWARD)(go, q, k, v, out, lse, None, True, D ** -0.5, 0.0, 0, 0)
    es = dq.element_size()
    for d in (dq, dk, dv):
        assert d.shape == q.shape and d.stride() == q.stride() == (T * 3 * C, D, 3 * C, 1)
    assert dk.data_ptr() - dq.data_ptr() == C * es and dv.data_ptr() - dk.data_ptr() == C * es
    # the three tile the buffer: viewed whole it is the (B, T, 3C) gradient of x
    whole = dq.transpose(1, 2).reshape(B, T, C)
    assert whole.stride() == (T * 3 * C, 3 * C, 1)
    xg = ref_backward(*(to_numpy(t).astype(np.float64) for t in (q, k, v, go)))
    for name, got, want in zip(("dq", "dk", "dv"), (dq, dk, dv), xg):
        assert_close(got, want, 2e-2, name)


# ---- (c): other layouts ----------------------------------------------------------------------------
def layouts(device, dtype, B=2, T=70, H=2, D=64):
    """q, k, v that are not packed, and what each gradient's layout must be (a view of it that is
    contiguous): (name, q, k, v, out_view, grad_views) with *_view(t) -> the view to test"""
    C = H * D
    rng = np.random.default_rng(11)
    bhtd = lambda t: t  # noqa: E731
    bthd = lambda t: t.transpose(1, 2)  # noqa: E731
    bhdt = lambda t: t.transpose(-1, -2)  # noqa: E731
    mk = lambda *s: tensor(rng.standard_normal(s), dtype, device)  # noqa: E731
    cases = [("contiguous", mk(B, H, T, D), mk(B, H, T, D), mk(B, H, T, D), bhtd, (bhtd, bhtd, bhtd))]
    # q with the time dim innermost (a (B, H, D, T) buffer transposed): out follows it
    q = mk(B, H, D, T).transpose(-1, -2)
    cases.append(("q_time_inner", q, mk(B, H, T, D), mk(B, H, T, D), bhdt, (bhdt, bhtd, bhtd)))
    # k and v from one (B, T, 2C) projection, q on its own: not packed, each in its own order
    kv = mk(B, T, 2 * C)
    k, v = (p.view(B, T, H, D).transpose(1, 2) for p in kv.split(C, dim=2))
    cases.append(("kv_split", mk(B, H, T, D), k, v, bhtd, (bhtd, bthd, bthd)))
    # one (B, T, 3C) projection with its pieces taken in another order (k, q, v): not packed
    kk, qq, vv = heads(mk(B, T, 3 * C), B, T, H, D)
    cases.append(("qkv_reordered", qq, kk, vv, bthd, (bthd, bthd, bthd)))
    # a permuted arrangement: memory (T, B, H, D)
    tb = lambda: mk(T, B, H, D).permute(1, 2, 0, 3)  # noqa: E731
    tbhd = lambda t: t.permute(2, 0, 1, 3)  # noqa: E731
    cases.append(("time_outer", tb(), tb(), tb(), tbhd, (tbhd, tbhd, tbhd)))
    # k broadcast over the heads (stride 0 says nothing of the arrangement): dk contiguous
    cases.append(("k_broadcast", mk(B, H, T, D), mk(B, 1, T, D).expand(B, H, T, D), mk(B, H, T, D), bhtd,
                  (bhtd, bhtd, bhtd)))
    return cases


@pytest.mark.parametrize("device,provider", DEVICE_PROVIDERS)
def test_other_layouts(device, provider):
    """q, k, v that are not packed: out dense in q's order, each gradient dense in its input's
    order (never one buffer), values as float64"""
    dtype = "bfloat16" if provider == "hopper" else "float32"
    vdt, tol = DTYPES[dtype]
    for name, q, k, v, out_view, grad_views in layouts(device, vdt):
        B, H, T, D = q.shape
        if provider == "hopper" and name in ("q_time_inner", "k_broadcast"):
            continue  # layouts for flash (TMA needs a unit stride along D and reads no stride-0 dims)
        go = tensor(np.random.default_rng(3).standard_normal((B, H, T, D)), vdt, device)
        with pinned(provider, device):
            out, lse, _ = vt.ops.Op(OP)(q, k, v, None, True, None, 0.0)
            grads = vt.ops.Op(BACKWARD)(go, q, k, v, out, lse, None, True, D ** -0.5, 0.0, 0, 0)
        assert out_view(out).is_contiguous(), (name, out.stride())
        assert lse.is_contiguous(), name
        for gname, gr, inp, view in zip(("dq", "dk", "dv"), grads, (q, k, v), grad_views):
            assert gr.shape == inp.shape and view(gr).is_contiguous(), (name, gname, gr.stride())
        qa, ka, va, ga = (to_numpy(t).astype(np.float64) for t in (q, k, v, go))
        assert_close(out, ref_forward(qa, ka, va)[0], tol, f"{name} out")
        for gname, gr, want in zip(("dq", "dk", "dv"), grads, ref_backward(qa, ka, va, ga)):
            assert_close(gr, want, tol, f"{name} {gname}")


# ---- (d): meta ---------------------------------------------------------------------------------------
def on_meta(t):
    """a meta tensor of t's sizes, strides and storage offset (a view of a meta buffer as long)"""
    span = t.storage_offset() + 1 + sum((n - 1) * s for n, s in zip(t.shape, t.stride()))
    return vt.empty(span, dtype=t.dtype, device="meta").as_strided(t.shape, t.stride(), t.storage_offset())


def test_meta_gives_the_cpu_layouts():
    """the meta step decides the layouts: on meta the same sizes and strides as on cpu, and the
    packed gradients the same slices of one buffer"""
    B, T, H, D = 2, 9, 3, 4
    C = H * D
    x = tensor(np.random.default_rng(1).standard_normal((B, T, 3 * C)), vt.float32, "cpu")
    xm = on_meta(x)
    cases = [("packed", heads(x, B, T, H, D), heads(xm, B, T, H, D))]
    for name, q, k, v, *_ in layouts("cpu", vt.float32, B, T, H, D):
        cases.append((name, (q, k, v), tuple(map(on_meta, (q, k, v)))))
    for name, cpu, meta in cases:
        res = {}
        for dev, (q, k, v) in (("cpu", cpu), ("meta", meta)):
            out, lse, rng = vt.ops.Op(OP)(q, k, v, None, True, None, 0.0)
            go = vt.zeros(out.shape, dtype=out.dtype, device=dev)
            grads = vt.ops.Op(BACKWARD)(go, q, k, v, out, lse, None, True, D ** -0.5, 0.0, 0, 0)
            res[dev] = [(t.shape, t.stride()) for t in (out, lse, rng, *grads)]
            if name == "packed":  # on meta the addresses are the storage offsets
                res[dev].append(tuple(g.data_ptr() - grads[0].data_ptr() for g in grads))
            assert all(t.device.type == dev for t in (out, lse, rng, *grads))
        assert res["meta"] == res["cpu"], name
        if name == "packed":
            assert res["cpu"][-1] == (0, C * 4, 2 * C * 4) and res["cpu"][0] == ((B, H, T, D), (T * H * D, D, H * D, 1))
