"""Views, shape and indexing ops of ops/core (view.cpp, shape.cpp, index.cpp) and the Python
indexing built on them (Tensor.__getitem__/__setitem__, vt.cat/stack/split/chunk...).

Every op: random shapes over the conftest layouts (contiguous, transposed, sliced, expanded),
0-size and 1-element inputs, several dtypes, on every available device (conftest's `device`),
against numpy (and torch where importable);
gradcheck in float64 for every differentiable op (and double backward where the backward is
itself made of ops); bad input with exception class and message.
"""
from __future__ import annotations

import numpy as np
import pytest

import vibetensor as vt
from conftest import (LAYOUTS, Row, assert_close, make, on, rand_shape, rand_values, rows, to_numpy,
                      vt_from)

try:
    import torch as _torch
except ImportError:  # pragma: no cover
    _torch = None

DTYPES = ("float32", "float64", "float16", "bfloat16", "int64", "int32", "bool")
FLOATS = ("float32", "float64")


def leaf(rng, shape):
    return vt.tensor(rng.standard_normal(shape), dtype=vt.float64).requires_grad_()


def gradcheck(fn, *inputs):
    assert vt.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3)


def gradgradcheck(fn, x):
    """gradcheck of x -> d(sum(fn(x) * w))/dx, i.e. of the backward rule itself."""
    w = vt.tensor(np.random.default_rng(0).standard_normal(fn(x).shape), dtype=vt.float64)

    def g(t):
        with vt.enable_grad():
            (gx,) = vt.autograd.grad((fn(t) * w).sum(), [t], create_graph=True)
        return gx * gx  # nonlinear, so the second derivative of the rule is exercised

    assert vt.autograd.gradcheck(g, (x,), atol=1e-4)


# -- views ---------------------------------------------------------------------------------------

VIEW_CASES = [  # fn and ref take a (4, 3, 5) input
    Row("view", lambda t: t.contiguous().view(6, 10),
        lambda a: a.reshape(6, 10)),
    Row("view_infer", lambda t: t.contiguous().view(-1, 5),
        lambda a: a.reshape(-1, 5)),
    Row("reshape", lambda t: t.reshape(5, 12),
        lambda a: a.reshape(5, 12)),
    Row("flatten", lambda t: t.flatten(1),
        lambda a: a.reshape(4, 15)),
    Row("permute", lambda t: t.permute(2, 0, 1),
        lambda a: a.transpose(2, 0, 1)),
    Row("transpose", lambda t: t.transpose(0, -1),
        lambda a: a.swapaxes(0, -1)),
    Row("T", lambda t: t.T,
        lambda a: a.T),
    Row("mT", lambda t: t.mT,
        lambda a: a.swapaxes(-1, -2)),
    Row("expand", lambda t: t[:, :1].expand(2, 4, 3, 5),
        lambda a: np.broadcast_to(a[:, :1], (2, 4, 3, 5))),
    Row("slice", lambda t: t[1:, ::2, -3:],
        lambda a: a[1:, ::2, -3:]),
    Row("narrow", lambda t: t.narrow(2, 1, 3),
        lambda a: a[:, :, 1:4]),
    Row("select", lambda t: t.select(1, -1),
        lambda a: a[:, -1]),
    Row("index_int", lambda t: t[2, :, 1],
        lambda a: a[2, :, 1]),
    Row("squeeze", lambda t: t[:, :1, None].squeeze(),
        lambda a: a[:, :1, None].squeeze()),
    Row("squeeze_dim", lambda t: t[:, :1].squeeze(1),
        lambda a: a[:, :1].squeeze(1)),
    Row("unsqueeze", lambda t: t.unsqueeze(-1),
        lambda a: a[..., None]),
    Row("ellipsis_none", lambda t: t[..., None, 1],
        lambda a: a[..., None, 1]),
    Row("movedim", lambda t: vt.movedim(t, 0, -1),
        lambda a: np.moveaxis(a, 0, -1)),
    Row("as_strided", lambda t: t.contiguous().as_strided((3, 4), (5, 1), 2),
        lambda a: np.lib.stride_tricks.as_strided(a.reshape(-1)[2:], (3, 4), (5 * a.itemsize, a.itemsize))),
]


@pytest.mark.parametrize("case", rows(VIEW_CASES))
@pytest.mark.parametrize("layout", LAYOUTS)
def test_views_match_numpy(case, layout, device, rng):
    name, fn, ref = case.id, case.fn, case.ref
    for dtype in ("float32", "int64", "bool"):
        x, a = make(rng, (4, 3, 5), dtype, layout, device)
        ac = np.ascontiguousarray(a)
        assert_close(fn(x), ref(ac), dtype, msg=f"{name} {layout} {dtype}")


@pytest.mark.parametrize("case", rows(VIEW_CASES))
def test_views_gradcheck(case, rng):
    name, fn = case.id, case.fn
    x = leaf(rng, (4, 3, 5))
    gradcheck(fn, x)


def test_views_share_storage_and_record_ops():
    x = vt.zeros(3, 4)
    v = x.T[1:, :2]
    v.fill_(1.0)
    assert x.sum().item() == 6.0 and x[:2, 1:].tolist() == [[1.0] * 3] * 2
    y = vt.ones(2, 3).requires_grad_()
    assert y.view(6).grad_fn is not None and "view" in repr(y.view(6).grad_fn)
    assert "slice" in repr(y[:, 1:].grad_fn) and "select" in repr(y[0].grad_fn)
    assert "expand" in repr(y.expand(4, 2, 3).grad_fn)
    assert y.reshape(3, 2).data_ptr() == y.data_ptr()  # a view when it can be
    assert y.T.reshape(6).data_ptr() != y.data_ptr()  # a copy when it must


