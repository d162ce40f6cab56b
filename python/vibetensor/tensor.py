"""Tensor: a Python handle on a runtime tensor (`vt_tensor*`), with torch's names.

Metadata (shape, strides, dtype, device) is read straight from the native header on demand; every
computation, views included (core::view, core::slice, core::select, ...), is an op call through
the registry's resolved handles, so autograd records it and a view knows its base. This file holds
the class, indexing and the arithmetic operators; the op families add their methods at import
(_elementwise, _shape, _reduce, _nn and autograd's METHODS tables, see __init__.py), among them
the in-place operators (+=, -=, *=, /= are add_/sub_/mul_/div_) and neg/abs.
"""
from __future__ import annotations

import math

import numpy as np

from vibetensor.runtime import CPU, CUDA, META, checked, error, ffi, lib
from vibetensor.runtime import dtypes as T

from . import _ops

_release = lib.vtrt_release
_call_tt = lib.vtrt_call_tt
_NULL = ffi.NULL
_new = object.__new__
_hot = _ops.hot
_op = _ops.op


def _wrap(h) -> "Tensor":
    t = _new(Tensor)
    t._h = h
    return t


class Tensor:
    """An n-dimensional array on a device. Create with `vt.tensor`, `vt.zeros`, `vt.from_numpy`..

    >>> import vibetensor as vt
    >>> (vt.ones(2, 3) + vt.arange(3.0)).tolist()
    [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]
    """

    __slots__ = ("_h", "__weakref__")
    # numpy scalars and arrays defer to our reflected operators (np.float64(2) + t is a Tensor)
    __array_priority__ = 1000

    def __new__(cls, *args, **kwargs):
        raise TypeError("create tensors with vt.tensor(...), vt.zeros(...), vt.from_numpy(...)")

    def __del__(self, _release=_release):
        _release(self._h)  # every Tensor is made by _new + _h assignment, so _h is always set

    # -- metadata ----------------------------------------------------------------------------
    @property
    def shape(self) -> tuple:
        h = self._h
        return tuple(h.sizes[0:h.ndim])

    def size(self, dim=None):
        s = self.shape
        return s if dim is None else s[_wrap_dim(dim, len(s), "size")]

    def stride(self, dim=None):
        h = self._h
        s = tuple(h.strides[0:h.ndim])
        return s if dim is None else s[_wrap_dim(dim, len(s), "stride")]

    @property
    def ndim(self) -> int:
        return self._h.ndim

    def dim(self) -> int:
        return self._h.ndim

    def numel(self) -> int:
        return self._h.numel

    def __len__(self):
        if self._h.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self._h.sizes[0]

    @property
    def dtype(self) -> T.dtype:
        d = self._h.dtype
        return T.from_key(d.code, d.bits)

    @property
    def device(self) -> T.device:
        return T.from_vt_device(self._h.device)

    @property
    def is_cuda(self) -> bool:
        return self._h.device.type == CUDA

    @property
    def is_meta(self) -> bool:
        return self._h.device.type == META

    def storage_offset(self) -> int:
        return lib.vtrt_storage_offset(self._h)

    def is_contiguous(self) -> bool:
        return bool(lib.vtrt_is_contiguous(self._h))

    def data_ptr(self) -> int:
        return int(ffi.cast("uintptr_t", self._h.data))

    def element_size(self) -> int:
        return self.dtype.itemsize

    @property
    def _version(self) -> int:
        return lib.vtrt_version(self._h)

    def __repr__(self):
        extra = "" if self.dtype in (T.float32, T.int64) else f", dtype={self.dtype}"
        if self.device.type != "cpu":
            extra += f", device='{self.device}'"
        if self.is_meta:  # no values to show
            return f"tensor(..., size={self.shape}{extra})"
        try:
            shown = self.float() if self.dtype is T.bfloat16 else self  # numpy has no bfloat16
            body = np.array2string(shown.cpu()._numpy_view(), separator=", ", prefix="tensor(")
        except TypeError:
            body = f"<{self.shape} {self.dtype}>"
        return f"tensor({body}{extra})"

    # -- host interop ------------------------------------------------------------------------
    def _numpy_view(self) -> np.ndarray:
        if self._h.device.type != CPU:
            if self._h.device.type == META:
                raise NotImplementedError("a meta tensor has no data (shape and dtype only): "
                                          "numpy(), item() and tolist() need a cpu tensor")
            raise TypeError(f"numpy(): tensor is on {self.device}; call .cpu() first")
        dt = self.dtype
        if dt.numpy_name is None:
            raise TypeError("numpy(): numpy has no bfloat16; use .float().numpy()")
        isz = dt.itemsize
        h = self._h
        shape = tuple(h.sizes[0:h.ndim])
        strides = tuple(s * isz for s in h.strides[0:h.ndim])
        holder = _ArrayHolder(self, shape, strides, dt.numpy_name)
        return np.asarray(holder)

    def numpy(self) -> np.ndarray:
        """A numpy array sharing this tensor's memory (CPU tensors only)."""
        return self._numpy_view()

    def tolist(self):
        return self._host_values().tolist()

    def item(self):
        if self.numel() != 1:
            raise ValueError(f"item(): tensor has {self.numel()} elements, expected 1")
        return self._host_values().reshape(()).item()

    def _host_values(self) -> np.ndarray:
        """The values as a numpy array on the host; dtypes numpy lacks (bfloat16) widen exactly to
        float32, as torch's item()/tolist() give Python floats for them."""
        t = self.cpu()
        return (t.float() if t.dtype.numpy_name is None else t)._numpy_view()

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __bool__(self):
        if self.numel() != 1:
            raise ValueError("the truth value of a tensor with more than one element is ambiguous")
        return bool(self.item())

    def __array__(self, dtype=None, copy=None):
        a = self.cpu()._numpy_view()
        return a.astype(dtype) if dtype is not None else a

    def __dlpack__(self, stream=None, max_version=None, dl_device=None, copy=None):
        from .dlpack import to_capsule

        return to_capsule(self)

    def __dlpack_device__(self):
        d = self._h.device
        return (d.type, d.index)

    # -- devices and dtypes ------------------------------------------------------------------
    def to(self, *args, dtype=None, device=None, copy=False, non_blocking=False):
        for a in args:
            if isinstance(a, T.dtype):
                dtype = a
            elif isinstance(a, Tensor):
                dtype, device = a.dtype, a.device
            else:
                device = a
        out = self
        if device is not None and T.device(device) != out.device:
            # before the cast: a cast on the way up to the GPU runs there
            out = _to_device(out, T.device(device), non_blocking)
        if dtype is not None and T.get_dtype(dtype) is not out.dtype:
            out = _ops.cast(out, T.get_dtype(dtype))
        if copy and out is self:
            out = self.clone()
        return out

    def cpu(self, non_blocking=False):
        return self if self._h.device.type == CPU else _to_device(self, T._CPU, non_blocking)

    def cuda(self, device=None, non_blocking=False):
        if device is None:
            from . import cuda as _cuda
            device = _cuda.current_device() if _cuda.is_available() else 0
        if isinstance(device, int):
            device = T.device("cuda", device)
        return self.to(device, non_blocking=non_blocking)

    # -- CUDA memory (vibetensor.cuda) --
    def pin_memory(self):
        """A copy in page-locked host memory (cached), so copies to and from the GPU with
        non_blocking=True are asynchronous. CPU tensors only; needs CUDA."""
        if self.device.type != "cpu":
            raise RuntimeError(f"pin_memory(): only cpu tensors can be pinned, not {self.device}")
        src = self.contiguous()
        out = _wrap(checked(lib.vtrt_cuda_empty_pinned(src._h.sizes, src._h.ndim, src._h.dtype)))
        if lib.vtrt_copy_bytes(out._h, src._h) != 0:
            raise error()
        return out

    def is_pinned(self) -> bool:
        return self.device.type == "cpu" and bool(lib.vtrt_cuda_is_pinned(self._h.data))

    def record_stream(self, stream) -> None:
        """Marks this tensor's memory as used by `stream` (a vt.cuda.Stream): the caching
        allocator will not hand it out again before the work queued there now has finished."""
        if lib.vtrt_cuda_record_stream(self._h, stream._ptr) != 0:
            raise error()

    def float(self):
        return self.to(T.float32)

    def double(self):
        return self.to(T.float64)

    def long(self):
        return self.to(T.int64)

    def int(self):
        return self.to(T.int32)

    def half(self):
        return self.to(T.float16)

    def bfloat16(self):
        return self.to(T.bfloat16)

    def bool(self):
        return self.to(T.bool_)

    # -- copies ------------------------------------------------------------------------------
    def contiguous(self):
        return self if lib.vtrt_is_contiguous(self._h) else _ops.op("core::contiguous")(self)

    def clone(self):
        return _ops.op("core::contiguous")(self)

    def copy_(self, src):
        src = _ops.as_tensor_like(src, self)
        _ops.op("core::copy_")(self, src)
        return self

    def fill_(self, value):
        _ops.op("core::fill_")(self, value)
        return self

    # -- views -------------------------------------------------------------------------------
    # Every view is an op (core::view, core::slice, ...) so autograd records it; the kernels make
    # an as_strided view of the same storage. Shapes are checked here first for torch's messages.
    def as_strided(self, size, stride, storage_offset=None):
        size, stride = tuple(size), tuple(stride)
        if len(size) != len(stride):
            raise ValueError(f"as_strided: size {size} and stride {stride} differ in length")
        off = 0 if storage_offset is None else storage_offset - self.storage_offset()
        return _op("core::as_strided")(self, size, stride, off)

    def view(self, *shape):
        shape = _infer_shape(_shape_args(shape), self.numel(), "view")
        try:
            return _op("core::view")(self, shape)
        except ValueError:
            if _view_strides(self.shape, self.stride(), shape) is None:  # say why, and what to do
                raise ValueError(f"view: shape {shape} is not compatible with the size "
                                 f"{self.shape} and strides {self.stride()} of this tensor; "
                                 f"use reshape()") from None
            raise

    def reshape(self, *shape):
        shape = _infer_shape(_shape_args(shape), self.numel(), "reshape")
        return _op("core::reshape")(self, shape)

    def view_as(self, other):
        return self.view(other.shape)

    def reshape_as(self, other):
        return self.reshape(other.shape)

    def flatten(self, start_dim=0, end_dim=-1):
        n = self.ndim
        if n == 0:
            return self.reshape(1)
        s, e = _wrap_dim(start_dim, n, "flatten"), _wrap_dim(end_dim, n, "flatten")
        if s > e:
            raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
        if s == e:
            return self
        shape = self.shape
        return self.reshape(shape[:s] + (math.prod(shape[s:e + 1]),) + shape[e + 1:])

    def unflatten(self, dim, sizes):
        d = _wrap_dim(dim, self.ndim, "unflatten")
        sizes = tuple(_infer_shape(sizes, self.shape[d], "unflatten"))
        return self.view(self.shape[:d] + sizes + self.shape[d + 1:])

    def permute(self, *dims):
        dims = _shape_args(dims)
        n = self.ndim
        if len(dims) != n:
            raise ValueError(f"permute: expected {n} dims, got {len(dims)} ({dims})")
        dims = [_wrap_dim(d, n, "permute") for d in dims]
        if sorted(dims) != list(range(n)):
            raise ValueError(f"permute: dims {tuple(dims)} are not a permutation of range({n})")
        return _op("core::permute")(self, dims)

    def transpose(self, dim0, dim1):
        n = self.ndim
        d0, d1 = _wrap_dim(dim0, n, "transpose"), _wrap_dim(dim1, n, "transpose")
        return _op("core::transpose")(self, d0, d1)

    swapaxes = transpose

    @property
    def T(self):
        n = self.ndim
        return self if n < 2 else self.permute(list(range(n))[::-1])

    @property
    def mT(self):
        if self.ndim < 2:
            raise ValueError(f"mT: expects a tensor with >= 2 dims, got {self.ndim}")
        return self.transpose(-2, -1)

    def t(self):
        if self.ndim > 2:
            raise ValueError(f"t(): expects a tensor with <= 2 dims, got {self.ndim}")
        return self.T

    def narrow(self, dim, start, length):
        d = _wrap_dim(dim, self.ndim, "narrow")
        size = self.shape[d]
        if start < 0:
            start += size
        if not (0 <= start <= size and 0 <= length and start + length <= size):
            raise IndexError(f"narrow: start {start} + length {length} out of range for dim {d} "
                             f"of size {size}")
        return _op("core::slice")(self, d, start, start + length, 1)

    def select(self, dim, index):
        d = _wrap_dim(dim, self.ndim, "select")
        size = self.shape[d]
        if not -size <= index < size:
            raise IndexError(f"select: index {index} is out of range for dim {d} of size {size}")
        return _op("core::select")(self, d, index)

    def unsqueeze(self, dim):
        d = _wrap_dim(dim, self.ndim + 1, "unsqueeze")
        return _op("core::unsqueeze")(self, d)

    def squeeze(self, dim=None):
        if dim is None:
            return _op("core::squeeze")(self, [])
        dims = dim if isinstance(dim, (tuple, list)) else (dim,)
        n = self.ndim
        dims = [_wrap_dim(d, n, "squeeze") for d in dims]
        if n == 0 or not any(self.shape[d] == 1 for d in dims):
            return self
        return _op("core::squeeze")(self, [d for d in dims if self.shape[d] == 1])

    def expand(self, *sizes):
        sizes = _shape_args(sizes)
        sh = self.shape
        if len(sizes) < len(sh):
            raise ValueError(f"expand: target {tuple(sizes)} has fewer dims than {sh}")
        lead = len(sizes) - len(sh)
        for i, s in enumerate(sizes):
            if i < lead:
                if s < 0:
                    raise ValueError(f"expand: size -1 not allowed in new leading dim {i}")
                continue
            cur = sh[i - lead]
            if not (s == -1 or s == cur or cur == 1):
                raise ValueError(f"expand: cannot expand size {cur} to {s} in dim {i} "
                                 f"(shape {sh} -> {tuple(sizes)})")
        return _op("core::expand")(self, sizes)

    def expand_as(self, other):
        return self.expand(other.shape)

    def __getitem__(self, key):
        return _index(self, key)

    def __setitem__(self, key, value):
        _setitem(self, key, value)

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self.select(0, i) for i in range(self.shape[0]))

    # -- math --------------------------------------------------------------------------------
    # The four arithmetic operators are the eager hot path: one native call for two tensors of
    # one dtype (_call_tt); a Python number goes to the op's typed-scalar form (_arith -> _scalar),
    # anything else (two dtypes, lists, arrays) is promoted by _binary.
    def __add__(self, other):
        try:
            h = _call_tt(_hot.add, self._h, other._h)
        except AttributeError:
            return _arith(_hot.add_scalar, "core::add_scalar", "core::add", self, other)
        if h:
            t = _new(Tensor)
            t._h = h
            return t
        return _after_failed_call("core::add", self, other)

    def __sub__(self, other):
        try:
            h = _call_tt(_hot.sub, self._h, other._h)
        except AttributeError:
            return _arith(_hot.sub_scalar, "core::sub_scalar", "core::sub", self, other)
        if h:
            t = _new(Tensor)
            t._h = h
            return t
        return _after_failed_call("core::sub", self, other)

    def __mul__(self, other):
        try:
            h = _call_tt(_hot.mul, self._h, other._h)
        except AttributeError:
            return _arith(_hot.mul_scalar, "core::mul_scalar", "core::mul", self, other)
        if h:
            t = _new(Tensor)
            t._h = h
            return t
        return _after_failed_call("core::mul", self, other)

    def __truediv__(self, other):
        try:
            h = _call_tt(_hot.div, self._h, other._h)
        except AttributeError:
            return _arith(_hot.div_scalar, "core::div_scalar", "core::div", self, other)
        if h:
            t = _new(Tensor)
            t._h = h
            return t
        return _after_failed_call("core::div", self, other)

    def __radd__(self, other):
        return _arith(_hot.add_scalar, "core::add_scalar", "core::add", self, other, True)

    def __rsub__(self, other):
        return _arith(_hot.rsub_scalar, "core::rsub_scalar", "core::sub", self, other, True)

    def __rmul__(self, other):
        return _arith(_hot.mul_scalar, "core::mul_scalar", "core::mul", self, other, True)

    def __rtruediv__(self, other):
        return _arith(_hot.rdiv_scalar, "core::rdiv_scalar", "core::div", self, other, True)

    def __matmul__(self, other):
        return _ops.op("core::matmul")(self, _ops.as_tensor_like(other, self))

    def __rmatmul__(self, other):
        return _ops.op("core::matmul")(_ops.as_tensor_like(other, self), self)

    def __pos__(self):
        return self

    def add(self, other, alpha=1):
        from ._elementwise import add

        return add(self, other, alpha=alpha)

    def sub(self, other, alpha=1):
        from ._elementwise import sub

        return sub(self, other, alpha=alpha)

    def mul(self, other):
        return _binary("core::mul", self, other)

    def div(self, other):
        return _binary("core::div", self, other)

    def matmul(self, other):
        return self @ other

    def sum(self, dim=None, keepdim=False, dtype=None):
        return _ops.op("core::sum")(self, _dims(dim), keepdim, dtype)

    def mean(self, dim=None, keepdim=False, dtype=None):
        return _ops.op("core::mean")(self, _dims(dim), keepdim, dtype)


