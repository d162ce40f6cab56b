"""The checks of `vt-ops test`, run in its child process (`python -m
vibetensor.registry.opcheck_checks PACK --start N`): the plan of units and what each check does.

What it is:
- `plan(pack)`: one unit per (op, provider, device, check), from the pack's manifest, in a fixed
  order (a fresh child after a crash rebuilds the same plan and starts at the next unit). An op the
  pack defines with no kernel on a device (views, compositions) is a unit with provider None.
- The checks (docs/OPCHECK.md has the table): schema, meta, gradcheck, providers, devices, graph,
  autocast, bad_input. Each takes the op's sample calls (registry/samples.py), runs them with the
  provider pinned on fresh copies of the inputs, and passes, fails (Failure, saying what differs)
  or skips (Skip, saying why). A provider that declines a call (NotImplementedError) is not
  checked on it.
- `child_main`: loads the pack, sends the plan, then "begin" and "result" lines per unit on
  stdout (prefixed, so a kernel's own printing does not confuse the parent).

What it is not: the process supervision and the report (registry/opcheck.py, opcheck_report.py).
Imports the frontend (tensors, autograd, autocast): it only ever runs in the child.
"""
from __future__ import annotations

import ast
import json
import sys
import time
from dataclasses import asdict, dataclass

from . import compare as _cmp
from .opcheck_report import Result

PREFIX = "@@opcheck "  # marks the protocol lines on the child's stdout
SEED = 1234


class CheckerError(Exception):
    """The checker could not start: the pack does not load, or its samples file is broken."""


# -- the schema ----------------------------------------------------------------------------------

def _split_top(text: str) -> list:
    """Split at commas outside brackets and quotes."""
    parts, depth, quote, cur = [], 0, None, []
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    if "".join(cur).strip():
        parts.append("".join(cur).strip())
    return parts


_TYPES = {"Tensor", "Tensor[]", "int", "int[]", "float", "bool", "str", "Scalar", "ScalarType",
          "Device"}


def parse_schema(schema: str) -> dict:
    """`ns::name(Type arg=default, *, ...) -> (Type, ...)` -> {name, args: [{type, name, optional,
    kwonly, default?}], returns: [types]}. ValueError says what is malformed."""
    head, sep, rets = schema.partition("->")
    if not sep:
        raise ValueError(f"schema {schema!r} has no '->'")
    head = head.strip()
    if "(" not in head or not head.endswith(")"):
        raise ValueError(f"schema {schema!r}: expected name(arguments)")
    name, args_text = head[:head.index("(")].strip(), head[head.index("(") + 1:-1]
    if "::" not in name:
        raise ValueError(f"schema {schema!r}: op name {name!r} has no namespace")
    args, kwonly = [], False
    for part in _split_top(args_text):
        if part == "*":
            kwonly = True
            continue
        decl, eq, default = part.partition("=")
        bits = decl.split()
        if len(bits) != 2:
            raise ValueError(f"schema {schema!r}: argument {part!r} is not 'Type name'")
        typ, arg = bits
        optional = typ.endswith("?")
        base = typ.rstrip("?")
        if base not in _TYPES:
            raise ValueError(f"schema {schema!r}: unknown type {typ!r} of argument {arg!r}")
        entry = {"type": base, "name": arg, "optional": optional, "kwonly": kwonly}
        if eq:
            try:
                entry["default"] = ast.literal_eval(default.strip())
            except (ValueError, SyntaxError):
                raise ValueError(f"schema {schema!r}: default of {arg!r} ({default!r}) is not a "
                                 f"literal") from None
        args.append(entry)
    rets = rets.strip()
    if rets.startswith("(") and rets.endswith(")"):
        rets = rets[1:-1]
    returns = [r.strip() for r in _split_top(rets)]
    for r in returns:
        if r.rstrip("?") not in _TYPES:
            raise ValueError(f"schema {schema!r}: unknown return type {r!r}")
    return {"name": name, "args": args, "returns": returns}


# -- the plan (built identically in every child) ------------------------------------------------

@dataclass
class Unit:
    op: str
    provider: str | None
    device: str | None
    check: str


