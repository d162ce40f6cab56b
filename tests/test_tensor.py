"""The Tensor object: metadata, views, indexing and assignment, operators, conversions.

Views are checked against numpy doing the same thing: same values, same strides, the same
storage (a write through the view lands where numpy says it lands in the base).
"""
from __future__ import annotations

import numpy as np
import pytest

import vibetensor as vt
from conftest import assert_close, dname, torch_check

BASE = np.arange(24.0).reshape(2, 3, 4)


def base():
    """A fresh (vt, numpy) pair holding 0..23 as (2, 3, 4) float64."""
    n = BASE.copy()
    return vt.tensor(n), n


def strides_of(n: np.ndarray):
    return tuple(s // n.itemsize for s in n.strides)


# -- metadata ------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "int32", "int8", "uint8", "bool",
                                   "float16"])
def test_metadata_matches_numpy(dtype):
    n = np.zeros((2, 3, 5), dtype=dtype)
    t = vt.tensor(n)
    assert dname(t.dtype) == dtype
    assert t.shape == (2, 3, 5) and t.size() == (2, 3, 5) and t.size(-1) == 5
    assert t.stride() == strides_of(n) == (15, 5, 1) and t.stride(0) == 15
    assert t.ndim == t.dim() == 3 and t.numel() == 30 and len(t) == 2
    assert t.element_size() == n.itemsize == t.dtype.itemsize
    assert t.storage_offset() == 0 and t.is_contiguous()
    assert t.device == vt.device("cpu") and str(t.device) == "cpu" and not t.is_cuda
    assert t.device.type == "cpu" and t.device.index == 0


def test_dtype_properties():
    assert vt.float32.is_floating_point and vt.bfloat16.is_floating_point
    assert not vt.int64.is_floating_point and not vt.bool_.is_floating_point
    assert (vt.float, vt.double, vt.long, vt.half, vt.bool) == \
        (vt.float32, vt.float64, vt.int64, vt.float16, vt.bool_)
    assert str(vt.float32).endswith("float32")
    assert vt.bfloat16.itemsize == 2 and vt.int32.itemsize == 4


def test_size_and_stride_bad_dim():
    t = vt.zeros(2, 3)
    with pytest.raises(IndexError, match="size: dim 2"):
        t.size(2)
    with pytest.raises(IndexError, match="stride: dim -3"):
        t.stride(-3)


def test_repr():
    assert repr(vt.tensor([1.5, -2.0])) == "tensor([ 1.5, -2. ])"
    assert repr(vt.tensor([1, 2])) == "tensor([1, 2])"  # int64 and float32 print no dtype
    assert repr(vt.tensor(2.5)) == "tensor(2.5)"
    r = repr(vt.tensor([1, 2], dtype=vt.int32))
    assert r.startswith("tensor([1, 2], dtype=") and r.endswith("int32)")
    r = repr(vt.ones(2, 2, dtype=vt.float64))
    assert "[[1., 1.],\n        [1., 1.]]" in r and "float64" in r
    assert repr(vt.zeros(0, 3)) == "tensor([])"
    assert "True" in repr(vt.tensor([True, False]))
    r = repr(vt.tensor([0.5, 3.0]).to(vt.bfloat16))  # numpy has no bfloat16: shown via float32
    assert "0.5" in r and "3." in r and "bfloat16" in r
    b = vt.tensor([0.5, 3.0, -1.0 / 3]).to(vt.bfloat16)  # item()/tolist() give Python floats, as torch's do
    assert b.tolist() == [0.5, 3.0, -0.333984375] and b[2].item() == -0.333984375
    with pytest.raises(TypeError, match="bfloat16"):
        b.numpy()
    assert repr(vt.arange(4.0)[::2]) == "tensor([0., 2.])"  # views print their own elements


def test_tensor_factory_infers_dtype():
    assert vt.tensor([1.0, 2]).dtype is vt.float32  # Python floats -> float32, as in torch
    assert vt.tensor([[1, 2], [3, 4]]).dtype is vt.int64
    assert vt.tensor(True).dtype is vt.bool_
    assert vt.tensor(np.array([1, 2], np.int32)).dtype is vt.int32  # numpy keeps its dtype
    assert vt.tensor(np.array([1.0])).dtype is vt.float64
    for spelled in (vt.float64, "float64", np.float64):
        assert vt.tensor([1, 2], dtype=spelled).dtype is vt.float64
    assert vt.tensor(3).shape == () and vt.tensor([]).shape == (0,)
    with pytest.raises(ValueError):
        vt.tensor([[1, 2], [3]])  # ragged


