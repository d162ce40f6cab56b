"""vibetensor.backends — switches of the libraries behind the ops, with torch.backends' names.

    >>> import vibetensor as vt
    >>> vt.backends.cuda.matmul.allow_tf32          # torch's default: off
    False
    >>> vt.backends.cuda.matmul.allow_tf32 = True   # float32 matmuls on cuda may use TF32
    >>> vt.backends.cuda.matmul.allow_tf32 = False

allow_tf32 lets cuBLASLt round float32 matmul inputs to TF32 (10 mantissa bits) and multiply them on
the tensor cores: several times faster on Hopper, about 1e-3 relative error. It is the core pack's
process-wide flag (op core::set_cuda_matmul_flags, read by every float32 matmul, bmm, addmm and
linear on cuda), so it holds on every thread at once; a CUDA graph keeps the kernels it captured.
"""
from __future__ import annotations

from vibetensor import _ops
from vibetensor.registry import loader as _loader

_flags = {"allow_tf32": False}  # what was last set; the pack starts with the same defaults


def _send(allow_tf32: bool):
    _ops.op("core::set_cuda_matmul_flags")(allow_tf32)


def _resend():
    """A core pack loaded again starts from its defaults: give it the flags set here."""
    if _flags["allow_tf32"]:
        try:
            _send(True)
        except AttributeError:  # no pack defines the op (core unloaded)
            pass


_loader.listeners.append(_resend)


class _CuBLASModule:
    """`vt.backends.cuda.matmul`: torch.backends.cuda.matmul's flag that cuBLASLt reads."""

    __slots__ = ()

    @property
    def allow_tf32(self) -> bool:
        return _flags["allow_tf32"]

    @allow_tf32.setter
    def allow_tf32(self, value: bool) -> None:
        _send(bool(value))
        _flags["allow_tf32"] = bool(value)

    def __repr__(self):
        return f"<vt.backends.cuda.matmul allow_tf32={self.allow_tf32}>"


class _CudaModule:
    """`vt.backends.cuda`."""

    __slots__ = ()
    matmul = _CuBLASModule()

    @staticmethod
    def is_built() -> bool:
        """Whether vibetensor was built with CUDA (torch.backends.cuda.is_built)."""
        from vibetensor import cuda

        return cuda.is_built()


cuda = _CudaModule()

__all__ = ["cuda"]
