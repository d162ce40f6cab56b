"""Views and autograd (issue 8): a view knows its base, and an in-place op on a view rewrites the
base's history (CopySlices), so gradients match torch's for in-place ops on views, copy_ into a
view, setitem on tensors with history, and views that went stale when their base was modified.
Each case runs the same program on vibetensor and torch and compares the gradients."""
from __future__ import annotations

import gc

import numpy as np
import pytest

import vibetensor as vt

torch = pytest.importorskip("torch", reason="the view cases compare against torch")


def run_both(prog, *leaves):
    """prog(lib, *leaves) -> a scalar loss; runs it on vt and torch, compares leaf gradients."""
    vl = [vt.tensor(np.asarray(x, dtype=np.float32)).requires_grad_() for x in leaves]
    tl = [torch.tensor(np.asarray(x, dtype=np.float32), requires_grad=True) for x in leaves]
    prog(vt, *vl).backward()
    prog(torch, *tl).backward()
    for i, (a, b) in enumerate(zip(vl, tl)):
        if b.grad is None:
            assert a.grad is None or not a.grad.numpy().any(), f"leaf {i}"
        else:
            assert a.grad is not None, f"leaf {i}: no gradient, torch has {b.grad}"
            np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-6, err_msg=f"leaf {i}")


W = [1.0, 2.0, 3.0]
M = np.arange(12.0).reshape(3, 4) / 7


def _weights(lib, shape):
    return lib.tensor(np.arange(1.0, 1.0 + np.prod(shape), dtype=np.float32).reshape(shape))


CASES = {
    # the issue's reproducer: w.grad [20, 20, 2]
    "mul_ on a slice": (lambda L, w: (lambda y: (y[0:2].mul_(10), y.sum())[1])(w * 2), W),
    "add_ tensor on a slice": (lambda L, w, s: (lambda y: (y[1:3].add_(s * s), (y * y).sum())[1])(w * 2),
                               W, [0.5, -1.0]),
    "copy_ into a view gives the source its gradient":
        (lambda L, w, s: (lambda y: (y[0:2].copy_(s * 3), (y * _weights(L, [3])).sum())[1])(w * 2), W, [4.0, 5.0]),
    "setitem slice with a tensor": (lambda L, w, s: (lambda y: (y.__setitem__(slice(1, 3), s.exp()),
                                                               (y * _weights(L, [3])).sum())[1])(w * 1), W, [0.1, 0.2]),
    "setitem number": (lambda L, w: (lambda y: (y.__setitem__(1, 0.0), (y * y).sum())[1])(w * 3), W),
    "setitem int on 2-d": (lambda L, m: (lambda y: (y.__setitem__((1, 2), 5.0), (y * y).sum())[1])(m * 2), M),
    "setitem advanced index": (lambda L, m, s: (lambda y: (y.__setitem__((L.tensor([0, 2]),), s * 2),
                                                           (y * y).sum())[1])(m + 1), M, np.ones((2, 4))),
    "in-place on a transposed view": (lambda L, m: (lambda y: (y.t()[1:3].mul_(3), (y * y).sum())[1])(m * 2), M),
    "in-place on a column (strided view)": (lambda L, m: (lambda y: (y[:, 1].mul_(L.tensor([1.0, -2.0, 3.0])),
                                                                     (y * y).sum())[1])(m * 2), M),
    "view of a view": (lambda L, m: (lambda y: (y[1:][:, 1:3].mul_(-2), (y * y).sum())[1])(m * 2), M),
    "a sibling view goes stale": (lambda L, m: (lambda y: (lambda a, b: (b.mul_(4), (a * a).sum())[1])(
        y[0:2], y[1:3]))(m * 2), M),
    "the base changes after a view was taken": (lambda L, w: (lambda y: (lambda v: (y.mul_(10), v.sum())[1])(
        y[0:2]))(w * 2), W),
    "twice on one view": (lambda L, w: (lambda y: (lambda v: (v.mul_(3), v.add_(1), (v * v).sum() + y.sum())[2])(
        y[1:3]))(w * 2), W),
    "fill_ on a view": (lambda L, m: (lambda y: (y[1].fill_(2.0), (y * y).sum())[1])(m * 2), M),
    "zero_ on a view": (lambda L, m: (lambda y: (y[:, 0].zero_(), (y * y).sum())[1])(m * 2), M),
    "base without history gets it": (lambda L, s: (lambda x: (x[1:3].copy_(s * s), (x * x).sum())[1])(
        L.zeros(4)), [1.5, -2.0]),
    "a view made before the base got history":
        (lambda L, s: (lambda x: (lambda v: (x.copy_(s * s), (v * 3).sum())[1])(x[0:2]))(L.zeros(3)), [1.0, 2.0, 3.0]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_inplace_on_views_matches_torch(name):
    prog, *leaves = CASES[name]
    run_both(prog, *leaves)


def test_issue_reproducer_values():
    w = vt.ones(3).requires_grad_()
    y = w * 2
    y[0:2].mul_(10)
    y.sum().backward()
    assert w.grad.tolist() == [20.0, 20.0, 2.0]
    assert y.grad_fn is not None and "CopySlices" in repr(y.grad_fn)


def test_create_graph_through_copy_slices():
    for lib in (vt, torch):
        w = lib.tensor([1.0, 2.0, 3.0], requires_grad=True) if lib is torch else \
            vt.tensor([1.0, 2.0, 3.0]).requires_grad_()
        y = w * w
        y[0:2].add_(w[1:3] ** 3)
        (g,) = lib.autograd.grad(y.sum(), [w], create_graph=True)
        (gg,) = lib.autograd.grad(g.sum(), [w])
        if lib is vt:
            got = (g.numpy(), gg.numpy())
        else:
            want = (g.detach().numpy(), gg.detach().numpy())
    np.testing.assert_allclose(got[0], want[0], rtol=1e-6)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-6)


def test_leaf_views_still_refused():
    w = vt.ones(3).requires_grad_()
    with pytest.raises(RuntimeError, match="view of a leaf"):
        w[:2].add_(1)
    with pytest.raises(RuntimeError, match="leaf"):
        w[1] = 5.0
    with vt.no_grad():
        w[1] = 5.0  # parameter updates under no_grad are fine
    assert w.tolist() == [1.0, 5.0, 1.0]


def test_view_made_in_no_grad_refused_like_torch():
    w = vt.ones(3).requires_grad_()
    y = w * 2
    with vt.no_grad():
        v = y[0:2]
    assert not v.requires_grad
    s = vt.ones(2).requires_grad_()
    with pytest.raises(RuntimeError, match="no_grad"):
        v.copy_(s)
    v.mul_(3)  # nothing that requires grad flows in: allowed, as in torch
    (v * 1).sum()  # and the no_grad view stays without history


def test_views_do_not_leak_graphs():
    """A view holds its base, and in-place nodes may save the view (div_ saves its output): the
    graph must still be freed (no cycle). A hook's closure lives exactly as long as y's node."""
    import weakref

    class Probe:
        pass

    refs = []
    for _ in range(20):
        p = Probe()
        refs.append(weakref.ref(p))
        w = vt.ones(64).requires_grad_()
        y = w * 2
        y.register_hook(lambda g, p=p: g)
        v = y[0:8]
        v.div_(vt.full((8,), 2.0))
        y[8:16] = w[0:8] * 3
        y[16:24].mul_(vt.full((8,), 3.0))
        y[32:40] = y[40:48] * 2  # the new history reaches a node that saved (a view of) y
        y.add_(y * y)            # the same without views
        del p, w, y, v
    gc.collect()
    assert all(r() is None for r in refs)
