"""Module: the base class of every layer, with torch's semantics.

What it is: attribute assignment registers Parameters, sub-Modules and (through register_buffer)
buffers in three ordered dicts; traversal (named_parameters, named_modules, ...), train/eval,
to(device/dtype), zero_grad, apply, state_dict/load_state_dict and a torch-like repr are written
once here. `module(x)` runs `forward(x)`. What it is not: hooks, parametrizations, or pickling.

>>> import vibetensor as vt
>>> m = vt.nn.Sequential(vt.nn.Linear(4, 8), vt.nn.ReLU(), vt.nn.Linear(8, 2))
>>> [k for k, _ in m.named_parameters()]
['0.weight', '0.bias', '2.weight', '2.bias']
>>> m(vt.randn(3, 4)).shape
(3, 2)
"""
from __future__ import annotations

import copy
from collections import OrderedDict, namedtuple

import numpy as np

from vibetensor.runtime import dtypes as T

from ..autograd import no_grad
from ..tensor import Tensor
from .parameter import Parameter

_IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Module:
    """Base class for layers: subclass it, assign layers/Parameters in __init__, write forward."""

    training: bool

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # -- registration ------------------------------------------------------------------------
    def _check_init(self, what):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"cannot {what} before Module.__init__() call "
                                 f"(call super().__init__() first in {type(self).__name__})")

    def register_parameter(self, name: str, param) -> None:
        self._check_init("assign parameter")
        if not isinstance(name, str) or not name or "." in name:
            raise KeyError(f"parameter name must be a non-empty string without '.', got {name!r}")
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot assign {type(param).__name__} as parameter '{name}' "
                            f"(vt.nn.Parameter or None expected)")
        if hasattr(self, name) and name not in self._parameters:
            raise KeyError(f"attribute '{name}' already exists")
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor, persistent: bool = True) -> None:
        self._check_init("assign buffer")
        if not isinstance(name, str) or not name or "." in name:
            raise KeyError(f"buffer name must be a non-empty string without '.', got {name!r}")
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"cannot assign {type(tensor).__name__} as buffer '{name}' "
                            f"(vt.Tensor or None expected)")
        if hasattr(self, name) and name not in self._buffers:
            raise KeyError(f"attribute '{name}' already exists")
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent.discard(name)
        else:
            self._non_persistent.add(name)

    def add_module(self, name: str, module) -> None:
        self._check_init("assign module")
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        if not isinstance(name, str) or "." in name or not name:
            raise KeyError(f"module name must be a non-empty string without '.', got {name!r}")
        self._modules[name] = module

    register_module = add_module

    def __setattr__(self, name, value):
        d = self.__dict__
        if isinstance(value, Parameter):
            self._check_init("assign parameters")
            _remove(d, name, self._buffers, self._modules)
            self.register_parameter(name, value)
        elif isinstance(value, Module):
            self._check_init("assign modules")
            _remove(d, name, self._parameters, self._buffers)
            self._modules[name] = value
        elif "_parameters" in d and name in self._parameters:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as parameter '{name}' "
                                f"(vt.nn.Parameter or None expected)")
            self._parameters[name] = None
        elif "_modules" in d and name in self._modules:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as child module "
                                f"'{name}' (vt.nn.Module or None expected)")
            self._modules[name] = None
        elif "_buffers" in d and name in self._buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign {type(value).__name__} as buffer '{name}' "
                                f"(vt.Tensor or None expected)")
            self._buffers[name] = value
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            s = d.get(store)
            if s is not None and name in s:
                return s[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        for store in (self._parameters, self._buffers, self._modules):
            if name in store:
                del store[name]
                self._non_persistent.discard(name)
                return
        object.__delattr__(self, name)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._parameters) | set(self._buffers) |
                      set(self._modules))

    # -- calling -----------------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"Module [{type(self).__name__}] is missing the required "
                                  f"\"forward\" function")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # -- traversal ---------------------------------------------------------------------------
    def named_modules(self, memo=None, prefix: str = "", remove_duplicate: bool = True):
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, m in self._modules.items():
            if m is None:
                continue
            yield from m.named_modules(memo, prefix + ("." if prefix else "") + name,
                                       remove_duplicate)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        seen = set()
        for name, m in self._modules.items():
            if m is not None and id(m) not in seen:
                seen.add(id(m))
                yield name, m

    def children(self):
        for _, m in self.named_children():
            yield m

    def _named_members(self, store, prefix, recurse, remove_duplicate=True):
        seen = set()
        mods = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) \
            if recurse else [(prefix, self)]
        for mprefix, m in mods:
            for k, v in getattr(m, store).items():
                if v is None or (remove_duplicate and id(v) in seen):
                    continue
                seen.add(id(v))
                yield mprefix + ("." if mprefix else "") + k, v

    def named_parameters(self, prefix: str = "", recurse: bool = True,
                         remove_duplicate: bool = True):
        yield from self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True,
                      remove_duplicate: bool = True):
        yield from self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def get_submodule(self, target: str):
        m = self
        for part in target.split(".") if target else []:
            if part not in m._modules:
                raise AttributeError(f"{type(m).__name__} has no submodule '{part}' "
                                     f"(looking up '{target}')")
            m = m._modules[part]
        return m

    def get_parameter(self, target: str):
        mod, _, name = target.rpartition(".")
        m = self.get_submodule(mod)
        if name not in m._parameters:
            raise AttributeError(f"{type(m).__name__} has no parameter '{name}'")
        return m._parameters[name]

    # -- modes and state ---------------------------------------------------------------------
    def train(self, mode: bool = True):
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True):
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.parameters():
            g = p.grad
            if g is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                with no_grad():
                    g.zero_()

    def apply(self, fn):
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    def _apply_tensors(self, fn):
        """Replace every parameter's storage (keeping the Parameter object) and every buffer by
        fn(tensor)."""
        with no_grad():
            for m in self.modules():
                for p in m._parameters.values():
                    if p is None:
                        continue
                    new = fn(p)
                    if new is not p:
                        g = p.grad
                        p.data = new
                        if g is not None:
                            p.grad = fn(g)
                for k, b in m._buffers.items():
                    if b is not None:
                        m._buffers[k] = fn(b)
        return self

    def to(self, *args, device=None, dtype=None):
        """Move/cast parameters and buffers in place (floating-point tensors only get dtype)."""
        for a in args:
            if isinstance(a, T.dtype):
                dtype = a
            elif isinstance(a, Tensor):
                dtype, device = a.dtype, a.device
            elif isinstance(a, (str, T.device)):
                device = a
            else:
                raise TypeError(f"to(): expected a device, dtype or Tensor, got {a!r}")
        if dtype is not None:
            dtype = T.get_dtype(dtype)
            if not dtype.is_floating_point:
                raise TypeError(f"Module.to only accepts floating point dtypes, got {dtype}")

        def fn(t):
            out = t
            if device is not None:
                out = out.to(device=device)
            if dtype is not None and out.dtype.is_floating_point:
                out = out.to(dtype=dtype)
            return out

        return self._apply_tensors(fn)

    def cpu(self):
        return self.to(device="cpu")

    def cuda(self, index: int = 0):
        return self.to(device=T.device("cuda", index))

    def float(self):
        return self.to(dtype=T.float32)

    def double(self):
        return self.to(dtype=T.float64)

    def half(self):
        return self.to(dtype=T.float16)

    def bfloat16(self):
        return self.to(dtype=T.bfloat16)

    # -- state dict --------------------------------------------------------------------------
    def state_dict(self, destination=None, prefix: str = "", keep_vars: bool = False):
        """name -> tensor for every parameter and persistent buffer (sharing their memory)."""
        out = OrderedDict() if destination is None else destination
        for mprefix, m in self.named_modules(prefix=prefix.rstrip(".")):
            base = mprefix + "." if mprefix else ""
            for k, p in m._parameters.items():
                if p is not None:
                    out[base + k] = p if keep_vars else p.detach()
            for k, b in m._buffers.items():
                if b is not None and k not in m._non_persistent:
                    out[base + k] = b if keep_vars else b.detach()
        return out

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Copy `state_dict`'s values into this module's parameters and buffers.

        Shape mismatches are always an error; with strict=True, so are missing and unexpected
        keys. All problems are collected and reported in one RuntimeError (torch's class).
        Values may be vt Tensors or numpy arrays; dtype is converted to the parameter's.
        Returns (missing_keys, unexpected_keys)."""
        if not hasattr(state_dict, "items"):
            raise TypeError(f"load_state_dict: expected a dict of tensors, got "
                            f"{type(state_dict).__name__}")
        own = self.state_dict(keep_vars=True)
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        mismatched, bad_type, pairs = [], [], []
        for k, target in own.items():
            if k not in state_dict:
                continue
            v = state_dict[k]
            if isinstance(v, np.ndarray):
                from ..creation import from_numpy

                v = from_numpy(v)
            if not isinstance(v, Tensor):
                bad_type.append(f"{k}: expected a Tensor, got {type(v).__name__}")
                continue
            if tuple(v.shape) != tuple(target.shape):
                mismatched.append(f"{k}: copying a param with shape {tuple(v.shape)} from "
                                  f"checkpoint, the shape in current model is "
                                  f"{tuple(target.shape)}")
                continue
            pairs.append((k, target, v))
        errors = []
        if strict and missing:
            errors.append("Missing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in missing)
                          + ".")
        if strict and unexpected:
            errors.append("Unexpected key(s) in state_dict: " +
                          ", ".join(f'"{k}"' for k in unexpected) + ".")
        if mismatched:
            errors.append("size mismatch for " + "; size mismatch for ".join(mismatched) + ".")
        if bad_type:
            errors.append("; ".join(bad_type) + ".")
        if errors:
            raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__}:\n\t" +
                               "\n\t".join(errors))
        with no_grad():
            for k, target, v in pairs:
                if assign and isinstance(target, Parameter):
                    target.data = v.to(device=target.device)
                else:
                    target.copy_(v.to(device=target.device, dtype=target.dtype))
        return _IncompatibleKeys(missing, unexpected)

    def __deepcopy__(self, memo):
        """A copy with its own parameters and buffers (Tensors are copied with clone())."""
        for b in self.buffers():
            if id(b) not in memo:
                memo[id(b)] = b.detach().clone()
        new = object.__new__(type(self))
        memo[id(self)] = new
        for k, v in self.__dict__.items():
            object.__setattr__(new, k, copy.deepcopy(v, memo))
        return new

    # -- repr --------------------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        lines = []
        extra = self.extra_repr()
        if extra:
            lines = extra.split("\n")
        children = []
        for name, m in self._modules.items():
            r = _indent(repr(m), 2)
            children.append(f"({name}): {r}")
        lines = lines + children
        main = type(self).__name__ + "("
        if lines:
            if len(lines) == 1 and not children:
                main += lines[0]
            else:
                main += "\n  " + "\n  ".join(lines) + "\n"
        return main + ")"

    def _describe(self) -> str:
        """One-line name for error messages: `Linear(in_features=8, out_features=4, bias=True)`."""
        return f"{type(self).__name__}({self.extra_repr()})"

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)


def _remove(d, name, *stores):
    for s in stores:
        if name in s:
            del s[name]
    d.pop(name, None)


def _indent(s, n):
    lines = s.split("\n")
    if len(lines) == 1:
        return s
    return lines[0] + "\n" + "\n".join(" " * n + ln for ln in lines[1:])
