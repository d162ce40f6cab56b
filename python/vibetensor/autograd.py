"""vt.autograd — the Python face of the native autograd engine.

The graph is recorded natively as ops run and walked natively by `backward`; Python is only
involved for what the user writes in Python: tensor hooks and `Function` subclasses.

>>> import vibetensor as vt
>>> x = vt.tensor([1.0, 2.0, 3.0]).requires_grad_()
>>> (x * x).sum().backward()
>>> x.grad.tolist()
[2.0, 4.0, 6.0]
"""
from __future__ import annotations

import contextlib
import functools
import threading

import numpy as np

from vibetensor.runtime import error, ffi, lib

# -- grad mode --------------------------------------------------------------------------------------


def is_grad_enabled() -> bool:
    return bool(lib.vtrt_is_grad_enabled())


class set_grad_enabled(contextlib.ContextDecorator):
    """Turn recording on or off; as a call it switches at once, as a context it restores."""

    def __init__(self, mode: bool):
        self.prev = is_grad_enabled()
        self.mode = bool(mode)
        lib.vtrt_set_grad_enabled(self.mode)

    def __enter__(self):
        lib.vtrt_set_grad_enabled(self.mode)
        return self

    def __exit__(self, *exc):
        lib.vtrt_set_grad_enabled(self.prev)
        return False


class no_grad(contextlib.ContextDecorator):
    """`with vt.no_grad():` — ops run without recording a graph (also a decorator)."""

    def __enter__(self):
        self.prev = is_grad_enabled()
        lib.vtrt_set_grad_enabled(0)
        return self

    def __exit__(self, *exc):
        lib.vtrt_set_grad_enabled(self.prev)
        return False


class enable_grad(contextlib.ContextDecorator):
    def __enter__(self):
        self.prev = is_grad_enabled()
        lib.vtrt_set_grad_enabled(1)
        return self

    def __exit__(self, *exc):
        lib.vtrt_set_grad_enabled(self.prev)
        return False


# -- callbacks from the engine into Python ----------------------------------------------------------

_callbacks: dict = {}  # handle address -> the handle (keeps the Python object alive)
_pending: list = []    # an exception raised inside a hook or Function.backward, re-raised after


def _keep(obj):
    h = ffi.new_handle(obj)
    _callbacks[int(ffi.cast("uintptr_t", h))] = h
    return h


@ffi.def_extern()
def vt_py_release_callback(ctx, _callbacks=_callbacks, _ffi=ffi):
    # bound as defaults: graphs still alive at interpreter exit are released after module globals
    # have been cleared to None
    _callbacks.pop(int(_ffi.cast("uintptr_t", ctx)), None)


def _borrow(h):
    """A Tensor for a borrowed vt_tensor* (takes its own reference)."""
    from .tensor import _wrap

    lib.vtrt_retain(h)
    return _wrap(h)


def _give(t):
    """A new reference to hand to native code."""
    lib.vtrt_retain(t._h)
    return t._h


def _fail(exc: BaseException) -> int:
    _pending.append(exc)
    msg = f"{type(exc).__name__}: {exc}".encode("utf-8", "replace")
    lib.vtrt_set_error_message(1, msg)
    return 1


@ffi.def_extern()
def vt_py_hook(ctx, grad, replacement):
    try:
        fn = ffi.from_handle(ctx)
        out = fn(_borrow(grad))
        if out is not None:
            replacement[0] = _give(out)
        return 0
    except BaseException as e:  # noqa: BLE001 - re-raised by backward()
        return _fail(e)


@ffi.def_extern()
def vt_py_function_backward(ctx, grad_outs, nouts, grad_ins, nins):
    try:
        cls, fctx, positions = ffi.from_handle(ctx)
        grads = [_borrow(grad_outs[j]) if grad_outs[j] != ffi.NULL else None for j in range(nouts)]
        if any(g is None for g in grads):  # torch materialises missing output grads as zeros
            from .creation import zeros

            grads = [g if g is not None else zeros(o_shape, dtype=o_dtype, device=o_dev)
                     for g, (o_shape, o_dtype, o_dev) in zip(grads, fctx._out_meta)]
        res = cls.backward(fctx, *grads)
        if not isinstance(res, tuple):
            res = (res,)
        if len(res) != fctx._nargs:
            raise RuntimeError(f"{cls.__name__}.backward returned {len(res)} gradients, expected "
                               f"{fctx._nargs} (one per forward argument)")
        for k, pos in enumerate(positions):
            g = res[pos]
            if g is not None:
                grad_ins[k] = _give(g)
        return 0
    except BaseException as e:  # noqa: BLE001
        return _fail(e)


def _raise():
    if _pending:
        exc = _pending.pop()
        _pending.clear()
        raise exc
    raise error()


