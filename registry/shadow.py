"""`vt.ops.shadow(op, provider)`: run a second provider beside the active one and compare.

    with vt.ops.shadow("attention::sdpa", "composed") as sh:
        model(x)                       # every sdpa call also runs `composed` on copies of its inputs
    print(sh.summary())                # calls, divergent calls, worst abs/rel error
    sh.divergences                     # the records that were outside the dtype's tolerance

Also a decorator (`@vt.ops.shadow(...)`). The caller always gets the active provider's result;
the shadow runs afterwards on copies of the inputs taken before the active call (so in-place ops
see the same values), without autograd, with the shadow provider pinned for that one call.
`strict=True` raises ShadowDivergence at the first divergent call; `rtol`/`atol` override the
per-dtype tolerance of registry/compare.py.

What it sees: every call through an op handle (vt.ops.<ns>.<op>, vt.ops.Op, and the frontend
functions and methods built on them: matmul, softmax, F.scaled_dot_product_attention, ...). What it
does not see: the Tensor arithmetic operators' direct fast path (a + b), and ops a kernel calls
through the host (a composed provider's inner matmuls). Random ops diverge unless both providers
draw the same numbers. While a shadow is active the op handles' call goes through one wrapper
(installed on the Op class, removed when the last shadow exits), so it costs nothing otherwise.
Pins are process-wide: shadow the op from one thread at a time.
"""
from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass

from . import compare as _cmp
from . import ops as _ops


class ShadowDivergence(AssertionError):
    """A shadowed call whose shadow provider's result differs from the active provider's."""


@dataclass
class Record:
    op: str
    active: str          # the provider that served the call
    shadow: str          # the provider run beside it
    device: str
    inputs: str          # shapes and dtypes of the tensor arguments
    ok: bool
    max_abs: float
    max_rel: float
    why: str             # what differs, when not ok ("" otherwise)
    active_s: float      # seconds of the active call
    shadow_s: float      # seconds of the shadow call

    def __str__(self):
        state = "ok" if self.ok else f"DIVERGED ({self.why})"
        return (f"{self.op} {self.inputs} on {self.device}: {self.active} vs {self.shadow}: {state}, "
                f"max abs {self.max_abs:.3g}, max rel {self.max_rel:.3g}")


_lock = threading.Lock()
_watchers: dict = {}           # op name -> [shadow, ...] (innermost last)
_original_call = [None]        # Op.__call__ while no shadow is active
_busy = threading.local()      # set while a shadow call runs: it must not shadow itself


def _call_device(args, kwargs) -> str:
    for v in list(args) + list(kwargs.values()):
        if _cmp.is_tensor(v):
            return v.device.type
        if isinstance(v, (list, tuple)):
            for x in v:
                if _cmp.is_tensor(x):
                    return x.device.type
    return "cpu"


def _copy(v):
    """A detached copy with the same strides (in-place active calls must not change it)."""
    if isinstance(v, list):
        return [_copy(x) for x in v]
    if isinstance(v, tuple):
        return tuple(_copy(x) for x in v)
    if not _cmp.is_tensor(v):
        return v
    v = v.detach()
    if v.is_contiguous():
        return v.clone()
    span = v.storage_offset() + 1 + sum((n - 1) * s for n, s in zip(v.shape, v.stride()))
    return v.as_strided([span], [1], 0).clone().as_strided(v.shape, v.stride(), v.storage_offset())


def _describe(args, kwargs) -> str:
    parts = []
    for v in list(args) + list(kwargs.values()):
        for x in (v if isinstance(v, (list, tuple)) else [v]):
            if _cmp.is_tensor(x):
                parts.append(f"{tuple(x.shape)}:{x.dtype.name}")
    return "[" + ", ".join(parts) + "]"


def _shadowed_call(self, *args, **kwargs):
    original = _original_call[0]
    watchers = _watchers.get(self.name)
    if not watchers or getattr(_busy, "on", False):
        return original(self, *args, **kwargs)
    device = _call_device(args, kwargs)
    copies = [(_copy(args), _copy(kwargs)) for _ in watchers]
    active = next((p.name for p in _ops.providers(self.name, device) if p.active), "?")
    t0 = time.perf_counter()
    result = original(self, *args, **kwargs)
    active_s = time.perf_counter() - t0
    for sh, (a, k) in zip(list(watchers), copies):
        sh._run(self, original, device, active, result, active_s, a, k)
    return result