def test_tensor_copies_its_input():
    n = np.arange(3.0)
    t = vt.tensor(n)
    n[0] = 9
    assert t.tolist() == [0.0, 1.0, 2.0]
    u = vt.tensor(t)
    t.fill_(5)
    assert u.tolist() == [0.0, 1.0, 2.0]


# -- views ---------------------------------------------------------------------------------------

# (id, vt view, the same numpy view). Every entry must be a true view in both libraries.
VIEWS = [
    ("view_2d", lambda t: t.view(6, 4), lambda n: n.reshape(6, 4)),
    ("view_flat", lambda t: t.view(-1), lambda n: n.reshape(-1)),
    ("view_infer", lambda t: t.view(4, -1, 3), lambda n: n.reshape(4, -1, 3)),
    ("view_tuple", lambda t: t.view((3, 8)), lambda n: n.reshape(3, 8)),
    ("reshape_view", lambda t: t.reshape(2, 12), lambda n: n.reshape(2, 12)),
    ("transpose", lambda t: t.transpose(0, 2), lambda n: n.transpose(2, 1, 0)),
    ("transpose_neg", lambda t: t.transpose(-1, -2), lambda n: n.swapaxes(-1, -2)),
    ("permute", lambda t: t.permute(2, 0, 1), lambda n: n.transpose(2, 0, 1)),
    ("permute_list", lambda t: t.permute([1, -1, 0]), lambda n: n.transpose(1, 2, 0)),
    ("T", lambda t: t.T, lambda n: n.T),
    ("mT", lambda t: t.mT, lambda n: n.swapaxes(-1, -2)),
    ("t_2d", lambda t: t[0].t(), lambda n: n[0].T),
    ("narrow", lambda t: t.narrow(2, 1, 2), lambda n: n[:, :, 1:3]),
    ("narrow_neg_start", lambda t: t.narrow(1, -2, 2), lambda n: n[:, -2:]),
    ("narrow_empty", lambda t: t.narrow(2, 4, 0), lambda n: n[:, :, 4:4]),
    ("select", lambda t: t.select(1, -1), lambda n: n[:, -1]),
    ("select_0", lambda t: t.select(0, 1), lambda n: n[1]),
    ("index_int", lambda t: t[1], lambda n: n[1]),
    ("index_neg", lambda t: t[-1, -2], lambda n: n[-1, -2]),
    ("index_scalar", lambda t: t[1, 2, 3], lambda n: n[1, 2, 3:4].reshape(())),
    ("slice_step", lambda t: t[:, ::2], lambda n: n[:, ::2]),
    ("slice_start_stop_step", lambda t: t[..., 1:4:2], lambda n: n[..., 1:4:2]),
    ("slice_clamped", lambda t: t[:, 1:100:2], lambda n: n[:, 1:100:2]),
    ("slice_negative", lambda t: t[:, -2:, :-1], lambda n: n[:, -2:, :-1]),
    ("slice_step3", lambda t: t[..., ::3], lambda n: n[..., ::3]),
    ("mixed", lambda t: t[1, :, 3], lambda n: n[1, :, 3]),
    ("ellipsis_mid", lambda t: t[0, ..., 1:], lambda n: n[0, ..., 1:]),
    ("none", lambda t: t[None, :, 1], lambda n: n[None, :, 1]),
    ("np_int_index", lambda t: t[np.int64(1)], lambda n: n[1]),
    ("unsqueeze0", lambda t: t.unsqueeze(0), lambda n: n[None]),
    ("unsqueeze_neg", lambda t: t.unsqueeze(-1), lambda n: n[..., None]),
    ("unsqueeze_mid", lambda t: t.unsqueeze(2), lambda n: n[:, :, None]),
    ("squeeze_all", lambda t: t.view(2, 1, 3, 1, 4).squeeze(), lambda n: n),
    ("squeeze_dim", lambda t: t.view(2, 1, 3, 1, 4).squeeze(1), lambda n: n.reshape(2, 3, 1, 4)),
    ("squeeze_dims", lambda t: t.view(2, 1, 3, 1, 4).squeeze((1, -2)), lambda n: n),
    ("squeeze_noop", lambda t: t.squeeze(0), lambda n: n),
    ("as_strided", lambda t: t.as_strided((3, 3), (4, 1), 1),
     lambda n: np.lib.stride_tricks.as_strided(n.reshape(-1)[1:], (3, 3), (32, 8))),
    ("as_strided_overlap_read", lambda t: t.as_strided((2, 5), (1, 2)),
     lambda n: np.lib.stride_tricks.as_strided(n, (2, 5), (8, 16))),
    ("flatten_contig", lambda t: t.flatten(), lambda n: n.reshape(-1)),
    ("flatten_tail", lambda t: t.flatten(1), lambda n: n.reshape(2, 12)),
    ("flatten_head", lambda t: t.flatten(0, 1), lambda n: n.reshape(6, 4)),
    ("chain", lambda t: t.T[1:, ::2].mT, lambda n: n.T[1:, ::2].swapaxes(-1, -2)),
    ("view_of_permuted", lambda t: t.permute(1, 0, 2).view(3, 2, 2, 2),
     lambda n: n.transpose(1, 0, 2).reshape(3, 2, 2, 2)),
    ("view_merge_after_slice", lambda t: t[:, :, 1:3].transpose(0, 1)[:, :, 0],
     lambda n: n[:, :, 1:3].transpose(1, 0, 2)[:, :, 0]),
]