class _ArrayHolder:
    """Exposes a tensor's memory to numpy through __array_interface__; numpy keeps this object
    (and so the tensor) alive as the array's base."""

    __slots__ = ("tensor", "__array_interface__")

    def __init__(self, tensor, shape, strides, npname):
        self.tensor = tensor
        nbytes_itemsize = np.dtype(npname)
        self.__array_interface__ = {
            "shape": shape, "strides": strides, "typestr": nbytes_itemsize.str,
            "data": (int(ffi.cast("uintptr_t", tensor._h.data)), False), "version": 3,
        }


# -- helpers ----------------------------------------------------------------------------------------

def _wrap_dim(dim, ndim, what):
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError(f"{what}: dim {dim} is out of range for a tensor with {ndim} dims "
                         f"(expected in [{-n}, {n - 1}])")
    return dim % n


def _dims(dim):
    if dim is None:
        return []
    return [dim] if isinstance(dim, int) else list(dim)


def _shape_args(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])
    return tuple(shape)


def _infer_shape(shape, numel, what):
    shape = list(shape)
    if shape.count(-1) > 1:
        raise ValueError(f"{what}: only one dimension can be -1, got {tuple(shape)}")
    if -1 in shape:
        rest = math.prod(s for s in shape if s != -1)
        if rest == 0 or numel % rest:
            raise ValueError(f"{what}: shape {tuple(shape)} is invalid for input of size {numel}")
        shape[shape.index(-1)] = numel // rest
    if any(s < 0 for s in shape) or math.prod(shape) != numel:
        raise ValueError(f"{what}: shape {tuple(shape)} is invalid for input of size {numel}")
    return tuple(shape)


