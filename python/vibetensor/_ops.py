"""Cached op handles for the frontend, plus the dtype promotion and scalar handling that sit in
front of every arithmetic op."""
from __future__ import annotations

import numpy as np

from vibetensor import registry
from vibetensor.registry import loader
from vibetensor.runtime import lib
from vibetensor.runtime import dtypes as T

_ops: dict = {}
_handles: dict = {}
_handles_gen = [-1]


def op(name: str) -> registry.Op:
    o = _ops.get(name)
    if o is None:
        o = _ops[name] = registry.Op(name)
    return o


def handle(name: str):
    """The op's native handle, re-resolved only after a pack was loaded or unloaded."""
    if _handles_gen[0] != loader.generation[0]:
        _handles.clear()
        _handles_gen[0] = loader.generation[0]
    h = _handles.get(name)
    if h is None:
        h = _handles[name] = op(name).handle()
    return h


class _Hot:
    """Native handles of the ops behind Tensor's arithmetic operators, as plain attributes so the
    operator fast path costs one attribute load. Refreshed whenever a pack loads or unloads;
    NULL when no pack defines the op (the call then reports it)."""

    __slots__ = ("add", "sub", "mul", "div", "add_scalar", "sub_scalar", "rsub_scalar",
                 "mul_scalar", "div_scalar", "rdiv_scalar")
    NAMES = {"add": "core::add", "sub": "core::sub", "mul": "core::mul", "div": "core::div",
             "add_scalar": "core::add_scalar", "sub_scalar": "core::sub_scalar",
             "rsub_scalar": "core::rsub_scalar", "mul_scalar": "core::mul_scalar",
             "div_scalar": "core::div_scalar", "rdiv_scalar": "core::rdiv_scalar"}

    def refresh(self):
        for attr, name in self.NAMES.items():
            h = lib.vtrt_find_op(name.encode())
            setattr(self, attr, h)
        lib.vtrt_clear_error()


hot = _Hot()
loader.listeners.append(hot.refresh)
hot.refresh()


def _scalar_dtype(v, like: T.dtype) -> T.dtype:
    if not isinstance(v, (bool, int, float)):
        raise TypeError(f"expected a Tensor or a Python number, got {type(v).__name__}")
    return T.result_type_scalar(like, type(v))


def as_tensor_like(v, ref):
    """A Python number becomes a 0-d tensor on ref's device, of the dtype `ref op v` has (torch:
    int tensor + 2.5 -> float32). For ops that have no Scalar form (where, clamp bounds, ...)."""
    if hasattr(v, "_h"):
        return v
    if isinstance(v, np.generic):  # numpy scalars act as the Python numbers they hold
        v = v.item()
    dt = _scalar_dtype(v, ref.dtype)
    return op("core::full")([], float(v), dt, ref.device)


def promote_pair(a, b):
    if not hasattr(a, "_h"):
        a = as_tensor_like(a, b)
    if not hasattr(b, "_h"):
        b = as_tensor_like(b, a)
    if a.dtype is not b.dtype:
        d = T.promote(a.dtype, b.dtype)
        a, b = cast(a, d), cast(b, d)
    return a, b


def cast(t, dtype: T.dtype):
    """t converted to `dtype` (core::to_dtype: differentiable between floating dtypes); t itself
    when it already has that dtype."""
    if t.dtype is dtype:
        return t
    return op("core::to_dtype")(t, dtype)  # every device: core has its compute for cpu and cuda
