"""softmax, log_softmax, layer_norm, rms_norm, dropout, cross_entropy, mse_loss, the optimiser
kernels (adamw_, sgd_) and the random ops (randint, randperm, normal_, uniform_): against numpy
float64 references (always) and torch (when it imports), gradcheck, determinism and bad input. The
forward tables run on every available device (conftest's `device`)."""
from __future__ import annotations

import numpy as np
import pytest

import vibetensor as vt
from conftest import DEVICES, HAS_TORCH, LAYOUTS, TOL, assert_close, make, on, to_numpy, torch_tensor, vt_from

if HAS_TORCH:
    import torch as _torch
    import torch.nn.functional as F

FLOATS = ["float32", "float64", "float16", "bfloat16"]
SHAPES = [(5,), (3, 7), (2, 3, 4), (1, 1), (), (0, 3), (2, 0, 3), (4, 33)]


def _r(rng, *shape):
    return vt.tensor(rng.standard_normal(shape)).requires_grad_()


# -- softmax / log_softmax -----------------------------------------------------------------------

@np.errstate(divide="ignore")
def np_softmax(x, dim, log=False):
    x = x.astype(np.float64)
    m = np.max(x, axis=dim, keepdims=True) if x.size else x
    e = np.exp(x - m)
    s = e.sum(axis=dim, keepdims=True)
    return (x - m - np.log(s)) if log else e / s


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("log", [False, True])
def test_softmax(rng, dtype, shape, log, device, torch):
    fn = vt.log_softmax if log else vt.softmax
    for layout in LAYOUTS:
        x, xn = make(rng, shape, dtype, layout, device)
        for dim in range(-max(len(shape), 1), max(len(shape), 1)):
            out = fn(x, dim)
            assert_close(out, np_softmax(xn, dim if shape else None, log) if shape else
                         (np.zeros(()) if log else np.ones(())), dtype, scale=4, msg=f"{layout} dim {dim}")
            if torch is not None and dtype in ("float32", "float64"):
                tf = _torch.log_softmax if log else _torch.softmax
                assert_close(out, to_numpy(tf(torch_tensor(xn, dtype), dim)), scale=4)
    assert x.softmax(0).shape == x.shape  # the method


def test_softmax_extremes():
    x = vt.tensor([[0.0, float("-inf"), 1.0], [float("-inf")] * 3, [1000.0, 0.0, -1000.0]])
    y = vt.softmax(x, 1).numpy()
    np.testing.assert_allclose(y[0], np_softmax(np.array([0.0, -np.inf, 1.0]), 0), rtol=1e-6)
    assert np.isnan(y[1]).all()  # all -inf: nan like torch
    np.testing.assert_allclose(y[2], [1.0, 0.0, 0.0])
    ls = vt.log_softmax(vt.tensor([[1000.0, 0.0]]), 1).numpy()
    np.testing.assert_allclose(ls, [[0.0, -1000.0]])
    assert np.isnan(vt.softmax(vt.tensor([1.0, float("nan")]), 0).numpy()).all()


def test_softmax_gradcheck(rng):
    gc = vt.autograd.gradcheck
    for dim in (0, 1, -1):
        assert gc(lambda x: vt.softmax(x, dim), [_r(rng, 3, 4, 2)])
        assert gc(lambda x: vt.log_softmax(x, dim), [_r(rng, 3, 4, 2)])


def test_softmax_double_backward(rng):
    """Through the backward ops' own rules. Needs the engine to keep saved *outputs* connected to
    their graph under create_graph (core::exp's double backward needs the same)."""
    gc = vt.autograd.gradcheck
    for fn in (vt.softmax, vt.log_softmax):
        w = vt.tensor(rng.standard_normal((3, 4)))

        def f(x, fn=fn):  # gradcheck's finite differences run under no_grad: re-enable
            with vt.enable_grad():
                xx = x if x.requires_grad else x.detach().requires_grad_()
                (g,) = vt.autograd.grad((fn(xx, 1) * w).sum(), [xx], create_graph=True)
                return g * g

        assert gc(f, [_r(rng, 3, 4)])


# -- layer_norm / rms_norm -----------------------------------------------------------------------

def np_layer_norm(x, n, w=None, b=None, eps=1e-5, rms=False):
    x = x.astype(np.float64)
    ax = tuple(range(x.ndim - n, x.ndim))
    if rms:
        y = x / np.sqrt((x * x).mean(axis=ax, keepdims=True) + eps)
    else:
        mu = x.mean(axis=ax, keepdims=True)
        y = (x - mu) / np.sqrt(((x - mu) ** 2).mean(axis=ax, keepdims=True) + eps)
    if w is not None:
        y = y * w
    if b is not None:
        y = y + b
    return y


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape,n", [((4, 8), 1), ((2, 3, 5), 2), ((7,), 1), ((1, 1), 1), ((0, 4), 1),
                                     ((3, 1000), 1)], ids=str)
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_rms_norm(rng, dtype, shape, n, affine, device, torch):
    ns = shape[len(shape) - n:]
    for layout in ("contiguous", "transposed", "sliced"):
        x, xn = make(rng, shape, dtype, layout, device)
        w, wn = make(rng, ns, dtype, device=device) if affine else (None, None)
        b, bn = make(rng, ns, dtype, device=device) if affine else (None, None)
        out = vt.layer_norm(x, ns, w, b)
        assert_close(out, np_layer_norm(xn, n, wn, bn), dtype, scale=8, msg=layout)
        eps = 1e-6
        out = vt.rms_norm(x, ns, w, eps=eps)
        assert_close(out, np_layer_norm(xn, n, wn, None, eps, rms=True), dtype, scale=8, msg=layout)
        if torch is not None and dtype in ("float32", "float64"):
            tx = torch_tensor(xn, dtype)
            tw = torch_tensor(wn, dtype) if affine else None
            tb = torch_tensor(bn, dtype) if affine else None
            assert_close(vt.layer_norm(x, ns, w, b), to_numpy(F.layer_norm(tx, ns, tw, tb)), scale=8)
            assert_close(vt.rms_norm(x, ns, w), to_numpy(F.rms_norm(tx, ns, tw)), scale=8)