def _view_strides(old_shape, old_strides, new_shape):
    """Strides that view `old` as `new_shape` without copying, or None (torch's algorithm: match
    chunks of dims that are contiguous among themselves)."""
    if math.prod(old_shape) == 0 or not old_shape:
        out, acc = [], 1
        for s in reversed(new_shape):
            out.append(acc)
            acc *= max(s, 1)
        return tuple(reversed(out))
    new_strides = [0] * len(new_shape)
    view_d = len(new_shape) - 1
    chunk_base_stride = old_strides[-1]
    tensor_numel, view_numel = 1, 1
    for tensor_d in range(len(old_shape) - 1, -1, -1):
        tensor_numel *= old_shape[tensor_d]
        if tensor_d == 0 or (old_shape[tensor_d - 1] != 1 and
                             old_strides[tensor_d - 1] != tensor_numel * chunk_base_stride):
            while view_d >= 0 and (view_numel < tensor_numel or new_shape[view_d] == 1):
                new_strides[view_d] = view_numel * chunk_base_stride
                view_numel *= new_shape[view_d]
                view_d -= 1
            if view_numel != tensor_numel:
                return None
            if tensor_d > 0:
                chunk_base_stride = old_strides[tensor_d - 1]
                tensor_numel, view_numel = 1, 1
    if view_d != -1:
        return None
    return tuple(new_strides)