def _install(sh) -> None:
    with _lock:
        if _original_call[0] is None:
            _original_call[0] = _ops.Op.__call__
            _ops.Op.__call__ = _shadowed_call
        _watchers.setdefault(sh.op, []).append(sh)


def _uninstall(sh) -> None:
    with _lock:
        lst = _watchers.get(sh.op, [])
        if sh in lst:
            lst.remove(sh)
        if not lst:
            _watchers.pop(sh.op, None)
        if not _watchers and _original_call[0] is not None:
            _ops.Op.__call__ = _original_call[0]
            _original_call[0] = None


class shadow(contextlib.ContextDecorator):
    """Run `provider` beside the active provider of `op` on every call, compare, keep records."""

    def __init__(self, op: str, provider: str, *, device: str | None = None, strict: bool = False,
                 rtol: float | None = None, atol: float | None = None, max_records: int = 10000):
        self.op = op.name if isinstance(op, _ops.Op) else str(op)
        handle = _ops.Op(self.op)  # AttributeError names an unknown op
        devices = [device] if device else ["cpu", "cuda"]
        known = {}
        for d in devices:
            try:
                known[d] = [p.name for p in _ops.providers(handle, d)]
            except Exception:
                known[d] = []
        if not any(provider in names for names in known.values()):
            listing = "; ".join(f"{d}: {', '.join(n) or 'none'}" for d, n in known.items())
            raise ValueError(f"shadow: op '{self.op}' has no provider '{provider}' "
                             f"(providers: {listing})")
        self.provider, self.device, self.strict = provider, device, strict
        self.rtol, self.atol, self.max_records = rtol, atol, max_records
        self.records: list[Record] = []
        self.calls = 0        # shadowed calls, including those past max_records
        self.diverged = 0

    # -- the context ---------------------------------------------------------------------------
    def __enter__(self):
        _install(self)
        return self

    def __exit__(self, *exc):
        _uninstall(self)
        return False

    def _tol(self):
        if self.rtol is None and self.atol is None:
            return None
        return {k: (self.rtol if self.rtol is not None else r, self.atol if self.atol is not None else a)
                for k, (r, a) in _cmp.TOL.items()}

    def _run(self, op, original, device, active, result, active_s, args, kwargs):
        if self.device is not None and device != self.device:
            return
        if self.provider not in [p.name for p in _ops.providers(op, device)]:
            return  # this provider has no kernel on the call's device
        import vibetensor as vt

        _busy.on = True
        try:
            with vt.no_grad(), _ops.use(self.op, self.provider, device):
                t0 = time.perf_counter()
                theirs = original(op, *args, **kwargs)
                shadow_s = time.perf_counter() - t0
        finally:
            _busy.on = False
        d = _cmp.diff(result, theirs, self._tol())
        self.calls += 1
        rec = Record(self.op, active, self.provider, device, _describe(args, kwargs), d.ok,
                     d.max_abs, d.max_rel, d.why, active_s, shadow_s)
        if not d.ok:
            self.diverged += 1
        if len(self.records) < self.max_records:
            self.records.append(rec)
        if not d.ok and self.strict:
            raise ShadowDivergence(f"vt.ops.shadow: {rec}")

    # -- results -------------------------------------------------------------------------------
    @property
    def divergences(self) -> list:
        return [r for r in self.records if not r.ok]

    def summary(self) -> str:
        worst_abs = max((r.max_abs for r in self.records), default=0.0)
        worst_rel = max((r.max_rel for r in self.records), default=0.0)
        a = sum(r.active_s for r in self.records)
        s = sum(r.shadow_s for r in self.records)
        ratio = f", shadow/active time {s / a:.2f}x" if a > 0 else ""
        lines = [f"shadow {self.op}: {self.provider} beside the active provider: {self.calls} calls, "
                 f"{self.diverged} diverged; max abs {worst_abs:.3g}, max rel {worst_rel:.3g}{ratio}"]
        lines += [f"  {r}" for r in self.divergences[:10]]
        return "\n".join(lines)


__all__ = ["shadow", "Record", "ShadowDivergence"]