@pytest.mark.parametrize("name,vf,nf", VIEWS, ids=[v[0] for v in VIEWS])
def test_view_values_strides_and_write_through(name, vf, nf):
    t, n = base()
    v, nv = vf(t), nf(n)
    assert nv.size == 0 or np.shares_memory(nv, n), "the numpy twin must be a view too"
    assert v.shape == nv.shape, f"{name}: shape {v.shape} vs numpy {nv.shape}"
    np.testing.assert_array_equal(v.numpy(), nv)
    if nv.ndim and nv.size > 1:  # strides of size-1 dims are free
        want = [s for s, d in zip(strides_of(nv), nv.shape) if d > 1]
        assert [s for s, d in zip(v.stride(), v.shape) if d > 1] == want
    # same storage: the view starts inside the base's buffer ...
    first = t.data_ptr()
    assert first <= v.data_ptr() < first + t.numel() * t.element_size() or v.numel() == 0
    assert v.storage_offset() * 8 == v.data_ptr() - first or v.numel() == 0
    assert v.is_contiguous() == (nv.flags.c_contiguous or nv.size <= 1), name
    if name == "as_strided_overlap_read":
        return  # overlapping elements: a write has no single answer
    # ... and a write through it lands where numpy says
    vals = np.arange(100.0, 100.0 + nv.size).reshape(nv.shape)
    v.copy_(vt.tensor(vals))
    nv[...] = vals
    np.testing.assert_array_equal(t.numpy(), n)


def test_expand_is_a_stride0_view():
    t = vt.tensor([[1.0], [2.0]])
    e = t.expand(3, 2, 4)
    assert e.shape == (3, 2, 4) and e.stride() == (0, 1, 0)
    np.testing.assert_array_equal(e.numpy(), np.broadcast_to([[1.0], [2.0]], (3, 2, 4)))
    assert t.expand(-1, 5).shape == (2, 5)
    assert t.expand_as(vt.zeros(2, 3)).shape == (2, 3)
    t[1, 0] = 7.0  # the expanded view sees writes to the base
    assert e[2, 1].tolist() == [7.0] * 4
    assert not e.is_contiguous()
    assert e.contiguous().is_contiguous() and e.contiguous().tolist() == e.tolist()
    with pytest.raises(ValueError, match="expand: cannot expand size 2 to 3"):
        t.expand(3, 4)
    with pytest.raises(ValueError, match="fewer dims"):
        t.expand(4)


def test_reshape_copies_only_when_it_must():
    t, _ = base()
    tt = t.transpose(0, 2)  # (4, 3, 2), not viewable as flat
    with pytest.raises(ValueError, match="view: shape"):
        tt.view(24)
    r = tt.reshape(24)
    assert r.is_contiguous()
    assert r.tolist() == BASE.transpose(2, 1, 0).reshape(-1).tolist()
    r.fill_(0)  # a copy: the base keeps its values
    assert t.sum().item() == BASE.sum()
    f = tt.flatten()
    f.fill_(0)
    assert t.sum().item() == BASE.sum()
    v = t.reshape(4, 6)  # contiguous: a view, writes go through
    v[0, 0] = -1
    assert t[0, 0, 0].item() == -1