def _view(t, sizes, strides, offset):
    return _op("core::as_strided")(t, sizes, strides, offset)


def _as_index_tensor(k, device):
    if isinstance(k, Tensor):
        return k
    a = np.asarray(k)
    if a.dtype == object or not (a.dtype.kind in "iub" or a.size == 0):
        raise TypeError(f"unsupported index {k!r}: indices must be ints, slices, None, Ellipsis, "
                        f"bool or integer tensors/lists")
    if a.size == 0 and a.dtype.kind not in "iub":
        a = a.astype(np.int64)
    from .creation import tensor as _tensor

    return _tensor(a if a.dtype.kind == "b" else a.astype(np.int64), device=device)


def _basic_index(t, key):
    """Applies ints, slices, None and Ellipsis as view ops. Returns (view, advanced) where
    advanced is a list of (dim in the view, int64 index tensor); a bool mask becomes one index
    tensor per dim it covers (through nonzero)."""
    if not isinstance(key, tuple):
        key = (key,)
    n_ell = sum(1 for k in key if k is Ellipsis)
    if n_ell > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    used = 0
    for k in key:
        if k is None or k is Ellipsis:
            continue
        if isinstance(k, Tensor) and k.dtype is T.bool_:
            used += max(k.ndim, 1) if k.ndim else 0
        elif isinstance(k, (list, np.ndarray)) and np.asarray(k).dtype == np.bool_:
            used += np.asarray(k).ndim
        else:
            used += 1
    if n_ell:
        i = next(i for i, k in enumerate(key) if k is Ellipsis)
        key = key[:i] + (slice(None),) * max(t.ndim - used, 0) + key[i + 1:]
    if used > t.ndim:
        raise IndexError(f"too many indices for a tensor of dimension {t.ndim}")
    cur, d, adv = t, 0, []
    for k in key:
        if k is None:
            cur = _op("core::unsqueeze")(cur, d)
            d += 1
        elif isinstance(k, (int, np.integer)) and not isinstance(k, (bool, np.bool_)):
            k = int(k)
            size = cur.shape[d]
            if not -size <= k < size:
                raise IndexError(f"index {k} is out of bounds for dim {d} with size {size}")
            cur = _op("core::select")(cur, d, k)
        elif isinstance(k, slice):
            if k.step is not None and k.step <= 0:
                raise ValueError("slice step must be positive")
            if k.start is not None or k.stop is not None or (k.step or 1) != 1:
                start, stop, step = k.indices(cur.shape[d])
                cur = _op("core::slice")(cur, d, start, max(stop, start), step)
            d += 1
        elif isinstance(k, (Tensor, list, np.ndarray, bool, np.bool_)):
            idx = _as_index_tensor(k, cur.device) if not isinstance(k, (bool, np.bool_)) else None
            if idx is None or (idx.dtype is T.bool_ and idx.ndim == 0):
                raise TypeError(f"unsupported index {k!r}: a 0-d bool index")
            if idx.dtype is T.bool_:
                m = idx.ndim
                if cur.shape[d:d + m] != idx.shape:
                    raise IndexError(f"the mask of shape {idx.shape} does not match the indexed "
                                     f"shape {cur.shape[d:d + m]} at dim {d}")
                nz = _op("core::nonzero")(idx)
                for j in range(m):
                    adv.append((d + j, _op("core::select")(nz, 1, j)))
                d += m
            else:
                if idx.dtype.is_floating_point:
                    raise IndexError(f"tensors used as indices must be long, int or bool, "
                                     f"got {idx.dtype}")
                adv.append((d, idx))
                d += 1
        else:
            raise TypeError(f"unsupported index {k!r}")
    return cur, adv