def test_norm_stats_outputs(rng):
    x = vt.tensor(rng.standard_normal((2, 3, 4)).astype(np.float32)).to(vt.bfloat16)
    out, mean, rstd = vt.ops.core.layer_norm(x, [4])
    assert out.dtype is vt.bfloat16 and mean.dtype is vt.float32 and mean.shape == (2, 3, 1)
    out, rstd = vt.ops.core.rms_norm(x, [3, 4])
    assert rstd.shape == (2, 1, 1) and rstd.dtype is vt.float32


def test_norm_gradcheck(rng):
    gc = vt.autograd.gradcheck
    assert gc(lambda x, w, b: vt.layer_norm(x, [4], w, b), [_r(rng, 3, 4), _r(rng, 4), _r(rng, 4)])
    assert gc(lambda x: vt.layer_norm(x, [2, 3]), [_r(rng, 2, 2, 3)])
    assert gc(lambda x, w: vt.layer_norm(x, [5], w), [_r(rng, 5), _r(rng, 5)])
    assert gc(lambda x, b: vt.layer_norm(x, [5], None, b), [_r(rng, 2, 5), _r(rng, 5)])
    assert gc(lambda x, w: vt.rms_norm(x, [4], w), [_r(rng, 3, 4), _r(rng, 4)])
    assert gc(lambda x: vt.rms_norm(x, [2, 4], eps=1e-3), [_r(rng, 3, 2, 4)])


def test_norm_grads_vs_torch_large(rng, torch):
    """Many rows: the blocked grad_weight/grad_bias reduction, float32, against float64 numpy
    and torch; bit-identical for 1 and 2 threads."""
    xn = rng.standard_normal((300, 64)).astype(np.float32)
    wn = rng.standard_normal(64).astype(np.float32)
    bn = rng.standard_normal(64).astype(np.float32)
    gn = rng.standard_normal((300, 64)).astype(np.float32)
    grads = []
    nt = vt.get_num_threads()
    try:
        for t in (1, 2):
            vt.set_num_threads(t)
            x, w, b = (vt.tensor(a).requires_grad_() for a in (xn, wn, bn))
            (vt.layer_norm(x, [64], w, b) * vt.tensor(gn)).sum().backward()
            grads.append([x.grad.numpy().copy(), w.grad.numpy().copy(), b.grad.numpy().copy()])
    finally:
        vt.set_num_threads(nt)
    for a, b_ in zip(*grads):
        assert np.array_equal(a, b_)
    # float64 reference of the gradients
    x64 = xn.astype(np.float64)
    mu = x64.mean(1, keepdims=True)
    rs = 1 / np.sqrt(((x64 - mu) ** 2).mean(1, keepdims=True) + 1e-5)
    xh = (x64 - mu) * rs
    gw = gn * wn
    gx = rs * (gw - gw.mean(1, keepdims=True) - xh * (gw * xh).mean(1, keepdims=True))
    np.testing.assert_allclose(grads[0][0], gx, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(grads[0][1], (gn * xh).sum(0), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(grads[0][2], gn.sum(0), rtol=1e-4, atol=1e-3)
    if torch is not None:
        tx, tw, tb = (_torch.tensor(a, requires_grad=True) for a in (xn, wn, bn))
        (F.layer_norm(tx, [64], tw, tb) * _torch.tensor(gn)).sum().backward()
        for ours, theirs in zip(grads[0], (tx.grad, tw.grad, tb.grad)):
            np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-3, atol=1e-4)


# -- dropout -------------------------------------------------------------------------------------

def test_dropout_determinism_and_stats(rng):
    x = vt.ones(1000, 37)
    nt = vt.get_num_threads()
    masks = []
    try:
        for t in (1, 2, 1):
            vt.set_num_threads(t)
            vt.manual_seed(123)
            out, mask = vt.ops.core.dropout(x, 0.3, True)
            masks.append((out.numpy().copy(), mask.numpy().copy()))
    finally:
        vt.set_num_threads(nt)
    for o, m in masks[1:]:
        assert np.array_equal(o, masks[0][0]) and np.array_equal(m, masks[0][1])
    out, mask = masks[0]
    assert mask.dtype == np.bool_ and abs(mask.mean() - 0.7) < 0.01
    np.testing.assert_allclose(out, mask / 0.7, rtol=1e-6)
    vt.manual_seed(124)
    assert not np.array_equal(vt.dropout(x, 0.3).numpy(), out)
    # eval mode and p = 0: the input unchanged; p = 1: zeros
    y = vt.tensor(rng.standard_normal((3, 4)).astype(np.float32))
    assert np.array_equal(vt.dropout(y, 0.5, training=False).numpy(), y.numpy())
    assert np.array_equal(vt.dropout(y, 0.0).numpy(), y.numpy())
    assert not vt.dropout(y, 1.0).numpy().any()
    for dtype in ("float64", "float16", "bfloat16"):
        t, tn = make(rng, (5, 6), dtype, "transposed")
        out, m = vt.ops.core.dropout(t, 0.5, True)
        assert_close(out, np.where(m.numpy(), tn * 2.0, 0.0), dtype)
    assert vt.dropout(vt.zeros(0, 3), 0.5).shape == (0, 3)


def test_dropout_grad(rng):
    x = _r(rng, 4, 5)
    vt.manual_seed(7)
    out = vt.dropout(x, 0.25)
    out.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), (out.detach().numpy() != 0) / 0.75)

    def f(x):
        vt.manual_seed(3)  # the same mask at every evaluation
        return vt.dropout(x, 0.4)

    assert vt.autograd.gradcheck(f, [_r(rng, 3, 4)])