def test_view_double_backward(rng):
    x = leaf(rng, (3, 4))
    for fn in (lambda t: t[1:, ::2], lambda t: t.select(1, 2), lambda t: t.T.reshape(12),
               lambda t: t.expand(2, 3, 4), lambda t: t.contiguous().as_strided((2, 2), (4, 1), 1)):
        gradgradcheck(fn, x)


def test_as_strided_overlapping_backward(rng):
    x = leaf(rng, (6,))
    gradcheck(lambda t: t.as_strided((3, 3), (1, 1)), x)  # windows overlap: grads accumulate
    with pytest.raises(NotImplementedError, match=r"\[core::as_strided\] backward is only implemented for a contiguous"):
        y = leaf(rng, (4, 4))
        y.T.as_strided((2,), (1,)).sum().backward()


def test_view_errors():
    x = vt.zeros(2, 3, 4)
    from vibetensor import _ops

    with pytest.raises(ValueError, match=r"\[core::view\] shape \(5, 5\) is invalid for input of size 24"):
        _ops.op("core::view")(x, [5, 5])
    with pytest.raises(ValueError, match=r"\[core::view\] shape \(24,\) is not compatible"):
        _ops.op("core::view")(x.T, [24])
    with pytest.raises(ValueError, match=r"\[core::permute\] dims \(0, 0, 1\) is not a permutation"):
        _ops.op("core::permute")(x, [0, 0, 1])
    with pytest.raises(IndexError, match=r"\[core::transpose\] dim 3 is out of range"):
        _ops.op("core::transpose")(x, 0, 3)
    with pytest.raises(ValueError, match=r"\[core::expand\] cannot expand size 3 to 5 in dim 1"):
        _ops.op("core::expand")(x, [2, 5, 4])
    with pytest.raises(ValueError, match=r"\[core::slice\] slice step must be positive, got 0"):
        _ops.op("core::slice")(x, 0, 0, 1, 0)
    with pytest.raises(IndexError, match=r"\[core::select\] index 3 is out of range for dim 1 of size 3"):
        _ops.op("core::select")(x, 1, 3)
    with pytest.raises(IndexError, match=r"\[core::unsqueeze\] dim 4 is out of range"):
        _ops.op("core::unsqueeze")(x, 4)
    with pytest.raises(ValueError, match="view: shape"):
        x.T.view(24)
    with pytest.raises(ValueError, match="flatten: start_dim"):
        x.flatten(2, 1)


# -- cat / stack / split / chunk / unbind ----------------------------------------------------------

@pytest.mark.parametrize("layout", LAYOUTS)
def test_cat_stack(layout, device, rng):
    for dtype in DTYPES:
        for _ in range(3):
            shape = rand_shape(rng, 1, 3, max_size=4)
            d = int(rng.integers(-len(shape), len(shape)))
            parts, arrays = [], []
            for k in range(int(rng.integers(1, 4))):
                s = list(shape)
                s[d] = int(rng.integers(0, 4))
                t, a = make(rng, s, dtype, layout, device)
                parts.append(t)
                arrays.append(a)
            assert_close(vt.cat(parts, d), np.concatenate(arrays, d), dtype, msg=f"cat {dtype}")
            same = [make(rng, shape, dtype, layout, device) for _ in range(3)]
            sd = int(rng.integers(-len(shape) - 1, len(shape) + 1))
            assert_close(vt.stack([t for t, _ in same], sd), np.stack([a for _, a in same], sd),
                         dtype, msg=f"stack {dtype}")
    # dtypes promote; legacy empty 1-d tensors are skipped
    r = vt.cat([vt.tensor([1, 2]), vt.tensor([0.5])])
    assert r.dtype is vt.float32 and r.tolist() == [1.0, 2.0, 0.5]
    assert vt.cat([vt.ones(2, 2), vt.zeros(0)]).shape == (2, 2)
    if _torch is not None:
        t = _torch.cat([_torch.ones(2, 3), _torch.zeros(2, 1)], 1)
        assert_close(vt.cat([vt.ones(2, 3), vt.zeros(2, 1)], 1), t.numpy(), "float32")


def test_split_chunk_unbind(rng):
    x, a = make(rng, (7, 4), "float32", "transposed")
    for size in (1, 2, 3, 7, 9):
        got = x.split(size)
        exp = np.split(a, range(size, 7, size))
        assert len(got) == len(exp)
        for g, e in zip(got, exp):
            assert_close(g, e, "float32")
    got = vt.split(x, [1, 4, 2], 0)
    assert [g.shape for g in got] == [(1, 4), (4, 4), (2, 4)]
    for chunks in (1, 2, 3, 4, 8):
        got = x.chunk(chunks, 0)
        if _torch is not None:
            exp = _torch.from_numpy(np.ascontiguousarray(a)).chunk(chunks, 0)
            assert [g.shape for g in got] == [tuple(e.shape) for e in exp]
        assert sum(g.shape[0] for g in got) == 7
    assert [u.tolist() for u in x.unbind(1)] == [a[:, j].tolist() for j in range(4)]
    with pytest.raises(ValueError, match="split: sections"):
        x.split([1, 2])
    with pytest.raises(ValueError, match="chunk: chunks must be positive"):
        x.chunk(0)


