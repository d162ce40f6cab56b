"""Moving tensors between vibetensor, numpy and torch: from_numpy / .numpy(), DLPack both ways,
and `.to("cuda")`.

Zero-copy claims are checked by mutation (a write on one side is seen on the other) and by data
pointers; lifetimes by deleting the producer first and reading afterwards.
"""
from __future__ import annotations

import gc

import numpy as np
import pytest

import vibetensor as vt
from conftest import needs_torch


# -- numpy: from_numpy / .numpy() -----------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "int32", "int8", "uint8", "bool",
                                   "float16"])
def test_from_numpy_is_zero_copy_both_ways(dtype):
    n = np.arange(12).reshape(3, 4).astype(dtype)
    t = vt.from_numpy(n)
    assert t.data_ptr() == n.ctypes.data and t.shape == (3, 4) and t.stride() == (4, 1)
    assert t.dtype.itemsize == n.itemsize and str(t.dtype).endswith(dtype)
    n[1, 2] = 0
    assert t[1, 2].item() == 0  # numpy -> vt
    t[0, 1] = 1
    assert n[0, 1] == 1  # vt -> numpy
    back = t.numpy()
    assert np.shares_memory(back, n) and back.dtype == n.dtype
    back[2, 3] = 1
    assert t[2, 3].item() == 1


def test_from_numpy_keeps_the_array_alive():
    t = vt.from_numpy(np.arange(1000.0) * 2)  # the array has no other owner
    gc.collect()
    big = [np.full(1000, 7.0) for _ in range(50)]  # reuse freed memory, if it were freed
    assert t[999].item() == 1998.0 and t.sum().item() == 999 * 1000
    del big


def test_from_numpy_same_array_twice_and_release():
    n = np.ones(4)
    a, b = vt.from_numpy(n), vt.from_numpy(n)
    a[0] = 5
    assert b[0].item() == 5
    del a
    gc.collect()
    b[1] = 6  # the first loan's release must not end the second
    assert n.tolist() == [5, 6, 1, 1]


