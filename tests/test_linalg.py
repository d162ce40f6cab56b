"""matmul, bmm, addmm, linear: against a numpy float64 reference (always) and torch (when it
imports), in every layout and dtype, on every available device (conftest's `device`), through
gradcheck, and with bad inputs."""
from __future__ import annotations

import numpy as np
import pytest

import vibetensor as vt
from conftest import HAS_TORCH, LAYOUTS, assert_close, make, to_numpy, torch_tensor

if HAS_TORCH:
    import torch as _torch

FLOATS = ["float32", "float64", "float16", "bfloat16"]

# (self shape, other shape): 1-D cases, batches that broadcast, the folded linear case, 0-size
MATMUL_SHAPES = [
    ((4,), (4,)), ((3,), (3, 5)), ((2, 3), (3,)), ((2, 4, 3), (3,)), ((3,), (2, 3, 5)),
    ((5, 3), (3, 4)), ((2, 5, 3), (3, 4)), ((2, 1, 5, 3), (4, 3, 2)), ((1, 3), (3, 1)),
    ((0, 3), (3, 4)), ((2, 3), (3, 0)), ((2, 0), (0, 4)), ((0, 2, 3), (3, 4)), ((1,), (1,)),
]


def _mm_scale(k):
    return 4 * max(1.0, k / 4)  # a GEMM sums k products: widen atol with k


def _ref(a, b):
    return np.matmul(a.astype(np.float64), b.astype(np.float64))


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shapes", MATMUL_SHAPES, ids=str)
def test_matmul_shapes(rng, dtype, shapes, device, torch):
    sa, sb = shapes
    layouts = LAYOUTS if dtype == "float32" else ("contiguous", "transposed")
    for la in layouts:
        a, an = make(rng, sa, dtype, la, device)
        b, bn = make(rng, sb, dtype, layouts[-1 - layouts.index(la)], device)
        out = a @ b
        k = sa[-1]
        assert_close(out, _ref(an, bn), dtype, scale=_mm_scale(k), msg=f"{sa}@{sb} {la}")
        if torch is not None:
            ref = torch_tensor(an, dtype) @ torch_tensor(bn, dtype)
            assert tuple(ref.shape) == out.shape
            if dtype in ("float32", "float64"):
                assert_close(out, to_numpy(ref).astype(np.float64), scale=4 * max(1, k), msg="vs torch")


def test_matmul_large_threads_and_linear_fold(rng):
    """Big enough to take the parallel path; the folded (B, T, C) @ (C, N) GEMM; results do not
    depend on the thread count."""
    a = rng.standard_normal((3, 70, 130)).astype(np.float32)
    b = rng.standard_normal((130, 90)).astype(np.float32)
    va, vb = vt.tensor(a), vt.tensor(b)
    ref = _ref(a, b)
    n = vt.get_num_threads()
    try:
        outs = []
        for t in (1, 2):
            vt.set_num_threads(t)
            out = va @ vb
            np.testing.assert_allclose(out.numpy(), ref, rtol=1e-4, atol=1e-3)
            outs.append(out.numpy())
            bt = vt.tensor(rng.standard_normal((3, 130, 90)).astype(np.float32))
            np.testing.assert_allclose((va @ bt).numpy(), _ref(a, bt.numpy()), rtol=1e-4, atol=1e-3)
    finally:
        vt.set_num_threads(n)


@pytest.mark.parametrize("dtype", FLOATS)
def test_bmm(rng, dtype, device, torch):
    for la in ("contiguous", "transposed", "sliced"):
        a, an = make(rng, (3, 4, 5), dtype, la, device)
        b, bn = make(rng, (3, 5, 2), dtype, la, device)
        out = vt.bmm(a, b)
        assert_close(out, _ref(an, bn), dtype, scale=5)
        if torch is not None and dtype in ("float32", "float64"):
            ref = _torch.bmm(torch_tensor(an, dtype), torch_tensor(bn, dtype))
            assert_close(out, to_numpy(ref), scale=5)
    assert vt.bmm(vt.zeros(0, 2, 3, device=device), vt.zeros(0, 3, 4, device=device)).shape == (0, 2, 4)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("self_shape", [(3, 4), (4,), (3, 1), (1, 4), ()])