def test_cat_family_gradcheck(rng):
    a, b, c = leaf(rng, (2, 3)), leaf(rng, (2, 1)), leaf(rng, (2, 2))
    gradcheck(lambda x, y, z: vt.cat([x, y, z], 1), a, b, c)
    gradcheck(lambda x, y: vt.stack([x, y * y], -1), a, leaf(rng, (2, 3)))
    gradcheck(lambda x: x.split(2, 1)[1] * 2 + x.chunk(3, 1)[0], a)
    gradcheck(lambda x: x.unbind(0)[1], a)
    gradgradcheck(lambda x: vt.cat([x, x * x], 0), a)


def test_split_backward_is_one_cat(rng, device):
    """split/chunk record one SplitBackward node: the gradient is the pieces' gradients joined
    along the dim (zeros where none reached), whatever layout the input has."""
    for layout in LAYOUTS:
        base, a = make(rng, (6, 9), "float32", layout, device=device)
        x = base.detach().requires_grad_()
        pieces = (x * 1).split([2, 3, 4], dim=1)
        assert all(p.grad_fn.name == "SplitBackward" for p in pieces)
        (pieces[0] * 2).sum().backward(retain_graph=True)
        exp = np.zeros((6, 9), np.float32)
        exp[:, :2] = 2
        assert_close(x.grad, exp, "float32")
        (pieces[2] * 3).sum().backward()  # the node keeps nothing: a second pass works
        exp[:, 5:] = 3
        assert_close(x.grad, exp, "float32")
    x = leaf(rng, (5, 4))
    gradcheck(lambda t: [u * (i + 1) for i, u in enumerate(t.chunk(3, 0))], x)
    gradgradcheck(lambda t: vt.cat([u * u * (i + 1) for i, u in enumerate(t.split(2, 1))], 1), x)


def test_split_backward_views_one_buffer(rng, device):
    """When the pieces' gradients already lie in one buffer in the input's arrangement (sdpa
    writes q, k, v's gradients so), the gradient is a view of that buffer, not a cat; any other
    arrangement (another order, a gap) still gets the cat."""
    class Joint(vt.autograd.Function):  # backward: q, k, v's gradients at columns `starts` of one buffer
        starts, width, buf = (0, 3, 6), 9, None

        @staticmethod
        def forward(ctx, q, k, v):
            return q * 1 + k * 2 + v * 3

        @staticmethod
        def backward(ctx, g):
            Joint.buf = vt.zeros(4, Joint.width, device=g.device)
            for i, c in enumerate(Joint.starts):
                Joint.buf[:, c:c + 3] = g * (i + 1)
            return tuple(Joint.buf[:, c:c + 3] for c in Joint.starts)

    x = vt.tensor(rng.standard_normal((4, 9)).astype(np.float32), device=device).requires_grad_()
    exp = np.repeat(np.array([1.0, 2.0, 3.0], np.float32), 3)[None, :].repeat(4, 0)
    for starts, width, joined in (((0, 3, 6), 9, True), ((3, 0, 6), 9, False), ((0, 3, 7), 10, False)):
        Joint.starts, Joint.width = starts, width
        y = x * 1
        q, k, v = y.split(3, dim=1)
        out = Joint.apply(q, k, v)
        (gy,) = vt.autograd.grad(out, [y], grad_outputs=[vt.ones(4, 3, device=device)])
        assert_close(gy, exp, "float32")
        assert (gy.data_ptr() == Joint.buf.data_ptr()) == joined, (starts, width)
        assert gy.shape == (4, 9) and gy.stride() == ((width, 1) if joined else (9, 1))


def test_split_views_in_place():
    x = vt.ones(2, 6).requires_grad_()
    p, q = (x * 1).chunk(2, dim=1)
    with pytest.raises(RuntimeError, match=r"\[core::mul_\] 'self' is one of the views split\(\) or "
                                           r"chunk\(\) returned"):
        p.mul_(2)
    y = x * 1
    p, q = y.split(3, 1)
    y.mul_(3)  # the base changes after the split: the pieces' history follows it
    (p * q).sum().backward()
    assert_close(x.grad, np.full((2, 6), 9.0, np.float32), "float32")
    with vt.no_grad():
        a, b = vt.ones(4).split(2)
        a.mul_(5)  # no grad: plain views, written in place
    assert a.tolist() == [5.0, 5.0]
    c, d = vt.arange(6).split(3)  # integers: views, never recorded
    assert c.grad_fn is None and d.tolist() == [3, 4, 5]


def test_cat_errors():
    with pytest.raises(ValueError, match=r"\[core::cat\] sizes must match except in dim 0"):
        vt.cat([vt.ones(2, 3), vt.ones(2, 4)])
    with pytest.raises(ValueError, match=r"\[core::cat\] tensors must have the same number of dims"):
        vt.cat([vt.ones(2, 3), vt.ones(3)])
    with pytest.raises(IndexError, match=r"\[core::cat\] dim 2 is out of range"):
        vt.cat([vt.ones(2, 3)], 2)
    with pytest.raises(ValueError, match="cat: expected a non-empty list"):
        vt.cat([])
    with pytest.raises(ValueError, match="stack: expects each tensor to be equal size"):
        vt.stack([vt.ones(2), vt.ones(3)])


# -- index_select / index_add / gather / scatter_add -------------------------------------------------