def _claims_graph(caps: dict, op: str, provider: str, device: str) -> bool:
    """Whether the pack declares the provider CUDA-graph safe for this op (capabilities,
    docs/LAYOUT.md)."""
    from .capabilities import for_kernel

    return bool(for_kernel(caps or {}, op, provider, device).get("cuda_graphs"))


def _autocast_class(op: str):
    from vibetensor import amp

    for name in ("LOW_PRECISION", "FLOAT32", "WIDEST"):
        if op in getattr(amp, name, ()):
            return name
    return None


def _cuda_available() -> bool:
    import vibetensor as vt

    try:
        return bool(vt.cuda.is_available())
    except Exception:
        return False


def plan(pack, devices=None) -> list:
    """The units for a loaded pack, in a fixed order. `devices` narrows (default: cpu, and cuda
    when a GPU is present); kernels for a device that is absent get one 'devices' skip each."""
    man = pack.manifest
    ops = list(man.get("ops", []))
    for k in man.get("kernels", []):
        if k["op"] not in ops:
            ops.append(k["op"])
    present = ["cpu"] + (["cuda"] if _cuda_available() else [])
    wanted = present if devices is None else [d for d in devices if d in present]
    units = []
    for op in ops:
        units.append(Unit(op, None, None, "schema"))
        kernels = [k for k in man.get("kernels", []) if k["op"] == op]
        kernels.sort(key=lambda k: (k["device"] != "cpu", k["device"], -k["priority"], k["provider"]))
        # an op its pack defines with no kernel on a device is served by its meta step alone
        # (views, compositions of other ops): checked as provider None there
        rows = [(k["provider"], k["device"]) for k in kernels]
        if op in man.get("ops", []):
            rows += [(None, d) for d in wanted if not any(k["device"] == d for k in kernels)]
        for p, d in rows:
            if d not in present:  # reported as skipped: no such device here
                units.append(Unit(op, p, d, "devices"))
                if d == "cuda" and p is not None and _claims_graph(man.get("capabilities"), op, p, d):
                    units.append(Unit(op, p, d, "graph"))
                continue
            if d not in wanted:
                continue
            units.append(Unit(op, p, d, "meta"))
            if d == "cpu":
                units.append(Unit(op, p, d, "gradcheck"))
            if p is not None:
                units.append(Unit(op, p, d, "providers"))
            if d != "cpu":
                units.append(Unit(op, p, d, "devices"))
            if d == "cuda" and p is not None and _claims_graph(man.get("capabilities"), op, p, d):
                units.append(Unit(op, p, d, "graph"))
            if _autocast_class(op):
                units.append(Unit(op, p, d, "autocast"))
            units.append(Unit(op, p, d, "bad_input"))
    return units


# -- running one unit (in the child) ------------------------------------------------------------


class Skip(Exception):
    """The check does not apply; the message says why."""


class Failure(Exception):
    """The check ran and found a problem; the message says what."""


class Declined(Exception):
    """The pinned provider declined a call (NotImplementedError, VT_ERR_NOT_IMPL: the dispatcher
    would hand it to the next provider): that call is not checked against this provider."""


class _Ctx:
    """What the checks share in the child: the pack, its samples, the backward and random sets."""

    def __init__(self, pack, samples_file=None):
        import vibetensor as vt

        from . import loader, samples

        self.vt, self.pack = vt, pack
        self.maker = samples.Maker()
        self.source = samples.source(pack.name, pack.path, self.maker, samples_file)
        self.backward, self.random, self.data_dependent = set(), set(), set()
        for p in loader.packs():
            for entry in p.manifest.get("backward", []):
                self.backward.add(entry if isinstance(entry, str) else entry.get("op"))
        from . import samples_attention, samples_core

        for mod in (samples_core, samples_attention):
            self.random |= set(getattr(mod, "RANDOM", ()))
            self.data_dependent |= set(getattr(mod, "DATA_DEPENDENT", ()))
        for extra in self.source.extra_modules:
            self.random |= set(getattr(extra, "RANDOM", ()))
            self.data_dependent |= set(getattr(extra, "DATA_DEPENDENT", ()))
        self._calls: dict = {}

    def calls(self, op):
        """The op's sample calls (built once, on cpu); Skip when it has none."""
        if op not in self._calls:
            try:
                self._calls[op] = self.source.calls(op, self.maker)
            except Exception as e:  # a samples table that breaks is a failure of that op
                raise Failure(f"building the sample calls failed: {type(e).__name__}: {e}") from e
        made = self._calls[op]
        if made is None:
            raise Skip("no sample (see 'not covered')")
        return made