def test_views_of_zero_size_and_0d():
    z = vt.zeros(0, 3)
    assert z.view(3, 0).shape == (3, 0) and z.reshape(-1, 3).shape == (0, 3)
    assert z.T.shape == (3, 0) and z[:, 1].shape == (0,) and z.unsqueeze(1).shape == (0, 1, 3)
    assert z.flatten().shape == (0,) and z.is_contiguous()
    s = vt.tensor(5.0)
    assert s.view(1, 1).shape == (1, 1) and s.reshape(-1).tolist() == [5.0]
    assert s.unsqueeze(0).shape == (1,) and s.flatten().shape == (1,)
    assert s.T.shape == () and s[...].item() == 5.0 and s[None].shape == (1,)
    assert s.expand(2, 3).tolist() == [[5.0] * 3] * 2


def test_is_contiguous():
    t, _ = base()
    assert t.is_contiguous() and t[1].is_contiguous() and t[:, :, :].is_contiguous()
    assert t.unsqueeze(1).is_contiguous() and t[1, 2].is_contiguous()
    assert not t.T.is_contiguous() and not t[..., ::2].is_contiguous()
    assert not t[:, 1:].is_contiguous() and not t[:, :1].is_contiguous()
    assert t[:1].is_contiguous() and t[:, :, :1][:, :1].is_contiguous() is False
    assert t.T.contiguous().is_contiguous()
    c = t.contiguous()
    assert c.data_ptr() == t.data_ptr()  # already contiguous: no copy
    d = t.T.contiguous()
    assert d.data_ptr() != t.data_ptr() and d.tolist() == BASE.T.tolist()


def test_view_errors():
    t, _ = base()
    with pytest.raises(ValueError, match=r"view: shape \(5,\) is invalid for input of size 24"):
        t.view(5)
    with pytest.raises(ValueError, match="only one dimension can be -1"):
        t.view(-1, -1)
    with pytest.raises(ValueError, match="reshape: shape"):
        t.reshape(7, -1)
    with pytest.raises(ValueError, match="permute: expected 3 dims"):
        t.permute(0, 1)
    with pytest.raises(ValueError, match="not a permutation"):
        t.permute(0, 0, 1)
    with pytest.raises(IndexError, match="narrow"):
        t.narrow(2, 3, 2)
    with pytest.raises(IndexError, match="select: index 3"):
        t.select(1, 3)
    with pytest.raises(IndexError, match="transpose: dim 3"):
        t.transpose(0, 3)
    with pytest.raises(IndexError, match="unsqueeze: dim 5"):
        t.unsqueeze(5)
    with pytest.raises(ValueError, match="t\\(\\)"):
        t.t()
    with pytest.raises(ValueError, match="as_strided: view .* storage holds 24"):
        t.as_strided((2, 2), (1, 2), 100)
    with pytest.raises(IndexError, match="index 5 is out of bounds for dim 0 with size 2"):
        t[5]
    with pytest.raises(IndexError, match="too many indices"):
        t[0, 0, 0, 0]
    with pytest.raises(ValueError, match="step must be positive"):
        t[::-1]
    with pytest.raises(TypeError, match="unsupported index"):
        t["a"]


# -- assignment ----------------------------------------------------------------------------------

SETITEM = [
    ("int", 1, 5.0),
    ("slice_step", (slice(None), slice(None, None, 2)), 7.0),
    ("ellipsis", (Ellipsis, 1), -1.0),
    ("point", (1, 2, 3), 42.0),
    ("whole", Ellipsis, 0.0),
    ("tensor_broadcast", (slice(None), 1), np.arange(4.0)),
    ("tensor_full", 0, np.arange(12.0).reshape(3, 4) * -1),
    ("int_into_float", (0, 0), 3),
    ("np_scalar", (1, 1), np.float32(2.5)),
]


@pytest.mark.parametrize("name,key,value", SETITEM, ids=[s[0] for s in SETITEM])
def test_setitem_matches_numpy(name, key, value):
    t, n = base()
    t[key] = vt.tensor(value) if isinstance(value, np.ndarray) else value
    n[key] = value
    np.testing.assert_array_equal(t.numpy(), n)


def test_setitem_through_views_and_dtypes():
    t, n = base()
    t.T[0] = 9.0  # through a transposed view: t[..., 0]
    n.T[0] = 9.0
    np.testing.assert_array_equal(t.numpy(), n)
    i = vt.zeros(3, dtype=vt.int32)
    i[1:] = vt.tensor([2.7, -2.7])  # float into int: truncated, as in torch
    assert i.tolist() == [0, 2, -2] and i.dtype is vt.int32
    with pytest.raises(ValueError, match=r"\[core::copy_\] shapes cannot be broadcast"):
        t[0] = vt.ones(5)