@pytest.mark.parametrize("layout", LAYOUTS)
def test_index_select_gather_scatter(layout, device, rng):
    def T(a, **kw):  # an index tensor on the device
        return on(device, vt.tensor(a, **kw))

    for dtype in ("float32", "float64", "float16", "bfloat16", "int64", "int32"):
        for shape in [(5,), (4, 3), (3, 4, 2), (3, 0)]:
            x, a = make(rng, shape, dtype, layout, device)
            for d in range(len(shape)):
                n = shape[d]
                if n == 0:
                    continue
                idx = rng.integers(0, n, int(rng.integers(0, 6)))  # torch refuses negatives here (issue 8)
                got = x.index_select(d, T(idx))
                assert_close(got, np.take(a, idx % n, axis=d), dtype, msg=f"index_select {shape} {d}")
                # gather: index of x's shape with sizes <= in other dims
                ishape = list(shape)
                ishape[d] = int(rng.integers(1, 5))
                gi = rng.integers(0, n, ishape)
                assert_close(vt.gather(x, d, T(gi)), np.take_along_axis(a, gi, d), dtype,
                             msg=f"gather {shape} {d}")
                # scatter_add into x (a copy: out of place) with duplicate targets
                src, sa = make(rng, ishape, dtype, "contiguous", device)
                exp = np.array(a, dtype=np.float64)
                np.add.at(exp, _scatter_index(gi, d), sa)
                assert_close(vt.scatter_add(x, d, T(gi, dtype=vt.int32), src), exp, dtype,
                             scale=4, msg=f"scatter_add {shape} {d}")
                # index_add with duplicates
                k = len(idx)
                ssh = list(shape)
                ssh[d] = k
                s, sa2 = make(rng, ssh, dtype, "contiguous", device)
                exp = np.array(a, dtype=np.float64)
                np.add.at(exp, (slice(None),) * d + (idx % n,), sa2)
                assert_close(x.index_add(d, T(idx), s), exp, dtype, scale=4,
                             msg=f"index_add {shape} {d}")
    if _torch is not None:
        a = np.arange(12.0).reshape(3, 4)
        i = np.array([[0, 2], [1, 1], [3, 0]])
        t = _torch.gather(_torch.from_numpy(a), 1, _torch.from_numpy(i))
        assert_close(vt.gather(vt.tensor(a, dtype=vt.float64), 1, vt.tensor(i)), t.numpy(), "float64")


def _scatter_index(gi, d):
    grids = list(np.indices(gi.shape))
    grids[d] = gi
    return tuple(grids)


def test_indexing_ops_gradcheck(rng):
    x = leaf(rng, (4, 3))
    i = vt.tensor([2, 0, 2, 3])
    gradcheck(lambda t: t.index_select(0, i), x)
    gradcheck(lambda t: vt.gather(t, 1, vt.tensor([[0, 0], [2, 1], [1, 1], [0, 2]])), x)
    src = leaf(rng, (2, 3))
    gradcheck(lambda t, s: vt.scatter_add(t, 0, vt.tensor([[0, 1, 0], [0, 3, 3]]), s), x, src)
    small = vt.tensor([[1], [3]])  # index smaller than src: src's gradient is zero-padded
    gradcheck(lambda s: vt.scatter_add(vt.zeros(4, 3, dtype=vt.float64), 0, small, s), src)
    gradcheck(lambda t, s: t.index_add(0, vt.tensor([3, 3]), s, alpha=2.0), x, src)
    gradgradcheck(lambda t: t.index_select(1, vt.tensor([1, 1, 0])), x)
    gradgradcheck(lambda t: vt.gather(t, 0, vt.tensor([[3, 0, 1]])), x)


def test_indexing_ops_errors():
    x = vt.ones(3, 4)
    with pytest.raises(IndexError, match=r"\[core::index_select\] index: index 4 is out of bounds for dim 1 with size 4"):
        x.index_select(1, vt.tensor([0, 4]))
    with pytest.raises(TypeError, match=r"\[core::index_select\] index must be an integer tensor .* got float32"):
        x.index_select(0, vt.tensor([0.0]))
    with pytest.raises(ValueError, match=r"\[core::gather\] index \(1,\) must have as many dims as self \(3, 4\)"):
        vt.gather(x, 0, vt.tensor([0]))
    with pytest.raises(ValueError, match=r"\[core::gather\] index \(1, 5\) is larger than self \(3, 4\) in dim 1"):
        vt.gather(x, 0, vt.zeros(1, 5, dtype=vt.int64))
    with pytest.raises(IndexError, match=r"\[core::scatter_add\] dim 2 is out of range"):
        vt.scatter_add(x, 2, vt.zeros(1, 1, dtype=vt.int64), x)
    with pytest.raises(ValueError, match=r"\[core::index_add\] source of shape \(2, 4\) does not match"):
        x.index_add(0, vt.tensor([0]), vt.ones(2, 4))


# -- masked_fill / embedding / one_hot / tril / triu / factories / nonzero --------------------------

