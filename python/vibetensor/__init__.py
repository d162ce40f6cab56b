"""vibetensor — a Python-first, plugin-first deep-learning framework.

Every operator lives in an op pack loaded at run time; `import vibetensor` loads the built-in
packs (ops/core) and gives you tensors:

>>> import vibetensor as vt
>>> x = vt.arange(6.0).reshape(2, 3)
>>> (x + 1).sum().item()
21.0
"""
from vibetensor import runtime as _runtime  # noqa: F401  (the binding loads libvtrt first)
from vibetensor import registry as _registry
from vibetensor.runtime import lib as _lib
from vibetensor.runtime.dtypes import (bfloat16, bool_, device, dtype, float16, float32, float64,
                                      int8, int32, int64, uint8)

from . import ops
from .creation import (arange, as_tensor, empty, empty_like, from_numpy, full, manual_seed,
                       matmul, normal, ones, ones_like, rand, randn, tensor, uniform, zeros,
                       zeros_like)
from .dlpack import from_dlpack
from .tensor import Tensor, _wrap

bool = bool_  # noqa: A001  (torch's name)
float = float32  # noqa: A001
double = float64
long = int64
half = float16

from . import _elementwise, _nn, _reduce, _shape, autograd
from .autograd import enable_grad, is_grad_enabled, no_grad, set_grad_enabled

# Each op family module exports functions (vt.exp, vt.cat, ...) and Tensor methods (x.exp()).
for _family in (_elementwise, _shape, _reduce, _nn):
    for _name, _fn in _family.METHODS.items():
        setattr(Tensor, _name, _fn)
    globals().update({_n: getattr(_family, _n) for _n in _family.__all__})
del _family
for _name, _fn in autograd.METHODS.items():
    setattr(Tensor, _name, _fn)

_registry.set_tensor_factory(_wrap)
_registry.load_builtin()

__version__ = "0.1.0"


def get_num_threads() -> int:
    return _lib.vtrt_get_num_threads()


def set_num_threads(n: int) -> None:
    _lib.vtrt_set_num_threads(int(n))


def sdk_dir():
    """Where the op-pack SDK (headers, CMake package, templates) is installed."""
    from pathlib import Path

    return Path(_runtime._vtrt_cffi.__file__).resolve().parent.parent / "sdk"


def memory_stats(device="cpu") -> dict:
    """The caching allocator's counters: allocated, reserved, peak_allocated, num_allocs,
    num_os_allocs (bytes / counts)."""
    s = _runtime.ffi.new("vtrt_alloc_stats*")
    _runtime.check(_lib.vtrt_alloc_stats_get(device_(device)._vt(), s))
    return {k: getattr(s, k) for k in ("allocated", "reserved", "peak_allocated", "num_allocs",
                                        "num_os_allocs")}


def empty_cache(device="cpu") -> None:
    _lib.vtrt_alloc_empty_cache(device_(device)._vt())


def reset_peak_memory_stats(device="cpu") -> None:
    _lib.vtrt_alloc_reset_peak(device_(device)._vt())


device_ = device

from . import amp, backends, cuda, data, nn, optim, safetensors  # noqa: E402  (the frontend layers over the ops)
from .amp import autocast  # noqa: E402