def _advanced_perm(ndim, dims):
    """(permutation putting the advanced dims first, whether they were adjacent)."""
    rest = [i for i in range(ndim) if i not in dims]
    adjacent = dims == list(range(dims[0], dims[0] + len(dims)))
    return list(dims) + rest, adjacent


def _index(t, key):
    cur, adv = _basic_index(t, key)
    if not adv:
        return cur
    dims = [d for d, _ in adv]
    perm, adjacent = _advanced_perm(cur.ndim, dims)
    if perm != list(range(cur.ndim)):
        cur = _op("core::permute")(cur, perm)
    out = _op("core::index")(cur, [i for _, i in adv])
    if adjacent and dims[0] > 0:  # torch keeps the indexed dims in place when they are adjacent
        nb = out.ndim - (cur.ndim - len(dims))
        order = list(range(nb, nb + dims[0])) + list(range(nb)) + list(range(nb + dims[0], out.ndim))
        out = _op("core::permute")(out, order)
    return out


def _setitem(t, key, value):
    cur, adv = _basic_index(t, key)
    if not adv:
        if isinstance(value, (int, float, bool, np.generic)) and not isinstance(value, Tensor):
            cur.fill_(value)
        else:
            cur.copy_(value)
        return
    dims = [d for d, _ in adv]
    perm, adjacent = _advanced_perm(cur.ndim, dims)
    if perm != list(range(cur.ndim)):
        cur = _op("core::permute")(cur, perm)
    v = _ops.as_tensor_like(value, t)
    if not isinstance(value, Tensor) and isinstance(value, (list, tuple, np.ndarray)):
        from .creation import tensor as _tensor

        v = _tensor(value, dtype=t.dtype, device=t.device)
    v = _ops.cast(v, t.dtype)
    if adjacent and dims[0] > 0 and v.ndim > 0:
        # values come in the result's layout (indexed dims in place): move them to the front
        nrest = cur.ndim - len(dims)
        lead = dims[0]
        bshape = _broadcast_index_shape([i for _, i in adv])
        full = tuple(cur.shape[len(dims):len(dims) + lead]) + bshape + \
            tuple(cur.shape[len(dims) + lead:])
        v = v.expand(full)
        nb = len(bshape)
        order = list(range(lead, lead + nb)) + list(range(lead)) + \
            list(range(lead + nb, nb + nrest))
        v = _op("core::permute")(v, order)
    _op("core::index_put_")(cur, [i for _, i in adv], v, False)


