"""Devices: availability, the current device (per thread), the `device(i)` guard, properties,
synchronize. Without CUDA (no build support or no GPU) `is_available()` is False,
`device_count()` is 0, and everything that needs a GPU raises RuntimeError("CUDA is not
available: ...")."""
from __future__ import annotations

from vibetensor.runtime import check, ffi, lib
from vibetensor.runtime import dtypes as T

_count = None  # the device count never changes in a process: ask the runtime once


def is_available() -> bool:
    return device_count() > 0


def device_count() -> int:
    global _count
    if _count is None:
        _count = int(lib.vtrt_cuda_device_count())
    return _count


def is_built() -> bool:
    """Whether this vibetensor was compiled with CUDA support (a GPU may still be absent)."""
    return bool(lib.vtrt_cuda_is_built())


def _unavailable() -> RuntimeError:
    return RuntimeError(ffi.string(lib.vtrt_cuda_unavailable_reason()).decode())


def _require() -> None:
    if not is_available():
        raise _unavailable()


def _device_index(dev=None, optional: bool = True) -> int:
    """An ordinal from None (the current device), an int, "cuda", "cuda:1" or a vt.device."""
    if dev is None or (isinstance(dev, str) and dev == "cuda"):
        _require()
        return current_device()
    if isinstance(dev, int) and not isinstance(dev, bool):
        idx = dev
    else:
        d = dev if isinstance(dev, T.device) else T.device(dev)
        if d.type != "cuda":
            raise ValueError(f"expected a CUDA device, got {d}")
        idx = d.index
    _require()
    if not 0 <= idx < device_count():
        raise ValueError(f"invalid CUDA device index {idx} (this machine has {device_count()})")
    return idx


def current_device() -> int:
    """The calling thread's current CUDA device."""
    _require()
    return int(lib.vtrt_cuda_current_device())


def set_device(device) -> None:
    """Makes `device` the calling thread's current device (a negative int is ignored, as torch)."""
    if isinstance(device, int) and device < 0:
        return
    check(lib.vtrt_cuda_set_device(_device_index(device)))


class device:
    """Context manager that makes a device current for a block: `with vt.cuda.device(1): ...`.
    None or a negative index leaves the current device alone."""

    __slots__ = ("idx", "prev_idx")

    def __init__(self, device):
        if device is None or (isinstance(device, int) and device < 0):
            self.idx = -1
        else:
            self.idx = _device_index(device)
        self.prev_idx = -1

    def __enter__(self):
        if self.idx >= 0:
            self.prev_idx = lib.vtrt_cuda_exchange_device(self.idx)
        return self

    def __exit__(self, *exc):
        if self.idx >= 0 and self.prev_idx >= 0:
            lib.vtrt_cuda_exchange_device(self.prev_idx)
        return False


class device_of(device):
    """`with vt.cuda.device_of(t):` makes the device of tensor `t` current (no-op for cpu)."""

    def __init__(self, obj):
        d = obj.device
        super().__init__(d.index if d.type == "cuda" else -1)


def synchronize(device=None) -> None:
    """Waits for all work queued on a device (default: the current one)."""
    check(lib.vtrt_cuda_synchronize(_device_index(device)))


class _Properties:
    __slots__ = ("name", "major", "minor", "total_memory", "multi_processor_count")

    def __repr__(self):
        return (f"_CudaDeviceProperties(name='{self.name}', major={self.major}, "
                f"minor={self.minor}, total_memory={self.total_memory >> 20}MB, "
                f"multi_processor_count={self.multi_processor_count})")


def get_device_properties(device=None) -> _Properties:
    p = ffi.new("vtrt_cuda_device_props*")
    check(lib.vtrt_cuda_get_device_properties(_device_index(device), p))
    out = _Properties()
    out.name = ffi.string(p.name).decode()
    out.major, out.minor = p.major, p.minor
    out.total_memory, out.multi_processor_count = p.total_memory, p.multi_processor_count
    return out


def get_device_name(device=None) -> str:
    return get_device_properties(device).name


def get_device_capability(device=None) -> tuple:
    p = get_device_properties(device)
    return (p.major, p.minor)


def can_device_access_peer(device, peer_device) -> bool:
    out = ffi.new("int32_t*")
    check(lib.vtrt_cuda_can_device_access_peer(_device_index(device), _device_index(peer_device),
                                               out))
    return bool(out[0])
