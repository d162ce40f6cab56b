"""DLPack both ways: `Tensor.__dlpack__` / `__dlpack_device__` and `vt.from_dlpack`, so tensors
move between vibetensor, numpy and torch without copies."""
from __future__ import annotations

import ctypes

import numpy as np

from vibetensor.runtime import checked, ffi, lib

from .tensor import _wrap

_api = ctypes.pythonapi
_api.PyCapsule_New.restype = ctypes.py_object
_api.PyCapsule_New.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
_api.PyCapsule_GetPointer.restype = ctypes.c_void_p
_api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
_api.PyCapsule_SetName.restype = ctypes.c_int
_api.PyCapsule_SetName.argtypes = [ctypes.py_object, ctypes.c_char_p]
_api.PyCapsule_IsValid.restype = ctypes.c_int
_api.PyCapsule_IsValid.argtypes = [ctypes.py_object, ctypes.c_char_p]

_DESTRUCTOR = int(ffi.cast("uintptr_t", lib.vt_py_capsule_destructor()))


def to_capsule(t):
    """A "dltensor" capsule holding a reference to t until the consumer's deleter runs."""
    m = checked(lib.vtrt_to_dlpack(t._h))
    return _api.PyCapsule_New(int(ffi.cast("uintptr_t", m)), b"dltensor", _DESTRUCTOR)


def from_dlpack(obj):
    """A tensor sharing the memory of any DLPack producer (numpy, torch, vibetensor, ...).

    Read-only data is never shared: a read-only numpy array goes through `vt.from_numpy` (copied
    when its memory is read-only);
    producers following the DLPack spec refuse to export read-only data in a "dltensor" capsule,
    which has no read-only flag, so their error reaches the caller."""
    if isinstance(obj, np.ndarray) and not obj.flags.writeable:
        from .creation import from_numpy  # numpy refuses the export; from_numpy knows what to do

        return from_numpy(obj)
    if hasattr(obj, "__dlpack__"):
        capsule = obj.__dlpack__()
    else:
        capsule = obj  # already a capsule
    if not _api.PyCapsule_IsValid(capsule, b"dltensor"):
        raise TypeError("from_dlpack: expected an object with __dlpack__ or an unconsumed "
                        "'dltensor' capsule")
    ptr = _api.PyCapsule_GetPointer(capsule, b"dltensor")
    h = lib.vtrt_from_dlpack(ffi.cast("vt_dl_managed*", ptr))
    checked(h)
    _api.PyCapsule_SetName(capsule, b"used_dltensor")  # consumed: the producer must not free it
    return _wrap(h)