def _broadcast_index_shape(idx):
    return tuple(np.broadcast_shapes(*[i.shape for i in idx]))


_call_tf, _call_ti = lib.vtrt_call_tf, lib.vtrt_call_ti


def _scalar(h, name: str, t, s):
    """`t op s` for a Python number s, through an op whose second argument is a `Scalar` (h its
    handle, name its name): the number travels as a typed value (x + 1 and x + 1.0 promote
    differently), never as a tensor. Tensors and lists take the tensor path (`tensor_name`)."""
    cls = type(s)
    if cls is float:
        r = _call_tf(h, t._h, s)
    elif cls is int:
        r = _call_ti(h, t._h, s)
    else:
        if isinstance(s, np.generic):  # numpy scalars act as the Python numbers they hold
            s = s.item()
        if not isinstance(s, (bool, int, float)):
            return None
        return _op(name)(t, s)
    if r == _NULL:
        raise error()
    return _wrap(r)


def _arith(h, name, tensor_name, t, other, reverse=False):
    """The slower half of an arithmetic operator: a number (typed scalar op) or anything else
    (promotion, lists and arrays made tensors)."""
    if not hasattr(other, "_h"):
        r = _scalar(h, name, t, other)
        if r is not None:
            return r
    return _binary(tensor_name, other, t) if reverse else _binary(tensor_name, t, other)


def _after_failed_call(name, a, b):
    """The operators' fast call returned NULL: for one dtype that is the real error (raised
    without calling again); for two, promote and call."""
    if a._h.dtype.code == b._h.dtype.code and a._h.dtype.bits == b._h.dtype.bits:
        raise error()
    return _binary(name, a, b)


def _binary(name, a, b):
    """Two tensors (or a tensor and a list/array): promoted first (the runtime's rule), so no
    call is made that must fail and be retried."""
    ah, bh = getattr(a, "_h", None), getattr(b, "_h", None)
    if ah is not None and bh is not None and (ah.dtype.code, ah.dtype.bits) == (bh.dtype.code,
                                                                               bh.dtype.bits):
        h = _call_tt(_ops.handle(name), ah, bh)
        if h == _NULL:
            raise error()
        return _wrap(h)
    a, b = _ops.promote_pair(a, b)
    h = _call_tt(_ops.handle(name), a._h, b._h)
    if h == _NULL:
        raise error()
    return _wrap(h)


def _to_device(t, dev, non_blocking=False):
    """core::to_device: an op with a backward rule, so autograd crosses devices."""
    return _op("core::to_device")(t, dev, non_blocking)
