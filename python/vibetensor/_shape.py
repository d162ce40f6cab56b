"""The shape/indexing op family's frontend: vt.cat/stack/split/chunk/gather/..., factories
(linspace, eye) and the matching Tensor methods, with torch names and signatures.

unbind/stack are Python over the view ops (select/unsqueeze) and cat, so autograd sees ops it
knows; split/chunk make their core::slice views in one runtime call (vtrt_split) that records one
node for all pieces, whose backward is one cat.

>>> import vibetensor as vt
>>> a, b = vt.arange(6.0).reshape(2, 3).chunk(2)
>>> vt.cat([a, b], dim=1).tolist(), vt.stack([a, b]).shape
([[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]], (2, 1, 3))
"""
from __future__ import annotations

import math

from vibetensor.runtime import dtypes as T
from vibetensor.runtime import error, ffi, lib

from . import _ops
from .tensor import _wrap as _wrap_handle

__all__ = ["cat", "concat", "concatenate", "stack", "hstack", "vstack", "split", "chunk",
           "unbind", "index_select", "index_add", "gather", "scatter_add", "masked_fill",
           "embedding", "one_hot", "tril", "triu", "linspace", "eye", "nonzero", "reshape",
           "flatten", "squeeze", "unsqueeze", "permute", "transpose", "narrow", "select",
           "movedim"]

_op = _ops.op


def _wrap(dim, ndim, what):
    n = ndim if ndim > 0 else 1
    if not -n <= dim < n:
        raise IndexError(f"{what}: dim {dim} is out of range for a tensor with {ndim} dims "
                         f"(expected in [{-n}, {n - 1}])")
    return dim % n


def _promoted(tensors, what):
    tensors = list(tensors)
    if not tensors:
        raise ValueError(f"{what}: expected a non-empty list of tensors")
    for i, t in enumerate(tensors):
        if not hasattr(t, "_h"):
            raise TypeError(f"{what}: tensors[{i}] must be a Tensor, got {type(t).__name__}")
    dt = tensors[0].dtype
    for t in tensors[1:]:
        if t.dtype is not dt:
            dt = T.promote(dt, t.dtype)
    return [_ops.cast(t, dt) for t in tensors]


def cat(tensors, dim=0):
    """Concatenate along an existing dim (dtypes promote like torch)."""
    return _op("core::cat")(_promoted(tensors, "cat"), int(dim))


concat = concatenate = cat


def stack(tensors, dim=0):
    """Join along a new dim; every tensor must have the same shape."""
    ts = _promoted(tensors, "stack")
    shape = ts[0].shape
    for i, t in enumerate(ts):
        if t.shape != shape:
            raise ValueError(f"stack: expects each tensor to be equal size, but got {shape} at "
                             f"entry 0 and {t.shape} at entry {i}")
    d = _wrap(dim, len(shape) + 1, "stack")
    return _op("core::cat")([_op("core::unsqueeze")(t, d) for t in ts], d)


def hstack(tensors):
    ts = list(tensors)
    return cat(ts, 0 if ts and ts[0].ndim == 1 else 1)


def vstack(tensors):
    return cat([t.reshape(1, -1) if t.ndim < 2 else t for t in tensors], 0)


