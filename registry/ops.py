"""Op handles: resolve an op once by name, then call it with Python arguments.

`Op("core::add")(a, b, alpha=2.0)` boxes the arguments per the op's schema into vt_value[] and
makes one native call. Tensors are any object with a `_h` (a `vt_tensor*`); the frontend
registers how to wrap returned tensors with `set_tensor_factory`, so this layer never imports it.
"""
from __future__ import annotations

import ast
import contextlib
import operator
import threading

from vibetensor.runtime import (BOOL, CPU, CUDA, DEVICE, DTYPE, FLOAT, INT, INTS, META, NONE,
                                SCALAR, STR, TAG_NAMES, TENSOR, TENSORS, error, ffi, lib)
from vibetensor.runtime import dtypes as _types

from . import loader

_tensor_factory = None  # set by the frontend: cdata vt_tensor* (owned) -> Tensor
# (name, args, kwargs) -> (args, kwargs), run before every boxed call while set: vt.autocast's
# casts. None when unused, so it costs one global lookup.
call_hook = None


def set_tensor_factory(fn) -> None:
    global _tensor_factory
    _tensor_factory = fn


def _device_code(device) -> int:
    if device in (CPU, CUDA, META):
        return device
    return _types.device(device).code


class Arg:
    __slots__ = ("name", "type", "optional", "kwonly", "has_default", "default")

    def __init__(self, info):
        self.name = ffi.string(info.name).decode()
        self.type = info.type
        self.optional = bool(info.optional)
        self.kwonly = bool(info.kwonly)
        self.has_default = bool(info.has_default)
        text = ffi.string(info.default_text).decode()
        self.default = ast.literal_eval(text) if self.has_default else None


class Op:
    """A resolved op. Re-resolves itself when packs were loaded or unloaded since."""

    __slots__ = ("name", "_h", "_gen", "args", "nouts", "out_types", "_schema", "__weakref__")

    def __init__(self, name: str):
        self.name = name
        self._gen = -1
        self._resolve()

    def _resolve(self):
        h = lib.vtrt_find_op(self.name.encode())
        if h == ffi.NULL:
            raise AttributeError(f"unknown op '{self.name}': no loaded pack defines it "
                                 f"(vt.ops.packs() lists the loaded packs)")
        gen = loader.generation[0]
        schema = ffi.string(lib.vtrt_op_schema(h)).decode()
        info = ffi.new("vtrt_arg_info*")
        args = []
        for i in range(lib.vtrt_op_num_args(h)):
            lib.vtrt_op_arg(h, i, info)
            args.append(Arg(info))
        nouts = lib.vtrt_op_num_outputs(h)
        # other threads may be calling this op right now: they see the old description or the
        # new one, never a half-built argument list
        self._h, self._schema, self.args, self.nouts = h, schema, args, nouts
        self.out_types = [lib.vtrt_op_output_type(h, i) for i in range(nouts)]
        self._gen = gen

    def handle(self):
        if self._gen != loader.generation[0]:
            self._resolve()
        return self._h

    @property
    def schema(self) -> str:
        self.handle()  # a pack loaded since may define this op with another schema
        return self._schema

    def __repr__(self):
        return f"<op {self.schema}>"

    # -- the boxed call ------------------------------------------------------------------------
    def __call__(self, /, *args, **kwargs):  # positional-only: an op's argument may be named self
        if call_hook is not None:
            args, kwargs = call_hook(self.name, args, kwargs)
        h = self.handle()
        spec = self.args
        n = len(spec)
        if kwargs or len(args) != n:
            args = self._complete(args, kwargs)
        nouts = self.nouts
        buf = ffi.new("vt_value[]", n + nouts)  # arguments, then outputs: one allocation
        keep = None
        tag_t = TENSOR
        for i in range(n):
            v = args[i]
            slot = buf[i]
            a = spec[i]
            if a.type == tag_t and v is not None:  # the common case, inline
                try:
                    slot.v.t = v._h
                except AttributeError:
                    _box(self.name, a, i, v, slot, [])
                    continue
                slot.tag = tag_t
            else:
                if keep is None:
                    keep = []
                _box(self.name, a, i, v, slot, keep)
        outs = buf + n
        if lib.vtrt_call(h, buf, n, outs, nouts) != 0:
            raise error()
        if nouts == 1:
            o = outs[0]
            return _tensor_factory(o.v.t) if o.tag == tag_t else _unbox(o)
        return tuple(_unbox(outs[i]) for i in range(nouts))

    def partial(self, *tail) -> "Partial":
        """This op with its trailing arguments boxed once: `op.partial(x, y)(t)` is `op(t, x, y)`
        for the leading Tensor arguments, without marshalling the others again on every call
        (a process group's all_reduce(tensor, group, "sum") in a training step's hot loop)."""
        return Partial(self, tail)

    def _complete(self, args, kwargs):
        """Positional + keyword arguments -> one value per schema argument (defaults filled)."""
        spec = self.args
        if len(args) > len(spec):
            raise TypeError(f"[{self.name}] takes at most {len(spec)} arguments "
                            f"({len(args)} given): {self.schema}")
        vals = list(args)
        kwargs = dict(kwargs)
        for a in spec[len(args):]:
            if a.name in kwargs:
                vals.append(kwargs.pop(a.name))
            elif a.has_default:
                vals.append(a.default)
            else:
                raise TypeError(f"[{self.name}] missing argument '{a.name}': {self.schema}")
        if kwargs:
            raise TypeError(f"[{self.name}] got unexpected keyword argument(s) "
                            f"{', '.join(map(repr, kwargs))}: {self.schema}")
        return vals