# -- cross_entropy -------------------------------------------------------------------------------

def np_cross_entropy(x, t, ignore_index=-100, eps=0.0, reduction="mean"):
    scalar = np.asarray(t).ndim == 0
    x = np.moveaxis(x.astype(np.float64), 1, -1) if x.ndim > 1 else x.astype(np.float64)[None]
    t = np.asarray(t).reshape(x.shape[:-1])
    lse = np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1)) + x.max(-1)
    keep = t != ignore_index
    tt = np.where(keep, t, 0)
    xt = np.take_along_axis(x, tt[..., None], -1)[..., 0]
    loss = (1 - eps) * (lse - xt) + eps * (lse - x.mean(-1))
    loss = np.where(keep, loss, 0.0)
    if reduction == "none":
        return loss[0] if scalar else loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / keep.sum() if keep.sum() else np.nan


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", [(6, 5), (4, 3, 2, 3), (1, 1), (5,), (0, 4), (16, 65)], ids=str)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy(rng, dtype, shape, reduction, device, torch):
    C = shape[1] if len(shape) > 1 else shape[0]
    tshape = (shape[0],) + shape[2:] if len(shape) > 1 else ()
    for layout in ("contiguous", "transposed"):
        x, xn = make(rng, shape, dtype, layout, device)
        tn = rng.integers(0, C, tshape)
        if tn.size > 2:
            tn.flat[1] = -100
        t = on(device, vt.tensor(np.asarray(tn, np.int64)))
        for eps in (0.0, 0.1):
            out = vt.cross_entropy(x, t, reduction=reduction, label_smoothing=eps)
            ref = np_cross_entropy(xn, tn, -100, eps, reduction)
            if reduction == "mean" and np.asarray(tn).size == 0:
                assert np.isnan(out.float().item())
                continue
            assert_close(out, np.asarray(ref), dtype, scale=4, msg=f"{layout} eps {eps}")
            if torch is not None and dtype in ("float32", "float64"):
                tr = F.cross_entropy(torch_tensor(xn, dtype), _torch.tensor(np.asarray(tn, np.int64)),
                                     reduction=reduction, label_smoothing=eps)
                assert_close(out, to_numpy(tr), scale=4)


def test_cross_entropy_ignore_index_and_grad(rng, torch):
    xn = rng.standard_normal((6, 4))
    tn = np.array([0, 3, 7, 1, 7, 2])
    x, t = vt.tensor(xn).requires_grad_(), vt.tensor(tn)
    loss = vt.cross_entropy(x, t, ignore_index=7, label_smoothing=0.2)
    np.testing.assert_allclose(loss.item(), np_cross_entropy(xn, tn, 7, 0.2), rtol=1e-12)
    loss.backward()
    assert not x.grad.numpy()[[2, 4]].any()
    if torch is not None:
        tx = _torch.tensor(xn, requires_grad=True)
        F.cross_entropy(tx, _torch.tensor(tn), ignore_index=7, label_smoothing=0.2).backward()
        np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    gc = vt.autograd.gradcheck
    for red in ("mean", "sum", "none"):
        assert gc(lambda x: vt.cross_entropy(x, t, ignore_index=7, reduction=red, label_smoothing=0.1),
                  [_r(rng, 6, 4)])
    t3 = vt.tensor(rng.integers(0, 3, (2, 4, 5)))
    assert gc(lambda x: vt.cross_entropy(x, t3, reduction="sum"), [_r(rng, 2, 3, 4, 5)])


