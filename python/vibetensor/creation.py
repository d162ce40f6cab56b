"""Making tensors: from Python data, numpy, factories and random generators."""
from __future__ import annotations

import numpy as np

from vibetensor.runtime import checked, error, ffi, lib
from vibetensor.runtime import dtypes as T

from . import _ops
from .tensor import Tensor, _new, _wrap


_NULL = ffi.NULL


def _size(size):
    if len(size) == 1:
        if type(size[0]) is int:  # empty(n): the commonest call, no conversion
            return size
        if isinstance(size[0], (tuple, list)):
            size = tuple(size[0])
    return [int(s) for s in size]


_devices: dict = {}  # what users pass ("cuda", "cuda:1", a device) -> device, parsed once


def _dev(device):
    if device is None:
        return T._CPU
    try:
        d = _devices.get(device)
    except TypeError:  # unhashable: let device() explain
        return T.device(device)
    if d is None:
        d = _devices[device] = T.device(device)
    return d


# numpy arrays we lend memory from, kept alive until the runtime's deleter runs
_lent: dict = {}


@ffi.def_extern()
def vt_py_release(ctx):
    _lent.pop(int(ffi.cast("uintptr_t", ctx)), None)


def _memory_writable(arr) -> bool:
    """Whether the memory under `arr` may be written. numpy marks views of writable arrays
    read-only too (broadcast_to), which guards only numpy's own writes; so walk to the owner. An
    owner we cannot ask counts as read-only (a copy is always safe)."""
    while isinstance(arr, np.ndarray):
        if arr.flags.writeable:
            return True
        if arr.base is None:  # owns its data, flagged read-only
            return False
        arr = arr.base
    try:
        return not memoryview(arr).readonly  # bytes, mmap.ACCESS_READ: readonly
    except TypeError:
        return False