class Partial:
    """Op.partial's result. Each thread keeps its own argument array (the call releases the GIL
    while the kernel runs), built on the first call and again after packs are loaded or unloaded;
    a call sets only the leading tensor slots. Under autocast (call_hook set) it takes the plain
    boxed path, so the hook sees every call."""

    __slots__ = ("op", "tail", "_local")

    def __init__(self, op: Op, tail):
        spec = op.args
        head = len(spec) - len(tail)
        if head < 0:
            raise TypeError(f"[{op.name}] takes {len(spec)} arguments, {len(tail)} given to partial: {op.schema}")
        bad = [a.name for a in spec[:head] if a.type != TENSOR]
        if bad:
            raise TypeError(f"[{op.name}] partial: the arguments before the bound ones must be Tensors; "
                            f"{', '.join(bad)} {'is' if len(bad) == 1 else 'are'} not: {op.schema}")
        self.op, self.tail, self._local = op, tuple(tail), threading.local()
        self._array()  # box the bound arguments now, so a bad one is refused here

    def _array(self):
        """This thread's boxed array, for the op's schema now: (generation, handle, array, its
        argument count, its output part, the leading slots' value unions, the output slots, kept
        buffers)."""
        op = self.op
        h = op.handle()
        spec, n = op.args, len(op.args)
        head = n - len(self.tail)
        buf = ffi.new("vt_value[]", n + op.nouts)
        keep = []
        for i, v in enumerate(self.tail):
            _box(op.name, spec[head + i], head + i, v, buf[head + i], keep)
        for i in range(head):
            buf[i].tag = TENSOR
        unions = [buf[i].v for i in range(head)]  # cdata views made once: a call only stores
        outs = [buf[n + j] for j in range(op.nouts)]
        state = self._local.state = (op._gen, h, buf, n, buf + n, unions, outs, keep)
        return state

    def __call__(self, *tensors):
        op = self.op
        if call_hook is not None:
            return op(*tensors, *self.tail)
        state = getattr(self._local, "state", None)
        if state is None or state[0] != loader.generation[0]:
            state = self._array()
        _, h, buf, n, outp, unions, outs, _ = state
        if len(tensors) != len(unions):
            raise TypeError(f"[{op.name}] this partial takes {len(unions)} tensor(s), got {len(tensors)}")
        try:
            for u, t in zip(unions, tensors):
                u.t = t._h
        except AttributeError:
            raise TypeError(f"[{op.name}] the leading arguments must be Tensors, got "
                            f"{', '.join(type(t).__name__ for t in tensors)}") from None
        if lib.vtrt_call(h, buf, n, outp, len(outs)) != 0:
            raise error()
        if len(outs) == 1:
            o = outs[0]
            return _tensor_factory(o.v.t) if o.tag == TENSOR else _unbox(o)
        return tuple(_unbox(o) for o in outs)