def _is_tensor(v) -> bool:
    return hasattr(v, "_h") and hasattr(v, "shape")


def _fresh(v):
    """A copy of a sample tensor with its strides (in-place ops must not change the sample)."""
    if not _is_tensor(v):
        return v
    if v.is_contiguous():
        return v.clone()
    span = v.storage_offset() + 1 + sum((n - 1) * s for n, s in zip(v.shape, v.stride()))
    base = v.as_strided([span], [1], 0).clone()
    return base.as_strided(v.shape, v.stride(), v.storage_offset())


def _outputs(r) -> list:
    return list(r) if isinstance(r, tuple) else [r]


def _invoke(ctx, op, call, provider, device, seed=True):
    """Run `call` (cpu sample) on `device` with `provider` pinned; fresh copies of its tensors."""
    from . import ops as _ops

    vt = ctx.vt
    c = call.map(_fresh).on(device)
    if seed:
        vt.manual_seed(SEED)
    with _pinned(op, provider, device):
        try:
            return _ops.Op(op)(*c.args, **c.kwargs)
        except NotImplementedError as e:
            if provider is None or device == "meta":
                raise
            raise Declined(f"{provider}: {e}") from None


def _tally(n: int, declined: list, none_reason: str, detail: str) -> str:
    """A check's detail, or Skip when no call was checked (every one declined, or none applied)."""
    if n == 0:
        if declined:
            raise Skip(f"the provider declined every sample call ({declined[0]})")
        raise Skip(none_reason)
    if declined:
        detail += f"; {len(declined)} calls declined ({declined[0]})"
    return detail


def _pinned(op, provider, device):
    """Pin `provider` for the block (nothing to pin for an op served by its meta step alone)."""
    import contextlib

    from . import ops as _ops

    if provider is None or device == "meta":
        return contextlib.nullcontext()
    return _ops.use(op, provider, device)


def _compare(got, want, where, values=True) -> float:
    """Outputs equal (registry/compare.py's rule); returns the largest absolute difference."""
    if values:
        d = _cmp.diff(got, want)
        if not d.ok:
            raise Failure(f"{where}: {d.why} (max abs {d.max_abs:.3g}, max rel {d.max_rel:.3g})")
        return d.max_abs
    for k, (a, b) in enumerate(zip(_outputs(got), _outputs(want))):  # shapes and dtypes only
        if _is_tensor(a) and _is_tensor(b) and (tuple(a.shape) != tuple(b.shape) or
                                                a.dtype.name != b.dtype.name):
            raise Failure(f"{where} output {k}: {tuple(a.shape)} {a.dtype.name}, the reference "
                          f"gives {tuple(b.shape)} {b.dtype.name}")
    return 0.0


def check_schema(ctx, u):
    from . import ops as _ops

    op = _ops.Op(u.op)
    text = op.schema
    parsed = parse_schema(text)
    if parsed["name"] != u.op:
        raise Failure(f"schema names {parsed['name']!r}, the op is {u.op!r}")
    if len(parsed["args"]) != len(op.args):
        raise Failure(f"schema lists {len(parsed['args'])} arguments, the runtime {len(op.args)}")
    for a, b in zip(parsed["args"], op.args):
        if a["name"] != b.name or a["optional"] != b.optional or a["kwonly"] != b.kwonly:
            raise Failure(f"argument {a['name']!r}: schema and runtime table disagree "
                          f"(name/optional/keyword-only)")
        if ("default" in a) != b.has_default or a.get("default") != b.default:
            raise Failure(f"argument {a['name']!r}: default {a.get('default')!r} in the schema, "
                          f"{b.default!r} in the runtime table")
    if len(parsed["returns"]) != op.nouts and not (parsed["returns"] == [""] and op.nouts == 0):
        raise Failure(f"schema returns {len(parsed['returns'])} values, the runtime {op.nouts}")
    for p in ctx.vt.ops.packs():
        declared = p.manifest.get("schemas", {}).get(u.op)
        if declared is not None and declared != text:
            raise Failure(f"pack {p.name}'s manifest says {declared!r}, the library {text!r}")
    return f"{len(op.args)} arguments, {op.nouts} outputs"