# -- backward and grad ---------------------------------------------------------------------------


def _as_list(x):
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [x]


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False):
    """Accumulate d(tensors)/d(leaf) into every leaf's .grad."""
    roots = _as_list(tensors)
    grads = _as_list(grad_tensors) or [None] * len(roots)
    if len(grads) != len(roots):
        raise ValueError(f"backward: {len(roots)} tensors but {len(grads)} gradients")
    if retain_graph is None:
        retain_graph = create_graph
    r = ffi.new("vt_tensor*[]", [t._h for t in roots])
    g = ffi.new("vt_tensor*[]", [x._h if x is not None else ffi.NULL for x in grads])
    _pending.clear()
    outer = getattr(_backward_tls, "queued", None)
    _backward_tls.queued = queued = []
    try:
        if lib.vtrt_backward(r, g, len(roots), bool(retain_graph), bool(create_graph), ffi.NULL, 0,
                             ffi.NULL) != 0:
            _raise()
        while queued:  # a callback may queue another
            queued.pop(0)()
    finally:
        _backward_tls.queued = outer


_backward_tls = threading.local()  # .queued: callbacks of the backward() running on this thread


def queue_callback(fn) -> None:
    """Run fn() once the backward() running on this thread has finished (torch's
    Variable._execution_engine.queue_callback): a tensor hook uses it to act on the final .grad
    of every leaf, as DistributedDataParallel does. Only valid while backward() runs (in a hook)."""
    queued = getattr(_backward_tls, "queued", None)
    if queued is None:
        raise RuntimeError("queue_callback: no backward() is running on this thread (call it from a "
                           "tensor hook)")
    queued.append(fn)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False,
         allow_unused=False):
    """d(outputs)/d(inputs) as a tuple, without touching .grad."""
    from .tensor import _wrap

    outs = _as_list(outputs)
    ins = _as_list(inputs)
    gos = _as_list(grad_outputs) or [None] * len(outs)
    if retain_graph is None:
        retain_graph = create_graph
    r = ffi.new("vt_tensor*[]", [t._h for t in outs])
    g = ffi.new("vt_tensor*[]", [x._h if x is not None else ffi.NULL for x in gos])
    i = ffi.new("vt_tensor*[]", [t._h for t in ins])
    res = ffi.new("vt_tensor*[]", len(ins))
    _pending.clear()
    if lib.vtrt_backward(r, g, len(outs), bool(retain_graph), bool(create_graph), i, len(ins),
                         res) != 0:
        _raise()
    result = []
    for k in range(len(ins)):
        if res[k] == ffi.NULL:
            if not allow_unused:
                raise RuntimeError(f"grad: input {k} was not used in the graph of the outputs "
                                   f"(pass allow_unused=True to get None)")
            result.append(None)
        else:
            result.append(_wrap(res[k]))
    return tuple(result)


# -- user-defined functions --------------------------------------------------------------------


class FunctionCtx:
    def save_for_backward(self, *tensors):
        self._saved = tensors

    @property
    def saved_tensors(self):
        return getattr(self, "_saved", ())


class Function:
    """Subclass with static `forward(ctx, *args)` and `backward(ctx, *grad_outputs)`; call
    `MyFn.apply(*args)`. backward returns one gradient (or None) per forward argument."""

    @staticmethod
    def forward(ctx, *args):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, *grads):
        raise NotImplementedError

    @classmethod
    def apply(cls, *args):
        from .tensor import Tensor

        ctx = FunctionCtx()
        ctx.needs_input_grad = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
        with no_grad():
            out = cls.forward(ctx, *args)
        outs = out if isinstance(out, tuple) else (out,)
        if is_grad_enabled() and any(ctx.needs_input_grad):
            positions = [k for k, a in enumerate(args) if isinstance(a, Tensor)]
            tensors = [args[k] for k in positions]
            ctx._nargs = len(args)
            ctx._out_meta = [(o.shape, o.dtype, o.device) for o in outs]
            h = _keep((cls, ctx, positions))
            ins = ffi.new("vt_tensor*[]", [t._h for t in tensors] or 1)
            os_ = ffi.new("vt_tensor*[]", [o._h for o in outs])
            if lib.vtrt_record_custom(ins, len(tensors), os_, len(outs), lib.vt_py_function_backward,
                                      h, lib.vt_py_release_callback, cls.__name__.encode()) != 0:
                raise error()
        return out


# -- gradcheck ------------------------------------------------------------------------------------