def _box(opname, a: Arg, i: int, v, slot, keep) -> None:
    t = a.type
    if v is None:
        if not a.optional:
            raise TypeError(f"[{opname}] argument '{a.name}' (position {i + 1}) must be "
                            f"{TAG_NAMES[t]}, got None")
        slot.tag = NONE
        return
    if t == TENSOR:
        h = getattr(v, "_h", None)
        if h is None:
            raise TypeError(f"[{opname}] argument '{a.name}' (position {i + 1}) must be Tensor, "
                            f"got {type(v).__name__}")
        slot.tag, slot.v.t = TENSOR, h
    elif t == TENSORS:
        try:
            hs = [x._h for x in v]
        except (AttributeError, TypeError):
            raise TypeError(f"[{opname}] argument '{a.name}' (position {i + 1}) must be a "
                            f"sequence of Tensors, got {type(v).__name__}") from None
        arr = ffi.new("vt_tensor*[]", hs or 1)
        keep.append(arr)
        keep.append(v)
        slot.tag = TENSORS
        slot.v.ts.data = arr
        slot.v.ts.len = len(hs)
    elif t == FLOAT:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            v = _scalar(opname, a, i, v, float)
        slot.tag, slot.v.f = FLOAT, float(v)
    elif t == INT:
        if isinstance(v, float) or not isinstance(v, int):
            v = _scalar(opname, a, i, v, int)
        slot.tag, slot.v.i = INT, int(v)
    elif t == SCALAR:  # keeps the Python type: promotion tells x + 1 from x + 1.0
        if hasattr(v, "item") and not isinstance(v, (bool, int, float)):
            v = _scalar(opname, a, i, v, lambda x: x)
        if isinstance(v, bool):
            slot.tag, slot.v.b = BOOL, int(v)
        elif isinstance(v, int):
            slot.tag, slot.v.i = INT, v
        elif isinstance(v, float):
            slot.tag, slot.v.f = FLOAT, v
        else:
            raise TypeError(f"[{opname}] argument '{a.name}' (position {i + 1}) must be a number "
                            f"(bool, int or float), got {type(v).__name__}")
    elif t == BOOL:
        if not isinstance(v, (bool, int)):
            if hasattr(v, "item") and not isinstance(v, str):
                v = v.item()
            if not isinstance(v, (bool, int)):
                raise TypeError(f"[{opname}] argument '{a.name}' (position {i + 1}) must be "
                                f"bool, got {type(v).__name__}")
        slot.tag, slot.v.b = BOOL, int(bool(v))
    elif t == INTS:
        if isinstance(v, int):
            v = [v]
        try:
            if isinstance(v, (str, bytes)):
                raise TypeError
            items = [operator.index(x) for x in v]
        except TypeError:
            raise TypeError(f"[{opname}] argument '{a.name}' (position {i + 1}) must be a "
                            f"sequence of ints, got {v!r}") from None
        arr = ffi.new("int64_t[]", items or [0])
        keep.append(arr)
        slot.tag = INTS
        slot.v.ints.data = arr
        slot.v.ints.len = len(items)
    elif t == STR:
        if not isinstance(v, str):
            raise TypeError(f"[{opname}] argument '{a.name}' must be str, got {type(v).__name__}")
        b = ffi.new("char[]", v.encode())
        keep.append(b)
        slot.tag, slot.v.s = STR, b
    elif t == DTYPE:
        try:
            d = _types.get_dtype(v)
        except TypeError as e:
            raise TypeError(f"[{opname}] argument '{a.name}' (position {i + 1}): {e}") from None
        slot.tag = DTYPE
        slot.v.dtype.code, slot.v.dtype.bits, slot.v.dtype.lanes = d.code, d.bits, 1
    elif t == DEVICE:
        try:
            d = _types.device(v)
        except (TypeError, ValueError) as e:
            raise type(e)(f"[{opname}] argument '{a.name}' (position {i + 1}): {e}") from None
        slot.tag = DEVICE
        slot.v.device.type, slot.v.device.index = d.code, d.index
    else:  # pragma: no cover - schema types are closed
        raise TypeError(f"[{opname}] unsupported argument type {t}")