def split(tensor, split_size_or_sections, dim=0):
    """Views of consecutive pieces: of size `split_size` (the last may be smaller) or of the
    given section sizes."""
    d = _wrap(dim, tensor.ndim, "split")
    n = tensor.shape[d]
    if isinstance(split_size_or_sections, int):
        s = split_size_or_sections
        if s <= 0 and not (s == 0 and n == 0):
            raise ValueError(f"split: split_size must be positive, got {s}")
        sizes = [s] * (n // s) + ([n % s] if n % s else []) if s else [0]
    else:
        sizes = [int(x) for x in split_size_or_sections]
        if sum(sizes) != n or any(x < 0 for x in sizes):
            raise ValueError(f"split: sections {sizes} do not sum to the size {n} of dim {d}")
    # one runtime call makes every piece (core::slice views) and, when grad is needed, one node
    # whose backward joins the pieces' gradients with a single cat
    outs = ffi.new("vt_tensor*[]", max(len(sizes), 1))
    if lib.vtrt_split(tensor._h, ffi.new("int64_t[]", sizes or [0]), len(sizes), d, outs) != 0:
        raise error()
    return tuple(_wrap_handle(outs[i]) for i in range(len(sizes)))


def chunk(tensor, chunks, dim=0):
    """At most `chunks` views of (nearly) equal size, like torch.chunk."""
    if chunks <= 0:
        raise ValueError(f"chunk: chunks must be positive, got {chunks}")
    d = _wrap(dim, tensor.ndim, "chunk")
    n = tensor.shape[d]
    size = max(math.ceil(n / chunks), 1) if n else 0
    if n == 0:
        return split(tensor, [0] * chunks, d) if chunks else ()
    return split(tensor, size, d)


def unbind(tensor, dim=0):
    d = _wrap(dim, tensor.ndim, "unbind")
    sel = _op("core::select")
    return tuple(sel(tensor, d, i) for i in range(tensor.shape[d]))


def index_select(input, dim, index):
    return _op("core::index_select")(input, int(dim), index)


def index_add(input, dim, index, source, *, alpha=1):
    return _op("core::index_add")(input, int(dim), index, _ops.cast(source, input.dtype), alpha)


def gather(input, dim, index):
    return _op("core::gather")(input, int(dim), index)


def scatter_add(input, dim, index, src):
    return _op("core::scatter_add")(input, int(dim), index, _ops.cast(src, input.dtype))


def masked_fill(input, mask, value):
    if hasattr(value, "_h"):
        if value.numel() != 1:
            raise ValueError(f"masked_fill: value must be a number or a 1-element tensor, got "
                             f"shape {value.shape}")
        value = value.item()
    return _op("core::masked_fill")(input, mask, float(value))


def masked_fill_(input, mask, value):
    input.copy_(masked_fill(input, mask, value))
    return input


def embedding(input, weight, padding_idx=None):
    """Rows of `weight` (num_embeddings, dim) picked by the integer tensor `input`
    (F.embedding's order; torch.embedding's (weight, input) order is accepted too). Positions
    holding `padding_idx` send no gradient to that row."""
    if input.dtype.is_floating_point and not weight.dtype.is_floating_point:
        input, weight = weight, input
    return _op("core::embedding")(weight, input, padding_idx)


def one_hot(tensor, num_classes=-1):
    return _op("core::one_hot")(tensor, int(num_classes))


def tril(input, diagonal=0):
    return _op("core::tril")(input, int(diagonal))


def triu(input, diagonal=0):
    return _op("core::triu")(input, int(diagonal))


def linspace(start, end, steps, *, dtype=None, device=None):
    return _op("core::linspace")(float(start), float(end), int(steps), dtype,
                                 T.device(device if device is not None else "cpu"))


def eye(n, m=None, *, dtype=None, device=None):
    return _op("core::eye")(int(n), None if m is None else int(m), dtype,
                            T.device(device if device is not None else "cpu"))


def nonzero(input, *, as_tuple=False):
    nz = _op("core::nonzero")(input)
    if not as_tuple:
        return nz
    return tuple(nz.select(1, j) for j in range(nz.shape[1]))


def reshape(input, shape):
    return input.reshape(shape)


def flatten(input, start_dim=0, end_dim=-1):
    return input.flatten(start_dim, end_dim)


def squeeze(input, dim=None):
    return input.squeeze(dim)


def unsqueeze(input, dim):
    return input.unsqueeze(dim)


def permute(input, dims):
    return input.permute(dims)


def transpose(input, dim0, dim1):
    return input.transpose(dim0, dim1)


def narrow(input, dim, start, length):
    return input.narrow(dim, start, length)


def select(input, dim, index):
    return input.select(dim, index)


def movedim(input, source, destination):
    n = input.ndim
    src = [source] if isinstance(source, int) else list(source)
    dst = [destination] if isinstance(destination, int) else list(destination)
    if len(src) != len(dst):
        raise ValueError(f"movedim: source {src} and destination {dst} differ in length")
    src = [_wrap(s, n, "movedim") for s in src]
    dst = [_wrap(d, n, "movedim") for d in dst]
    order = [None] * n
    for s, d in zip(src, dst):
        order[d] = s
    rest = iter(i for i in range(n) if i not in src)
    order = [o if o is not None else next(rest) for o in order]
    return input.permute(order)


def _index_put_(self, indices, values, accumulate=False):
    _op("core::index_put_")(self, list(indices), _ops.cast(_ops.as_tensor_like(values, self),
                                                            self.dtype), accumulate)
    return self


def _index_put(self, indices, values, accumulate=False):
    return _op("core::index_put")(self, list(indices),
                                  _ops.cast(_ops.as_tensor_like(values, self), self.dtype),
                                  accumulate)


METHODS = {"split": split, "chunk": chunk, "unbind": unbind, "index_select": index_select,
           "index_add": index_add, "gather": gather, "scatter_add": scatter_add,
           "masked_fill": masked_fill, "masked_fill_": masked_fill_, "tril": tril, "triu": triu,
           "nonzero": nonzero, "movedim": movedim, "index_put_": _index_put_,
           "index_put": _index_put}