@pytest.mark.parametrize("layout", LAYOUTS)
def test_masked_fill(layout, device, rng):
    for dtype in ("float32", "float64", "bfloat16", "int64", "bool"):
        x, a = make(rng, (3, 4), dtype, layout, device)
        for mshape in [(3, 4), (4,), (3, 1), (2, 3, 4)]:
            m = rng.random(mshape) < 0.5
            got = x.masked_fill(on(device, vt.tensor(m)), 1.0)
            exp = np.where(m, 1.0, a.astype(np.float64))
            assert_close(got, exp, dtype, msg=f"masked_fill {dtype} {mshape}")
    y = vt.zeros(2, 2)
    y.masked_fill_(vt.tensor([[True, False], [False, True]]), vt.tensor(3.0))
    assert y.tolist() == [[3.0, 0.0], [0.0, 3.0]]
    x = leaf(rng, (3, 4))
    mask = vt.tensor(rng.random((2, 3, 4)) < 0.5)  # broadcasts x: its gradient sums over dim 0
    gradcheck(lambda t: t.masked_fill(mask, 0.5), x)
    with pytest.raises(TypeError, match=r"\[core::masked_fill\] mask must be a bool tensor, got int64"):
        x.masked_fill(vt.tensor([1, 0, 1, 0]), 0.0)
    with pytest.raises(ValueError, match=r"\[core::masked_fill\] shapes cannot be broadcast"):
        vt.ones(3, 4).masked_fill(vt.tensor([True, False]), 0.0)


@pytest.mark.parametrize("dtype", ("float32", "float64", "float16", "bfloat16"))
def test_embedding(dtype, device, rng):
    w, wa = make(rng, (7, 5), dtype, "transposed", device)
    idx = rng.integers(0, 7, (3, 4))  # torch refuses negatives (issue 8)
    out = vt.embedding(on(device, vt.tensor(idx)), w)
    assert_close(out, wa[idx % 7], dtype)
    # the backward: rows accumulate every position that picked them (duplicates included)
    g, ga = make(rng, (3, 4, 5), dtype, "sliced", device)
    from vibetensor import _ops

    got = _ops.op("core::embedding_backward")(g, on(device, vt.tensor(idx)), 7)
    exp = np.zeros((7, 5))
    np.add.at(exp, idx.reshape(-1) % 7, ga.reshape(-1, 5))
    assert_close(got, exp, dtype, scale=4)
    if _torch is not None and dtype in FLOATS:
        t = _torch.nn.functional.embedding(_torch.from_numpy(idx % 7), _torch.from_numpy(np.array(wa, dtype=dtype)))
        assert_close(out, t.numpy(), dtype)