class GradcheckError(AssertionError):
    pass


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True):
    """Compare autograd's Jacobian of `fn` at `inputs` with central finite differences (float64).
    Every input that requires grad is checked; returns True or raises GradcheckError."""
    from .tensor import Tensor

    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    diff = [t for t in inputs if isinstance(t, Tensor) and t.requires_grad]
    if not diff:
        raise ValueError("gradcheck: no input requires grad")
    for t in diff:
        if t.dtype.name != "float64":
            raise TypeError(f"gradcheck: inputs must be float64, got {t.dtype}")

    def outputs():
        out = fn(*inputs)
        return [o for o in (out if isinstance(out, (tuple, list)) else (out,))
                if isinstance(o, Tensor) and o.dtype.is_floating_point]

    outs = outputs()
    # analytical: one vector-Jacobian product per output element
    analytical = [np.zeros((t.numel(), sum(o.numel() for o in outs))) for t in diff]
    col = 0
    from .creation import zeros_like

    for o in outs:
        flat_n = o.numel()
        for j in range(flat_n):
            seed = zeros_like(o)
            seed.numpy().reshape(-1)[j] = 1.0
            if not o.requires_grad:
                col += 1
                continue
            gs = grad(o, diff, grad_outputs=seed, retain_graph=True, allow_unused=True)
            for k, gk in enumerate(gs):
                if gk is not None:
                    analytical[k][:, col] = gk.numpy().reshape(-1)
            col += 1
    # numerical: perturb each input element in place through its numpy view
    numerical = [np.zeros_like(a) for a in analytical]
    with no_grad():
        for k, t in enumerate(diff):
            view = t.numpy().reshape(-1) if t.is_contiguous() else None
            if view is None:
                raise ValueError("gradcheck: inputs must be contiguous")
            for i in range(view.size):
                orig = view[i]
                view[i] = orig + eps
                plus = np.concatenate([o.numpy().reshape(-1).copy() for o in outputs()] or [[]])
                view[i] = orig - eps
                minus = np.concatenate([o.numpy().reshape(-1).copy() for o in outputs()] or [[]])
                view[i] = orig
                numerical[k][i, :] = (plus - minus) / (2 * eps)
    for k, (a, n) in enumerate(zip(analytical, numerical)):
        if not np.allclose(a, n, atol=atol, rtol=rtol):
            idx = np.unravel_index(np.argmax(np.abs(a - n)), a.shape)
            msg = (f"gradcheck: Jacobian mismatch for input {k} (shape {diff[k].shape}): "
                   f"max |analytical - numerical| = {np.abs(a - n).max():.3e} at {idx} "
                   f"(analytical {a[idx]:.6g}, numerical {n[idx]:.6g})")
            if raise_exception:
                raise GradcheckError(msg)
            return False
    return True


# -- Tensor's autograd methods (installed on Tensor by vibetensor/__init__) -----------------------


class GradFn:
    """What `t.grad_fn` shows: the op (or Function) that produced t."""

    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"<{self.name} backward>"


def _get_requires_grad(self) -> bool:
    return bool(lib.vtrt_requires_grad(self._h))


def _set_requires_grad(self, value: bool) -> None:
    if lib.vtrt_set_requires_grad(self._h, bool(value)) != 0:
        raise error()


def requires_grad_(self, requires_grad: bool = True):
    _set_requires_grad(self, requires_grad)
    return self


def _get_grad(self):
    from .tensor import _wrap

    h = lib.vtrt_grad(self._h)
    return None if h == ffi.NULL else _wrap(h)


def _set_grad(self, value) -> None:
    if lib.vtrt_set_grad(self._h, value._h if value is not None else ffi.NULL) != 0:
        raise error()


def _is_leaf(self) -> bool:
    return bool(lib.vtrt_is_leaf(self._h))


def _grad_fn(self):
    name = ffi.string(lib.vtrt_grad_fn_name(self._h)).decode()
    return GradFn(name) if name else None


def _backward(self, gradient=None, retain_graph=None, create_graph=False):
    backward(self, gradient, retain_graph, create_graph)


def detach(self):
    from .tensor import _wrap

    h = lib.vtrt_detach(self._h)
    if h == ffi.NULL:
        raise error()
    return _wrap(h)


def register_hook(self, hook):
    """hook(grad) -> Tensor or None, run when this tensor's gradient is computed."""
    h = _keep(hook)
    if lib.vtrt_register_hook(self._h, lib.vt_py_hook, h, lib.vt_py_release_callback) != 0:
        _callbacks.pop(int(ffi.cast("uintptr_t", h)), None)
        raise error()
    return hook


def retain_grad(self):
    if lib.vtrt_retain_grad(self._h) != 0:
        raise error()


METHODS = {
    "requires_grad": property(_get_requires_grad, _set_requires_grad),
    "requires_grad_": requires_grad_,
    "grad": property(_get_grad, _set_grad),
    "is_leaf": property(_is_leaf),
    "grad_fn": property(_grad_fn),
    "backward": _backward,
    "detach": detach,
    "register_hook": register_hook,
    "retain_grad": retain_grad,
}