# -- operators -----------------------------------------------------------------------------------

def _x():
    return np.array([[1.5, -2.0, 3.0], [0.5, 4.0, -1.0]])


def _y():
    return np.array([2.0, -0.5, 1.0])


OPERATORS = [
    ("add", lambda a, b: a + b), ("sub", lambda a, b: a - b), ("mul", lambda a, b: a * b),
    ("div", lambda a, b: a / b), ("radd_int", lambda a, b: 2 + a), ("rsub_int", lambda a, b: 2 - a),
    ("rmul_float", lambda a, b: 0.5 * a), ("rdiv_float", lambda a, b: 3.0 / a),
    ("add_float", lambda a, b: a + 2.5), ("sub_int", lambda a, b: a - 1),
    ("neg", lambda a, b: -a), ("pos", lambda a, b: +a), ("matmul", lambda a, b: a @ b),
    ("rmatmul_like", lambda a, b: b @ a.T), ("chain", lambda a, b: (a * 2 - b) / (b + 10) + 1),
    ("np_scalar_left", lambda a, b: np.float64(2) * a),
    ("np_scalar_right", lambda a, b: a - np.int64(3)),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name,f", OPERATORS, ids=[o[0] for o in OPERATORS])
def test_operators_float(name, f, dtype):
    x, y = vt.tensor(_x(), dtype=dtype), vt.tensor(_y(), dtype=dtype)
    got = f(x, y)
    assert isinstance(got, vt.Tensor)
    assert_close(got, f(_x(), _y()), dtype, msg=name)
    torch_check(lambda m, a, b: f(a, b), got, [_x(), _y()], [dtype, dtype], msg=name)


def test_pos_is_identity_and_neg_keeps_dtype():
    a = vt.arange(3)
    assert +a is a
    assert (-a).tolist() == [0, -1, -2] and (-a).dtype is vt.int64


# (left dtype, right dtype or Python value, result dtype): torch's promotion rules
PROMOTION = [
    ("int64", "float32", "float32"), ("int32", "int64", "int64"), ("int32", "float64", "float64"),
    ("float32", "float64", "float64"), ("float16", "float32", "float32"),
    ("bfloat16", "float16", "float32"), ("int32", 2, "int32"), ("int64", 2.5, "float32"),
    ("float64", 2, "float64"), ("float16", 2.5, "float16"), ("int32", True, "int32"),
    ("uint8", "int8", "int16"),  # a dtype vibetensor refuses: the promotion says so clearly
]


@pytest.mark.parametrize("left,right,result", PROMOTION)
def test_type_promotion(left, right, result, torch):
    a = vt.ones(3, dtype=getattr(vt, left))
    b = vt.ones(3, dtype=getattr(vt, right)) if isinstance(right, str) else right
    if result == "int16":  # no kernel has int16, so the runtime refuses it at creation
        with pytest.raises(TypeError, match="int16"):
            a + b
        return
    r = a + b
    assert dname(r.dtype) == result
    assert r.tolist() == [1 + (1 if isinstance(right, str) else right)] * 3
    r2 = b + a  # reflected / swapped: the same answer
    assert dname(r2.dtype) == result
    if torch is not None:
        ta = torch.ones(3, dtype=getattr(torch, left))
        tb = torch.ones(3, dtype=getattr(torch, right)) if isinstance(right, str) else right
        assert dname((ta + tb).dtype) == result


def test_inplace_operators_keep_identity_and_dtype():
    a = vt.arange(4)
    ptr = a.data_ptr()
    a += 1
    a *= 3
    a -= vt.tensor([1, 1, 1, 1])
    assert a.tolist() == [2, 5, 8, 11] and a.dtype is vt.int64 and a.data_ptr() == ptr
    f = vt.ones(2, 2)
    ref = f
    f /= 4
    f += vt.arange(2.0)  # broadcast in place
    assert f is ref and f.tolist() == [[0.25, 1.25], [0.25, 1.25]]
    with pytest.raises(TypeError, match="can't be cast"):
        a /= 2  # int tensor /= : float result, as in torch an error, not a silent truncation
    with pytest.raises(TypeError, match="can't be cast"):
        a += 0.5
    assert a.tolist() == [2, 5, 8, 11]


def test_operator_bad_operands():
    a = vt.ones(2)
    for bad in ("x", None, [1, 2], object()):
        with pytest.raises(TypeError):
            a + bad
        with pytest.raises(TypeError):
            bad * a


def test_methods_add_sub_with_alpha():
    a, b = vt.tensor([1.0, 2.0]), vt.tensor([10.0, 20.0])
    assert a.add(b, alpha=0.5).tolist() == [6.0, 12.0]
    assert a.sub(b, alpha=2).tolist() == [-19.0, -38.0]
    assert a.add(1).tolist() == [2.0, 3.0] and a.mul(b).tolist() == [10.0, 40.0]
    assert b.div(a).tolist() == [10.0, 10.0] and a.matmul(b).item() == 50.0
    assert vt.matmul(a, b).item() == 50.0


# -- conversions ---------------------------------------------------------------------------------

def test_item_and_python_numbers():
    assert vt.tensor(3).item() == 3 and type(vt.tensor(3).item()) is int
    assert type(vt.tensor(2.5).item()) is float and vt.tensor([[2.5]]).item() == 2.5
    assert type(vt.tensor(True).item()) is bool
    assert float(vt.tensor([1.5])) == 1.5 and int(vt.tensor(7)) == 7
    assert bool(vt.tensor(1)) and not bool(vt.tensor(0.0))
    assert vt.arange(10.0)[7].item() == 7.0  # a view at an offset
    assert vt.arange(4.0).T[2].item() == 2.0
    with pytest.raises(ValueError, match=r"item\(\): tensor has 3 elements"):
        vt.arange(3).item()
    with pytest.raises(ValueError, match="ambiguous"):
        bool(vt.ones(2))
    with pytest.raises(TypeError, match="len"):
        len(vt.tensor(1.0))


def test_tolist_and_iteration():
    t, n = base()
    assert t.tolist() == n.tolist()
    assert t.T[1:].tolist() == n.T[1:].tolist()
    assert vt.tensor(2.0).tolist() == 2.0
    assert vt.zeros(0, 2).tolist() == []
    assert vt.tensor([1, 0], dtype=vt.int32).tolist() == [1, 0]
    assert [r.tolist() for r in t[0]] == n[0].tolist()
    with pytest.raises(TypeError, match="iteration over a 0-d"):
        iter(vt.tensor(1.0))


def test_to_and_dtype_shortcuts():
    t = vt.tensor([1.7, -1.7, 0.0])
    assert t.to(vt.float32) is t and t.to("cpu") is t
    c = t.to(vt.float32, copy=True)
    assert c is not t and c.data_ptr() != t.data_ptr() and c.tolist() == t.tolist()
    assert t.long().tolist() == [1, -1, 0] and t.long().dtype is vt.int64
    assert t.int().dtype is vt.int32 and t.double().dtype is vt.float64
    assert t.half().dtype is vt.float16 and t.bfloat16().dtype is vt.bfloat16
    assert t.bool().tolist() == [True, True, False]
    assert t.to(dtype=vt.float64).float().dtype is vt.float32
    assert t.to(vt.zeros(1, dtype=vt.int32)).dtype is vt.int32
    np.testing.assert_allclose(t.bfloat16().float().numpy(), [1.703125, -1.703125, 0.0])
    assert t.cpu() is t


@pytest.mark.parametrize("dt", ["uint8", "int8"])
def test_small_integer_arithmetic_wraps_like_numpy(dt, device):
    # every dtype the runtime accepts has add/sub/mul/div kernels (int16 is refused at creation)
    rng = np.random.default_rng(3)
    info = np.iinfo(dt)
    a = rng.integers(info.min, info.max + 1, size=(5, 7)).astype(dt)
    b = rng.integers(info.min, info.max + 1, size=(7,)).astype(dt)
    b[b == 0] = 1
    va, vb = vt.from_numpy(a).to(device), vt.from_numpy(b).to(device)
    with np.errstate(over="ignore"):
        for got, want in [(va + vb, a + b), (va - vb, a - b), (va * vb, a * b),
                          (vt.ops.core.sub(va, vb, alpha=3), a - np.array(3, dt) * b)]:
            assert got.dtype is getattr(vt, dt)
            np.testing.assert_array_equal(got.cpu().numpy(), want)
    q = va / vb
    assert q.dtype is vt.float32
    np.testing.assert_allclose(q.cpu().numpy(), a.astype(np.float32) / b, rtol=1e-6)
    c = va.clone()
    c.add_(vb)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(c.cpu().numpy(), a + b)
