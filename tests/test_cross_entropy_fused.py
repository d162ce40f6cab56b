"""cross_entropy's training path: core::cross_entropy_fused writes the input's gradient in the
forward pass and core::cross_entropy_grad_scale applies grad_output in the backward. Checked
against the two-pass path (core::cross_entropy + core::cross_entropy_backward: the same bits at
grad_output 1) and torch; a retained graph's second backward, autograd.grad twice, grad_output
!= 1, every reduction, ignore_index and label smoothing; which ops a call runs (no gradient buffer
without grad); gradcheck in float64. On every available device (conftest's `device`)."""
from __future__ import annotations

import numpy as np
import pytest

import vibetensor as vt
from conftest import assert_close, make, on, to_numpy, torch_tensor

from conftest import DEVICES, HAS_TORCH

if HAS_TORCH:
    import torch as _torch
    import torch.nn.functional as F

FUSED, SCALE, PLAIN, BACKWARD = ("core::cross_entropy_fused", "core::cross_entropy_grad_scale",
                                 "core::cross_entropy", "core::cross_entropy_backward")
CE_OPS = (FUSED, SCALE, PLAIN, BACKWARD)
# (input shape, target shape): rows, (N, C, d) positions, one sample
SHAPES = [((6, 5), (6,)), ((2, 5, 3), (2, 3)), ((5,), ()), ((16, 65), (16,))]


def _targets(rng, C, tshape, device, ignore=-100):
    tn = np.asarray(rng.integers(0, C, tshape), np.int64)
    if tn.size > 2:
        tn.flat[1] = ignore
    return tn, on(device, vt.tensor(tn))


def _ops_run(fn):
    """fn()'s result and the cross-entropy ops it called, in order."""
    with vt.ops.trace() as t:
        r = fn()
    return r, [rec.op for rec in t.records if rec.op in CE_OPS]


def _two_pass_grad(x, t, go, ignore, eps, red):
    """The input's gradient through core::cross_entropy_backward (the reference path)."""
    loss, lse = vt.ops.core.cross_entropy(x.detach(), t, ignore, eps, red)
    return vt.ops.core.cross_entropy_backward(go, x.detach(), t, lse, ignore, eps, red)


@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
@pytest.mark.parametrize("shapes", SHAPES, ids=str)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_training_call_takes_the_fused_path(rng, dtype, shapes, reduction, device):
    shape, tshape = shapes
    C = shape[1] if len(shape) > 1 else shape[0]
    for eps in (0.0, 0.1):
        x, _ = make(rng, shape, dtype, device=device)
        x.requires_grad_()
        tn, t = _targets(rng, C, tshape, device)
        loss, ran = _ops_run(lambda: vt.cross_entropy(x, t, reduction=reduction, label_smoothing=eps))
        assert ran == [FUSED]
        plain = vt.ops.core.cross_entropy(x.detach(), t, -100, eps, reduction)[0]
        assert np.array_equal(to_numpy(loss), to_numpy(plain))  # the same forward
        _, ran = _ops_run(lambda: loss.backward())
        assert ran == [SCALE]
        one = on(device, vt.ones((), dtype=x.dtype))
        # grad_output 1: the buffer is handed out as written, the same bits as the two-pass path
        want = _two_pass_grad(x, t, one, -100, eps, reduction)
        assert np.array_equal(to_numpy(x.grad), to_numpy(want)), f"eps {eps}"


@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_grad_output_scales_the_buffer(rng, dtype, reduction, device):
    x, _ = make(rng, (7, 9), dtype, device=device)
    x.requires_grad_()
    _, t = _targets(rng, 9, (7,), device, ignore=4)
    for k in (3.0, 0.0, -0.5):
        x.grad = None
        loss = vt.cross_entropy(x, t, ignore_index=4, reduction=reduction, label_smoothing=0.2)
        (loss * k).backward()
        go = on(device, vt.full((), k, dtype=x.dtype))
        assert_close(x.grad, to_numpy(_two_pass_grad(x, t, go, 4, 0.2, reduction)), dtype, scale=4,
                     msg=f"grad_output {k}")
    assert not to_numpy(x.grad)[1].any()  # the ignored row (grad_output 0 or not)


