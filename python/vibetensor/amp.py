"""Automatic mixed precision: `vt.autocast` and `vt.amp.GradScaler`, with torch's policy.

Inside `with vt.autocast("cuda", dtype=vt.bfloat16):` an op called from Python gets its floating
tensor arguments on that device cast first, by the op's class:
- low precision (matmul, bmm, addmm, linear, attention): float32 -> the autocast dtype;
- float32 (exp/log/pow and friends, softmax, log_softmax, norms, losses, sum, cumsum,
  logsumexp): 16-bit floats -> float32, so reductions and normalisations keep their range;
- widest (cat, where, index_put): mixed floating inputs -> the widest of them;
- low-precision output (add_layer_norm): inputs are not cast (it reads a float32 residual stream
  and a 16-bit branch output as they are, sum and statistics in float32); its normalised output,
  whose consumer is a low-precision matmul, is produced in the autocast dtype unless out_dtype is
  given: the same numbers as a float32 layer_norm followed by a cast, without the cast's pass;
- every other op runs in the dtypes it is given.
Casts are ops with backward rules, so gradients flow back to the float32 parameters. A leaf that
requires grad (a weight) is cast once per autocast region, not once per use. Backward is not
affected (the C++ backward rules never pass through here), as in torch.

The hook costs the op call one global lookup while no thread uses autocast. The state is
per thread, like torch's.

`GradScaler` scales a float16 loss so small gradients survive, then unscales before the
optimizer step and skips steps whose gradients overflowed (torch.amp.GradScaler's API).
"""
from __future__ import annotations

import functools
import threading

from vibetensor.registry import ops as _registry_ops
from vibetensor.runtime import dtypes as T

LOW_PRECISION = frozenset({"core::matmul", "core::bmm", "core::addmm", "core::linear",
                           "attention::sdpa"})
FLOAT32 = frozenset({"core::exp", "core::log", "core::log1p", "core::rsqrt", "core::pow",
                     "core::pow_scalar", "core::softplus", "core::softmax", "core::log_softmax",
                     "core::layer_norm", "core::rms_norm", "core::norm", "core::cross_entropy",
                     "core::cross_entropy_fused", "core::mse_loss", "core::sum", "core::cumsum",
                     "core::logsumexp"})
WIDEST = frozenset({"core::cat", "core::where", "core::index_put", "core::index_put_"})
LOW_PRECISION_OUT = {"core::add_layer_norm": 6}  # op -> the index of its out_dtype argument

_SIXTEEN = (T.float16, T.bfloat16)
_tls = threading.local()     # .stack: [(device_type, dtype, enabled, cache)], innermost last
_users = [0]                 # autocast regions open on any thread (the hook is installed while > 0)
_users_lock = threading.Lock()


def _state():
    stack = getattr(_tls, "stack", None)
    return stack[-1] if stack else None


def is_autocast_enabled(device_type: str = "cuda") -> bool:
    s = _state()
    return bool(s and s[2] and s[0] == device_type)


def get_autocast_dtype(device_type: str = "cuda"):
    s = _state()
    return s[1] if s and s[0] == device_type else _default_dtype(device_type)


def _default_dtype(device_type):
    return T.float16 if device_type == "cuda" else T.bfloat16


class autocast:
    """`with vt.autocast("cuda", dtype=vt.bfloat16):` (also a decorator). `enabled=False` turns it
    off inside an enclosing region; `cache_enabled=False` re-casts weights at every use."""

    def __init__(self, device_type: str = "cuda", dtype=None, enabled: bool = True,
                 cache_enabled: bool = True):
        if device_type not in ("cuda", "cpu"):
            raise ValueError(f"autocast: device_type must be 'cuda' or 'cpu', got {device_type!r}")
        dtype = _default_dtype(device_type) if dtype is None else T.get_dtype(dtype)
        if dtype not in _SIXTEEN:
            raise ValueError(f"autocast: dtype must be float16 or bfloat16, got {dtype}")
        self.device_type, self.dtype, self.enabled = device_type, dtype, bool(enabled)
        self.cache_enabled = bool(cache_enabled)

    def __enter__(self):
        stack = getattr(_tls, "stack", None)
        if stack is None:
            stack = _tls.stack = []
        outer = stack[-1] if stack else None
        # nested regions share the weight cache; it is dropped when the outermost one exits
        cache = outer[3] if outer is not None and outer[3] is not None else (
            {} if self.cache_enabled else None)
        stack.append((self.device_type, self.dtype, self.enabled, cache))
        with _users_lock:
            _users[0] += 1
            _registry_ops.call_hook = _cast_arguments
        return self

    def __exit__(self, *exc):
        _tls.stack.pop()
        with _users_lock:
            _users[0] -= 1
            if _users[0] == 0:
                _registry_ops.call_hook = None
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapped(*args, **kwargs):
            with autocast(self.device_type, self.dtype, self.enabled, self.cache_enabled):
                return fn(*args, **kwargs)
        return wrapped


def _eligible(x, device_type):
    return hasattr(x, "_h") and x.dtype.is_floating_point and x.device.type == device_type


def _cast(x, dtype, cache):
    if x.dtype is dtype:
        return x
    leaf_weight = cache is not None and x.requires_grad and x.is_leaf
    if leaf_weight:
        hit = cache.get(id(x))
        if hit is not None and hit[0] is x and hit[1].dtype is dtype:
            return hit[1]
    y = x.to(dtype)
    if leaf_weight:
        cache[id(x)] = (x, y)  # holds x: its id is not reused while the entry lives
    return y