def test_addmm(rng, dtype, self_shape, device, torch):
    s, sn = make(rng, self_shape, dtype, device=device)
    m1, m1n = make(rng, (3, 5), dtype, "transposed", device)
    m2, m2n = make(rng, (5, 4), dtype, device=device)
    for beta, alpha in ((1, 1), (0.5, 2.0), (0.0, 1.0)):
        out = vt.addmm(s, m1, m2, beta=beta, alpha=alpha)
        ref = beta * np.broadcast_to(sn, (3, 4)) + alpha * _ref(m1n, m2n)
        assert_close(out, ref, dtype, scale=10)
        if torch is not None and dtype in ("float32", "float64"):
            tr = _torch.addmm(torch_tensor(sn, dtype), torch_tensor(m1n, dtype), torch_tensor(m2n, dtype),
                              beta=beta, alpha=alpha)
            assert_close(out, to_numpy(tr), scale=10)
    # beta = 0 ignores self even when it holds nan (torch's rule)
    nan = vt.full((3, 4), float("nan"), dtype=vt.float32, device=device)
    m1f, m2f = m1.to(vt.float32), m2.to(vt.float32)
    assert np.isfinite(to_numpy(vt.addmm(nan, m1f, m2f, beta=0.0))).all()


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("xshape", [(5,), (3, 5), (2, 3, 5), (0, 5), (2, 0, 5)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear(rng, dtype, xshape, with_bias, device, torch):
    for layout in ("contiguous", "sliced", "transposed"):
        x, xn = make(rng, xshape, dtype, layout, device)
        w, wn = make(rng, (4, 5), dtype, "transposed" if layout == "contiguous" else "contiguous",
                     device)
        b, bn = make(rng, (4,), dtype, device=device) if with_bias else (None, 0.0)
        out = vt.linear(x, w, b)
        ref = xn.astype(np.float64) @ wn.astype(np.float64).T + bn
        assert_close(out, ref, dtype, scale=6, msg=f"{xshape} {layout}")
        if torch is not None and dtype in ("float32", "float64"):
            tr = _torch.nn.functional.linear(torch_tensor(xn, dtype), torch_tensor(wn, dtype),
                                             torch_tensor(bn, dtype) if with_bias else None)
            assert_close(out, to_numpy(tr), scale=6)


def test_linear_k_zero():
    out = vt.linear(vt.zeros(3, 0), vt.zeros(4, 0), vt.ones(4))
    assert out.shape == (3, 4) and out.numpy().tolist() == [[1.0] * 4] * 3
    assert (vt.zeros(2, 0) @ vt.zeros(0, 3)).numpy().tolist() == [[0.0] * 3] * 2


# -- gradients -------------------------------------------------------------------------------------

def _r(rng, *shape):
    return vt.tensor(rng.standard_normal(shape)).requires_grad_()


GRAD_MATMUL = [((4,), (4,)), ((4,), (4, 3)), ((2, 4), (4,)), ((2, 3, 4), (4, 5)), ((4,), (2, 4, 5)),
               ((2, 1, 3, 4), (3, 4, 2)), ((3, 4), (2, 4, 5)), ((2, 3, 4), (4,))]


@pytest.mark.parametrize("shapes", GRAD_MATMUL, ids=str)
def test_matmul_gradcheck(rng, shapes):
    a, b = _r(rng, *shapes[0]), _r(rng, *shapes[1])
    assert vt.autograd.gradcheck(lambda x, y: x @ y, [a, b])


def test_bmm_addmm_linear_gradcheck(rng):
    gc = vt.autograd.gradcheck
    assert gc(lambda x, y: vt.bmm(x, y), [_r(rng, 2, 3, 4), _r(rng, 2, 4, 2)])
    assert gc(lambda s, x, y: vt.addmm(s, x, y, beta=0.5, alpha=-2.0), [_r(rng, 4), _r(rng, 3, 2), _r(rng, 2, 4)])
    assert gc(lambda s, x, y: vt.addmm(s, x, y), [_r(rng, 3, 1), _r(rng, 3, 2), _r(rng, 2, 4)])
    assert gc(lambda x, w, b: vt.linear(x, w, b), [_r(rng, 2, 3, 4), _r(rng, 5, 4), _r(rng, 5)])
    assert gc(lambda x, w: vt.linear(x, w), [_r(rng, 4), _r(rng, 5, 4)])


def test_matmul_grad_vs_torch(rng, torch):
    """float32 gradients of a broadcast batched product against torch (skipped part without it)."""
    an = rng.standard_normal((2, 1, 3, 4)).astype(np.float32)
    bn = rng.standard_normal((3, 4, 5)).astype(np.float32)
    gn = rng.standard_normal((2, 3, 3, 5)).astype(np.float32)
    a, b = vt.tensor(an).requires_grad_(), vt.tensor(bn).requires_grad_()
    (a @ b * vt.tensor(gn)).sum().backward()
    ga = np.einsum("xbmn,bkn->xbmk", gn.astype(np.float64), bn.astype(np.float64)).sum(1, keepdims=True)
    gb = np.einsum("xbmk,xbmn->bkn", np.broadcast_to(an, (2, 3, 3, 4)).astype(np.float64), gn.astype(np.float64))
    np.testing.assert_allclose(a.grad.numpy(), ga, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(b.grad.numpy(), gb, rtol=1e-4, atol=1e-4)
    if torch is not None:
        ta, tb = _torch.tensor(an, requires_grad=True), _torch.tensor(bn, requires_grad=True)
        (ta @ tb * _torch.tensor(gn)).sum().backward()
        np.testing.assert_allclose(a.grad.numpy(), ta.grad.numpy(), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(b.grad.numpy(), tb.grad.numpy(), rtol=1e-4, atol=1e-4)


def test_matmul_double_backward(rng):
    a, b = _r(rng, 3, 4), _r(rng, 4, 2)
    (ga,) = vt.autograd.grad((a @ b).sum(), [a], create_graph=True)
    (ga * ga).sum().backward()  # d/db of sum((1 @ b^T)^2) = 2 * 3 * rowsum-ish: just check it runs
    gb = 2 * 3 * np.broadcast_to(b.detach().numpy().sum(1, keepdims=True), (4, 2))
    np.testing.assert_allclose(b.grad.numpy(), gb, rtol=1e-10)


# -- bad input -------------------------------------------------------------------------------------

def test_bad_inputs():
    with pytest.raises(ValueError, match=r"\[core::matmul\] shape mismatch.*\(2, 3\).*\(4, 5\)"):
        vt.zeros(2, 3) @ vt.zeros(4, 5)
    with pytest.raises(ValueError, match=r"\[core::matmul\] both arguments need at least 1 dim"):
        vt.zeros(()) @ vt.zeros(3)
    with pytest.raises(ValueError, match=r"\[core::matmul\] batch dims cannot be broadcast"):
        vt.zeros(2, 3, 4) @ vt.zeros(3, 4, 5)
    with pytest.raises(TypeError, match=r"\[core::matmul\] dtype mismatch"):
        vt.zeros(2, 3) @ vt.zeros(3, 2, dtype=vt.float64)
    with pytest.raises(NotImplementedError, match=r"\[core::matmul\] not implemented for dtype int64"):
        vt.zeros(2, 3, dtype=vt.int64) @ vt.zeros(3, 2, dtype=vt.int64)
    with pytest.raises(ValueError, match=r"\[core::bmm\] expected 3-D"):
        vt.bmm(vt.zeros(2, 3), vt.zeros(3, 2))
    with pytest.raises(ValueError, match=r"\[core::bmm\] shape mismatch"):
        vt.bmm(vt.zeros(2, 2, 3), vt.zeros(3, 3, 2))
    with pytest.raises(ValueError, match=r"\[core::linear\] shape mismatch: input \(2, 3\) has 3 features"):
        vt.linear(vt.zeros(2, 3), vt.zeros(4, 5))
    with pytest.raises(ValueError, match=r"\[core::linear\] bias must have shape \(4,\)"):
        vt.linear(vt.zeros(2, 5), vt.zeros(4, 5), vt.zeros(3))
    with pytest.raises(ValueError, match=r"\[core::addmm\] self \(5,\) cannot be broadcast to \(2, 4\)|shapes cannot"):
        vt.addmm(vt.zeros(5), vt.zeros(2, 3), vt.zeros(3, 4))
