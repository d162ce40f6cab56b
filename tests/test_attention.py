"""The attention pack (ops/attention): attention::sdpa's two providers ("flash", fused and tiled;
"composed", from core ops) against a float64 numpy reference and torch, the fused backward
(attention::sdpa_backward through the op's one backward rule) with gradcheck and against torch's
gradients, dropout's reproducibility, provider swapping, and bad input.

Every provider meets the same checks: tests that take `device, provider` run once per provider on
every available device (conftest's `device_providers`: `vt.ops.providers(op, device)`).
"""
from __future__ import annotations

import contextlib

import numpy as np
import pytest

import vibetensor as vt
from vibetensor._attention import scaled_dot_product_attention as sdpa
from conftest import device_providers, on, to_numpy

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    torch = None

OP = "attention::sdpa"
PROVIDERS = ["flash", "composed"]  # on cpu
DEVICE_PROVIDERS = device_providers(OP)
needs_torch = pytest.mark.skipif(torch is None, reason="torch is not importable")


def op():
    return vt.ops.Op("attention::sdpa")


def T(a, device="cpu"):
    """a numpy array as a vt tensor on `device` (None stays None)"""
    return None if a is None else on(device, vt.tensor(a))


def run(provider, q, k, v, mask=None, causal=False, scale=None, p=0.0, device="cpu"):
    """(out, lse, rng) of attention::sdpa under `provider` on `device`, as numpy arrays"""
    with vt.ops.use(OP, provider, device):
        outs = op()(*(T(a, device) for a in (q, k, v, mask)), causal, scale, p)
    return tuple(to_numpy(o) for o in outs)


# ---- float64 numpy reference ---------------------------------------------------------------------
def ref_scores(q, k, mask=None, causal=False, scale=None):
    scale = 1 / np.sqrt(q.shape[-1]) if scale is None else scale
    s = q @ np.swapaxes(k, -1, -2) * scale
    if mask is not None:
        s = np.where(mask, s, -np.inf) if mask.dtype == bool else s + mask
    if causal:
        tq, tk = s.shape[-2:]
        s = np.where(np.triu(np.ones((tq, tk), bool), 1), -np.inf, s)
    return s


def ref_probs(s):
    """softmax over the last dim with 0 for fully masked rows, and the log-sum-exp (-inf there)"""
    m = s.max(-1, keepdims=True) if s.shape[-1] else np.full(s.shape[:-1] + (1,), -np.inf)
    m = np.where(np.isfinite(m), m, 0)
    e = np.exp(s - m)
    l = e.sum(-1, keepdims=True)
    safe = np.where(l > 0, l, 1)
    return np.where(l > 0, e / safe, 0), np.where(l[..., 0] > 0, np.log(safe[..., 0]) + m[..., 0], -np.inf)


def ref(q, k, v, mask=None, causal=False, scale=None, keep=None, p=0.0):
    q, k, v = (a.astype(np.float64) for a in (q, k, v))
    if mask is not None and mask.dtype != bool:
        mask = mask.astype(np.float64)
    pr, lse = ref_probs(ref_scores(q, k, mask, causal, scale))
    if keep is not None:
        pr = pr * keep / (1 - p)
    return pr @ v, lse


def ref_grads(q, k, v, g, mask=None, causal=False, scale=None, keep=None, p=0.0):
    """dq, dk, dv of sum(out * g) in float64"""
    q, k, v, g = (a.astype(np.float64) for a in (q, k, v, g))
    scale = 1 / np.sqrt(q.shape[-1]) if scale is None else scale
    pr, _ = ref_probs(ref_scores(q, k, mask, causal, scale))
    z = np.ones_like(pr) if keep is None else keep / (1 - p)
    dv = np.swapaxes(pr * z, -1, -2) @ g
    dp = (g @ np.swapaxes(v, -1, -2)) * z
    ds = pr * (dp - (dp * pr).sum(-1, keepdims=True))
    return ds @ k * scale, np.swapaxes(ds, -1, -2) @ q * scale, dv


def make(rng, B, H, Tq, Tk, D, Dv=None, dtype=np.float64):
    Dv = D if Dv is None else Dv
    return (rng.standard_normal((B, H, Tq, D)).astype(dtype), rng.standard_normal((B, H, Tk, D)).astype(dtype),
            rng.standard_normal((B, H, Tk, Dv)).astype(dtype))


def make_mask(rng, kind, shape, dtype=np.float64):
    if kind is None:
        return None
    if kind == "bool":
        m = rng.random(shape) > 0.3
        m[..., 0] = True  # no fully masked rows here (they have their own test)
        return m
    return rng.standard_normal(shape).astype(dtype)


# (B, H, Tq, Tk, D, Dv): Tq != Tk, blocks not multiples of the tile size, D not a multiple of 8/16,
# a different value dim, single elements
SHAPES = [(2, 3, 5, 7, 8, 8), (1, 2, 70, 130, 64, 64), (2, 1, 65, 64, 20, 20), (1, 1, 1, 1, 3, 3),
          (1, 2, 129, 70, 12, 40), (1, 1, 200, 3, 5, 5)]