def from_numpy(arr: np.ndarray) -> Tensor:
    """A tensor sharing `arr`'s memory (no copy) when its dtype and strides allow, else a copy.

    Read-only memory is always copied (`np.frombuffer(bytes)`, `np.load(..., mmap_mode="r")`, an
    array flagged read-only by its owner): tensors are writable, and an in-place op on memory
    mapped read-only would crash the process (on an immutable `bytes`, corrupt it). A read-only
    *view* of writable memory (`np.broadcast_to(a, ...)`) is shared, as torch does."""
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"from_numpy: expected a numpy.ndarray, got {type(arr).__name__}")
    dt = T.get_dtype(arr.dtype)
    isz = arr.itemsize
    if not _memory_writable(arr) or any(s < 0 or s % isz for s in arr.strides) or \
            not arr.flags.aligned:
        arr = np.array(arr, order="C", copy=True)
    key = id(arr)
    while key in _lent:  # the same array lent twice: keep each loan distinct
        key += 1
    _lent[key] = arr
    data = ffi.cast("void*", arr.ctypes.data)
    strides = [s // isz for s in arr.strides]
    h = lib.vtrt_from_blob(data, list(arr.shape), strides, arr.ndim, dt._vt(), T._CPU._vt(),
                           lib.vt_py_release, ffi.cast("void*", key))
    if h == ffi.NULL:
        _lent.pop(key, None)
        checked(h)
    return _wrap(h)


def _infer_dtype(a: np.ndarray) -> T.dtype:
    if a.dtype == np.float64 and a.dtype.kind == "f":
        return T.float32  # Python floats default to float32, as in torch
    return T.get_dtype(a.dtype)


def tensor(data, dtype=None, device=None) -> Tensor:
    """A new tensor holding a copy of `data` (nested lists, numbers, numpy arrays, tensors)."""
    if isinstance(data, Tensor):
        out = data.clone()
        return out.to(dtype=dtype, device=device)
    src = data if isinstance(data, np.ndarray) else np.array(data)
    if src.dtype == object:
        raise TypeError(f"tensor: cannot make a tensor from {type(data).__name__} data")
    if dtype is None:
        dt = T.get_dtype(src.dtype) if isinstance(data, np.ndarray) else _infer_dtype(src)
    else:
        dt = T.get_dtype(dtype)
    if dt is T.bfloat16:
        return tensor(src.astype(np.float32), T.float32, device).to(T.bfloat16)
    arr = np.array(src, dtype=dt.numpy_name, copy=True, order="C")
    out = from_numpy(arr)
    return out.to(device) if device is not None else out


def as_tensor(data, dtype=None, device=None) -> Tensor:
    if isinstance(data, Tensor):
        return data.to(dtype=dtype, device=device)
    if isinstance(data, np.ndarray) and dtype is None and device is None:
        return from_numpy(data)
    return tensor(data, dtype, device)


# (dtype, device) as passed to empty -> the runtime's structs for them: one dict lookup per call on
# the hot path instead of parsing both (alloc + free from Python is a goal of its own)
_empty_structs: dict = {}
_vtrt_empty = lib.vtrt_empty


def _structs_for(dtype, device):
    d = T.get_dtype(dtype) if dtype is not None else T.float32
    structs = (d._vt(), _dev(device)._vt())
    try:
        _empty_structs[dtype, device] = structs
    except TypeError:  # an unhashable device spec: parsed every time
        pass
    return structs


def empty(*size, dtype=None, device=None) -> Tensor:
    try:
        dt, dv = _empty_structs[dtype, device]
    except (KeyError, TypeError):
        dt, dv = _structs_for(dtype, device)
    if len(size) != 1 or type(size[0]) is not int:
        size = _size(size)
    h = _vtrt_empty(size, len(size), dt, dv)
    if h == _NULL:
        raise error()
    t = _new(Tensor)
    t._h = h
    return t


def zeros(*size, dtype=None, device=None) -> Tensor:
    return _ops.op("core::zeros")(_size(size), dtype, _dev(device))


def ones(*size, dtype=None, device=None) -> Tensor:
    return _ops.op("core::ones")(_size(size), dtype, _dev(device))


def full(size, fill_value, dtype=None, device=None) -> Tensor:
    if dtype is None:
        dtype = T.int64 if isinstance(fill_value, int) and not isinstance(fill_value, bool) else \
            T.bool_ if isinstance(fill_value, bool) else T.float32
    return _ops.op("core::full")(_size((size,)), float(fill_value), dtype, _dev(device))


def zeros_like(t, dtype=None, device=None):
    return zeros(t.shape, dtype=dtype or t.dtype, device=device or t.device)


def ones_like(t, dtype=None, device=None):
    return ones(t.shape, dtype=dtype or t.dtype, device=device or t.device)


def empty_like(t, dtype=None, device=None):
    return empty(t.shape, dtype=dtype or t.dtype, device=device or t.device)


def arange(start, end=None, step=1, dtype=None, device=None) -> Tensor:
    """Like torch.arange: int64 when start, end and step are all ints, else float32."""
    if end is None:
        start, end = 0, start
    if step == 0:
        raise ValueError("arange: step must be nonzero")
    if dtype is None:
        ints = all(isinstance(x, int) and not isinstance(x, bool) for x in (start, end, step))
        dtype = T.int64 if ints else T.float32
    return _ops.op("core::arange")(float(start), float(end), float(step), dtype, _dev(device))


def manual_seed(seed: int) -> None:
    """Seed every device's Philox stream: the same seed gives the same numbers on any thread
    count."""
    for d in (T.device("cpu"),) + tuple(T.device("cuda", i)
                                        for i in range(lib.vtrt_cuda_device_count())):
        lib.vtrt_manual_seed(d._vt(), int(seed) & (2**64 - 1))


def randn(*size, dtype=None, device=None) -> Tensor:
    return _ops.op("core::normal")(_size(size), 0.0, 1.0, dtype, _dev(device))


def rand(*size, dtype=None, device=None) -> Tensor:
    return _ops.op("core::uniform")(_size(size), 0.0, 1.0, dtype, _dev(device))


def normal(mean, std, size, dtype=None, device=None) -> Tensor:
    return _ops.op("core::normal")(_size((size,)), float(mean), float(std), dtype, _dev(device))


def uniform(low, high, size, dtype=None, device=None) -> Tensor:
    return _ops.op("core::uniform")(_size((size,)), float(low), float(high), dtype, _dev(device))


def matmul(a, b):
    return a @ b