def check_meta(ctx, u):
    n, declined = 0, []
    from .samples import DEV, tensors_of

    for call in ctx.calls(u.op):
        try:
            n += _meta_call(ctx, u, call, DEV, tensors_of)
        except Declined as e:
            declined.append(str(e))
    return _tally(n, declined, "no sample places the op on a device (no tensor or device argument)",
                  f"{n} calls")


def _meta_call(ctx, u, call, DEV, tensors_of) -> int:
    """1 when the call was checked, 0 when it does not apply; Failure when meta and compute differ."""
    has_dev = []
    call.map(lambda v: has_dev.append(1) if v is DEV else None)
    if not tensors_of(call) and not has_dev:
        return 0  # nothing places it on a device: meta would run the cpu compute
    if u.op in ctx.data_dependent:
        _invoke(ctx, u.op, call, u.provider, u.device)
        try:
            _invoke(ctx, u.op, call, None, "meta")
        except NotImplementedError as e:
            if u.op not in str(e):
                raise Failure(f"{call}: meta refused without naming the op: {e}")
            return 1
        raise Failure(f"{call}: output shape depends on values, yet meta did not refuse")
    want = _outputs(_invoke(ctx, u.op, call, u.provider, u.device))
    got = _outputs(_invoke(ctx, u.op, call, None, "meta"))
    if len(got) != len(want):
        raise Failure(f"{call}: {len(got)} outputs on meta, {len(want)} from the compute")
    for k, (g, w) in enumerate(zip(got, want)):
        where = f"{call} output {k}"
        if not _is_tensor(w):
            if type(g) is not type(w):
                raise Failure(f"{where}: {g!r} on meta, {w!r} from the compute")
            continue
        if not _is_tensor(g) or g.device.type != "meta":
            raise Failure(f"{where}: meta gave {type(g).__name__} on "
                          f"{getattr(g, 'device', '?')}, not a meta tensor")
        if tuple(g.shape) != tuple(w.shape) or g.dtype.name != w.dtype.name:
            raise Failure(f"{where}: meta {tuple(g.shape)} {g.dtype.name}, compute "
                          f"{tuple(w.shape)} {w.dtype.name}")
        if w.numel() > 1 and tuple(g.stride()) != tuple(w.stride()):
            raise Failure(f"{where}: meta strides {tuple(g.stride())}, compute {tuple(w.stride())}")
    return 1


_LOW = ("float32", "bfloat16", "float16")


def _float64_call(ctx, op, call):
    """The call with floating tensors as float64 (and float dtype arguments float64); those of
    arguments that get a gradient are the leaves (the samples' NO_GRAD names the others)."""
    from . import ops as _ops

    vt = ctx.vt
    names = [a.name for a in _ops.Op(op).args]
    no_grad = ctx.source.no_grad.get(op, ())
    leaves = []

    def up(v, differentiable):
        if _is_tensor(v) and v.dtype.is_floating_point:
            t = v.detach().to(vt.float64).contiguous().clone()
            if differentiable:
                t.requires_grad_(True)
                leaves.append(t)
            return t
        if hasattr(v, "is_floating_point") and getattr(v, "name", None) in _LOW:
            return vt.float64
        return v

    from .samples import Call, _walk

    args = [_walk(v, lambda x, k=k: up(x, k >= len(names) or names[k] not in no_grad))
            for k, v in enumerate(call.args)]
    kwargs = {k: _walk(v, lambda x, k=k: up(x, k not in no_grad)) for k, v in call.kwargs.items()}
    return Call(*args, **kwargs), leaves


