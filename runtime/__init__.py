"""vibetensor.runtime — the cffi binding of libvtrt, the lowest Python layer.

Everything above (registry, frontend, cli) reaches native code through `ffi` and `lib` here. This
module turns the runtime's thread-local errors into Python exceptions and knows the dtype and
device codes; it imports nothing else from vibetensor.
"""
from __future__ import annotations

from ._vtrt_cffi import ffi, lib

# vt_tag codes (vt/oppack.h)
NONE, TENSOR, INT, FLOAT, BOOL, INTS, STR, DTYPE, DEVICE, TENSORS, SCALAR = range(11)
TAG_NAMES = ["None", "Tensor", "int", "float", "bool", "int[]", "str", "ScalarType", "Device",
             "Tensor[]", "Scalar"]

CPU, CUDA, META = 1, 2, 64  # DLPack's kDLCPU and kDLCUDA; META is ours (vt/oppack.h)

# status code -> exception class (vt/oppack.h VT_ERR_*)
_ERRORS = {
    1: RuntimeError,
    2: ValueError,
    3: TypeError,
    4: IndexError,
    5: NotImplementedError,
    6: MemoryError,
    7: ImportError,
}


def error() -> Exception:
    """The exception for this thread's last runtime error."""
    msg = ffi.string(lib.vtrt_last_error()).decode("utf-8", "replace")
    return _ERRORS.get(lib.vtrt_last_status(), RuntimeError)(msg or "vibetensor runtime error")


def check(status: int) -> None:
    if status != 0:
        raise error()


def checked(ptr):
    """Raise the runtime's error when a call returned NULL."""
    if ptr == ffi.NULL:
        raise error()
    return ptr
