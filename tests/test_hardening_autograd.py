"""Issue 8, autograd and in-place correctness: gradient accumulation into a shared leaf is exact
under threads, stored gradients are dense and typed like their tensor, in-place ops refuse memory
that overlaps itself or another argument, and views of leaves that require grad are not written.
Crash reproducers run in a child interpreter (packtools.run_py) so a crash fails one test."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import vibetensor as vt

sys.path.insert(0, str(Path(__file__).resolve().parent / "packs"))
import packtools as pt  # noqa: E402


# ---- 1. several threads backward into one leaf ----------------------------------------------------

def test_threads_backward_into_one_leaf_is_exact():
    out = pt.result("""
        import threading
        grads = []
        for run in range(6):  # the issue's reproducer crashed in 4 of 14 runs of this
            w = vt.zeros(1000).requires_grad_()
            def work():
                for _ in range(500):
                    (w * 1.0).sum().backward()
            ts = [threading.Thread(target=work) for _ in range(4)]
            for t in ts: t.start()
            for t in ts: t.join()
            g = w.grad.numpy()
            grads.append([float(g.min()), float(g.max())])
        print(json.dumps(grads))
    """)
    assert out == [[2000.0, 2000.0]] * 6


def test_threads_building_graphs_on_one_leaf():
    # forward and backward interleaved: the leaf's accumulator node is made, shared and dropped
    # by several threads at once
    out = pt.result("""
        import threading
        w = vt.ones(64).requires_grad_()
        def work():
            for _ in range(300):
                ((w * 2.0) * 3.0).sum().backward()
                _ = w.grad  # reading the grad while others accumulate
        ts = [threading.Thread(target=work) for _ in range(4)]
        for t in ts: t.start()
        for t in ts: t.join()
        print(json.dumps(w.grad.numpy().tolist()))
    """)
    assert out == [6.0 * 1200] * 64


# ---- 2. the layout and dtype of .grad -------------------------------------------------------------

def test_grad_of_an_expanded_gradient_is_dense():
    w = vt.zeros(3).requires_grad_()
    w.sum().backward()  # sum's backward hands out a stride-0 expansion
    assert w.grad.stride() == (1,)
    w.grad.add_(vt.tensor([1.0, 2.0, 3.0]))
    assert w.grad.numpy().tolist() == [2.0, 3.0, 4.0]


def test_grad_of_a_matrix_leaf_is_dense_and_clip_norm_sees_every_value():
    p = vt.zeros(4, 4).requires_grad_()
    p.sum().backward()
    assert p.grad.stride() == (4, 1)
    total = vt.nn.utils.clip_grad_norm_([p], 1e9)
    assert float(total) == pytest.approx(4.0)  # sqrt(16 ones), not one cell


def test_grad_does_not_alias_the_seed_gradient():
    x = vt.zeros(3).requires_grad_()
    seed = vt.ones(3)
    x.backward(seed)
    x.grad.add_(vt.ones(3))
    assert seed.numpy().tolist() == [1.0, 1.0, 1.0]
    assert x.grad.numpy().tolist() == [2.0, 2.0, 2.0]


def test_retained_grad_is_dense():
    x = vt.zeros(3).requires_grad_()
    y = x * 2.0
    y.retain_grad()
    y.sum().backward()
    assert y.grad.stride() == (1,)
    y.grad.add_(vt.tensor([0.0, 1.0, 2.0]))
    assert y.grad.numpy().tolist() == [1.0, 2.0, 3.0]


def test_accumulated_grad_stays_dense():
    w = vt.zeros(2, 3).requires_grad_()
    w.sum().backward()
    w.sum().backward()
    assert w.grad.stride() == (3, 1)
    assert w.grad.numpy().tolist() == [[2.0] * 3] * 2


def test_backward_with_an_integer_gradient_is_refused():
    w = vt.zeros(3).requires_grad_()
    with pytest.raises(TypeError, match="backward: gradient of dtype int64 for an output of dtype "
                                        "float32"):
        w.backward(vt.ones(3, dtype=vt.int64))
    assert w.grad is None


def test_assigning_a_grad_of_another_dtype_is_refused():
    w = vt.zeros(3).requires_grad_()
    with pytest.raises(TypeError, match="grad: assigned gradient of dtype int64"):
        w.grad = vt.zeros(3, dtype=vt.int64)
    w.grad = vt.ones(3)  # the same dtype is fine
    assert w.grad.numpy().tolist() == [1.0, 1.0, 1.0]


# ---- 3. in-place ops on overlapping memory --------------------------------------------------------

def test_partial_overlap_between_self_and_an_argument_is_refused():
    x = vt.arange(6.0)
    with pytest.raises(RuntimeError, match=r"\[core::add_\] argument 'other' partly overlaps"):
        x[1:].add_(x[:-1])
    assert x.numpy().tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]  # refused before writing


def test_strided_partial_overlap_is_refused():
    # neither view is dense: the exact test decides (they share x[2] and x[4])
    x = vt.arange(8.0)
    with pytest.raises(RuntimeError, match="partly overlaps"):
        x[::2][1:].mul_(x[::2][:-1])


def test_expanded_self_is_refused():
    with pytest.raises(RuntimeError, match=r"\[core::mul_\] 'self' has elements that share memory"):
        vt.arange(3.0).expand(2, 3).mul_(2)


def test_as_strided_self_overlap_is_refused():
    x = vt.zeros(6)
    with pytest.raises(RuntimeError, match="share memory"):
        x.as_strided((2, 3), (1, 1)).add_(1.0)  # rows overlap by two elements
    assert x.numpy().tolist() == [0.0] * 6
    with pytest.raises(RuntimeError, match="share memory"):
        x.as_strided((3, 2), (1, 2)).mul_(x[:6].as_strided((3, 2), (2, 1)))


def test_transposed_full_alias_is_refused():
    a = vt.arange(4.0).reshape(2, 2)
    with pytest.raises(RuntimeError, match="partly overlaps"):
        a.add_(a.t())


def test_identical_alias_and_disjoint_views_are_allowed():
    x = vt.arange(6.0)
    x.add_(x)
    assert x.numpy().tolist() == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    y = vt.arange(6.0)
    y[::2].add_(y[1::2])  # same storage, interleaved, no shared element
    assert y.numpy().tolist() == [1.0, 1.0, 5.0, 3.0, 9.0, 5.0]
    z = vt.arange(6.0)
    z[:3].copy_(z[3:])  # same storage, disjoint halves
    assert z.numpy().tolist() == [3.0, 4.0, 5.0, 3.0, 4.0, 5.0]
    t = vt.arange(6.0).reshape(2, 3).t()  # non-contiguous but not overlapping
    t.mul_(2.0)
    assert t.numpy().tolist() == (np.arange(6.0).reshape(2, 3).T * 2).tolist()
    u = vt.zeros(8)
    u.as_strided((3, 2), (2, 3)).add_(1.0)  # interleaved strides, no element twice: exact test
    assert u.numpy().tolist() == [1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0]


def test_overlap_is_refused_under_no_grad_too():
    x = vt.arange(6.0)
    with vt.no_grad(), pytest.raises(RuntimeError, match="partly overlaps"):
        x[1:].copy_(x[:-1])


# ---- 4. views of leaves, and the early-failure path of backward -----------------------------------

def test_inplace_on_a_view_of_a_leaf_that_requires_grad_is_refused():
    w = vt.zeros(3).requires_grad_()
    with pytest.raises(RuntimeError, match=r"\[core::add_\] a view of a leaf tensor that requires "
                                           "grad"):
        w[:2].add_(1.0)
    assert w.numpy().tolist() == [0.0, 0.0, 0.0]
    with vt.no_grad():
        w[:2].add_(1.0)  # parameter updates under no_grad stay allowed
    w.detach()[2:].add_(5.0)  # so does a detached alias
    assert w.numpy().tolist() == [1.0, 1.0, 5.0]
    y = w * 2.0
    y[:2].mul_(10.0)  # a view of a non-leaf is not this rule's business
    assert y.numpy().tolist() == [20.0, 20.0, 10.0]


def test_failed_backward_does_not_keep_the_first_roots_graph():
    # The hook's closure lives exactly as long as y's node: if the failed call kept the first
    # root's graph, the marker would outlive every Python reference to the graph.
    out = pt.result("""
        import gc, weakref
        class Marker: pass
        m = Marker()
        alive = weakref.ref(m)
        w = vt.ones(3).requires_grad_()
        y = w * 1.0
        y.register_hook(lambda g, m=m: None)
        l = y.sum()
        del m, y
        err = raises(vt.autograd.backward, [l, vt.ones(())])
        del l
        gc.collect()
        print(json.dumps([err[0], alive() is None]))
    """)
    assert out == ["RuntimeError", True]


# ---- 5. gradients torch defines otherwise: ties of max()/min(), embedding's padding row ----------

@pytest.mark.parametrize("values", [[1.0, 3.0, 3.0, 2.0], [[1.0, 3.0], [3.0, 1.0]], [2.0, 2.0, 2.0],
                                    [1.0, float("nan"), float("nan")], [5.0, 1.0, 1.0]])
@pytest.mark.parametrize("op", ["max", "min"])
def test_max_min_ties_share_the_gradient_like_torch(values, op):
    torch = pytest.importorskip("torch", reason="compares with torch's gradients")
    x = vt.tensor(values).requires_grad_()
    t = torch.tensor(values, requires_grad=True)
    (getattr(x, op)() * 3.0).backward()
    (getattr(t, op)() * 3.0).backward()
    np.testing.assert_allclose(x.grad.numpy(), t.grad.numpy())


@pytest.mark.parametrize("padding_idx", [None, 1, -1, 0])
def test_embedding_padding_row_gets_no_gradient_like_torch(padding_idx):
    torch = pytest.importorskip("torch", reason="compares with torch's gradients")
    idx = [[0, 1, 1], [3, 1, 2]]
    w = vt.tensor(np.arange(8.0).reshape(4, 2)).requires_grad_()
    tw = torch.tensor(np.arange(8.0).reshape(4, 2), requires_grad=True)
    out = vt.nn.functional.embedding(vt.tensor(idx), w, padding_idx=padding_idx)
    tout = torch.nn.functional.embedding(torch.tensor(idx), tw, padding_idx=padding_idx)
    np.testing.assert_allclose(out.numpy(), tout.detach().numpy())  # the forward is unchanged
    (out * out).sum().backward()
    (tout * tout).sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), tw.grad.numpy())


def test_embedding_module_padding_and_bad_padding_idx():
    m = vt.nn.Embedding(5, 3, padding_idx=2)
    m(vt.tensor([2, 2, 4])).sum().backward()
    assert m.weight.grad.numpy()[2].tolist() == [0.0] * 3
    assert m.weight.grad.numpy()[4].tolist() == [1.0] * 3
    with pytest.raises(IndexError, match=r"\[core::embedding\] padding_idx 7 is out of range"):
        vt.nn.functional.embedding(vt.tensor([0]), vt.ones(4, 2), padding_idx=7)