def test_embedding_grad_large_and_threads(rng):
    V, D = 50, 64
    idx = rng.integers(0, V, 20000)
    g = rng.standard_normal((20000, D))
    exp = np.zeros((V, D))
    np.add.at(exp, idx, g)
    from vibetensor import _ops

    res = []
    for th in (1, 3):
        old = vt.get_num_threads()
        vt.set_num_threads(th)
        try:
            res.append(_ops.op("core::embedding_backward")(vt.tensor(g, dtype=vt.float64), vt.tensor(idx), V).numpy().copy())
        finally:
            vt.set_num_threads(old)
    np.testing.assert_allclose(res[0], exp, rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(res[0], res[1])
    w = leaf(rng, (6, 3))
    i = vt.tensor([[0, 5, 5], [2, 0, 0]])
    gradcheck(lambda t: vt.embedding(i, t), w)
    gradgradcheck(lambda t: vt.embedding(i, t), w)
    with pytest.raises(IndexError, match=r"\[core::embedding\] indices: index 6 is out of bounds for dim 0 with size 6"):
        vt.embedding(vt.tensor([6]), w)
    with pytest.raises(ValueError, match=r"\[core::embedding\] weight must be 2-d"):
        vt.embedding(vt.tensor([0]), vt.ones(3))


def test_one_hot_tril_triu_factories_nonzero(rng):
    i = np.array([[0, 3], [2, 2]])
    assert vt.one_hot(vt.tensor(i)).tolist() == np.eye(4, dtype=np.int64)[i].tolist()
    assert vt.one_hot(vt.tensor(i), 6).shape == (2, 2, 6)
    with pytest.raises(IndexError, match=r"\[core::one_hot\] class value 3 is out of range for num_classes 2"):
        vt.one_hot(vt.tensor(i), 2)
    for layout in LAYOUTS:
        for dtype in ("float32", "int64", "bool", "bfloat16"):
            x, a = make(rng, (2, 4, 5), dtype, layout)
            for k in (-2, 0, 1, 7):
                assert_close(vt.tril(x, k), np.tril(a, k), dtype, msg=f"tril {layout} {k}")
                assert_close(x.triu(k), np.triu(a, k), dtype, msg=f"triu {layout} {k}")
    x = leaf(rng, (3, 4))
    gradcheck(lambda t: t.tril(1) + t.triu(-1), x)
    with pytest.raises(ValueError, match=r"\[core::tril\] self must have at least 2 dims"):
        vt.tril(vt.ones(3))
    for steps in (0, 1, 2, 5, 50):
        np.testing.assert_allclose(vt.linspace(-1, 2, steps, dtype=vt.float64).numpy(),
                                   np.linspace(-1, 2, steps), rtol=1e-15, atol=1e-15)
    assert vt.linspace(0, 10, 6, dtype=vt.int64).tolist() == [0, 2, 4, 6, 8, 10]
    assert vt.linspace(0, 1, 3).dtype is vt.float32
    with pytest.raises(ValueError, match=r"\[core::linspace\] steps must be non-negative"):
        vt.linspace(0, 1, -1)
    assert vt.eye(3).tolist() == np.eye(3).tolist() and vt.eye(2, 4, dtype=vt.int64).tolist() == np.eye(2, 4).tolist()
    assert vt.eye(0).shape == (0, 0)
    b = rng.random((3, 4)) < 0.4
    assert vt.nonzero(vt.tensor(b)).tolist() == np.argwhere(b).tolist()
    assert [t.tolist() for t in vt.tensor(b).nonzero(as_tuple=True)] == [n.tolist() for n in np.nonzero(b)]
    assert vt.nonzero(vt.zeros(0, 2)).shape == (0, 2)
    if _torch is not None:
        assert_close(vt.linspace(-3, 5, 7), _torch.linspace(-3, 5, 7).numpy(), "float32")


# -- Python advanced indexing ----------------------------------------------------------------------

KEYS = [
    lambda: (np.array([2, 0, -1]),),
    lambda: (slice(1, None), [0, 2]),
    lambda: (Ellipsis, np.array([[1, 0], [4, 4]])),
    lambda: ([0, 3, 3], slice(None), [1, 2, 0]),          # not adjacent: indexed dims go first
    lambda: (slice(None), [1, 0], [2, 2]),                # adjacent: they stay in place
    lambda: (1, [0, 2]),
    lambda: (np.array([True, False, True, True]),),
    lambda: (slice(None), np.arange(15).reshape(3, 5) % 3 == 0),
    lambda: (None, [1, 2], slice(None, None, 2)),
    lambda: (np.array([[0], [3]]), np.array([1, 2]), 4),
    lambda: (np.array([], dtype=np.int64),),
]


@pytest.mark.parametrize("k", range(len(KEYS)))
@pytest.mark.parametrize("layout", ("contiguous", "transposed", "sliced"))
def test_advanced_getitem(k, layout, device, rng):
    x, a = make(rng, (4, 3, 5), "float64", layout, device)
    key = KEYS[k]()
    vkey = tuple(on(device, vt.tensor(i)) if isinstance(i, np.ndarray) and rng.random() < 0.5 else i
                 for i in key)
    exp = a[key]
    assert_close(x[vkey], exp, "float64", msg=f"key {key}")
    if _torch is not None:
        tkey = tuple(_torch.from_numpy(i) if isinstance(i, np.ndarray) else i for i in key)
        t = _torch.from_numpy(np.ascontiguousarray(a))[tkey]
        assert t.shape == exp.shape


@pytest.mark.parametrize("k", range(len(KEYS)))
def test_advanced_setitem(k, device, rng):
    x, a = make(rng, (4, 3, 5), "float32", "contiguous", device)
    key = KEYS[k]()
    a = a.copy()
    shape = a[key].shape
    val = rng.standard_normal(shape[1:] if len(shape) > 1 and rng.random() < 0.5 else shape).astype(np.float32)
    a[key] = val
    x[key] = on(device, vt.tensor(val))
    assert_close(x, a, "float32", msg=f"setitem {key}")
    a[key] = 7
    x[key] = 7
    assert_close(x, a, "float32", msg=f"setitem scalar {key}")


def test_setitem_on_views_and_masks():
    x = vt.zeros(3, 4)
    x.T[[0, 2]] = 1.0  # through a transposed view: writes reach the base
    assert x.tolist() == [[1.0, 0.0, 1.0, 0.0]] * 3
    y = vt.arange(6.0).reshape(2, 3)
    y[y.numpy() > 2] = -1.0
    assert y.tolist() == [[0.0, 1.0, 2.0], [-1.0, -1.0, -1.0]]
    y[vt.tensor([True, False])] = vt.tensor([5.0, 6.0, 7.0])
    assert y.tolist()[0] == [5.0, 6.0, 7.0]
    z = vt.zeros(5, dtype=vt.int64)
    z[[1, 3]] = vt.tensor([2.0, 3.0])  # cast to the target dtype, like torch
    assert z.tolist() == [0, 2, 0, 3, 0]


def test_index_ops_and_gradients(rng):
    x = leaf(rng, (4, 3, 2))
    gradcheck(lambda t: t[[0, 2, 2], :, [1, 0, 1]], x)
    gradcheck(lambda t: t[:, [2, 2, 0]], x)
    gradcheck(lambda t: t[vt.tensor(np.array([[True, False, True]] * 4))], x)
    gradgradcheck(lambda t: t[[3, 3, 1]], x)
    from vibetensor import _ops

    v = leaf(rng, (2, 2))
    idx = [vt.tensor([0, 3]), vt.tensor([1, 1])]
    dup = [vt.tensor([0, 0]), vt.tensor([1, 1])]  # duplicates: accumulate sums them
    for i, acc in ((idx, False), (idx, True), (dup, True)):
        gradcheck(lambda t, s: _ops.op("core::index_put")(t, i, s, acc), x, v)
    out = _ops.op("core::index_put")(vt.zeros(2, 2), [vt.tensor([1, 1, 0])], vt.ones(3, 2), True)
    assert out.tolist() == [[1.0, 1.0], [2.0, 2.0]]


def test_indexing_errors():
    x = vt.zeros(3, 4)
    with pytest.raises(IndexError, match=r"\[core::index\] index: index 3 is out of bounds for dim 0 with size 3"):
        x[[0, 3]]
    with pytest.raises(IndexError, match="too many indices for a tensor of dimension 2"):
        x[0, 0, [0]]
    with pytest.raises(IndexError, match=r"the mask of shape \(2,\) does not match the indexed shape \(3,\)"):
        x[vt.tensor([True, False])]
    with pytest.raises(IndexError, match="tensors used as indices must be long, int or bool"):
        x[vt.tensor([0.0])]
    with pytest.raises(TypeError, match="unsupported index"):
        x["a"]
    with pytest.raises(ValueError, match=r"\[core::index\] shapes cannot be broadcast"):
        x[[0, 1], [0, 1, 2]]
    with pytest.raises(ValueError, match=r"\[core::index_put_\] shapes cannot be broadcast: the indexed shape \(2, 4\) and values \(3,\)"):
        x[[0, 1]] = vt.ones(3)
    with pytest.raises(IndexError, match="an index can only have a single ellipsis"):
        x[..., ...]


# -- the same ops on every device (the tests above that check errors run on cpu only) -------------

def test_one_hot_tri_factories_nonzero_on_device(device, rng):
    i = np.array([[0, 3], [2, 2]])
    for dt in (vt.int64, vt.int32):
        it = on(device, vt.tensor(i, dtype=dt))
        assert_close(vt.one_hot(it), np.eye(4)[i], "int64")  # num_classes=-1: read from the data
        assert_close(vt.one_hot(it.T, 6), np.eye(6)[i.T], "int64")  # strided indices
    assert vt.one_hot(on(device, vt.zeros(0, dtype=vt.int64))).shape == (0, 0)
    for layout in LAYOUTS:
        for dtype in ("float32", "int64", "bool", "bfloat16", "float16"):
            x, a = make(rng, (2, 4, 5), dtype, layout, device)
            for k in (-2, 0, 1, 7):
                assert_close(vt.tril(x, k), np.tril(a, k), dtype, msg=f"tril {layout} {k}")
                assert_close(x.triu(k), np.triu(a, k), dtype, msg=f"triu {layout} {k}")
    for steps in (0, 1, 2, 5, 50):
        np.testing.assert_allclose(to_numpy(vt.linspace(-1, 2, steps, dtype=vt.float64, device=device)),
                                   np.linspace(-1, 2, steps), rtol=1e-15, atol=1e-15)
    assert to_numpy(vt.linspace(0, 10, 6, dtype=vt.int64, device=device)).tolist() == [0, 2, 4, 6, 8, 10]
    assert_close(vt.linspace(-3, 5, 7, dtype=vt.bfloat16, device=device), np.linspace(-3, 5, 7), "bfloat16")
    assert_close(vt.arange(-3, 8, 2, dtype=vt.float16, device=device), np.arange(-3, 8, 2.0), "float16")
    assert_close(vt.eye(3, device=device), np.eye(3), "float32")
    for dtype in ("int64", "bool", "bfloat16"):
        assert_close(vt.eye(2, 4, dtype=getattr(vt, "bool_" if dtype == "bool" else dtype), device=device),
                     np.eye(2, 4), dtype)
    assert vt.eye(0, device=device).shape == (0, 0)
    # nonzero: row-major coordinates for every dtype and layout; -0.0 is zero
    for dtype in ("bool", "float32", "int32", "bfloat16", "float64", "int8"):
        a = rng.integers(-1, 2, (3, 4, 5)).astype(np.float64)
        a[a == 0] = -0.0
        base = on(device, vt.tensor(a).to(getattr(vt, "bool_" if dtype == "bool" else dtype)))
        for x, ref in ((base, a), (base.transpose(0, 2), a.transpose(2, 1, 0)), (base[:, 1::2], a[:, 1::2])):
            got = vt.nonzero(x)
            assert got.shape == (int(np.count_nonzero(ref)), 3)
            assert to_numpy(got).tolist() == np.argwhere(ref).tolist(), dtype
    big = rng.random(10007) < 0.3  # several tiles of the device's compaction
    assert to_numpy(vt.nonzero(on(device, vt.tensor(big)))).tolist() == np.argwhere(big).tolist()
    assert vt.nonzero(on(device, vt.tensor(3.0))).shape == (1, 0)
    assert vt.nonzero(on(device, vt.tensor(0.0))).shape == (0, 0)
    assert vt.nonzero(on(device, vt.zeros(0, 2))).shape == (0, 2)


def test_index_put_on_device(device, rng):
    from vibetensor import _ops

    put, put_ = _ops.op("core::index_put"), _ops.op("core::index_put_")
    x, a = make(rng, (5, 3, 4), "float32", "contiguous", device)
    i0, i1 = np.array([0, 4, 4, 0, 2]), np.array([1, 2, 2, 1, 0])  # two destinations twice
    v = rand_values(rng, (5, 4), "float32")
    idx = [on(device, vt.tensor(i0)), on(device, vt.tensor(i1, dtype=vt.int32))]
    exp = a.copy()
    np.add.at(exp, (i0, i1), v)
    assert_close(put(x, idx, vt_from(v, "float32", device), True), exp, "float32", scale=4)
    exp = a.copy()
    for k in range(5):  # without accumulate the last write of a destination wins, as on cpu
        exp[i0[k], i1[k]] = v[k]
    assert_close(put(x, idx, vt_from(v, "float32", device), False), exp, "float32")
    assert_close(x, a, "float32")  # out of place
    # in place, values broadcast, on views whose rows are strided, other dtypes
    for dtype in ("int64", "bfloat16", "float64", "int32"):
        for layout in ("contiguous", "transposed", "sliced"):
            y, b = make(rng, (4, 6), dtype, layout, device)
            r = np.array([3, 1, 3, 3, -4])  # -4 wraps to 0, as in Python
            val = rand_values(rng, (6,), dtype)
            exp = np.array(b, dtype=np.float64)
            np.add.at(exp, r % 4, np.broadcast_to(val, (5, 6)))
            out = put_(y, [on(device, vt.tensor(r))], vt_from(val, dtype, device), True)
            assert out.data_ptr() == y.data_ptr()
            assert_close(y, exp, dtype, scale=4, msg=f"index_put_ {dtype} {layout}")


def test_scatter_ops_are_deterministic_with_many_duplicates(device, rng):
    """The accumulating ops give the same bits twice (no float atomics on any device), with a hot
    row that one index holds thousands of times."""
    from vibetensor import _ops

    V, D, N = 37, 96, 20000
    idx = rng.integers(0, V, N)
    idx[rng.random(N) < 0.2] = 5
    g = rand_values(rng, (N, D), "float32")
    exp = np.zeros((V, D))
    np.add.at(exp, idx, g)
    gi, gg = on(device, vt.tensor(idx)), vt_from(g, "float32", device)
    eb = _ops.op("core::embedding_backward")
    for dtype in ("float32", "bfloat16"):
        gd = gg.to(getattr(vt, dtype))
        r1, r2 = to_numpy(eb(gd, gi, V)), to_numpy(eb(gd, gi, V))
        np.testing.assert_array_equal(r1, r2)
        ref = exp if dtype == "float32" else np.zeros((V, D))
        if dtype == "bfloat16":
            np.add.at(ref, idx, to_numpy(gd))
        np.testing.assert_allclose(r1, ref, rtol=1e-4 if dtype == "float32" else 1e-2, atol=1e-2)
    x = on(device, vt.zeros(V, D))
    r1, r2 = to_numpy(x.index_add(0, gi, gg, alpha=0.5)), to_numpy(x.index_add(0, gi, gg, alpha=0.5))
    np.testing.assert_array_equal(r1, r2)
    np.testing.assert_allclose(r1, 0.5 * exp, rtol=1e-4, atol=1e-2)
    i2 = on(device, vt.tensor(np.ascontiguousarray(np.broadcast_to(idx[:, None], (N, D)))))
    r1, r2 = to_numpy(vt.scatter_add(x, 0, i2, gg)), to_numpy(vt.scatter_add(x, 0, i2, gg))
    np.testing.assert_array_equal(r1, r2)
    np.testing.assert_allclose(r1, exp, rtol=1e-4, atol=1e-2)
    put = _ops.op("core::index_put")
    r1, r2 = to_numpy(put(x, [gi], gg, True)), to_numpy(put(x, [gi], gg, True))
    np.testing.assert_array_equal(r1, r2)
    np.testing.assert_allclose(r1, exp, rtol=1e-4, atol=1e-2)
    one = on(device, vt.tensor(np.full(N, 3)))  # every position on one row: one long run
    r1, r2 = to_numpy(eb(gg, one, V)), to_numpy(eb(gg, one, V))
    np.testing.assert_array_equal(r1, r2)
    np.testing.assert_allclose(r1[3], g.sum(0), rtol=1e-4, atol=1e-2)
    assert not r1[:3].any() and not r1[4:].any()


def test_bad_indices_are_refused_or_reported(device):
    """cpu refuses a bad index at once. cuda cannot without a synchronisation: its kernels skip the
    index (a read gives zero, a write is dropped) and the next indexing call raises it."""
    w = on(device, vt.arange(12.0).reshape(4, 3))
    msg = r"\[core::embedding\] indices: index 7 is out of bounds for dim 0 with size 4"
    if device == "cpu":
        with pytest.raises(IndexError, match=msg):
            vt.embedding(vt.tensor([1, 7, 2]), w)
        return
    vt.cuda.synchronize()
    try:  # a report an earlier test may have left is raised by the first indexing call
        vt.embedding(vt.tensor([0], device=device), w)
    except IndexError:
        pass
    canary = vt.ones(256, device=device)
    out = vt.embedding(vt.tensor([1, 7, 2], device=device), w)
    assert to_numpy(out).tolist() == [[3, 4, 5], [0, 0, 0], [6, 7, 8]]
    with pytest.raises(IndexError, match=msg):
        vt.embedding(vt.tensor([0], device=device), w)
    assert to_numpy(vt.embedding(vt.tensor([3], device=device), w)).tolist() == [[9, 10, 11]]  # once
    x = vt.zeros(5, device=device)
    x[[1, 9]] = 5.0  # index_put_: the write through 9 is dropped
    assert to_numpy(x).tolist() == [0, 5, 0, 0, 0]
    with pytest.raises(IndexError, match=r"\[core::index_put_\] index: index 9 is out of bounds for dim 0 with size 5"):
        x.index_select(0, vt.tensor([0], device=device))
    y = x.index_add(0, vt.tensor([-1, 2], device=device), vt.ones(2, device=device))  # negatives refused
    assert to_numpy(y).tolist() == [0, 5, 1, 0, 0]
    with pytest.raises(IndexError, match=r"\[core::index_add\] index: index -1 is out of bounds"):
        x.index_select(0, vt.tensor([0], device=device))
    big = vt.ones(1000, 64, device=device)
    r = vt.embedding(vt.tensor([1 << 40, -3, 999], device=device), big)  # far out: nothing faults
    assert to_numpy(r).sum() == 64
    with pytest.raises(IndexError, match="out of bounds"):
        vt.embedding(vt.tensor([0], device=device), big)
    assert to_numpy(canary).tolist() == [1.0] * 256 and to_numpy(w).tolist() == np.arange(12.0).reshape(4, 3).tolist()