@pytest.mark.parametrize("device,provider", DEVICE_PROVIDERS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("mask", [None, "float", "bool"])
def test_forward_matches_numpy(device, provider, shape, causal, mask):
    B, H, Tq, Tk, D, Dv = shape
    rng = np.random.default_rng(hash((shape, causal, mask)) % 2**32)
    q, k, v = make(rng, B, H, Tq, Tk, D, Dv)
    m = make_mask(rng, mask, (Tq, Tk) if mask == "float" else (B, 1, Tq, Tk))
    if causal and mask == "bool":
        m[..., :, 0] = True
    want, want_lse = ref(q, k, v, m, causal)
    out, lse, rng_state = run(provider, q, k, v, m, causal, device=device)
    np.testing.assert_allclose(out, want, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(lse, want_lse, rtol=1e-10, atol=1e-10)
    assert lse.dtype == np.float64 and rng_state.tolist() == [0, 0]
    f = np.float32
    out, lse, _ = run(provider, q.astype(f), k.astype(f), v.astype(f), None if m is None else m.astype(m.dtype if
                      m.dtype == bool else f), causal, device=device)
    assert out.dtype == np.float32 and lse.dtype == np.float32
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=2e-5)
    np.testing.assert_allclose(lse, want_lse, rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize("device,provider", DEVICE_PROVIDERS)
def test_scale_and_strided_inputs(device, provider):
    rng = np.random.default_rng(1)
    # (B, T, H, D) memory seen as (B, H, T, D): non-contiguous q, k, v
    base = [rng.standard_normal((2, 37, 3, 16)) for _ in range(3)]
    q, k, v = (T(a, device).permute(0, 2, 1, 3) for a in base)
    want, want_lse = ref(*(a.transpose(0, 2, 1, 3) for a in base), causal=True, scale=0.3)
    with vt.ops.use(OP, provider, device):
        out, lse, _ = op()(q, k, v, None, True, 0.3)
    np.testing.assert_allclose(to_numpy(out), want, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(to_numpy(lse), want_lse, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("device,provider", DEVICE_PROVIDERS)
@pytest.mark.parametrize("Tq,Tk", [(0, 5), (4, 0), (0, 0)])
def test_zero_length(device, provider, Tq, Tk):
    rng = np.random.default_rng(2)
    q, k, v = make(rng, 2, 2, Tq, Tk, 8, 6)
    out, lse, _ = run(provider, q, k, v, device=device)
    assert out.shape == (2, 2, Tq, 6) and lse.shape == (2, 2, Tq)
    assert (out == 0).all() and (lse == -np.inf).all()
    qv, kv, vv = (T(a, device).requires_grad_() for a in (q, k, v))
    with vt.ops.use(OP, provider, device):
        grads = vt.autograd.grad(sdpa(qv, kv, vv).sum(), (qv, kv, vv))
    for g, a in zip(grads, (q, k, v)):
        assert g.shape == a.shape and (to_numpy(g) == 0).all()


@pytest.mark.parametrize("device,provider", DEVICE_PROVIDERS)
def test_fully_masked_rows_give_zero(device, provider):
    rng = np.random.default_rng(3)
    q, k, v = make(rng, 1, 2, 6, 9, 8)
    m = np.ones((6, 9), bool)
    m[2] = False
    out, lse, _ = run(provider, q, k, v, m, device=device)
    assert (out[:, :, 2] == 0).all() and (lse[:, :, 2] == -np.inf).all()
    want, _ = ref(q, k, v, m)
    np.testing.assert_allclose(out, want, rtol=1e-10, atol=1e-10)
    qv, kv, vv = (T(a, device).requires_grad_() for a in (q, k, v))
    with vt.ops.use(OP, provider, device):
        dq, dk, dv = vt.autograd.grad(sdpa(qv, kv, vv, attn_mask=T(m, device)).sum(), (qv, kv, vv))
    assert np.isfinite(to_numpy(dq)).all() and (to_numpy(dq)[:, :, 2] == 0).all()
    for got, want in zip((dq, dk, dv), ref_grads(q, k, v, np.ones((1, 2, 6, 8)), m)):
        np.testing.assert_allclose(to_numpy(got), want, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("device,provider", DEVICE_PROVIDERS)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_inputs_compute_in_float32(dtype, device, provider):
    rng = np.random.default_rng(4)
    q, k, v = make(rng, 1, 2, 40, 70, 24, dtype=np.float32)
    tq, tk, tv = (T(a, device).to(getattr(vt, dtype)) for a in (q, k, v))
    want, want_lse = ref(*(to_numpy(t) for t in (tq, tk, tv)), causal=True)
    with vt.ops.use(OP, provider, device):
        out, lse, _ = op()(tq, tk, tv, None, True)
        assert out.dtype == getattr(vt, dtype) and lse.dtype == vt.float32
        np.testing.assert_allclose(to_numpy(out), want, rtol=2e-2, atol=2e-2)
        np.testing.assert_allclose(to_numpy(lse), want_lse, rtol=1e-5, atol=1e-5)
        qv = tq.detach().requires_grad_()
        dq = vt.autograd.grad(sdpa(qv, tk, tv, is_causal=True).float().sum(), (qv,))[0]
    assert dq.dtype == getattr(vt, dtype) and np.isfinite(to_numpy(dq)).all()


def test_flash_matches_composed():
    rng = np.random.default_rng(5)
    q, k, v = make(rng, 2, 3, 150, 90, 32, dtype=np.float32)
    m = rng.standard_normal((2, 3, 150, 90)).astype(np.float32)
    a = run("flash", q, k, v, m, True)
    b = run("composed", q, k, v, m, True)
    np.testing.assert_allclose(a[0], b[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(a[1], b[1], rtol=1e-5, atol=1e-5)


# ---- torch -------------------------------------------------------------------------------------------
TORCH_CASES = [((2, 3, 64, 64, 64), False, None), ((1, 4, 100, 37, 24), True, None), ((2, 2, 33, 150, 8), False, "bool"),
               ((1, 2, 130, 130, 64), True, None), ((2, 1, 17, 40, 10), False, "float")]


@needs_torch
@pytest.mark.parametrize("device,provider", DEVICE_PROVIDERS)
@pytest.mark.parametrize("case", TORCH_CASES, ids=str)
def test_matches_torch_forward_and_grads(device, provider, case):
    (B, H, Tq, Tk, D), causal, mask = case
    rng = np.random.default_rng(6)
    q, k, v = make(rng, B, H, Tq, Tk, D, dtype=np.float32)
    g = rng.standard_normal((B, H, Tq, D)).astype(np.float32)
    m = make_mask(rng, mask, (1, H, Tq, Tk), np.float32)
    tq, tk, tv = (torch.from_numpy(a).requires_grad_() for a in (q, k, v))
    tm = None if m is None else torch.from_numpy(m)
    tout = F.scaled_dot_product_attention(tq, tk, tv, attn_mask=tm, is_causal=causal)
    tgrads = torch.autograd.grad(tout, (tq, tk, tv), torch.from_numpy(g))
    vq, vk, vv = (T(a, device).requires_grad_() for a in (q, k, v))
    with vt.ops.use(OP, provider, device):
        out = sdpa(vq, vk, vv, attn_mask=T(m, device), is_causal=causal)
        grads = vt.autograd.grad(out, (vq, vk, vv), T(g, device))
    np.testing.assert_allclose(to_numpy(out), tout.detach().numpy(), rtol=1e-4, atol=2e-5)
    for a, b in zip(grads, tgrads):
        np.testing.assert_allclose(to_numpy(a), b.numpy(), rtol=1e-3, atol=1e-4)


# ---- gradients ---------------------------------------------------------------------------------------
GRAD_CASES = [((1, 2, 3, 4, 5), False, None), ((2, 1, 4, 4, 3), True, None), ((1, 1, 5, 3, 4), False, "float"),
              ((1, 2, 4, 6, 2), True, "bool"), ((1, 1, 70, 66, 2), True, None)]


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("case", GRAD_CASES, ids=str)
def test_gradcheck(provider, case):
    """gradcheck of (out, lse): the lse output's gradient goes through sdpa_backward's grad_lse"""
    (B, H, Tq, Tk, D), causal, mask = case
    rng = np.random.default_rng(7)
    q, k, v = (vt.tensor(a).requires_grad_() for a in make(rng, B, H, Tq, Tk, D))
    m = make_mask(rng, mask, (Tq, Tk))
    if causal and mask == "bool":
        m[:, 0] = True
    m = None if m is None else vt.tensor(m)
    f = op()

    def fn(q, k, v):
        return tuple(f(q, k, v, m, causal, 0.7)[:2])
    if Tq * Tk > 1000:  # the multi-block case: check one input only, to keep the run short
        q, k, v = q.detach(), k.detach(), v.detach().requires_grad_()
    with vt.ops.use("attention::sdpa", provider):
        assert vt.autograd.gradcheck(fn, (q, k, v), atol=1e-6, rtol=1e-4)


def test_backward_op_directly_matches_numpy():
    rng = np.random.default_rng(8)
    q, k, v = make(rng, 2, 2, 100, 77, 16, 24)
    g = rng.standard_normal((2, 2, 100, 24))
    m = rng.standard_normal((100, 77))
    out, lse, _ = run("flash", q, k, v, m, True, 0.2)
    dq, dk, dv = vt.ops.Op("attention::sdpa_backward")(
        *(vt.tensor(a) for a in (g, q, k, v, out, lse, m)), True, 0.2, 0.0, 0, 0)
    for got, want in zip((dq, dk, dv), ref_grads(q, k, v, g, m, True, 0.2)):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-9, atol=1e-10)


# ---- dropout -----------------------------------------------------------------------------------------
def dropout_keep(provider, seed, B, H, Tq, Tk, p, device="cpu"):
    """The keep mask a call of shape (B, H, Tq, Tk) draws after vt.manual_seed(seed): with q = k = 0
    the probabilities are 1/Tk, and v = I makes out[i, j] = keep[i, j] / (Tk (1 - p))."""
    vt.manual_seed(seed)
    z = np.zeros((B, H, Tq, 4))
    eye = np.broadcast_to(np.eye(Tk), (B, H, Tk, Tk)).copy()
    out, _, rng_state = run(provider, z, np.zeros((B, H, Tk, 4)), eye, p=p, device=device)
    return out * Tk * (1 - p) > 0.5, rng_state


@pytest.mark.parametrize("device,provider", DEVICE_PROVIDERS)
def test_dropout_reproducible_and_rate(device, provider):
    rng = np.random.default_rng(9)
    q, k, v = make(rng, 2, 2, 50, 60, 8)
    vt.manual_seed(3)
    a = run(provider, q, k, v, p=0.3, device=device)
    vt.manual_seed(3)
    b = run(provider, q, k, v, p=0.3, device=device)
    vt.manual_seed(4)
    c = run(provider, q, k, v, p=0.3, device=device)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[2], b[2])
    assert np.abs(a[0] - c[0]).max() > 1e-3
    np.testing.assert_allclose(a[1], run(provider, q, k, v, device=device)[1], rtol=1e-12)  # lse: before dropout
    keep, state = dropout_keep(provider, 11, 2, 3, 64, 128, 0.25, device)
    assert state.tolist()[1] == 0 and abs(keep.mean() - 0.75) < 0.01
    keep2, _ = dropout_keep(provider, 11, 2, 3, 64, 128, 0.25, device)
    np.testing.assert_array_equal(keep, keep2)


def test_dropout_mask_is_the_same_for_both_providers():
    """the fused kernel draws core::dropout's Philox keep rule, so one backward serves both"""
    a, _ = dropout_keep("flash", 5, 1, 2, 33, 70, 0.4)
    b, _ = dropout_keep("composed", 5, 1, 2, 33, 70, 0.4)
    np.testing.assert_array_equal(a, b)
    rng = np.random.default_rng(10)
    q, k, v = make(rng, 1, 2, 33, 70, 8)
    vt.manual_seed(5)
    fa = run("flash", q, k, v, p=0.4)
    vt.manual_seed(5)
    fb = run("composed", q, k, v, p=0.4)
    np.testing.assert_allclose(fa[0], fb[0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fa[0], ref(q, k, v, keep=a, p=0.4)[0], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("device,provider", DEVICE_PROVIDERS)
@pytest.mark.parametrize("causal", [False, True])
def test_dropout_gradients_use_the_same_mask(device, provider, causal):
    B, H, Tq, Tk, D, p = 1, 2, 70, 90, 8, 0.3
    keep, _ = dropout_keep(provider, 21, B, H, Tq, Tk, p, device)
    rng = np.random.default_rng(11)
    q, k, v = make(rng, B, H, Tq, Tk, D)
    g = rng.standard_normal((B, H, Tq, D))
    qv, kv, vv = (T(a, device).requires_grad_() for a in (q, k, v))
    vt.manual_seed(21)
    with vt.ops.use(OP, provider, device):
        out = sdpa(qv, kv, vv, dropout_p=p, is_causal=causal)
    grads = vt.autograd.grad(out, (qv, kv, vv), T(g, device))
    np.testing.assert_allclose(to_numpy(out), ref(q, k, v, causal=causal, keep=keep, p=p)[0], rtol=1e-10, atol=1e-12)
    for got, want in zip(grads, ref_grads(q, k, v, g, causal=causal, keep=keep, p=p)):
        np.testing.assert_allclose(to_numpy(got), want, rtol=1e-9, atol=1e-10)


# ---- providers ---------------------------------------------------------------------------------------
def test_providers_and_use():
    names = [(p.name, p.priority) for p in vt.ops.providers("attention::sdpa")]
    assert names == [("flash", 10), ("composed", 0)]
    assert vt.ops.providers("attention::sdpa")[0].active
    with vt.ops.use("attention::sdpa", "composed"):
        assert vt.ops.pinned("attention::sdpa") == "composed"
        assert [p.name for p in vt.ops.providers("attention::sdpa") if p.active] == ["composed"]
    assert vt.ops.pinned("attention::sdpa") is None
    rng = np.random.default_rng(12)
    q, k, v = make(rng, 1, 1, 9, 9, 4)
    vt.ops.use("attention::sdpa", "composed")
    try:
        b = run("composed", q, k, v, causal=True)[0]
    finally:
        vt.ops.use("attention::sdpa", None)
    np.testing.assert_allclose(run("flash", q, k, v, causal=True)[0], b, rtol=1e-12, atol=1e-14)


def test_python_wrapper():
    rng = np.random.default_rng(13)
    q, k, v = make(rng, 3, 1, 6, 7, 5)
    out = sdpa(*(vt.tensor(a[:, 0]) for a in (q, k, v)), scale=0.5)  # (N, L, E)
    assert out.shape == (3, 6, 5)
    np.testing.assert_allclose(out.numpy(), ref(q, k, v, scale=0.5)[0][:, 0], rtol=1e-10)
    with pytest.raises(ValueError, match="dropout_p"):
        sdpa(vt.tensor(q), vt.tensor(k), vt.tensor(v), dropout_p=1.5)


# ---- bad input ---------------------------------------------------------------------------------------
BAD = [
    (dict(q=(2, 3, 4)), ValueError, r"\[attention::sdpa\] q must have 4 dims"),
    (dict(k=(2, 3, 4, 8, 1)), ValueError, r"\[attention::sdpa\] k must have 4 dims"),
    (dict(k=(2, 3, 5, 7)), ValueError, r"\[attention::sdpa\] k must have the head dim D of q"),
    (dict(k=(1, 3, 5, 8)), ValueError, r"\[attention::sdpa\] k must have the batch size B of q"),
    (dict(v=(2, 2, 5, 8)), ValueError, r"\[attention::sdpa\] v must have the head count of k"),
    (dict(v=(2, 3, 6, 8)), ValueError, r"\[attention::sdpa\] v must have the length Tk of k"),
    (dict(mask=(4, 4)), ValueError, r"\[attention::sdpa\] mask of shape \(4, 4\) cannot broadcast"),
    (dict(mask=(2, 3, 4, 5, 1)), ValueError, r"\[attention::sdpa\] mask of shape .* cannot broadcast"),
    (dict(mask_dtype=np.int64), TypeError, r"\[attention::sdpa\] mask must be bool"),
    (dict(k_dtype=np.float32), TypeError, r"\[attention::sdpa\] dtype mismatch: q is float64, k is float32"),
    (dict(p=1.5), ValueError, r"\[attention::sdpa\] dropout_p must be in \[0, 1\]"),
]


@pytest.mark.parametrize("device,provider", DEVICE_PROVIDERS)
@pytest.mark.parametrize("bad,exc,msg", BAD, ids=lambda x: str(x)[:40])
def test_bad_input(device, provider, bad, exc, msg):
    shapes = dict(q=(2, 3, 4, 8), k=(2, 3, 5, 8), v=(2, 3, 5, 8))
    shapes.update({n: s for n, s in bad.items() if n in shapes})
    q, k, v = (T(np.ones(shapes[n], dtype=bad.get(f"{n}_dtype", np.float64)), device) for n in "qkv")
    mask = None
    if "mask" in bad or "mask_dtype" in bad:
        mask = T(np.zeros(bad.get("mask", (4, 5)), dtype=bad.get("mask_dtype", np.float64)), device)
    with vt.ops.use(OP, provider, device), pytest.raises(exc, match=msg):
        op()(q, k, v, mask, False, None, bad.get("p", 0.0))


def test_bad_input_backward_op():
    q = vt.tensor(np.ones((1, 1, 3, 4)))
    out = vt.tensor(np.ones((1, 1, 3, 4)))
    lse = vt.tensor(np.ones((1, 1, 2)))
    with pytest.raises(ValueError, match=r"\[attention::sdpa_backward\] lse must have the shape"):
        vt.ops.Op("attention::sdpa_backward")(out, q, q, q, out, lse, None, False, 1.0, 0.0, 0, 0)


# ---- the backward's providers (flash on cpu; composed on every device) ----------------------------
from conftest import DEVICES, providers  # noqa: E402

BACKWARD = "attention::sdpa_backward"
BACKWARD_PROVIDERS = [pytest.param(d, p, id=f"{d}-{p}") for d in DEVICES for p in providers(BACKWARD, d)]


def ref_backward(q, k, v, g, mask=None, causal=False, scale=None, keep=None, p=0.0, glse=None):
    """dq, dk, dv of sum(out * g) + sum(lse * glse) in float64"""
    q, k, v, g = (a.astype(np.float64) for a in (q, k, v, g))
    scale = 1 / np.sqrt(q.shape[-1]) if scale is None else scale
    pr, _ = ref_probs(ref_scores(q, k, mask, causal, scale))
    z = np.ones_like(pr) if keep is None else keep / (1 - p)
    dv = np.swapaxes(pr * z, -1, -2) @ g
    dp = (g @ np.swapaxes(v, -1, -2)) * z
    d = (dp * pr).sum(-1, keepdims=True) - (0 if glse is None else glse[..., None])
    ds = pr * (dp - d)
    return ds @ k * scale, np.swapaxes(ds, -1, -2) @ q * scale, dv


# (B, H, Tq, Tk, D, Dv), causal, mask, grad_lse, dropout p
BACKWARD_CASES = [((2, 3, 5, 7, 8, 6), False, None, False, 0.0), ((1, 2, 70, 130, 16, 16), True, "float", True, 0.0),
                  ((1, 2, 33, 40, 8, 8), True, "bool", False, 0.0), ((2, 1, 20, 31, 4, 4), False, None, True, 0.3),
                  ((1, 1, 6, 0, 4, 4), False, None, False, 0.0), ((1, 2, 0, 5, 4, 4), False, None, False, 0.0)]


@pytest.mark.parametrize("device,provider", BACKWARD_PROVIDERS)
@pytest.mark.parametrize("case", BACKWARD_CASES, ids=str)
def test_backward_providers_match_numpy(device, provider, case):
    """attention::sdpa_backward called directly under each provider (float64): masks, causal,
    grad_lse, a dropout mask regenerated from (seed, offset), zero-length sequences."""
    (B, H, Tq, Tk, D, Dv), causal, mask, with_glse, p = case
    rng = np.random.default_rng(12)
    q, k, v = make(rng, B, H, Tq, Tk, D, Dv)
    g = rng.standard_normal((B, H, Tq, Dv))
    m = make_mask(rng, mask, (Tq, Tk))
    if m is not None and m.dtype == bool:
        m[:, 0] = True
    glse = rng.standard_normal((B, H, Tq)) if with_glse else None
    vt.manual_seed(31)
    out, lse, st = run("flash", q, k, v, m, causal, 0.3, p)
    keep = None
    if p > 0:
        keep = to_numpy(vt.ops.Op("attention::dropout_mask")([B, H, Tq, Tk], p, int(st[0]), int(st[1])))
    args = [T(a, device) for a in (g, q, k, v, out, lse, m)]
    with vt.ops.use(BACKWARD, provider, device):
        dq, dk, dv = vt.ops.Op(BACKWARD)(*args, causal, 0.3, p, int(st[0]), int(st[1]), T(glse, device))
    for got, want in zip((dq, dk, dv), ref_backward(q, k, v, g, m, causal, 0.3, keep, p, glse)):
        assert got.device.type == device
        np.testing.assert_allclose(to_numpy(got), want, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("device,provider", BACKWARD_PROVIDERS)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_backward_providers_low_precision(device, provider, dtype):
    """16-bit inputs compute in float32; results within the dtype's rounding of the reference."""
    rng = np.random.default_rng(13)
    q, k, v = make(rng, 1, 2, 40, 50, 16)
    g = rng.standard_normal((1, 2, 40, 16))
    dt = getattr(vt, dtype)
    out, lse, _ = run("flash", q, k, v, None, True)
    args = [T(a, device).to(dt) for a in (g, q, k, v, out)] + [T(lse, device).to(vt.float32)]
    with vt.ops.use(BACKWARD, provider, device):
        grads = vt.ops.Op(BACKWARD)(*args, None, True, 0.25, 0.0, 0, 0)
    tol = {"float32": 1e-4, "bfloat16": 6e-2, "float16": 1e-2}[dtype]
    for got, want in zip(grads, ref_backward(q, k, v, g, None, True, 0.25)):
        assert got.dtype is dt
        np.testing.assert_allclose(to_numpy(got), want, rtol=tol, atol=tol)


def test_composed_backward_equals_flash_backward_through_autograd():
    """vt.autograd through sdpa with the backward op pinned to either provider: the same grads."""
    rng = np.random.default_rng(14)
    q, k, v = make(rng, 2, 2, 37, 45, 8)
    g = rng.standard_normal((2, 2, 37, 8))
    m = make_mask(rng, "bool", (37, 45))
    got = []
    for prov in ("flash", "composed"):
        qv, kv, vv = (vt.tensor(a).requires_grad_() for a in (q, k, v))
        vt.manual_seed(8)
        with vt.ops.use(BACKWARD, prov):
            out = sdpa(qv, kv, vv, attn_mask=vt.tensor(m), dropout_p=0.2, is_causal=True)
            got.append([to_numpy(x) for x in vt.autograd.grad(out, (qv, kv, vv), vt.tensor(g))])
    for a, b in zip(*got):
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-10)


def test_dropout_mask_op_is_core_dropouts_mask(device):
    """attention::dropout_mask(size, p, seed, offset) is the mask core::dropout draws at that
    (seed, offset): what lets the composed backward regenerate the forward's dropout."""
    shape, p = (3, 5, 67), 0.35
    seed, offset = 17, 0
    vt.manual_seed(seed)  # every device's generator at (17, 0)
    _, mask = vt.ops.Op("core::dropout")(vt.ones(*shape, device=device), p, True)
    mine = vt.ops.Op("attention::dropout_mask")(list(shape), p, seed, offset, device)
    assert mine.dtype is vt.bool_ and mine.device.type == device and mine.shape == shape
    np.testing.assert_array_equal(to_numpy(mine), to_numpy(mask))
    cpu = vt.ops.Op("attention::dropout_mask")(list(shape), p, seed, offset)
    np.testing.assert_array_equal(to_numpy(cpu), to_numpy(mine))
    assert to_numpy(vt.ops.Op("attention::dropout_mask")([9], 0.0, 1, 0)).all()
    assert not to_numpy(vt.ops.Op("attention::dropout_mask")([9], 1.0, 1, 0)).any()
    assert vt.ops.Op("attention::dropout_mask")([0, 4], 0.5, 1, 0, device).shape == (0, 4)
    with pytest.raises(ValueError, match="dropout_p must be in"):
        vt.ops.Op("attention::dropout_mask")([3], 1.5, 1, 0)


def test_dropout_draw_records_where_it_drew(device):
    """attention::dropout_draw reserves core::dropout's count of Philox groups, gives core::dropout's
    mask, and writes the draw's [seed, offset] into rng on the device; dropout_mask regenerates the
    mask from that tensor (what the composed backward does without reading it on the host)."""
    shape, p = (2, 3, 5, 9), 0.3
    n = int(np.prod(shape))
    vt.manual_seed(11)
    _, want = vt.ops.Op("core::dropout")(vt.ones(*shape, device=device), p, True)
    vt.manual_seed(11)
    rng = vt.zeros(2, dtype=vt.int64, device=device)
    keep = vt.ops.Op("attention::dropout_draw")(list(shape), p, rng)
    assert keep.dtype is vt.bool_ and keep.device.type == device and keep.shape == shape
    np.testing.assert_array_equal(to_numpy(keep), to_numpy(want))
    seed, offset = (int(x) for x in to_numpy(rng))
    assert seed == 11
    again = vt.ops.Op("attention::dropout_mask")(list(shape), p, 0, 0, device, rng)
    np.testing.assert_array_equal(to_numpy(again), to_numpy(keep))
    by_value = vt.ops.Op("attention::dropout_mask")(list(shape), p, seed, offset, device)
    np.testing.assert_array_equal(to_numpy(by_value), to_numpy(keep))
    rng2 = vt.zeros(2, dtype=vt.int64, device=device)
    vt.ops.Op("attention::dropout_draw")(list(shape), p, rng2)  # the next draw follows this one
    assert int(to_numpy(rng2)[1]) == offset + (n + 3) // 4
    for bad, got in ((vt.zeros(2, dtype=vt.int32, device=device), "int32 .2,."),
                     (vt.zeros(3, dtype=vt.int64, device=device), "int64 .3,."),
                     (vt.zeros(4, dtype=vt.int64, device=device)[::2], "int64 .2,.")):
        with pytest.raises(ValueError, match=r"\[attention::dropout_draw\] rng must be the contiguous int64 "
                                             r"\(2,\) \[seed, offset\] tensor of an sdpa forward, got " + got):
            vt.ops.Op("attention::dropout_draw")(list(shape), p, bad)
    other = device if device != "cpu" else "meta"  # a device argument the (cpu) rng is not on
    with pytest.raises(ValueError, match=r"\[attention::dropout_mask\] rng must be on the device of the result"):
        vt.ops.Op("attention::dropout_mask")(list(shape), p, 0, 0, other, vt.zeros(2, dtype=vt.int64))


@pytest.mark.parametrize("provider", ["flash", "composed"])
def test_sdpa_backward_takes_the_rng_tensor(device, provider):
    """sdpa_backward(..., rng=) reads the forward's [seed, offset] from the tensor (on cuda, on the
    device: the backward rule's path, graph-safe) and equals the call with the values as ints."""
    rng_np = np.random.default_rng(5)
    dt = vt.float32 if device == "cpu" else vt.bfloat16  # the flash kernels' dtype on cuda
    q, k, v, go = (vt.tensor(rng_np.standard_normal((1, 2, 7, 64)).astype(np.float32)).to(dt).to(device)
                   for _ in range(4))
    p = 0.25
    with vt.ops.use("attention::sdpa", provider, device):
        out, lse, rng = vt.ops.Op("attention::sdpa")(q, k, v, None, True, None, p)
    seed, offset = (int(x) for x in to_numpy(rng))
    bw = vt.ops.Op("attention::sdpa_backward")
    with vt.ops.use("attention::sdpa_backward", provider, device):
        by_value = bw(go, q, k, v, out, lse, None, True, 0.125, p, seed, offset)
        by_tensor = bw(go, q, k, v, out, lse, None, True, 0.125, p, 0, 0, None, rng)
    for a, b in zip(by_value, by_tensor):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
    with pytest.raises(ValueError, match=r"\[attention::sdpa_backward\] rng must be"):
        bw(go, q, k, v, out, lse, None, True, 0.125, p, 0, 0, None, vt.zeros(2, dtype=vt.float32, device=device))


# ---- the flash provider's CUDA kernels (ops/attention/src/flash_*.cu) ------------------------------
# What the tensor-core kernels take: float16/bfloat16, D == Dv in {32, 64, 128}; anything else runs the
# composed compute from inside the flash provider (the tables above cover that on cuda). Every check
# compares with a float64 reference of the same rounded inputs and with the composed provider on
# cuda; outputs are poisoned with NaN first (the caching allocator hands the freed blocks back), so a
# row or column the kernels forget to write fails the test.
HAS_CUDA = "cuda" in DEVICES
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")
FLASH_TOL = 1e-2  # max |got - want| / max(max |want|, 1e-3)
# float32 runs FFMA kernels in float32 (flash32_*.cu: no TF32): float32-accurate. Its floor is 1 (the
# inputs are N(0, 1)): with one kept key dS = P (dP - delta) cancels to float32 rounding (~1e-6).
FLASH32_TOL, FLASH32_FLOOR = 1e-4, 1.0


def tol_of(dt):
    """(tolerance, floor) of rel_err for the flash kernels' results in dtype dt"""
    return (FLASH32_TOL, FLASH32_FLOOR) if dt is vt.float32 else (FLASH_TOL, 1e-3)


def rel_err(got, want, floor=1e-3):
    """max |got - want| / max |want| (a floor for results that are all but zero, like dq with one
    key); infinities must match exactly, and no NaN"""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert not np.isnan(got).any(), "NaN in the result (a poisoned element was never written?)"
    fin = np.isfinite(want)
    assert (np.isfinite(got) == fin).all() and (got[~fin] == want[~fin]).all()
    return np.abs(got[fin] - want[fin]).max(initial=0.0) / max(np.abs(want[fin]).max(initial=0.0), floor)


def poison(*specs):
    """Allocate and free NaN-filled cuda tensors of these (shape, dtype)s, so that the op's next
    outputs of the same sizes most likely reuse (and must overwrite) them."""
    ts = [vt.full(shape, float("nan"), dtype=dt, device="cuda") for shape, dt in specs]
    del ts


def cuda_half(a, dt):
    """numpy -> a cuda tensor of dtype dt, and the numpy float64 of its rounded values"""
    t = vt.tensor(a.astype(np.float32)).to(dt).to("cuda")
    return t, to_numpy(t)


def flash_call(prov, q, k, v, m, causal, p=0.0, scale=None):
    B, H, Tq, D = q.shape
    poison(((B, H, Tq, v.shape[-1]), q.dtype), ((B, H, Tq), vt.float32))
    with vt.ops.use(OP, prov, "cuda"):
        return op()(q, k, v, m, causal, scale, p)


def flash_grads(prov, q, k, v, m, causal, g, p=0.0, seed=0):
    qv, kv, vv = (t.detach().requires_grad_() for t in (q, k, v))
    poison((tuple(q.shape), q.dtype), (tuple(k.shape), q.dtype), (tuple(v.shape), q.dtype))
    vt.manual_seed(seed)
    with vt.ops.use(OP, prov, "cuda"), vt.ops.use(BACKWARD, prov, "cuda"):
        out = sdpa(qv, kv, vv, attn_mask=m, dropout_p=p, is_causal=causal)
        return out, vt.autograd.grad(out, (qv, kv, vv), g)


# (B, H, Tq, Tk): whole blocks, partial blocks with Tq != Tk both ways, one query, many heads
FLASH_SHAPES = [(2, 3, 128, 128), (1, 2, 100, 190), (1, 2, 200, 70), (2, 1, 1, 33), (1, 5, 64, 257)]


@needs_cuda
@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32"])
@pytest.mark.parametrize("D", [32, 64, 128])
@pytest.mark.parametrize("shape", FLASH_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("mask", [None, "bool", "float"])
def test_flash_cuda_forward_and_grads(dtype, D, shape, causal, mask):
    B, H, Tq, Tk = shape
    dt = getattr(vt, dtype)
    rng = np.random.default_rng(hash((dtype, D, shape, causal, mask)) % 2**32)
    q, k, v = make(rng, B, H, Tq, Tk, D, dtype=np.float32)
    (tq, q), (tk, k), (tv, v) = (cuda_half(a, dt) for a in (q, k, v))
    g = rng.standard_normal((B, H, Tq, D)).astype(np.float32)
    tg, g = cuda_half(g, dt)
    m = make_mask(rng, mask, (B, 1, Tq, Tk) if mask == "bool" else (Tq, Tk), np.float32)
    tm = None if m is None else on("cuda", vt.tensor(m))
    tol, floor = tol_of(dt)
    want, want_lse = ref(q, k, v, m, causal)
    out, lse, st = flash_call("flash", tq, tk, tv, tm, causal)
    assert out.dtype is dt and lse.dtype is vt.float32 and to_numpy(st).tolist() == [0, 0]
    assert rel_err(to_numpy(out), want) <= tol
    assert rel_err(to_numpy(lse), want_lse) <= min(tol, 1e-3)
    c_out, c_lse, _ = flash_call("composed", tq, tk, tv, tm, causal)
    assert rel_err(to_numpy(out), to_numpy(c_out)) <= tol
    # gradients: float64 reference, and the composed provider's on the same inputs
    _, grads = flash_grads("flash", tq, tk, tv, tm, causal, tg)
    _, c_grads = flash_grads("composed", tq, tk, tv, tm, causal, tg)
    for name, got, w, c in zip("qkv", grads, ref_grads(q, k, v, g, m, causal), c_grads):
        assert got.dtype is dt
        assert rel_err(to_numpy(got), w, floor) <= tol, name
        assert rel_err(to_numpy(got), to_numpy(c), floor) <= tol, name


@needs_cuda
@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32"])
@pytest.mark.parametrize("D", [32, 64, 128])
@pytest.mark.parametrize("causal", [False, True])
def test_flash_cuda_dropout_same_mask_as_cpu(dtype, D, causal):
    """the keep mask of the kernels is attn.hpp's rule at the recorded (seed, offset): the cpu flash
    provider draws the same one after the same vt.manual_seed, and the gradients use it too"""
    B, H, Tq, Tk, p = 2, 2, 77, D, 0.3
    dt = getattr(vt, dtype)
    tol, floor = tol_of(dt)
    # q = k = 0 and v = I: out[i, j] = keep[i, j] / (Tk (1 - p)) (causal: / (i + 1) (1 - p) for j <= i)
    z = vt.zeros((B, H, Tq, D), dtype=dt, device="cuda")
    eye = vt.tensor(np.broadcast_to(np.eye(Tk), (B, H, Tk, D)).astype(np.float32)).to(dt).to("cuda")
    vt.manual_seed(21)
    out, _, st = flash_call("flash", z, vt.zeros((B, H, Tk, D), dtype=dt, device="cuda"), eye, None, causal, p)
    seed, offset = (int(x) for x in to_numpy(st))
    keep = to_numpy(vt.ops.Op("attention::dropout_mask")([B, H, Tq, Tk], p, seed, offset))
    cpu_keep, cpu_state = dropout_keep("flash", 21, B, H, Tq, Tk, p)
    assert offset == int(cpu_state[1]) and seed == int(cpu_state[0])
    np.testing.assert_array_equal(keep, cpu_keep)
    rows = np.arange(Tq)[:, None]
    n = np.minimum(rows + 1, Tk) if causal else np.full((Tq, 1), Tk)
    want = keep / (n * (1 - p))
    if causal:
        want = np.where(np.arange(Tk)[None, :] <= rows, want, 0)
    assert rel_err(to_numpy(out), want) <= tol
    # gradients with dropout against the float64 reference at that mask
    rng = np.random.default_rng(22)
    q, k, v = make(rng, B, H, Tq, Tk, D, dtype=np.float32)
    (tq, q), (tk, k), (tv, v) = (cuda_half(a, dt) for a in (q, k, v))
    tg, g = cuda_half(rng.standard_normal((B, H, Tq, D)).astype(np.float32), dt)
    out, grads = flash_grads("flash", tq, tk, tv, None, causal, tg, p, seed=21)
    assert rel_err(to_numpy(out), ref(q, k, v, causal=causal, keep=keep, p=p)[0]) <= tol
    for got, w in zip(grads, ref_grads(q, k, v, g, causal=causal, keep=keep, p=p)):
        assert rel_err(to_numpy(got), w, floor) <= tol


@needs_cuda
@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
@pytest.mark.parametrize("D", [32, 64, 128])
def test_flash_cuda_strided_scaled_and_masked_rows(D, dtype):
    """(B, T, H, D) memory seen as (B, H, T, D) (read in place), a transposed v (copied), an explicit
    scale, fully masked rows (out 0, lse -inf, finite gradients), deterministic backward"""
    B, T_, H = 2, 150, 3
    dt = getattr(vt, dtype)
    tol, floor = tol_of(dt)
    rng = np.random.default_rng(23)
    base = [rng.standard_normal((B, T_, H, D)).astype(np.float32) for _ in range(2)]
    (bq, nq), (bk, nk) = (cuda_half(a, dt) for a in base)
    tq, tk = bq.permute(0, 2, 1, 3), bk.permute(0, 2, 1, 3)
    vbase, nv = cuda_half(rng.standard_normal((B, H, D, T_)).astype(np.float32), dt)
    tv = vbase.transpose(2, 3)  # last stride T_: the provider copies it to contiguous
    q, k, v = nq.transpose(0, 2, 1, 3), nk.transpose(0, 2, 1, 3), nv.swapaxes(2, 3)
    m = np.ones((T_, T_), bool)
    m[[3, 97]] = False
    tm = on("cuda", vt.tensor(m))
    want, want_lse = ref(q, k, v, m, True, 0.05)
    out, lse, _ = flash_call("flash", tq, tk, tv, tm, True, scale=0.05)
    assert rel_err(to_numpy(out), want) <= tol
    assert rel_err(to_numpy(lse), want_lse) <= min(tol, 1e-3)
    assert (to_numpy(out)[:, :, [3, 97]] == 0).all() and (to_numpy(lse)[:, :, [3, 97]] == -np.inf).all()
    g = rng.standard_normal((B, H, T_, D)).astype(np.float32)
    tg, g = cuda_half(g, dt)
    args = (tg, tq, tk, tv, out, lse, tm, True, 0.05, 0.0, 0, 0)
    with vt.ops.use(BACKWARD, "flash", "cuda"):
        a = [to_numpy(x) for x in vt.ops.Op(BACKWARD)(*args)]
        b = [to_numpy(x) for x in vt.ops.Op(BACKWARD)(*args)]
    for x, y, w in zip(a, b, ref_grads(q, k, v, g, m, True, 0.05)):
        np.testing.assert_array_equal(x, y)  # no atomics: bitwise the same
        assert rel_err(x, w, floor) <= tol
    assert (a[0][:, :, [3, 97]] == 0).all()


@needs_cuda
@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_flash_cuda_grad_lse(dtype):
    """the lse output's gradient (grad_lse) enters delta: dS = P (dP - delta), delta = rowsum(dO O) - glse"""
    B, H, Tq, Tk, D = 1, 2, 90, 130, 64
    dt = getattr(vt, dtype)
    tol, floor = tol_of(dt)
    rng = np.random.default_rng(24)
    q, k, v = make(rng, B, H, Tq, Tk, D, dtype=np.float32)
    (tq, q), (tk, k), (tv, v) = (cuda_half(a, dt) for a in (q, k, v))
    tg, g = cuda_half(rng.standard_normal((B, H, Tq, D)).astype(np.float32), dt)
    glse = rng.standard_normal((B, H, Tq)).astype(np.float32)
    out, lse, _ = flash_call("flash", tq, tk, tv, None, False)
    with vt.ops.use(BACKWARD, "flash", "cuda"):
        got = vt.ops.Op(BACKWARD)(tg, tq, tk, tv, out, lse, None, False, 0.125, 0.0, 0, 0,
                                  on("cuda", vt.tensor(glse)))
    for x, w in zip(got, ref_backward(q, k, v, g, None, False, 0.125, glse=glse)):
        assert rel_err(to_numpy(x), w, floor) <= tol


@needs_cuda
def test_flash_cuda_forward_with_dropout_in_a_cuda_graph():
    """graph-safe dropout: a captured forward draws fresh masks each replay (Philox seed and offset
    read on the device), the ones eager calls draw from the same generator state, and the rng
    output says which"""
    vcuda = vt.cuda
    B, H, T_, D, p = 1, 2, 70, 64, 0.4
    rng = np.random.default_rng(26)
    q, k, v = (cuda_half(a, vt.bfloat16)[0] for a in make(rng, B, H, T_, T_, D, dtype=np.float32))
    f = op()
    with vt.ops.use(OP, "flash", "cuda"):
        f(q, k, v, None, True, None, p)  # warm up outside the capture
        g = vcuda.CUDAGraph()
        with vcuda.graph(g):
            out, _, st = f(q, k, v, None, True, None, p)
        vcuda.manual_seed(7)
        g.replay()
        o1, s1 = to_numpy(out), to_numpy(st)
        g.replay()
        o2, s2 = to_numpy(out), to_numpy(st)
        vcuda.manual_seed(7)
        e1, _, es1 = (to_numpy(x) for x in f(q, k, v, None, True, None, p))
        e2, _, es2 = (to_numpy(x) for x in f(q, k, v, None, True, None, p))
    np.testing.assert_array_equal(o1, e1)
    np.testing.assert_array_equal(o2, e2)
    assert s1.tolist() == es1.tolist() and s2.tolist() == es2.tolist() and s1[1] != s2[1]
    assert not np.array_equal(o1, o2)


@needs_cuda
@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_flash_cuda_takes_the_vit_attention(dtype):
    """the ViT example's attention (vibetensor.examples.vit: dim 256, 8 heads -> D 32; 8 x 8 patches
    + the class token -> T 65, one whole 64-row block and a partial one): q, k, v are head views of
    one qkv projection (last stride 1, read in place). The flash kernels take it — their result is
    not bitwise the composed provider's — and out and the gradients match float64."""
    B, Tn, H, D = 8, 65, 8, 32
    dt = getattr(vt, dtype)
    tol, floor = tol_of(dt)
    rng = np.random.default_rng(27)
    tqkv, qkv = cuda_half(rng.standard_normal((B, Tn, 3 * H * D)).astype(np.float32), dt)
    heads = lambda t, i: t[:, :, i * H * D:(i + 1) * H * D].reshape(B, Tn, H, D)  # noqa: E731
    tq, tk, tv = (heads(tqkv, i).transpose(1, 2) for i in range(3))
    assert not tq.is_contiguous() and tq.stride()[-1] == 1
    q, k, v = (np.swapaxes(heads(qkv, i), 1, 2) for i in range(3))
    tg, g = cuda_half(rng.standard_normal((B, H, Tn, D)).astype(np.float32), dt)
    out, grads = flash_grads("flash", tq, tk, tv, None, False, tg)
    c_out, c_grads = flash_grads("composed", tq, tk, tv, None, False, tg)
    assert rel_err(to_numpy(out), ref(q, k, v)[0]) <= tol
    assert not np.array_equal(to_numpy(out), to_numpy(c_out))  # the kernels ran, not composed from inside
    for name, got, w, c in zip("qkv", grads, ref_grads(q, k, v, g), c_grads):
        assert got.shape == (B, H, Tn, D) and got.dtype is dt
        assert rel_err(to_numpy(got), w, floor) <= tol, name
        assert not np.array_equal(to_numpy(got), to_numpy(c)), name


# Forward and backward of two short-sequence calls, inputs from a fixed seed, everything saved:
# the ViT's attention (bf16, T 65, D 32, head views of one qkv buffer) and a causal fp16 head of
# 100 queries x 128 keys at D 64 with a bool mask (one fully masked row) and grad_lse.
_SHORT_RUN = r"""
import sys
import numpy as np
import vibetensor as vt
try:  # which kernels ran: torch's profiler records every kernel of the process (CUPTI)
    import torch
    from torch.profiler import ProfilerActivity, profile
    prof = profile(activities=[ProfilerActivity.CUDA])
    prof.__enter__()
except Exception:
    prof = None
rng = np.random.default_rng(31)
res = {}
def half(a, dt):
    t = vt.tensor(a.astype(np.float32)).to(dt).to("cuda")
    return t, t.float().cpu().numpy()
B, T, H, D = 4, 65, 8, 32
tqkv, qkv = half(rng.standard_normal((B, T, 3 * H * D)), vt.bfloat16)
heads = lambda t, i: t[:, :, i * H * D:(i + 1) * H * D].reshape(B, T, H, D)
tq, tk, tv = (heads(tqkv, i).transpose(1, 2) for i in range(3))
res["vit_q"], res["vit_k"], res["vit_v"] = (np.swapaxes(heads(qkv, i), 1, 2) for i in range(3))
tg, res["vit_g"] = half(rng.standard_normal((B, H, T, D)), vt.bfloat16)
out, lse, _ = vt.ops.Op("attention::sdpa")(tq, tk, tv, None, False, None, 0.0)
grads = vt.ops.Op("attention::sdpa_backward")(tg, tq, tk, tv, out, lse, None, False, D ** -0.5, 0.0, 0, 0)
for name, t in zip(("out", "lse", "dq", "dk", "dv"), (out, lse, *grads)):
    res["vit_" + name] = t.float().cpu().numpy()
B, H, Tq, Tk, D = 2, 2, 100, 128, 64
(tq, res["c_q"]), (tg, res["c_g"]) = (half(rng.standard_normal((B, H, Tq, D)), vt.float16) for _ in range(2))
(tk, res["c_k"]), (tv, res["c_v"]) = (half(rng.standard_normal((B, H, Tk, D)), vt.float16) for _ in range(2))
m = rng.random((Tq, Tk)) > 0.3
m[5] = False
res["c_m"] = m
tm = vt.tensor(m).to("cuda")
res["c_glse"] = rng.standard_normal((B, H, Tq)).astype(np.float32)
out, lse, _ = vt.ops.Op("attention::sdpa")(tq, tk, tv, tm, True, None, 0.0)
grads = vt.ops.Op("attention::sdpa_backward")(tg, tq, tk, tv, out, lse, tm, True, D ** -0.5, 0.0, 0, 0,
                                              vt.tensor(res["c_glse"]).to("cuda"))
for name, t in zip(("out", "lse", "dq", "dk", "dv"), (out, lse, *grads)):
    res["c_" + name] = t.float().cpu().numpy()
names = ["(no profiler)"]
if prof is not None:
    vt.cuda.synchronize()
    prof.__exit__(None, None, None)
    names = sorted({e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA})
res["kernels"] = np.array(names)
np.savez(sys.argv[1], **res)
"""


@needs_cuda
def test_flash_cuda_short_and_tiled_kernels_agree(tmp_path):
    """The short-sequence kernels (flash_short.cu: Tq, Tk <= 128, D 32 or 64, 16-bit, no dropout; the
    default for such calls) and the tiled ones (VT_FLASH_SHORT=0) on the ViT's attention and on a
    causal, masked fp16 head with grad_lse: each within tolerance of float64 (out, lse, dq, dk, dv).
    Where torch's profiler is importable (the GPU machine), the kernels each setting ran are named:
    the short ones, or the tiled ones with their prepass."""
    import os
    import subprocess
    import sys
    runs = {}
    for flag in ("1", "0"):
        path = tmp_path / f"short{flag}.npz"
        subprocess.run([sys.executable, "-c", _SHORT_RUN, str(path)], check=True,
                       env={**os.environ, "VT_FLASH_SHORT": flag})
        runs[flag] = np.load(path)
    for pre, dt, mask, causal in (("vit_", vt.bfloat16, None, False), ("c_", vt.float16, "c_m", True)):
        r = runs["1"]
        q, k, v, g = (r[pre + n].astype(np.float64) for n in "qkvg")
        m = None if mask is None else r[mask]
        glse = r["c_glse"] if pre == "c_" else None
        want_out, want_lse = ref(q, k, v, m, causal)
        want = dict(zip(("dq", "dk", "dv"), ref_backward(q, k, v, g, m, causal, glse=glse)))
        tol, floor = tol_of(dt)
        for flag, res in runs.items():
            assert rel_err(res[pre + "out"], want_out) <= tol, (pre, flag)
            lse = res[pre + "lse"]
            fin = np.isfinite(want_lse)
            assert (lse[~fin] == -np.inf).all() and rel_err(lse[fin], want_lse[fin]) <= 1e-3, (pre, flag)
            for n, w in want.items():
                assert rel_err(res[pre + n], w, floor) <= tol, (pre, n, flag)
    short, tiled = (list(runs[f]["kernels"]) for f in ("1", "0"))
    if short != ["(no profiler)"]:
        ran = lambda names, k: any(k in n for n in names)  # noqa: E731
        assert ran(short, "flash_short_fwd_kernel") and ran(short, "flash_short_bwd_kernel"), short
        assert not ran(short, "flash_bwd_prepass") and not ran(short, "flash_fwd_kernel"), short
        assert not ran(tiled, "flash_short") and ran(tiled, "flash_bwd_prepass"), tiled


@needs_cuda
@pytest.mark.parametrize("dtype,D", [("float32", 16), ("float32", 80), ("bfloat16", 16), ("bfloat16", 80)])
def test_flash_cuda_hands_other_calls_to_composed(dtype, D):
    """a dtype or head dim the kernels do not take still runs under provider "flash" (its compute
    calls the composed one) and matches the composed provider"""
    dt = getattr(vt, dtype)
    rng = np.random.default_rng(25)
    q, k, v = make(rng, 1, 2, 40, 50, D, dtype=np.float32)
    (tq, _), (tk, _), (tv, _) = (cuda_half(a, dt) for a in (q, k, v))
    a = flash_call("flash", tq, tk, tv, None, True)
    b = flash_call("composed", tq, tk, tv, None, True)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(to_numpy(x), to_numpy(y))


def test_flash_cuda_kernels_in_host_emulation(tmp_path):
    """the CUDA kernels' own source, compiled as host C++ with the warp primitives emulated
    (ops/attention/lab/flash_emulate.cpp), against a float64 reference: a check of their index
    arithmetic that runs without a GPU (a few cases; run the binary without arguments for all)"""
    import subprocess

    import host_emulation

    exe = host_emulation.build("ops/attention/lab/flash_emulate.cpp", tmp_path / "flash_emulate", "FLASH_EMULATE",
                               ["ops/attention/src", "ops/attention/lab"])
    # 1, 4, 6: the 16-bit kernels; 13, 16: the float32 ones (D 128 causal with a float mask and
    # grad_lse; D 64 causal, several blocks both ways, bool mask with a fully masked row, dropout);
    # D 32: 18 and 22 the ViT's T = 65 with strided inputs (bf16, float32), 20 bf16 causal with a
    # float mask and dropout (Tq > Tk), 23 float32 causal with a bool mask, dropout and grad_lse;
    # grouped-query attention: 26 bf16 (H 4, Hkv 2, causal, bool mask, dropout, grad_lse), 30 float32
    # MQA (H 3, Hkv 1, float mask, strided), 32 bf16 MQA with the group split over 3 CTAs (kv_split);
    # the short-sequence kernels (flash_short.cu) also run on 18 and on 35 (fp16, 128 x 128, causal,
    # bool mask with a fully masked row, grad_lse, packed dq/dk/dv) and 36 (bf16, 100 x 70, causal,
    # float mask, grad_lse)
    cases = ["1", "4", "6", "13", "16", "18", "20", "22", "23", "26", "30", "32", "35", "36"]
    run = subprocess.run([str(exe), *cases], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    assert run.returncode == 0, run.stdout
    assert run.stdout.count("ok   fp32") == 5 and run.stdout.count(" D32 ") == 5, run.stdout
    assert run.stdout.count(" H4 Hkv2/1 ") == 1 and run.stdout.count(" H3 Hkv1/1 ") == 1, run.stdout
    assert run.stdout.count(" H6 Hkv1/3 ") == 1, run.stdout
    short = [ln.split("| short:")[1] for ln in run.stdout.splitlines() if "| short:" in ln]
    assert len(short) == 3 and all(" dv " in ln for ln in short), run.stdout
    assert run.stdout.count("ok   ") == len(cases), run.stdout


# ---- grouped-query attention (GQA; MQA at Hkv = 1) -------------------------------------------------
# k, v (B, Hkv, Tk, D) with Hkv dividing q's H and enable_gqa=True (the op's last argument): query
# head h attends to kv head h // (H // Hkv), torch's repeat_interleave; dk, dv sum over each group.
def repeat_kv(a, H):
    """(B, Hkv, T, E) -> (B, H, T, E): each kv head repeated over its group (torch's repeat_interleave)"""
    return np.repeat(a, H // a.shape[1], axis=1)


def sum_groups(g, Hkv):
    """the gradient of repeat_kv: (B, H, T, E) summed over each group, (B, Hkv, T, E)"""
    B, H, T_, E = g.shape
    return g.reshape(B, Hkv, H // Hkv, T_, E).sum(2)


def make_gqa(rng, B, H, Hkv, Tq, Tk, D, Dv, dtype=np.float64):
    return (rng.standard_normal((B, H, Tq, D)).astype(dtype), rng.standard_normal((B, Hkv, Tk, D)).astype(dtype),
            rng.standard_normal((B, Hkv, Tk, Dv)).astype(dtype))


def ref_gqa_backward(q, k, v, g, mask=None, causal=False, scale=None, keep=None, p=0.0, glse=None):
    H, Hkv = q.shape[1], k.shape[1]
    dq, dk, dv = ref_backward(q, repeat_kv(k, H), repeat_kv(v, H), g, mask, causal, scale, keep, p, glse)
    return dq, sum_groups(dk, Hkv), sum_groups(dv, Hkv)


# (B, H, Hkv, Tq, Tk, D, Dv), causal, mask ("bool" per head: (B, H, Tq, Tk); "float": (Tq, Tk))
GQA_CASES = [((2, 4, 2, 5, 7, 8, 6), False, None), ((1, 6, 1, 70, 130, 16, 16), True, "float"),
             ((1, 4, 2, 33, 40, 8, 8), True, "bool"), ((2, 3, 1, 20, 9, 5, 5), False, "bool"),
             ((1, 8, 2, 129, 70, 12, 12), True, None)]


def gqa_mask(rng, kind, B, H, Tq, Tk):
    return make_mask(rng, kind, (B, H, Tq, Tk) if kind == "bool" else (Tq, Tk))


@contextlib.contextmanager
def both_ops_on(provider, device):
    """sdpa and sdpa_backward pinned to `provider` (the rule calls the backward through the dispatcher)"""
    with vt.ops.use(OP, provider, device), vt.ops.use(BACKWARD, provider, device):
        yield


@pytest.mark.parametrize("device,provider", DEVICE_PROVIDERS)
@pytest.mark.parametrize("case", GQA_CASES, ids=str)
def test_gqa_matches_numpy(device, provider, case):
    """out, lse and the three gradients (of out and of lse) against the float64 reference of k, v
    repeated over the groups"""
    (B, H, Hkv, Tq, Tk, D, Dv), causal, mask = case
    rng = np.random.default_rng(hash(case) % 2**32)
    q, k, v = make_gqa(rng, B, H, Hkv, Tq, Tk, D, Dv)
    m = gqa_mask(rng, mask, B, H, Tq, Tk)
    g, glse = rng.standard_normal((B, H, Tq, Dv)), rng.standard_normal((B, H, Tq))
    want, want_lse = ref(q, repeat_kv(k, H), repeat_kv(v, H), m, causal, 0.4)
    vq, vk, vv = (T(a, device).requires_grad_() for a in (q, k, v))
    with both_ops_on(provider, device):
        out, lse, _ = op()(vq, vk, vv, T(m, device), causal, 0.4, 0.0, True)
        grads = vt.autograd.grad([out, lse], [vq, vk, vv], [T(g, device), T(glse, device)])
    assert out.shape == (B, H, Tq, Dv) and lse.shape == (B, H, Tq)
    assert [tuple(x.shape) for x in grads] == [q.shape, k.shape, v.shape]
    np.testing.assert_allclose(to_numpy(out), want, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(to_numpy(lse), want_lse, rtol=1e-9, atol=1e-10)
    for name, got, w in zip("qkv", grads, ref_gqa_backward(q, k, v, g, m, causal, 0.4, glse=glse)):
        np.testing.assert_allclose(to_numpy(got), w, rtol=1e-9, atol=1e-9, err_msg=name)


@needs_torch
@pytest.mark.parametrize("device,provider", DEVICE_PROVIDERS)
@pytest.mark.parametrize("case", GQA_CASES, ids=str)
def test_gqa_matches_torch(device, provider, case):
    """torch's scaled_dot_product_attention(enable_gqa=True): forward and the three gradients, float32"""
    (B, H, Hkv, Tq, Tk, D, Dv), causal, mask = case
    rng = np.random.default_rng(hash(case) % 2**32 + 1)
    q, k, v = make_gqa(rng, B, H, Hkv, Tq, Tk, D, Dv, np.float32)
    m = gqa_mask(rng, mask, B, H, Tq, Tk)
    m = None if m is None else m.astype(m.dtype if m.dtype == bool else np.float32)
    causal = causal and m is None  # torch (and nn.functional) take one of the two
    g = rng.standard_normal((B, H, Tq, Dv)).astype(np.float32)
    tq, tk, tv = (torch.from_numpy(a).requires_grad_() for a in (q, k, v))
    tm = None if m is None else torch.from_numpy(m)
    tout = F.scaled_dot_product_attention(tq, tk, tv, attn_mask=tm, is_causal=causal, enable_gqa=True)
    tgrads = torch.autograd.grad(tout, (tq, tk, tv), torch.from_numpy(g))
    vq, vk, vv = (T(a, device).requires_grad_() for a in (q, k, v))
    with both_ops_on(provider, device):
        out = vt.nn.functional.scaled_dot_product_attention(vq, vk, vv, attn_mask=T(m, device), is_causal=causal,
                                                            enable_gqa=True)
        grads = vt.autograd.grad(out, (vq, vk, vv), T(g, device))
    np.testing.assert_allclose(to_numpy(out), tout.detach().numpy(), rtol=1e-4, atol=2e-5)
    for name, a, b in zip("qkv", grads, tgrads):
        np.testing.assert_allclose(to_numpy(a), b.numpy(), rtol=1e-3, atol=1e-4, err_msg=name)


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("case", [((1, 4, 2, 3, 4, 3, 2), True, None), ((2, 3, 1, 4, 3, 2, 3), False, "float")],
                         ids=str)
def test_gqa_gradcheck(provider, case):
    """float64 gradcheck of (out, lse) with k, v shared by groups of query heads"""
    (B, H, Hkv, Tq, Tk, D, Dv), causal, mask = case
    rng = np.random.default_rng(17)
    q, k, v = (vt.tensor(a).requires_grad_() for a in make_gqa(rng, B, H, Hkv, Tq, Tk, D, Dv))
    m = None if mask is None else vt.tensor(make_mask(rng, mask, (Tq, Tk)))
    f = op()

    def fn(q, k, v):
        return tuple(f(q, k, v, m, causal, 0.7, 0.0, True)[:2])
    with both_ops_on(provider, "cpu"):
        assert vt.autograd.gradcheck(fn, (q, k, v), atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("device,provider", DEVICE_PROVIDERS)
@pytest.mark.parametrize("causal", [False, True])
def test_gqa_dropout(device, provider, causal):
    """dropout over the (B, H, Tq, Tk) probabilities of the query heads: the mask of attn.hpp's
    rule at the recorded (seed, offset), in the forward and in the gradients"""
    B, H, Hkv, Tq, Tk, D, p = 2, 4, 2, 30, 50, 8, 0.3
    rng = np.random.default_rng(18)
    q, k, v = make_gqa(rng, B, H, Hkv, Tq, Tk, D, D)
    g = rng.standard_normal((B, H, Tq, D))
    vq, vk, vv = (T(a, device).requires_grad_() for a in (q, k, v))
    vt.manual_seed(19)
    with both_ops_on(provider, device):
        out, _, st = op()(vq, vk, vv, None, causal, None, p, True)
        grads = vt.autograd.grad(out, (vq, vk, vv), T(g, device))
    seed, offset = (int(x) for x in to_numpy(st))
    keep = to_numpy(vt.ops.Op("attention::dropout_mask")([B, H, Tq, Tk], p, seed, offset))
    assert 0.6 < keep.mean() < 0.8
    want, _ = ref(q, repeat_kv(k, H), repeat_kv(v, H), None, causal, keep=keep, p=p)
    np.testing.assert_allclose(to_numpy(out), want, rtol=1e-9, atol=1e-10)
    for name, got, w in zip("qkv", grads, ref_gqa_backward(q, k, v, g, None, causal, keep=keep, p=p)):
        np.testing.assert_allclose(to_numpy(got), w, rtol=1e-9, atol=1e-9, err_msg=name)


def test_gqa_gradients_in_the_inputs_layout_and_on_meta():
    """dk, dv follow k's and v's memory order (a head-transposed (B, T, Hkv, D) view gives
    gradients whose transpose(1, 2) is contiguous), and the meta device gives the same layouts"""
    B, T_, H, Hkv, D = 2, 9, 4, 2, 4
    rng = np.random.default_rng(20)
    q = vt.tensor(rng.standard_normal((B, T_, H, D))).transpose(1, 2)
    k = vt.tensor(rng.standard_normal((B, T_, Hkv, D))).transpose(1, 2)
    v = vt.tensor(rng.standard_normal((B, Hkv, T_, D)))  # contiguous
    res = {}
    for dev in ("cpu", "meta"):
        x = (q, k, v) if dev == "cpu" else tuple(vt.empty(t.shape, dtype=t.dtype, device="meta").as_strided(
            t.shape, t.stride(), 0) for t in (q, k, v))
        out, lse, rng_st = op()(*x, None, True, None, 0.0, True)
        go = vt.zeros(out.shape, dtype=out.dtype, device=dev)
        grads = vt.ops.Op(BACKWARD)(go, *x, out, lse, None, True, D ** -0.5, 0.0, 0, 0)
        res[dev] = [(tuple(t.shape), t.stride()) for t in (out, lse, rng_st, *grads)]
    assert res["meta"] == res["cpu"]
    (_, ost), _, _, (dqs, dqst), (dks, dkst), (dvs, dvst) = res["cpu"]
    assert (dqs, dks, dvs) == ((B, H, T_, D), (B, Hkv, T_, D), (B, Hkv, T_, D))
    assert ost == dqst == (T_ * H * D, D, H * D, 1)  # q's order
    assert dkst == (T_ * Hkv * D, D, Hkv * D, 1) and dvst == (Hkv * T_ * D, T_ * D, D, 1)


GQA_BAD = [
    (dict(k=(2, 2, 5, 8), v=(2, 2, 5, 8)), r"\[attention::sdpa\] k and v must have the head count H of q, or "
     r"fewer heads that divide it with enable_gqa=True"),
    (dict(k=(2, 2, 5, 8), v=(2, 2, 5, 8), gqa=True), r"\[attention::sdpa\] k's head count Hkv = 2 must divide q's H = 3"),
    (dict(k=(2, 6, 5, 8), v=(2, 6, 5, 8), gqa=True), r"\[attention::sdpa\] k's head count Hkv = 6 must divide q's H = 3"),
    (dict(k=(2, 1, 5, 8), v=(2, 3, 5, 8), gqa=True), r"\[attention::sdpa\] v must have the head count of k"),
]


@pytest.mark.parametrize("device,provider", DEVICE_PROVIDERS)
@pytest.mark.parametrize("bad,msg", GQA_BAD, ids=lambda x: str(x)[:40])
def test_gqa_bad_input(device, provider, bad, msg):
    shapes = dict(q=(2, 3, 4, 8), k=(2, 3, 5, 8), v=(2, 3, 5, 8))
    shapes.update({n: s for n, s in bad.items() if n in shapes})
    q, k, v = (T(np.ones(shapes[n]), device) for n in "qkv")
    with vt.ops.use(OP, provider, device), pytest.raises(ValueError, match=msg):
        op()(q, k, v, None, False, None, 0.0, bad.get("gqa", False))


def test_gqa_frontends():
    """torch's flag on both frontends: enable_gqa=False with differing heads is an error naming the
    flag; nn.functional's own composed path (no attention pack) repeats k and v like the op"""
    rng = np.random.default_rng(21)
    q, k, v = make_gqa(rng, 1, 6, 2, 5, 7, 4, 3)
    want, _ = ref(q, repeat_kv(k, 6), repeat_kv(v, 6), None, True)
    vq, vk, vv = (vt.tensor(a) for a in (q, k, v))
    np.testing.assert_allclose(sdpa(vq, vk, vv, is_causal=True, enable_gqa=True).numpy(), want, rtol=1e-10)
    with pytest.raises(ValueError, match="enable_gqa=True"):
        sdpa(vq, vk, vv)
    with pytest.raises(ValueError, match="enable_gqa=True"):
        vt.nn.functional.scaled_dot_product_attention(vq, vk, vv)
    with pytest.raises(ValueError, match="must divide"):
        vt.nn.functional.scaled_dot_product_attention(vq, vk[:, :1].expand(1, 4, 7, 4), vv[:, :1].expand(1, 4, 7, 3),
                                                      enable_gqa=True)
    got = vt.nn.functional._sdpa_composed(vq, vk, vv, None, 0.0, True, 0.5, 3)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10)


@needs_cuda
@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32"])
@pytest.mark.parametrize("D", [32, 64, 128])
@pytest.mark.parametrize("shape", [(2, 4, 2, 100, 190), (1, 6, 1, 200, 70), (1, 8, 2, 128, 128), (4, 8, 4, 64, 4200)],
                         ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("mask", [None, "bool"])
def test_flash_cuda_gqa(dtype, D, shape, causal, mask):
    """the CUDA kernels with k, v shared by groups of query heads: against float64 and the composed
    provider; the backward twice gives the same bits. The first three shapes give the dK/dV kernel
    too few CTAs for an H200, so each group is split over CTAs (flash_bwd.cu's kv_split, partial
    sums added up after); the last (4 x 4 kv heads x 66 key blocks) sums each group in one CTA."""
    B, H, Hkv, Tq, Tk = shape
    dt = getattr(vt, dtype)
    rng = np.random.default_rng(hash((dtype, D, shape, causal, mask)) % 2**32)
    q, k, v = make_gqa(rng, B, H, Hkv, Tq, Tk, D, D, np.float32)
    (tq, q), (tk, k), (tv, v) = (cuda_half(a, dt) for a in (q, k, v))
    tg, g = cuda_half(rng.standard_normal((B, H, Tq, D)).astype(np.float32), dt)
    m = gqa_mask(rng, mask, B, H, Tq, Tk)
    tm = None if m is None else on("cuda", vt.tensor(m))
    tol, floor = tol_of(dt)
    want, want_lse = ref(q, repeat_kv(k, H), repeat_kv(v, H), m, causal)
    poison(((B, H, Tq, D), dt), ((B, H, Tq), vt.float32))
    with vt.ops.use(OP, "flash", "cuda"):
        out, lse, _ = op()(tq, tk, tv, tm, causal, None, 0.0, True)
    assert rel_err(to_numpy(out), want) <= tol
    assert rel_err(to_numpy(lse), want_lse) <= min(tol, 1e-3)

    def grads(prov):
        qv, kv, vv = (t.detach().requires_grad_() for t in (tq, tk, tv))
        poison(((B, H, Tq, D), dt), ((B, Hkv, Tk, D), dt), ((B, Hkv, Tk, D), dt))
        with both_ops_on(prov, "cuda"):
            o = op()(qv, kv, vv, tm, causal, None, 0.0, True)[0]
            return vt.autograd.grad(o, (qv, kv, vv), tg)
    got, again, c_grads = grads("flash"), grads("flash"), grads("composed")
    for name, x, y, w, c in zip("qkv", got, again, ref_gqa_backward(q, k, v, g, m, causal), c_grads):
        assert rel_err(to_numpy(x), w, floor) <= tol, name
        assert rel_err(to_numpy(x), to_numpy(c), floor) <= tol, name
        np.testing.assert_array_equal(to_numpy(x), to_numpy(y), err_msg=f"d{name} not deterministic")


@needs_cuda
@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
@pytest.mark.parametrize("causal", [False, True])
def test_flash_cuda_gqa_dropout(dtype, causal):
    """dropout in the CUDA kernels with grouped heads: the mask of attn.hpp's rule over the query
    heads' probabilities, at the recorded (seed, offset), in out and in the three gradients"""
    B, H, Hkv, Tq, Tk, D, p = 2, 4, 1, 90, 130, 64, 0.2
    dt = getattr(vt, dtype)
    tol, floor = tol_of(dt)
    rng = np.random.default_rng(22)
    (tq, q), (tk, k), (tv, v) = (cuda_half(a, dt) for a in make_gqa(rng, B, H, Hkv, Tq, Tk, D, D, np.float32))
    tg, g = cuda_half(rng.standard_normal((B, H, Tq, D)).astype(np.float32), dt)
    qv, kv, vv = (t.detach().requires_grad_() for t in (tq, tk, tv))
    vt.manual_seed(23)
    with both_ops_on("flash", "cuda"):
        out, _, st = op()(qv, kv, vv, None, causal, None, p, True)
        grads = vt.autograd.grad(out, (qv, kv, vv), tg)
    seed, offset = (int(x) for x in to_numpy(st))
    keep = to_numpy(vt.ops.Op("attention::dropout_mask")([B, H, Tq, Tk], p, seed, offset))
    want, _ = ref(q, repeat_kv(k, H), repeat_kv(v, H), None, causal, keep=keep, p=p)
    assert rel_err(to_numpy(out), want) <= tol
    for name, got, w in zip("qkv", grads, ref_gqa_backward(q, k, v, g, None, causal, keep=keep, p=p)):
        assert rel_err(to_numpy(got), w, floor) <= tol, name