@pytest.mark.parametrize("make", [
    lambda n: n.T, lambda n: n[:, ::2], lambda n: n[1:, 1:3], lambda n: n.reshape(2, 3, 4)[:, 1],
    lambda n: np.broadcast_to(n[:1], (5, 4, 6))[:, :, 0],
], ids=["transposed", "step", "offset", "3d_select", "broadcast_stride0"])
def test_from_numpy_non_contiguous_shares_memory(make):
    base = np.arange(24.0).reshape(4, 6)
    n = make(base)
    t = vt.from_numpy(n)
    np.testing.assert_array_equal(t.numpy(), n)
    assert t.stride() == tuple(s // n.itemsize for s in n.strides)
    assert t.data_ptr() == n.ctypes.data  # zero-copy, strides and all
    assert np.shares_memory(t.numpy(), base)
    np.testing.assert_array_equal((t * 2).numpy(), n * 2)  # kernels read it correctly


@pytest.mark.parametrize("make", [
    lambda n: n[::-1], lambda n: n[:, ::-2], lambda n: n.T[::-1, 1:],
], ids=["rows_reversed", "cols_reversed_step", "transposed_reversed"])
def test_from_numpy_negative_strides_copy(make):
    base = np.arange(24.0).reshape(4, 6)
    n = make(base)
    t = vt.from_numpy(n)  # vt has no negative strides: a correct copy
    np.testing.assert_array_equal(t.numpy(), n)
    assert all(s >= 0 for s in t.stride())
    base[...] = -1
    assert (t.numpy() != -1).all(), "a copy must not see later writes"


def test_from_numpy_unaligned_copies():
    raw = np.zeros(8 * 4 + 1, np.uint8)
    n = raw[1:].view(np.float64)  # misaligned by one byte
    n[:] = [1.0, 2.0, 3.0, 4.0]
    assert not n.flags.aligned
    t = vt.from_numpy(n)
    assert t.tolist() == [1.0, 2.0, 3.0, 4.0]


def test_from_numpy_zero_size_and_0d():
    t = vt.from_numpy(np.zeros((0, 3), np.float32))
    assert t.shape == (0, 3) and t.sum(0).tolist() == [0.0] * 3
    s = vt.from_numpy(np.array(2.5))
    assert s.shape == () and s.item() == 2.5


def test_from_numpy_rejects():
    with pytest.raises(TypeError, match="from_numpy: expected a numpy.ndarray, got list"):
        vt.from_numpy([1, 2])
    with pytest.raises(TypeError, match="unsupported dtype.*complex64"):
        vt.from_numpy(np.zeros(2, np.complex64))


def test_numpy_of_views_and_lifetime():
    t = vt.arange(12.0).reshape(3, 4)
    v = t.T[1:]
    n = v.numpy()
    np.testing.assert_array_equal(n, np.arange(12.0).reshape(3, 4).T[1:])
    assert n.strides == (4, 16)
    del t, v
    gc.collect()
    vt.empty_cache()
    junk = [vt.full((3, 4), -1.0) for _ in range(20)]  # would reuse a freed block
    assert n.tolist() == np.arange(12.0).reshape(3, 4).T[1:].tolist()
    del junk


def test_numpy_bfloat16_refuses_with_hint():
    with pytest.raises(TypeError, match="bfloat16"):
        vt.ones(2, dtype=vt.bfloat16).numpy()
    assert np.asarray(vt.ones(2, dtype=vt.bfloat16).float()).tolist() == [1.0, 1.0]


def test_array_protocol():
    t = vt.arange(6.0).reshape(2, 3)
    n = np.asarray(t)
    assert np.shares_memory(n, t.numpy()) and n.shape == (2, 3)
    assert np.asarray(t, dtype=np.int64).dtype == np.int64
    assert np.add(t, 1).tolist() == [[1, 2, 3], [4, 5, 6]]  # ufuncs take tensors as arrays


def test_as_tensor():
    n = np.arange(3.0)
    a = vt.as_tensor(n)
    assert a.data_ptr() == n.ctypes.data  # numpy without dtype/device: shares
    b = vt.as_tensor(n, dtype=vt.float32)
    assert b.dtype is vt.float32 and b.tolist() == [0.0, 1.0, 2.0]
    t = vt.ones(2)
    assert vt.as_tensor(t) is t
    assert vt.as_tensor([1, 2]).dtype is vt.int64


# -- DLPack with numpy ----------------------------------------------------------------------------

def test_dlpack_device():
    assert vt.ones(2).__dlpack_device__() == (1, 0)  # (kDLCPU, 0)


@pytest.mark.parametrize("view", [
    lambda t: t, lambda t: t.T, lambda t: t[:, 1::2], lambda t: t[1], lambda t: t[1, 2],
    lambda t: t.unsqueeze(0).expand(2, 3, 4), lambda t: t[:, :0],
], ids=["contiguous", "transposed", "sliced_offset", "row", "0d", "expanded", "0size"])
def test_dlpack_to_numpy_zero_copy(view):
    t = view(vt.arange(12.0).reshape(3, 4))
    n = np.from_dlpack(t)
    np.testing.assert_array_equal(n, t.numpy())
    assert n.strides == tuple(s * 4 for s in t.stride()) or n.size <= 1
    if t.numel():
        assert n.ctypes.data == t.data_ptr()  # numpy marks legacy-capsule imports read-only


@pytest.mark.parametrize("make", [
    lambda: np.arange(12.0).reshape(3, 4), lambda: np.arange(12.0).reshape(3, 4).T,
    lambda: np.arange(24, dtype=np.int32).reshape(4, 6)[1:, ::2], lambda: np.array(3.5),
    lambda: np.zeros((2, 0)), lambda: np.array([True, False]),
], ids=["contiguous", "transposed", "int32_sliced", "0d", "0size", "bool"])
def test_dlpack_from_numpy_zero_copy(make):
    n = make()
    t = vt.from_dlpack(n)
    assert t.shape == n.shape and str(t.dtype).endswith(n.dtype.name)
    np.testing.assert_array_equal(t.numpy(), n)
    if n.size:
        assert t.data_ptr() == n.ctypes.data
        assert t.stride() == tuple(s // n.itemsize for s in n.strides)


def test_dlpack_from_numpy_negative_strides_refused_clearly():
    # vt tensors have no negative strides; a zero-copy import cannot represent this view
    with pytest.raises(ValueError, match="negative strides"):
        vt.from_dlpack(np.arange(6.0)[::-1])


def test_dlpack_lifetime_producer_deleted_first():
    # vt -> numpy: the numpy array keeps vt's memory alive
    gc.collect()
    t = vt.arange(1000.0)
    allocated = vt.memory_stats()["allocated"]
    n = np.from_dlpack(t)
    del t
    gc.collect()
    assert vt.memory_stats()["allocated"] == allocated, "freed while numpy still uses it"
    junk = [vt.full((1000,), -1.0) for _ in range(10)]
    assert n[999] == 999.0 and n.sum() == 999 * 500
    del junk, n
    gc.collect()
    assert vt.memory_stats()["allocated"] < allocated
    # numpy -> vt: vt keeps numpy's buffer alive
    n = np.arange(1000.0)
    t = vt.from_dlpack(n)
    del n
    gc.collect()
    _ = [np.full(1000, -1.0) for _ in range(10)]
    assert t[999].item() == 999.0


def test_dlpack_capsule_consumed_once_and_unconsumed_freed():
    t = vt.ones(3)
    cap = t.__dlpack__()
    u = vt.from_dlpack(cap)
    assert u.data_ptr() == t.data_ptr()
    with pytest.raises(TypeError, match="unconsumed 'dltensor' capsule"):
        vt.from_dlpack(cap)  # already used
    gc.collect()
    allocated = vt.memory_stats()["allocated"]
    x = vt.ones(100)
    cap2 = x.__dlpack__()
    del x
    gc.collect()
    assert vt.memory_stats()["allocated"] > allocated  # the capsule holds the tensor
    del cap2
    gc.collect()
    assert vt.memory_stats()["allocated"] == allocated  # unconsumed capsule freed it
    with pytest.raises(TypeError, match="from_dlpack"):
        vt.from_dlpack(3)


def test_vt_to_vt_dlpack_round_trip():
    t = vt.arange(6.0).reshape(2, 3).T
    u = vt.from_dlpack(t)
    assert u.data_ptr() == t.data_ptr() and u.stride() == t.stride()
    u[0, 0] = 42
    assert t[0, 0].item() == 42


# -- DLPack with torch ----------------------------------------------------------------------------

TORCH_DTYPES = ["float32", "float64", "int64", "int32", "int8", "uint8", "bool", "float16",
                "bfloat16"]


@needs_torch
@pytest.mark.parametrize("dtype", TORCH_DTYPES)
def test_torch_from_vt(dtype, torch):
    t = vt.arange(12.0).reshape(3, 4).to(getattr(vt, "bool_" if dtype == "bool" else dtype))
    x = torch.from_dlpack(t)
    assert str(x.dtype) == f"torch.{dtype}" and tuple(x.shape) == t.shape
    assert x.data_ptr() == t.data_ptr()
    assert x.to(torch.float64).tolist() == t.to(vt.float64).tolist()
    if dtype != "bool":
        x[0, 1] = 7
        assert t[0, 1].to(vt.float64).item() == 7  # shared memory


@needs_torch
@pytest.mark.parametrize("dtype", TORCH_DTYPES)
def test_vt_from_torch(dtype, torch):
    x = torch.arange(12).reshape(3, 4).to(getattr(torch, dtype))
    t = vt.from_dlpack(x)
    assert str(t.dtype).endswith(dtype) and t.shape == (3, 4) and t.data_ptr() == x.data_ptr()
    assert t.to(vt.float64).tolist() == x.to(torch.float64).tolist()
    if dtype != "bool":
        t[2, 3] = 1
        assert x[2, 3].item() == 1
    t2 = vt.from_dlpack(x.__dlpack__())  # a bare capsule works too
    assert t2.data_ptr() == x.data_ptr()


@needs_torch
@pytest.mark.parametrize("view", [
    lambda x: x.t(), lambda x: x[:, 1::2], lambda x: x[1:], lambda x: x[0, 0],
    lambda x: x[:1].expand(5, 4), lambda x: x[:, :0],
], ids=["transposed", "sliced", "offset", "0d", "expanded", "0size"])
def test_torch_non_contiguous_both_ways(view, torch):
    x = view(torch.arange(12.0).reshape(3, 4))
    t = vt.from_dlpack(x)
    assert t.shape == tuple(x.shape)
    assert t.stride() == tuple(x.stride()) or t.numel() <= 1
    assert t.tolist() == x.tolist()
    if x.numel():
        assert t.data_ptr() == x.data_ptr()
    np.testing.assert_array_equal((t * 2).numpy(), (x * 2).numpy())
    v = view(vt.arange(12.0).reshape(3, 4).T.contiguous().T)  # a vt view, back into torch
    y = torch.from_dlpack(v)
    assert tuple(y.stride()) == v.stride() or v.numel() <= 1
    assert y.tolist() == v.tolist()


@needs_torch
def test_torch_lifetime_producer_deleted_first(torch):
    x = torch.arange(10000.0)
    t = vt.from_dlpack(x)
    del x
    gc.collect()
    _ = [torch.full((10000,), -1.0) for _ in range(10)]
    assert t[9999].item() == 9999.0 and t.sum().item() == 9999 * 5000
    t2 = vt.arange(10000.0)
    y = torch.from_dlpack(t2)
    del t2
    gc.collect()
    _ = [vt.full((10000,), -1.0) for _ in range(10)]
    assert y[9999].item() == 9999.0 and float(y.sum()) == 9999 * 5000


@needs_torch
def test_results_agree_with_torch_after_round_trip(torch):
    x = torch.randn(5, 7, dtype=torch.float64)
    t = vt.from_dlpack(x)
    r = torch.from_dlpack((t @ t.T + 1).contiguous())
    assert torch.allclose(r, x @ x.T + 1, rtol=1e-12, atol=1e-12)


# -- devices -------------------------------------------------------------------------------------

@pytest.mark.skipif(vt.cuda.is_available(), reason="checks the CPU-only error")
def test_to_cuda_without_cuda_is_a_clear_error():
    assert not vt.cuda.is_available() and vt.cuda.device_count() == 0
    t = vt.ones(2)
    for move in (lambda: t.to("cuda"), lambda: t.cuda(), lambda: t.to(vt.device("cuda", 0))):
        with pytest.raises((NotImplementedError, RuntimeError), match="cuda.*CUDA available"):
            move()
    assert t.tolist() == [1.0, 1.0]  # and the process keeps working
    assert (t + 1).tolist() == [2.0, 2.0]


@pytest.mark.skipif(not vt.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_round_trip():  # pragma: no cover - runs on the GPU machine
    n = np.arange(12.0).reshape(3, 4)
    t = vt.from_numpy(n).T
    c = t.to("cuda")
    assert c.is_cuda and c.device == vt.device("cuda", 0) and c.__dlpack_device__() == (2, 0)
    r = (c + c).cpu()
    assert not r.is_cuda and r.tolist() == (n.T * 2).tolist()
    with pytest.raises(TypeError, match="call .cpu"):
        c.numpy()


def test_device_parsing():
    assert vt.device("cuda:1") == vt.device("cuda", 1)
    assert vt.device("cuda:1").index == 1 and vt.device("cpu").type == "cpu"
    with pytest.raises((ValueError, TypeError)):
        vt.device("tpu")