# -- mse_loss ------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss(rng, dtype, reduction, device, torch):
    for sa, sb in (((3, 4), (3, 4)), ((2, 3, 4), (4,)), ((5,), (1,)), ((0, 2), (0, 2)), ((), ())):
        for layout in ("contiguous", "transposed", "expanded"):
            a, an = make(rng, sa, dtype, layout, device)
            b, bn = make(rng, sb, dtype, device=device)
            out = vt.mse_loss(a, b, reduction=reduction)
            d = (an - bn) ** 2
            ref = d if reduction == "none" else d.sum() if reduction == "sum" else d.mean() if d.size else np.nan
            assert_close(out, np.asarray(ref), dtype, scale=8, msg=f"{sa} {sb} {layout}")
    assert vt.autograd.gradcheck(lambda x, y: vt.mse_loss(x, y), [_r(rng, 3, 4), _r(rng, 4)])
    assert vt.autograd.gradcheck(lambda x, y: vt.mse_loss(x, y, reduction="none"), [_r(rng, 3), _r(rng, 3)])


# -- every op of the family on every device: backward ops, long and odd rows, masks, determinism ----
# The backward ops are called directly (not through autograd) so each device's kernels meet a float64
# reference. Row lengths cover the kernels' cases: a row in registers, a row looped over memory
# (> 16384 elements of 16 and 32-bit types in the forward kernels and softmax's backward; > 8192
# in the norms' backward, whose weight gradients then take the column kernel), rows not a multiple
# of the 16-byte vector
# width, many tiny rows sharing a warp, a single row from a misaligned (offset) view.

ROW_SHAPES = [(3, 4099), (2, 20001), (70, 33), (600, 7), (1, 1)]


def offset_view(rng, n, dtype, device):
    """A contiguous 1-d view of n elements starting 1 element into its storage (misaligned)."""
    a = rng.uniform(-4, 4, n + 1)
    base = vt_from(a, dtype, device)
    return base[1:], to_numpy(base)[1:]


@pytest.mark.parametrize("dtype", FLOATS)
def test_row_ops_long_and_odd_rows(rng, dtype, device):
    cases = [make(rng, s, dtype, device=device) for s in ROW_SHAPES] + [offset_view(rng, 4096, dtype, device)]
    for x, xn in cases:
        msg = f"{tuple(x.shape)}"
        for log in (False, True):
            fn = vt.log_softmax if log else vt.softmax
            assert_close(fn(x, -1), np_softmax(xn, -1, log), dtype, scale=4, msg=msg)
        n = x.shape[-1]
        w, wn = make(rng, (n,), dtype, device=device)
        b, bn = make(rng, (n,), dtype, device=device)
        assert_close(vt.layer_norm(x, [n], w, b), np_layer_norm(xn, 1, wn, bn), dtype, scale=8, msg=msg)
        assert_close(vt.rms_norm(x, [n], w, eps=1e-6), np_layer_norm(xn, 1, wn, None, 1e-6, rms=True), dtype,
                     scale=8, msg=msg)
        if x.ndim == 2:
            tn = rng.integers(0, n, x.shape[0])
            tn[0] = -100
            t = on(device, vt.tensor(tn))
            for red in ("none", "mean", "sum"):
                out = vt.cross_entropy(x, t, reduction=red, label_smoothing=0.1)
                ref = np_cross_entropy(xn, tn, -100, 0.1, red)
                if red == "mean" and not (tn != -100).any():
                    assert np.isnan(to_numpy(out))
                    continue
                assert_close(out, np.asarray(ref), dtype, scale=8, msg=f"{msg} {red}")


def np_softmax_backward(g, y, dim, log):
    return g - np.exp(y) * g.sum(dim, keepdims=True) if log else y * (g - (g * y).sum(dim, keepdims=True))


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", [(4, 33), (2, 3, 5), (2, 17001), (70, 33), (), (0, 3)], ids=str)
@pytest.mark.parametrize("log", [False, True])
def test_softmax_backward_ops(rng, dtype, shape, log, device):
    fwd, bwd = (vt.log_softmax, vt.ops.core.log_softmax_backward) if log else (vt.softmax, vt.ops.core.softmax_backward)
    for layout in ("contiguous", "transposed"):
        x, _ = make(rng, shape, dtype, layout, device)
        g, gn = make(rng, shape, dtype, layout, device)
        for dim in ((-1, 0) if shape else (0,)):
            y = fwd(x, dim)
            yn = to_numpy(y).astype(np.float64)
            ref = np_softmax_backward(gn, yn, dim, log) if shape else (gn - np.exp(yn) * gn if log else yn * (gn - gn * yn))
            assert_close(bwd(g, y, dim), ref, dtype, scale=8, msg=f"{layout} dim {dim}")


def np_norm_backward(x, g, n, w, eps, rms):
    ax = tuple(range(x.ndim - n, x.ndim))
    mu = 0.0 if rms else x.mean(ax, keepdims=True)
    var = (x * x).mean(ax, keepdims=True) if rms else ((x - mu) ** 2).mean(ax, keepdims=True)
    rs = 1 / np.sqrt(var + eps)
    xh = (x - mu) * rs
    gw = g * w if w is not None else g
    mg = 0.0 if rms else gw.mean(ax, keepdims=True)
    gx = rs * (gw - mg - xh * (gw * xh).mean(ax, keepdims=True))
    lead = tuple(range(x.ndim - n))
    return gx, (g * xh).sum(lead), g.sum(lead)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape,n", [((4, 8), 1), ((2, 3, 5), 2), ((70, 33), 1), ((3, 4099), 1), ((2, 9001), 1),
                                     ((600, 7), 1), ((0, 4), 1)], ids=str)