def _cast_arguments(name, args, kwargs):
    """The registry's call hook: (args, kwargs) with autocast's casts applied."""
    s = _state()
    if s is None or not s[2]:
        return args, kwargs
    device_type, low, _, cache = s
    if name in LOW_PRECISION:
        def f(x):
            if _eligible(x, device_type) and x.dtype is not T.float64:
                return _cast(x, low, cache)
            return x
    elif name in FLOAT32:
        def f(x):
            if _eligible(x, device_type) and x.dtype in _SIXTEEN:
                return _cast(x, T.float32, cache)
            return x
    elif name in LOW_PRECISION_OUT:
        i = LOW_PRECISION_OUT[name]
        if not (args and _eligible(args[0], device_type)) or args[0].dtype is T.float64:
            return args, kwargs  # float64 is never lowered
        if len(args) > i:
            if args[i] is None:
                args = args[:i] + (low,) + args[i + 1:]
        elif kwargs.get("out_dtype") is None:
            kwargs = {**kwargs, "out_dtype": low}
        return args, kwargs
    elif name in WIDEST:
        flat = [x for x in list(args) + list(kwargs.values())
                for x in (x if isinstance(x, (list, tuple)) else (x,))]
        kinds = {x.dtype for x in flat if _eligible(x, device_type)}
        if len(kinds) < 2:
            return args, kwargs
        widest = max(kinds, key=lambda d: d.itemsize)
        if widest.itemsize == 2:  # float16 with bfloat16: neither holds the other
            widest = T.float32

        def f(x):
            return _cast(x, widest, cache) if _eligible(x, device_type) else x
    else:
        return args, kwargs

    def g(x):
        if isinstance(x, (list, tuple)):
            return type(x)(f(y) for y in x)
        return f(x)

    return tuple(g(a) for a in args), {k: g(v) for k, v in kwargs.items()}


class GradScaler:
    """Loss scaling for float16 training (torch.amp.GradScaler's API):

        scaler = vt.amp.GradScaler()
        with vt.autocast("cuda", dtype=vt.float16):
            loss = model(x)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)            # optional, e.g. before clip_grad_norm_
        scaler.step(opt)                # skipped when a gradient is inf/nan
        scaler.update()

    The scale lives on the host; `step` reads one flag from the device (one sync per step, as
    torch's does to decide whether to step)."""

    def __init__(self, device: str = "cuda", init_scale: float = 2.0 ** 16,
                 growth_factor: float = 2.0, backoff_factor: float = 0.5,
                 growth_interval: int = 2000, enabled: bool = True):
        if not growth_factor > 1.0:
            raise ValueError(f"GradScaler: growth_factor must be > 1, got {growth_factor}")
        if not 0.0 < backoff_factor < 1.0:
            raise ValueError(f"GradScaler: backoff_factor must be in (0, 1), got {backoff_factor}")
        self.device = device
        self._scale = float(init_scale)
        self._growth_factor, self._backoff_factor = float(growth_factor), float(backoff_factor)
        self._growth_interval = int(growth_interval)
        self._growth_tracker = 0
        self._enabled = bool(enabled)
        self._per_optimizer = {}   # id(optimizer) -> {"unscaled": bool, "found_inf": bool}

    def is_enabled(self) -> bool:
        return self._enabled

    def get_scale(self) -> float:
        return self._scale if self._enabled else 1.0

    def scale(self, outputs):
        if not self._enabled:
            return outputs
        if isinstance(outputs, (list, tuple)):
            return type(outputs)(self.scale(o) for o in outputs)
        return outputs * self._scale

    def _opt_state(self, optimizer):
        return self._per_optimizer.setdefault(id(optimizer), {"unscaled": False, "found_inf": False})

    def unscale_(self, optimizer) -> None:
        if not self._enabled:
            return
        st = self._opt_state(optimizer)
        if st["unscaled"]:
            raise RuntimeError("GradScaler.unscale_() has already been called on this optimizer "
                               "since the last update()")
        inv = 1.0 / self._scale
        flag = None
        for group in optimizer.param_groups:
            for p in group["params"]:
                g = p.grad
                if g is None:
                    continue
                g.mul_(inv)
                # x * 0 is 0 for finite x and nan for inf/nan: one sum per gradient finds both
                probe = (g * 0.0).sum(dtype=T.float32) if g.dtype is not T.float32 else (g * 0.0).sum()
                flag = probe if flag is None else flag + probe
        st["found_inf"] = flag is not None and not (flag.item() == 0.0)
        st["unscaled"] = True

    def step(self, optimizer, *args, **kwargs):
        if not self._enabled:
            return optimizer.step(*args, **kwargs)
        st = self._opt_state(optimizer)
        if not st["unscaled"]:
            self.unscale_(optimizer)
        if st["found_inf"]:
            return None
        return optimizer.step(*args, **kwargs)

    def update(self, new_scale=None) -> None:
        if not self._enabled:
            return
        if new_scale is not None:
            self._scale = float(new_scale.item() if hasattr(new_scale, "item") else new_scale)
        else:
            found = any(st["found_inf"] for st in self._per_optimizer.values())
            if found:
                self._scale *= self._backoff_factor
                self._growth_tracker = 0
            else:
                self._growth_tracker += 1
                if self._growth_tracker == self._growth_interval:
                    self._scale *= self._growth_factor
                    self._growth_tracker = 0
        self._per_optimizer.clear()

    def state_dict(self) -> dict:
        return {"scale": self._scale, "growth_factor": self._growth_factor,
                "backoff_factor": self._backoff_factor, "growth_interval": self._growth_interval,
                "_growth_tracker": self._growth_tracker} if self._enabled else {}

    def load_state_dict(self, state: dict) -> None:
        self._scale = float(state["scale"])
        self._growth_factor = float(state["growth_factor"])
        self._backoff_factor = float(state["backoff_factor"])
        self._growth_interval = int(state["growth_interval"])
        self._growth_tracker = int(state["_growth_tracker"])