def test_none_reduction_keeps_the_two_pass_path_and_the_op_scales_per_position(rng, device):
    x, _ = make(rng, (6, 5), "float32", device=device)
    x.requires_grad_()
    _, t = _targets(rng, 5, (6,), device)
    _, ran = _ops_run(lambda: vt.cross_entropy(x, t, reduction="none"))
    assert ran == [PLAIN]
    # the op itself: per-position grad_output with ones (skipped rows), a zero and others
    gon = np.array([1.0, 2.0, 0.0, 1.0, -3.0, 0.5], np.float32)
    go = on(device, vt.tensor(gon))
    loss, _, _ = vt.ops.core.cross_entropy_fused(x, t, -100, 0.1, "none")
    loss.backward(go)
    assert_close(x.grad, to_numpy(_two_pass_grad(x, t, go, -100, 0.1, "none")), "float32", scale=4)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_long_rows(rng, dtype, device):
    """Rows of several chunks per thread (on CUDA the fused forward keeps such a row in shared
    memory; its lse may then differ from cross_entropy's in the last bits)."""
    C = 20000 if dtype == "float32" else 36000
    x, _ = make(rng, (3, C), dtype, device=device)
    x.requires_grad_()
    _, t = _targets(rng, C, (3,), device)
    loss = vt.cross_entropy(x, t, label_smoothing=0.1)
    plain = vt.ops.core.cross_entropy(x.detach(), t, -100, 0.1, "mean")[0]
    assert_close(loss, to_numpy(plain), dtype, scale=4)
    (loss * 2.0).backward()
    go = on(device, vt.full((), 2.0, dtype=x.dtype))
    assert_close(x.grad, to_numpy(_two_pass_grad(x, t, go, -100, 0.1, "mean")), dtype, scale=4)


@pytest.mark.skipif("cuda" not in DEVICES, reason="needs a CUDA GPU")
@pytest.mark.parametrize("C", [37, 20000])  # a row in registers, a row in shared memory
def test_forward_and_backward_capture_and_replay(rng, C):
    """The training call captured into a CUDA graph (nothing waits for the host) and replayed on new
    logits: the gradient the replay leaves in x.grad is the new one."""
    x = vt.tensor(rng.standard_normal((4, C)).astype(np.float32)).to("cuda").requires_grad_()
    tn = np.asarray(rng.integers(0, C, 4), np.int64)
    t = vt.tensor(tn).to("cuda")

    def step():
        (vt.cross_entropy(x, t, label_smoothing=0.1) * 2.0).backward()

    step()  # warm-up: kernel attributes and allocator blocks exist before the capture
    vt.cuda.synchronize()
    x.grad = None
    g = vt.cuda.CUDAGraph()
    with vt.cuda.graph(g):
        step()
    xn = rng.standard_normal((4, C)).astype(np.float32)
    with vt.no_grad():
        x.copy_(vt.tensor(xn).to("cuda"))
    g.replay()
    vt.cuda.synchronize()
    xc = vt.tensor(xn)
    want = _two_pass_grad(xc, vt.tensor(tn), vt.full((), 2.0, dtype=vt.float32), -100, 0.1, "mean")
    assert_close(x.grad, to_numpy(want), "float32", scale=4)


def test_no_grad_calls_make_no_gradient_buffer(rng, device):
    x, _ = make(rng, (4, 6), "float32", device=device)
    _, t = _targets(rng, 6, (4,), device)
    _, ran = _ops_run(lambda: vt.cross_entropy(x, t))  # input without requires_grad
    assert ran == [PLAIN]
    x.requires_grad_()
    with vt.no_grad():
        loss, ran = _ops_run(lambda: vt.cross_entropy(x, t))
    assert ran == [PLAIN] and loss.grad_fn is None