@pytest.mark.parametrize("affine", [True, False])
def test_norm_backward_ops(rng, dtype, shape, n, affine, device):
    ns = list(shape[len(shape) - n:])
    rows = int(np.prod(shape[:len(shape) - n]))
    x, xn = make(rng, shape, dtype, "transposed", device)
    g, gn = make(rng, shape, dtype, device=device)
    w, wn = make(rng, ns, dtype, device=device) if affine else (None, None)
    b = make(rng, ns, dtype, device=device)[0] if affine else None
    scale = 8 * max(1, rows) ** 0.5  # grad_weight/grad_bias add a column over the rows
    _, mean, rstd = vt.ops.core.layer_norm(x, ns, w, b, 1e-5)
    gx, gw, gb = vt.ops.core.layer_norm_backward(g, x, ns, mean, rstd, w, b)
    rx, rw, rb = np_norm_backward(xn, gn, n, wn, 1e-5, False)
    assert_close(gx, rx, dtype, scale=8, msg="layer_norm grad_input")
    if affine:
        assert_close(gw, rw, dtype, scale=scale, msg="layer_norm grad_weight")
        assert_close(gb, rb, dtype, scale=scale, msg="layer_norm grad_bias")
    else:
        assert gw.shape == (0,) and gb.shape == (0,)
    _, rstd = vt.ops.core.rms_norm(x, ns, w, 1e-6)
    gx, gw = vt.ops.core.rms_norm_backward(g, x, ns, rstd, w)
    rx, rw, _ = np_norm_backward(xn, gn, n, wn, 1e-6, True)
    assert_close(gx, rx, dtype, scale=8, msg="rms_norm grad_input")
    if affine:
        assert_close(gw, rw, dtype, scale=scale, msg="rms_norm grad_weight")