def check_gradcheck(ctx, u):
    if u.op not in ctx.backward:
        raise Skip("the op registers no backward rule")
    from . import ops as _ops

    vt = ctx.vt
    n, declined = 0, []
    for call in ctx.calls(u.op):
        c64, leaves = _float64_call(ctx, u.op, call)
        if not leaves:
            continue
        ids = {id(t): k for k, t in enumerate(leaves)}
        random = u.op in ctx.random

        def fn(*ts, c64=c64, ids=ids):
            # clones: in-place ops write their own copy, and the leaves stay leaves
            c = c64.map(lambda v: ts[ids[id(v)]].clone() if id(v) in ids else v).on(u.device)
            if random:
                vt.manual_seed(SEED)
            with _pinned(u.op, u.provider, u.device):
                outs = _outputs(_ops.Op(u.op)(*c.args, **c.kwargs))
            return tuple(o for k, o in enumerate(outs) if k not in aux)

        aux = ctx.source.aux_outputs.get(u.op, ())
        try:
            outs = [o for o in fn(*leaves) if _is_tensor(o) and o.dtype.is_floating_point]
        except NotImplementedError as e:  # the pinned provider declines this call
            if u.provider is None:
                raise
            declined.append(f"{u.provider}: {e}")
            continue
        if not outs:
            continue
        try:
            vt.autograd.gradcheck(fn, leaves)
        except vt.autograd.GradcheckError as e:
            raise Failure(f"{call}: {e}") from None
        n += 1
    return _tally(n, declined, "no sample has a floating input and a floating output", f"{n} calls")


def _reference(provs) -> str:
    for p in provs:
        if p.name in ("reference", "composed"):
            return p.name
    return provs[0].name


def check_providers(ctx, u):
    from . import ops as _ops

    provs = _ops.providers(u.op, u.device)
    if len(provs) < 2:
        raise Skip(f"the only provider on {u.device}")
    ref = _reference(provs)
    if ref == u.provider:  # the reference itself: against the best of the others
        ref = next(p.name for p in provs if p.name != u.provider)
    worst, n, declined = 0.0, 0, []
    for call in ctx.calls(u.op):
        try:
            want = _invoke(ctx, u.op, call, ref, u.device)
            got = _invoke(ctx, u.op, call, u.provider, u.device)
        except Declined as e:
            declined.append(str(e))
            continue
        worst = max(worst, _compare(got, want, f"{call} vs {ref}"))
        n += 1
    return _tally(n, declined, "no sample call", f"vs {ref}: {n} calls, max |difference| {worst:.3g}")


def check_devices(ctx, u):
    from . import ops as _ops

    if u.device not in (["cpu"] + (["cuda"] if _cuda_available() else [])):
        raise Skip(f"no {u.device} device here")
    provs = _ops.providers(u.op, "cpu")
    ref = _reference(provs) if provs else None  # None: the meta step serves cpu too (a view)
    values = u.op not in ctx.random
    worst, n, declined = 0.0, 0, []
    for call in ctx.calls(u.op):
        try:
            want = _invoke(ctx, u.op, call, ref, "cpu")
            got = _invoke(ctx, u.op, call, u.provider, u.device)
        except Declined as e:
            declined.append(str(e))
            continue
        worst = max(worst, _compare(got, want, f"{call} vs cpu {ref}", values=values))
        n += 1
    note = "" if values else " (random op: shapes and dtypes only, the generators differ)"
    return _tally(n, declined, "no sample call",
                  f"vs cpu {ref or '(composite)'}: {n} calls, max |difference| {worst:.3g}{note}")


def check_graph(ctx, u):
    from . import ops as _ops

    vt = ctx.vt
    if not _cuda_available():
        raise Skip("no GPU")
    n, declined = 0, []
    for call in ctx.calls(u.op):
        try:  # eager first: it also warms up what the kernels set up on their first call
            eager = _invoke(ctx, u.op, call, u.provider, u.device, seed=False)
        except Declined as e:
            declined.append(str(e))
            continue
        c = call.map(_fresh).on(u.device)
        with _pinned(u.op, u.provider, u.device):
            g = vt.cuda.CUDAGraph()
            with vt.cuda.graph(g):
                captured = _ops.Op(u.op)(*c.args, **c.kwargs)
            g.replay()
            vt.cuda.synchronize()
        _compare(captured, eager, f"{call} captured vs eager", values=u.op not in ctx.random)
        n += 1
    return _tally(n, declined, "no sample call", f"{n} calls captured and replayed")