def test_retained_graph_backward_twice(rng, device):
    x, _ = make(rng, (5, 7), "float64", device=device)
    x.requires_grad_()
    _, t = _targets(rng, 7, (5,), device)
    loss = vt.cross_entropy(x, t, label_smoothing=0.1) * 3.0
    loss.backward(retain_graph=True)
    first = to_numpy(x.grad).copy()
    go = on(device, vt.full((), 3.0, dtype=vt.float64))
    np.testing.assert_allclose(first, to_numpy(_two_pass_grad(x, t, go, -100, 0.1, "mean")), rtol=1e-12,
                               atol=1e-15)
    # the second backward recomputes (the buffer went out with the first) and accumulates
    _, ran = _ops_run(lambda: loss.backward())
    assert ran == [BACKWARD]
    np.testing.assert_allclose(to_numpy(x.grad), 2 * first, rtol=1e-12, atol=1e-15)


def test_autograd_grad_twice_leaves_the_first_result_alone(rng, device):
    x, _ = make(rng, (4, 6), "float32", device=device)
    x.requires_grad_()
    _, t = _targets(rng, 6, (4,), device)
    loss = vt.cross_entropy(x, t, reduction="sum")
    (g1,) = vt.autograd.grad(loss * 2.0, [x], retain_graph=True)
    kept = to_numpy(g1).copy()
    (g5,) = vt.autograd.grad(loss * 5.0, [x])
    assert np.array_equal(to_numpy(g1), kept)  # not scaled again in place
    assert_close(g5, kept * 2.5, "float32", scale=4)


def test_a_fresh_forward_hands_its_buffer_out_again(rng, device):
    """Buffers are handed out once per forward, also when a later forward reuses the memory."""
    x, _ = make(rng, (8, 11), "float32", device=device)
    x.requires_grad_()
    _, t = _targets(rng, 11, (8,), device)
    for _ in range(3):
        x.grad = None
        loss = vt.cross_entropy(x, t)
        _, ran = _ops_run(lambda: loss.backward())
        assert ran == [SCALE]


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_against_torch(rng, reduction, device):
    xn = rng.standard_normal((2, 6, 3))
    tn = np.asarray(rng.integers(0, 6, (2, 3)), np.int64)
    tn[0, 1] = 2
    tn[1, 2] = -100
    x = on(device, vt.tensor(xn)).requires_grad_()
    (vt.cross_entropy(x, on(device, vt.tensor(tn)), reduction=reduction, label_smoothing=0.3) * 1.5).backward()
    tx = torch_tensor(xn, "float64").requires_grad_()
    (F.cross_entropy(tx, _torch.tensor(tn), reduction=reduction, label_smoothing=0.3) * 1.5).backward()
    np.testing.assert_allclose(to_numpy(x.grad), tx.grad.numpy(), rtol=1e-10, atol=1e-13)


def test_gradcheck(rng):
    gc = vt.autograd.gradcheck
    t = vt.tensor(np.array([0, 3, 7, 1, 7, 2]))
    for red in ("mean", "sum"):
        for eps in (0.0, 0.1):
            assert gc(lambda x: vt.cross_entropy(x, t, ignore_index=7, reduction=red, label_smoothing=eps),
                      [vt.tensor(rng.standard_normal((6, 4))).requires_grad_()])
    t3 = vt.tensor(rng.integers(0, 3, (2, 4, 5)))
    assert gc(lambda x: vt.cross_entropy(x, t3, reduction="sum"),
              [vt.tensor(rng.standard_normal((2, 3, 4, 5))).requires_grad_()])


def test_grad_scale_refuses_bad_input():
    g = vt.zeros(3, 4)
    with pytest.raises(ValueError, match=r"\[core::cross_entropy_grad_scale\] grad_output \(2,\) does not match "
                                         r"the loss of reduction 'mean'"):
        vt.ops.core.cross_entropy_grad_scale(vt.ones(2), g, "mean")
    with pytest.raises(ValueError, match=r"\[core::cross_entropy_grad_scale\] grad must be contiguous"):
        vt.ops.core.cross_entropy_grad_scale(vt.ones(4), vt.zeros(4, 3).t(), "none")
    with pytest.raises(TypeError, match=r"\[core::cross_entropy_grad_scale\] .*grad_output"):
        vt.ops.core.cross_entropy_grad_scale(vt.ones((), dtype=vt.float64), g, "sum")
    with pytest.raises(ValueError, match=r"\[core::cross_entropy_grad_scale\] reduction must be"):
        vt.ops.core.cross_entropy_grad_scale(vt.ones(()), g, "avg")