def _scalar(opname, a, i, v, kind):
    # 0-d / 1-element tensors and numpy scalars are accepted where Python numbers are.
    try:
        if hasattr(v, "item"):
            v = v.item()
        if kind is int and isinstance(v, float):
            raise TypeError
        return kind(v)
    except (TypeError, ValueError):
        raise TypeError(f"[{opname}] argument '{a.name}' (position {i + 1}) must be "
                        f"{TAG_NAMES[a.type]}, got {type(v).__name__}") from None


def _unbox(v):
    tag = v.tag
    if tag == TENSOR:
        return _tensor_factory(v.v.t)
    if tag == INT:
        return v.v.i
    if tag == FLOAT:
        return v.v.f
    if tag == BOOL:
        return bool(v.v.b)
    if tag == NONE:
        return None
    raise TypeError(f"unsupported output tag {tag}")


# -- providers ------------------------------------------------------------------------------------

class Provider:
    __slots__ = ("name", "pack", "priority", "active")

    def __init__(self, name, pack, priority, active):
        self.name, self.pack, self.priority, self.active = name, pack, priority, active

    def __repr__(self):
        star = " (active)" if self.active else ""
        return f"<provider {self.name} from {self.pack}, priority {self.priority}{star}>"


def providers(op_name: str, device="cpu") -> list[Provider]:
    """The implementations of an op on a device, best first; `.active` marks the one serving."""
    op = Op(op_name) if isinstance(op_name, str) else op_name
    h, dt = op.handle(), _device_code(device)
    info = ffi.new("vtrt_provider_info*")
    out = []
    for i in range(lib.vtrt_op_num_providers(h, dt)):
        if lib.vtrt_op_provider(h, dt, i, info) != 0:
            raise error()
        out.append(Provider(ffi.string(info.provider).decode(), ffi.string(info.pack).decode(),
                            info.priority, bool(info.active)))
    return out


def pinned(op_name: str, device="cpu"):
    p = lib.vtrt_op_pinned(Op(op_name).handle(), _device_code(device))
    return None if p == ffi.NULL else ffi.string(p).decode()


class use(contextlib.ContextDecorator):
    """Pin `provider` for `op_name` on `device`: `vt.ops.use("core::add", "mine")` pins until
    changed (provider=None unpins); `with vt.ops.use(...):` restores the previous pin on exit."""

    def __init__(self, op_name: str, provider: str | None, device="cpu"):
        self._op = Op(op_name)
        self._dt = _device_code(device)
        h = self._op.handle()
        prev = lib.vtrt_op_pinned(h, self._dt)
        self._prev = None if prev == ffi.NULL else ffi.string(prev)
        self._set(provider.encode() if provider else ffi.NULL)

    def _set(self, provider):
        if lib.vtrt_op_pin(self._op.handle(), self._dt, provider) != 0:
            raise error()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._set(self._prev if self._prev is not None else ffi.NULL)
        return False


def op_names() -> list[str]:
    names = []
    for i in range(lib.vtrt_op_count()):
        p = lib.vtrt_op_name_at(i)
        if p != ffi.NULL:
            s = ffi.string(p).decode()
            if s:
                names.append(s)
    return names