def check_autocast(ctx, u):
    """Under vt.autocast the op gives what it gives outside autocast on the inputs its policy casts
    (amp's classes): LOW_PRECISION float32 -> bfloat16, FLOAT32 16-bit -> float32, WIDEST mixed ->
    the widest floating dtype. Same output dtypes, same values."""
    from .samples import tensors_of

    cls = _autocast_class(u.op)
    vt = ctx.vt
    low = vt.bfloat16

    def floats(dtype):
        return lambda v: v.to(dtype) if _is_tensor(v) and v.dtype.is_floating_point else v

    n, declined = 0, []
    for call in ctx.calls(u.op):
        if not any(t.dtype.is_floating_point for t in tensors_of(call)):
            continue
        if cls == "LOW_PRECISION":
            given = call.map(floats(vt.float32))
            cast = given.map(floats(low))
        elif cls == "FLOAT32":
            given = call.map(floats(low))
            cast = given.map(floats(vt.float32))
        else:  # WIDEST: the first floating tensor in bfloat16, the others float32
            first = [True]

            def mix(v):
                if _is_tensor(v) and v.dtype.is_floating_point:
                    wide, first[0] = not first[0], False
                    return v.to(vt.float32 if wide else low)
                return v
            given = call.map(mix)
            cast = given.map(floats(vt.float32))
        try:
            want = _invoke(ctx, u.op, cast, u.provider, u.device)
            with vt.autocast(u.device, dtype=low):
                got = _invoke(ctx, u.op, given, u.provider, u.device)
        except Declined as e:
            declined.append(str(e))
            continue
        _compare(got, want, f"{given} under autocast({u.device}, bfloat16) vs {cast} without")
        n += 1
    return _tally(n, declined, "no sample has a floating tensor argument", f"{cls}: {n} calls")


def _mutations(ctx, v, device):
    """(what, bad tensor) for one tensor argument: wrong dtype, wrong rank, wrong device."""
    vt = ctx.vt
    wrong = vt.bool_ if v.dtype.is_floating_point else vt.float32
    yield f"dtype {wrong.name}", v.to(wrong)
    yield "rank 0" if v.dim() else "rank 3", (vt.zeros((), dtype=v.dtype) if v.dim()
                                              else vt.zeros(1, 1, 1, dtype=v.dtype))
    other = "meta" if device == "cpu" else "cpu"
    yield f"device {other}", ("device", other)


def check_bad_input(ctx, u):
    from . import ops as _ops
    from .samples import Call, tensors_of

    calls = [c for c in ctx.calls(u.op) if tensors_of(c)]
    if not calls:
        raise Skip("no sample has a tensor argument")
    call = calls[0]
    refused = accepted = 0
    slots = [("args", i) for i, v in enumerate(call.args) if _is_tensor(v) or
             (isinstance(v, list) and v and _is_tensor(v[0]))]
    slots += [("kwargs", k) for k, v in call.kwargs.items() if _is_tensor(v)]
    for kind, key in slots:
        orig = call.args[key] if kind == "args" else call.kwargs[key]
        target = orig[0] if isinstance(orig, list) else orig
        for what, bad in _mutations(ctx, target, u.device):
            placed = call.map(_fresh).on(u.device)
            if isinstance(bad, tuple):  # the argument alone on another device
                bad = _fresh(target).to(bad[1])
            else:
                bad = bad.to(u.device) if u.device != "cpu" else bad
            value = [bad] + list(placed.args[key][1:] if kind == "args" else placed.kwargs[key][1:]) \
                if isinstance(orig, list) else bad
            args, kwargs = list(placed.args), dict(placed.kwargs)
            if kind == "args":
                args[key] = value
            else:
                kwargs[key] = value
            try:
                with _pinned(u.op, u.provider, u.device):
                    _ops.Op(u.op)(*args, **kwargs)
                accepted += 1
            except Exception as e:  # any Python exception; a crash kills the child instead
                if u.op not in str(e):
                    raise Failure(f"{Call(*args, **kwargs)} ({what} in {key!r}): "
                                  f"{type(e).__name__} does not name the op: {e}") from None
                refused += 1
    return f"{refused} refused naming the op, {accepted} accepted"


