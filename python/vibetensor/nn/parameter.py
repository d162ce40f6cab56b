"""Parameter: a leaf Tensor that a Module registers as trainable.

What it is: a `Tensor` subclass with no extra state (Tensor uses `__slots__`, so the subclass adds
none); `Parameter(t)` makes a new leaf sharing t's memory, with `requires_grad=True`, and
`isinstance(p, vt.nn.Parameter)` holds. Every op on a Parameter returns a plain Tensor, as in torch.
`p.data = t` swaps the storage behind the same Python object (what `Module.to` uses), so optimisers
and other holders of `p` see the change.

>>> import vibetensor as vt
>>> p = vt.nn.Parameter(vt.zeros(2))
>>> p.requires_grad, p.is_leaf, isinstance(p, vt.Tensor)
(True, True, True)
"""
from __future__ import annotations

from vibetensor.runtime import lib

from ..tensor import Tensor


def _adopt(obj, t, requires_grad):
    """Point obj (a Parameter) at a new reference to t's detached storage."""
    d = t.detach()
    lib.vtrt_retain(d._h)
    obj._h = d._h
    if requires_grad:
        obj.requires_grad_(True)


class Parameter(Tensor):
    """A Tensor that is a module parameter (a leaf that requires grad by default)."""

    __slots__ = ()

    def __new__(cls, data=None, requires_grad=True):
        if data is None:
            from ..creation import empty

            data = empty(0)
        if not isinstance(data, Tensor):
            raise TypeError(f"Parameter: expected a Tensor, got {type(data).__name__}")
        if requires_grad and not data.dtype.is_floating_point:
            raise TypeError(f"Parameter: only floating-point tensors can require gradients, "
                            f"got {data.dtype}")
        p = object.__new__(cls)
        _adopt(p, data, requires_grad)
        return p

    @property
    def data(self):
        """The same storage as a Tensor that does not require grad."""
        return self.detach()

    @data.setter
    def data(self, value):
        if not isinstance(value, Tensor):
            raise TypeError(f"Parameter.data: expected a Tensor, got {type(value).__name__}")
        rg = self.requires_grad
        old = self._h
        _adopt(self, value, rg)
        lib.vtrt_release(old)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()

    def __deepcopy__(self, memo):
        if id(self) not in memo:
            memo[id(self)] = Parameter(self.detach().clone(), self.requires_grad)
        return memo[id(self)]

    def __reduce_ex__(self, proto):
        raise TypeError("Parameter: pickling is not supported; use vt.safetensors.save_file")