def np_cross_entropy_backward(x, t, go, ignore_index, eps, reduction):
    moved = x.ndim > 1
    xm = np.moveaxis(x, 1, -1) if moved else x[None]
    t = np.asarray(t).reshape(xm.shape[:-1])
    keep = t != ignore_index
    C = xm.shape[-1]
    p = np.exp(xm - xm.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    onehot = np.eye(C)[np.where(keep, t, 0)]
    w = np.asarray(go, np.float64).reshape(t.shape) if reduction == "none" else float(go) * np.ones(t.shape)
    if reduction == "mean":
        w = w / keep.sum()
    grad = (p - eps / C - (1 - eps) * onehot) * (w * keep)[..., None]
    return np.moveaxis(grad, -1, 1) if moved else grad[0]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", [(6, 5), (4, 3, 2, 3), (5,), (3, 4099), (70, 33), (0, 4)], ids=str)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_backward_op(rng, dtype, shape, reduction, device):
    C = shape[1] if len(shape) > 1 else shape[0]
    tshape = (shape[0],) + shape[2:] if len(shape) > 1 else ()
    tn = np.asarray(rng.integers(0, C, tshape), np.int64)
    if tn.size > 2:
        tn.flat[1] = -100
    t = on(device, vt.tensor(tn))
    for layout in ("contiguous", "transposed"):
        x, xn = make(rng, shape, dtype, layout, device)
        for eps in (0.0, 0.1):
            loss, lse = vt.ops.core.cross_entropy(x, t, -100, eps, reduction)
            go, gon = make(rng, loss.shape, dtype, device=device)
            gi = vt.ops.core.cross_entropy_backward(go, x, t, lse, -100, eps, reduction)
            if reduction == "mean" and not (tn != -100).any():
                continue  # 0 / 0
            assert_close(gi, np_cross_entropy_backward(xn, tn, gon, -100, eps, reduction), dtype, scale=4,
                         msg=f"{layout} eps {eps}")


@pytest.mark.parametrize("dtype", FLOATS)
def test_dropout_on_device_draws_the_cpu_mask(rng, dtype, device):
    x, xn = make(rng, (37, 129), dtype, device=device)  # 4773 elements: the last Philox group is partial
    xc = x.cpu()
    for p in (0.3, 0.9):
        vt.manual_seed(42)
        out, mask = vt.ops.core.dropout(x, p, True)
        vt.manual_seed(42)
        out_c, mask_c = vt.ops.core.dropout(xc, p, True)
        m = to_numpy(mask)
        assert m.dtype == np.bool_ and np.array_equal(m, to_numpy(mask_c))
        assert abs(m.mean() - (1 - p)) < 0.03
        assert_close(out, np.where(m, xn / (1 - p), 0.0), dtype)
        assert_close(out, to_numpy(out_c), dtype)
        g, gn = make(rng, (37, 129), dtype, "transposed", device)
        assert_close(vt.ops.core.dropout_backward(g, mask, 1 / (1 - p)), np.where(m, gn / (1 - p), 0.0), dtype)
    m_a, m_b = (to_numpy(vt.ops.core.dropout(x, 0.5, True)[1]) for _ in range(2))
    assert not np.array_equal(m_a, m_b)  # the device's stream moves on: a new mask each call
    t, tn = make(rng, (5, 6), dtype, "transposed", device)  # a strided input, offset views
    for v, vn in ((t, tn), offset_view(rng, 1001, dtype, device)):
        o, mk = vt.ops.core.dropout(v, 0.5, True)
        assert_close(o, np.where(to_numpy(mk), vn * 2.0, 0.0), dtype)
    for args in ((0.5, False), (0.0, True)):  # eval and p = 0: a copy, every element kept
        o, mk = vt.ops.core.dropout(t, *args)
        assert_close(o, tn, dtype)
        assert to_numpy(mk).all()
    o, mk = vt.ops.core.dropout(t, 1.0, True)
    assert not to_numpy(o).any() and not to_numpy(mk).any()
    assert vt.ops.core.dropout(on(device, vt.zeros(0, 3, dtype=getattr(vt, dtype))), 0.5, True)[0].shape == (0, 3)


def test_nn_reductions_are_deterministic(rng, device):
    """Float reductions run in a fixed order: the same bits twice (no atomics)."""
    xn = rng.standard_normal((1000, 384)).astype(np.float32)
    x, g = on(device, vt.tensor(xn), vt.tensor(rng.standard_normal((1000, 384)).astype(np.float32)))
    w, b = on(device, vt.tensor(rng.standard_normal(384).astype(np.float32)),
              vt.tensor(rng.standard_normal(384).astype(np.float32)))
    t = on(device, vt.tensor(rng.integers(0, 384, 1000)))

    def run():
        _, mean, rstd = vt.ops.core.layer_norm(x, [384], w, b, 1e-5)
        r = list(vt.ops.core.layer_norm_backward(g, x, [384], mean, rstd, w, b))
        loss, lse = vt.ops.core.cross_entropy(x, t, -100, 0.1, "mean")
        r += [loss, lse, vt.ops.core.cross_entropy_backward(loss, x, t, lse, -100, 0.1, "mean")]
        r += [vt.mse_loss(x, g), vt.mse_loss(x, g, reduction="sum"), vt.softmax(x, 1), vt.softmax(x, 0)]
        return [to_numpy(v) for v in r]

    for a, b_ in zip(run(), run()):
        assert np.array_equal(a, b_, equal_nan=True)


@pytest.mark.skipif("cuda" not in DEVICES, reason="no CUDA device")
def test_dropout_in_a_cuda_graph_draws_fresh_masks_equal_to_eager():
    vcuda = vt.cuda
    x = vt.ones(4096, device="cuda")
    vt.ops.core.dropout(x, 0.5, True)  # warm up outside the capture
    g = vcuda.CUDAGraph()
    with vcuda.graph(g):
        _, mask = vt.ops.core.dropout(x, 0.5, True)
    vcuda.manual_seed(7)
    g.replay()
    m1 = to_numpy(mask)
    g.replay()
    m2 = to_numpy(mask)
    vcuda.manual_seed(7)
    e1 = to_numpy(vt.ops.core.dropout(x, 0.5, True)[1])
    e2 = to_numpy(vt.ops.core.dropout(x, 0.5, True)[1])
    assert np.array_equal(m1, e1) and np.array_equal(m2, e2) and not np.array_equal(m1, m2)


# -- optimisers ----------------------------------------------------------------------------------

def np_adamw(p, g, m, v, lr, b1, b2, eps, wd, step):
    p = p * (1 - lr * wd)
    m = m + (g - m) * (1 - b1)
    v = v * b2 + g * g * (1 - b2)
    denom = np.sqrt(v) / np.sqrt(1 - b2 ** step) + eps
    return p - lr / (1 - b1 ** step) * m / denom, m, v


@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
def test_adamw_steps(rng, dtype, torch):
    shape = (7, 5)
    pn = rng.standard_normal(shape)
    hp = dict(lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    vtp = vt.tensor(pn).to(vt_dt(dtype))
    m, v = vt.zeros(*shape, dtype=vt_dt(dtype)), vt.zeros(*shape, dtype=vt_dt(dtype))
    rp, rm, rv = to_numpy(vtp), np.zeros(shape), np.zeros(shape)
    if torch is not None:
        tp = _torch.tensor(to_numpy(vtp), dtype=getattr(_torch, dtype), requires_grad=True)
        opt = _torch.optim.AdamW([tp], **hp)
    for step in range(1, 6):
        gn = rng.standard_normal(shape)
        g = vt.tensor(gn).to(vt_dt(dtype))
        ret = vt.ops.core.adamw_(vtp, g, m, v, hp["lr"], 0.9, 0.95, hp["eps"], hp["weight_decay"], step)
        assert ret.data_ptr() == vtp.data_ptr()
        rp, rm, rv = np_adamw(rp, to_numpy(g), rm, rv, hp["lr"], 0.9, 0.95, hp["eps"], hp["weight_decay"], step)
        tol = {"float32": 1e-5, "float64": 1e-12, "bfloat16": 3e-2}[dtype]
        np.testing.assert_allclose(to_numpy(vtp), rp, rtol=tol, atol=tol)
        if torch is not None:
            tp.grad = _torch.tensor(to_numpy(g), dtype=getattr(_torch, dtype))
            opt.step()
            ttol = {"float32": 1e-6, "float64": 1e-14, "bfloat16": 1e-2}[dtype]
            np.testing.assert_allclose(to_numpy(vtp), to_numpy(tp), rtol=ttol, atol=ttol)
            np.testing.assert_allclose(to_numpy(m), to_numpy(opt.state[tp]["exp_avg"]), rtol=ttol, atol=ttol)


def vt_dt(name):
    return getattr(vt, name)


@pytest.mark.parametrize("momentum,dampening,nesterov,wd", [(0.0, 0.0, False, 0.0), (0.9, 0.0, False, 0.01),
                                                            (0.9, 0.1, False, 0.0), (0.9, 0.0, True, 0.05)])
def test_sgd_steps(rng, momentum, dampening, nesterov, wd, torch):
    shape = (4, 6)
    pn = rng.standard_normal(shape).astype(np.float32)
    p = vt.tensor(pn)
    buf = vt.zeros(*shape) if momentum else None
    rp, rb = pn.astype(np.float64), None
    if torch is not None:
        tp = _torch.tensor(pn, requires_grad=True)
        opt = _torch.optim.SGD([tp], lr=0.1, momentum=momentum, dampening=dampening, nesterov=nesterov,
                               weight_decay=wd)
    for step in range(4):
        gn = rng.standard_normal(shape).astype(np.float32)
        # torch's first step copies d into the buffer: dampening 0 on a zero buffer does the same
        vt.ops.core.sgd_(p, vt.tensor(gn), buf, 0.1, momentum, dampening if step else 0.0, wd, nesterov)
        d = gn + wd * rp
        if momentum:
            rb = d.copy() if rb is None else momentum * rb + (1 - dampening) * d
            d = d + momentum * rb if nesterov else rb
        rp = rp - 0.1 * d
        np.testing.assert_allclose(p.numpy(), rp, rtol=1e-5, atol=1e-5)
        if torch is not None:
            tp.grad = _torch.tensor(gn)
            opt.step()
            np.testing.assert_allclose(p.numpy(), tp.detach().numpy(), rtol=1e-6, atol=1e-6)


def test_optim_strided(rng):
    """Non-contiguous parameters and state take the strided path with the same numbers."""
    base = vt.tensor(rng.standard_normal((6, 8)).astype(np.float32))
    p = base.T
    g = vt.tensor(rng.standard_normal((8, 6)).astype(np.float32))
    m, v = vt.zeros(8, 6), vt.zeros(8, 6)
    ref = vt.tensor(p.numpy().copy())
    m2, v2 = vt.zeros(8, 6), vt.zeros(8, 6)
    vt.ops.core.adamw_(p, g, m, v, 0.1, 0.9, 0.999, 1e-8, 0.01, 1)
    vt.ops.core.adamw_(ref, g, m2, v2, 0.1, 0.9, 0.999, 1e-8, 0.01, 1)
    assert np.array_equal(p.numpy(), ref.numpy())
    q = vt.tensor(rng.standard_normal((6, 8)).astype(np.float32)).T
    q0 = q.numpy().copy()
    vt.ops.core.sgd_(q, g, None, 0.5)
    np.testing.assert_allclose(q.numpy(), q0 - 0.5 * g.numpy(), rtol=1e-6)


# -- random ----------------------------------------------------------------------------------------

def _twice(fn):
    """fn() under seed 5 with 1 thread and with 2 threads, and once more under seed 6."""
    nt = vt.get_num_threads()
    try:
        res = []
        for t, seed in ((1, 5), (2, 5), (2, 6)):
            vt.set_num_threads(t)
            vt.manual_seed(seed)
            res.append(to_numpy(fn()))
    finally:
        vt.set_num_threads(nt)
    return res


def test_randint():
    a, b, c = _twice(lambda: vt.randint(-3, 7, (300, 300)))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.dtype == np.int64 and a.min() == -3 and a.max() == 6
    counts = np.bincount((a + 3).ravel(), minlength=10) / a.size
    assert np.all(np.abs(counts - 0.1) < 0.01)
    assert vt.randint(5, (3,)).numpy().max() < 5
    big = vt.randint(0, 2**40, (1000,)).numpy()
    assert big.max() > 2**33 and big.min() >= 0
    assert vt.randint(0, 3, (4,), dtype=vt.float32).dtype is vt.float32
    assert vt.randint(0, 3, (0, 2)).shape == (0, 2)


def test_randperm():
    a, b, c = _twice(lambda: vt.randperm(1000))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.array_equal(np.sort(a), np.arange(1000)) and a.dtype == np.int64
    assert vt.randperm(0).shape == (0,) and vt.randperm(1).tolist() == [0]
    assert vt.randperm(5, dtype=vt.int32).dtype is vt.int32


@pytest.mark.parametrize("dtype", FLOATS)
def test_normal_uniform_inplace(dtype):
    def fill(method, *args):
        t = vt.empty(200, 300, dtype=vt_dt(dtype))
        getattr(t, method)(*args)
        return t

    for method, args, mean, std in (("normal_", (1.0, 2.0), 1.0, 2.0), ("uniform_", (-1.0, 3.0), 1.0, 4 / 12 ** 0.5)):
        a, b, c = (v.astype(np.float64) for v in _twice(lambda: fill(method, *args)))
        assert np.array_equal(a, b) and not np.array_equal(a, c)
        assert abs(a.mean() - mean) < 0.05 and abs(a.std() - std) < 0.05
        if method == "uniform_":
            assert a.min() >= -1.0 and a.max() <= 3.0
        # in place on a strided view: the numbers a contiguous tensor of that shape would get
        vt.manual_seed(9)
        base = vt.zeros(300, 200, dtype=vt_dt(dtype))
        view = base.T
        assert getattr(view, method)(*args) is view
        vt.manual_seed(9)
        assert np.array_equal(to_numpy(view), to_numpy(fill(method, *args)))
    # the same numbers as the factories (rand / randn share the stream convention)
    vt.manual_seed(11)
    x = vt.empty(10, dtype=vt_dt(dtype)).uniform_()
    vt.manual_seed(11)
    assert np.array_equal(to_numpy(x), to_numpy(vt.rand(10, dtype=vt_dt(dtype))))


# -- bad input -------------------------------------------------------------------------------------

def test_bad_inputs():
    x = vt.zeros(3, 4)
    with pytest.raises(IndexError, match=r"\[core::softmax\] dim 2 is out of range for a tensor of ndim 2"):
        vt.softmax(x, 2)
    with pytest.raises(TypeError, match=r"\[core::log_softmax\] self must have a floating dtype, got int64"):
        vt.log_softmax(vt.zeros(3, dtype=vt.int64), 0)
    with pytest.raises(ValueError, match=r"\[core::layer_norm\] normalized_shape \(5,\) does not match"):
        vt.layer_norm(x, [5])
    with pytest.raises(ValueError, match=r"\[core::layer_norm\] weight must have shape normalized_shape \(4,\), got \(3,\)"):
        vt.layer_norm(x, [4], vt.ones(3))
    with pytest.raises(TypeError, match=r"\[core::rms_norm\] dtype mismatch: input is float32, weight is float64"):
        vt.rms_norm(x, [4], vt.ones(4, dtype=vt.float64))
    with pytest.raises(ValueError, match=r"\[core::dropout\] p must be in \[0, 1\], got 1.5"):
        vt.ops.core.dropout(x, 1.5, True)
    with pytest.raises(IndexError, match=r"\[core::cross_entropy\] target 4 at position 1 is out of range for 4 classes"):
        vt.cross_entropy(x, vt.tensor([0, 4, 1]))
    with pytest.raises(TypeError, match=r"\[core::cross_entropy\] target must be int64 class indices, got float32"):
        vt.cross_entropy(x, vt.zeros(3))
    with pytest.raises(ValueError, match=r"\[core::cross_entropy\] target \(4,\) does not match input \(3, 4\)"):
        vt.cross_entropy(x, vt.tensor([0, 1, 2, 3]))
    xb, tb = x.to(vt.bfloat16), vt.tensor([0, 1, 2])
    with pytest.raises(TypeError, match=r"\[core::cross_entropy_backward\] lse must be float32 \(cross_entropy's second "
                       r"output for bfloat16 input\), got bfloat16"):
        vt.ops.core.cross_entropy_backward(vt.ones(3, dtype=vt.bfloat16), xb, tb, vt.zeros(3, dtype=vt.bfloat16), -100,
                                           0.0, "none")
    with pytest.raises(ValueError, match=r"\[core::mse_loss\] reduction must be 'mean', 'sum' or 'none', got 'avg'"):
        vt.ops.core.mse_loss(x, x, "avg")
    with pytest.raises(ValueError, match=r"\[core::mse_loss\] shapes cannot be broadcast"):
        vt.mse_loss(x, vt.zeros(5))
    with pytest.raises(ValueError, match=r"\[core::adamw_\] grad must have param's shape \(3, 4\), got \(4,\)"):
        vt.ops.core.adamw_(x, vt.zeros(4), x, x, 0.1, 0.9, 0.99, 1e-8, 0.0, 1)
    with pytest.raises(ValueError, match=r"\[core::adamw_\] step must be >= 1"):
        vt.ops.core.adamw_(x, x, x, x, 0.1, 0.9, 0.99, 1e-8, 0.0, 0)
    with pytest.raises(ValueError, match=r"\[core::sgd_\] momentum 0.9 needs a momentum_buffer"):
        vt.ops.core.sgd_(x, x, None, 0.1, 0.9)
    with pytest.raises(ValueError, match=r"\[core::randint\] low must be < high, got low 3 and high 3"):
        vt.randint(3, 3, (2,))
    with pytest.raises(ValueError, match=r"\[core::randperm\] n must be >= 0, got -1"):
        vt.randperm(-1)
    with pytest.raises(TypeError, match=r"\[core::normal_\] self must have a floating dtype, got int64"):
        vt.zeros(3, dtype=vt.int64).normal_()
    with pytest.raises(ValueError, match=r"\[core::uniform_\] low must be <= high"):
        vt.zeros(3).uniform_(2.0, 1.0)