_RUN = {"schema": check_schema, "meta": check_meta, "gradcheck": check_gradcheck,
        "providers": check_providers, "devices": check_devices, "graph": check_graph,
        "autocast": check_autocast, "bad_input": check_bad_input}


def _registered(u: Unit) -> bool:
    from . import ops as _ops

    if u.provider is None or u.check == "schema":
        return True
    return any(p.name == u.provider for p in _ops.providers(u.op, u.device))


def run_unit(ctx, u: Unit) -> Result:
    t0 = time.perf_counter()
    try:
        if not _registered(u):  # dropped at load: its capabilities exclude this machine's GPU
            raise Skip(f"not registered on {u.device} here (see vt-ops info {ctx.pack.name})")
        detail, status = _RUN[u.check](ctx, u), "pass"
    except Skip as e:
        detail, status = str(e), "skip"
    except Failure as e:
        detail, status = str(e), "fail"
    except Exception as e:  # an unexpected Python exception in a check is that check failing
        detail, status = f"{type(e).__name__}: {e}", "fail"
        made = ctx._calls.get(u.op)
        if made and all(c.generated for c in made):  # made-up arguments, not the pack's own
            detail = (f"the call made up from the schema {made[0]} was refused ({detail}): give "
                      f"{u.op} a sample (docs/OPCHECK.md)")
    return Result(u.op, u.provider, u.device, u.check, status, str(detail or ""),
                  round(time.perf_counter() - t0, 4))


# -- the child -----------------------------------------------------------------------------------

def _load_target(spec):
    """The pack to check, loaded: a loaded pack's name, or a pack folder or name to load."""
    from pathlib import Path

    from . import loader, manifest

    p = loader.get(spec) if isinstance(spec, str) else None
    if p is not None:
        return p
    folder = loader._resolve(spec)
    name = manifest.read(folder).name
    other = loader.get(name)
    if other is not None:
        if Path(other.path).resolve() == Path(folder).resolve():
            return other
        loader.unload(name)  # check the folder given, not the copy of that name loaded already
    return loader.load(folder)


def _emit(kind, **fields):
    sys.stdout.write(PREFIX + json.dumps(dict(fields, kind=kind)) + "\n")
    sys.stdout.flush()


def child_main(pack_spec, start, samples_file, devices):
    import vibetensor  # noqa: F401  (loads the built-in packs, registers the tensor factory)

    try:
        pack = _load_target(pack_spec)
        ctx = _Ctx(pack, samples_file)
        units = plan(pack, devices)
    except Exception as e:  # no such pack, a refused pack, a broken samples file: say so plainly
        _emit("error", message=f"{type(e).__name__}: {e}")
        return
    if start == 0:
        uncovered, justified = [], {}
        for op in dict.fromkeys(u.op for u in units):
            kind, why = ctx.source.find(op)
            if kind == "not covered":
                justified[op] = why
            elif not ctx.source.has(op):
                uncovered.append(op)
        _emit("plan", pack=pack.name, units=len(units), uncovered=uncovered, justified=justified,
              samples_from=ctx.source.origin)
    for idx in range(start, len(units)):
        u = units[idx]
        _emit("begin", index=idx, **asdict(u))
        if u.device not in (None, "cpu", "meta") and not _cuda_available():
            r = Result(u.op, u.provider, u.device, u.check, "skip", f"no {u.device} device here")
        else:
            r = run_unit(ctx, u)
        _emit("result", index=idx, **asdict(r))
    _emit("done")


def _main(argv=None):
    import argparse

    ap = argparse.ArgumentParser(prog="python -m vibetensor.registry.opcheck_checks",
                                 description="the child of `vt-ops test` (it reads our stdout)")
    ap.add_argument("pack")
    ap.add_argument("--start", type=int, default=0, help="the index of the first unit to run")
    ap.add_argument("--samples", default=None)
    ap.add_argument("--devices", default=None)
    a = ap.parse_args(argv)
    child_main(a.pack, a.start, a.samples, a.devices.split(",") if a.devices else None)
    return 0


if __name__ == "__main__":
    sys.exit(_main())
