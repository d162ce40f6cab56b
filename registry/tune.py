"""Per-shape tuned providers: time every provider of an op on given shapes, keep the winner.

    vt.ops.tune("attention::sdpa", shapes=[[(1, 8, 256, 64)] * 3], dtypes="float32")
    vt.ops.tune("core::matmul", trace=t)      # the shapes a trace saw

The winner is stored per (op, shape bucket, options, device type and name, hashes of the packs
whose providers were timed) in a JSON cache: VT_TUNE_CACHE, else
$XDG_CACHE_HOME/vibetensor/tuned.json (~/.cache/... without XDG_CACHE_HOME). The runtime
dispatches a call whose bucket and options have a winner to that provider (trace reason "tuned"),
unless the op is pinned with vt.ops.use: pins win.

Shape bucket: each tensor argument's dtype and sizes, every size rounded up to a power of two
(100 -> 128, 129 -> 256), so one measurement serves nearby shapes. Options: every other argument
of the call (defaults filled in), as [name, kind, value]: bools, ints, strings, int lists, dtypes
and device types exactly, None as itself, a float only as "zero" or "nonzero" (a scale must not
split buckets; dropout_p 0 vs not changes which providers take the call). So a causal and a
non-causal call of one shape are tuned, and dispatched, separately. An entry applies only while
every pack it names is loaded with the same library sha256: a rebuilt pack drops its own entries
and no others. A pack may ship a table, `tuned.json` beside its manifest (same entry format);
the user's cache wins over it for the same key.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import tempfile
import time
import warnings
from pathlib import Path

from vibetensor.runtime import (BOOL, CPU, CUDA, DEVICE, DTYPE, FLOAT, INT, INTS, META, NONE, STR,
                                TENSOR, TENSORS, error, ffi, lib)
from vibetensor.runtime import dtypes as _types

from . import loader
from .ops import Op, _box, _device_code, providers, use

PACK_TABLE = "tuned.json"  # a pack's shipped table, beside its manifest.json
# 2: entries carry "options" (the call's non-tensor arguments); format 1 keyed by shapes only,
# which let a causal and a non-causal call share a winner
FORMAT = 2
_DEVICE_KINDS = {CPU: "cpu", CUDA: "cuda"}  # the device types tuned tables are kept for
_DEVICE_NAMES = {**_DEVICE_KINDS, META: "meta"}  # a device argument's type, as an option value
_KINDS = {NONE: "none", BOOL: "bool", INT: "int", FLOAT: "float", STR: "str", INTS: "ints",
          DTYPE: "dtype", DEVICE: "device"}


# -- the cache file ---------------------------------------------------------------------------

def cache_path() -> Path:
    env = os.environ.get("VT_TUNE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "vibetensor" / "tuned.json"


def _load_doc(path: Path) -> dict | None:
    """A table file's document ({"format": ..., "entries": [...]}); None when there is no file."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise ValueError(f"tuned table {path} is unreadable: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("entries"), list):
        raise ValueError(f"tuned table {path}: expected {{\"format\": {FORMAT}, \"entries\": [...]}}")
    return doc


def _read_table(path: Path) -> list[dict]:
    doc = _load_doc(path)
    if doc is None:
        return []
    reason = _format_problem(doc, path)
    if reason:
        warnings.warn(f"vibetensor: {reason}", RuntimeWarning, stacklevel=3)
        return []
    return [e for e in doc["entries"] if _valid_entry(e)]


def _format_problem(doc: dict, path) -> str | None:
    """Why a table's entries cannot be used as they are (another format), in one line."""
    got = doc.get("format")
    if got == FORMAT:
        return None
    what = " (keyed by shapes only, not the calls' other arguments)" if got == 1 else ""
    return (f"tuned table {path} is format {got!r}{what}; this version reads format {FORMAT}: its "
            f"{len(doc['entries'])} entries are ignored (re-run `vt-ops tune` to replace them)")


def ignored_reason(path=None) -> str | None:
    """The one-line reason a cache file's entries are all ignored (an older format), or None."""
    path = Path(path) if path else cache_path()
    try:
        doc = _load_doc(path)
    except ValueError:
        return None
    return _format_problem(doc, path) if doc is not None else None


def _valid_entry(e) -> bool:
    try:
        return (isinstance(e["op"], str) and isinstance(e["provider"], str)
                and e["device"] in ("cpu", "cuda") and isinstance(e["device_name"], str)
                and isinstance(e["packs"], dict)
                and all(isinstance(d, str) and all(isinstance(s, int) for s in shape)
                        for d, shape in e["bucket"])
                and all(isinstance(name, str) and kind in _KINDS.values()
                        for name, kind, _ in e["options"]))
    except (KeyError, TypeError, ValueError):
        return False


def _entry_key(e: dict) -> tuple:
    return (e["op"], e["device"], e["device_name"], json.dumps(e["bucket"]),
            json.dumps(e["options"]), json.dumps(e["packs"], sort_keys=True))


def entries(path=None) -> list[dict]:
    """The user cache's entries (all of them, stale ones included)."""
    return _read_table(Path(path) if path else cache_path())


def _write_entries(new: list[dict], path: Path) -> None:
    """Merge `new` into the cache at `path` (same key: replaced), atomically."""
    keep = {_entry_key(e): e for e in _read_table(path)}
    for e in new:
        keep[_entry_key(e)] = e
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tuned.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump({"format": FORMAT, "entries": list(keep.values())}, f, indent=1)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def clear(path=None, op: str | None = None) -> int:
    """Remove the cache's entries (of one op, or all); returns how many. Re-applies the rest."""
    path = Path(path) if path else cache_path()
    old = _read_table(path)
    rest = [e for e in old if op is not None and e["op"] != op]
    if path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as f:
            json.dump({"format": FORMAT, "entries": rest}, f, indent=1)
    apply()
    return len(old) - len(rest)


# -- devices and buckets ----------------------------------------------------------------------

_names: dict = {}  # device -> name; a machine's devices do not change under a process


def device_name(device="cpu") -> str:
    """What tuned entries are keyed by: the GPU's name, or the CPU's model."""
    d = _types.device(device)
    key = (d.code, d.index or 0)
    if key in _names:
        return _names[key]
    if d.code == CUDA:
        p = ffi.new("vtrt_cuda_device_props*")
        if lib.vtrt_cuda_get_device_properties(d.index or 0, p) != 0:
            raise error()
        name = ffi.string(p.name).decode()
    else:
        name = None
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith("model name"):
                        name = line.split(":", 1)[1].strip()
                        break
        except OSError:
            pass
        name = name or platform.processor() or platform.machine() or "cpu"
    _names[key] = name
    return name


def _current_name(kind: str) -> str | None:
    """The name entries for `kind` must carry to apply here; cuda is asked only when an entry
    is for cuda (so importing vibetensor never starts CUDA for nothing). Dispatch keeps one tuned
    table per device type, so on a machine whose GPUs differ no cuda entry applies (None)."""
    if kind == "cpu":
        return device_name("cpu")
    n = lib.vtrt_cuda_device_count() if kind == "cuda" else 0
    names = {device_name(f"cuda:{i}") for i in range(n)}
    return names.pop() if len(names) == 1 else None


def bucket_size(n: int) -> int:
    """A size's bucket: the power of two at or above it (0 and 1 are their own)."""
    return n if n <= 1 else 1 << (n - 1).bit_length()


def bucket(dtypes, shapes) -> list:
    """[[dtype name, [bucketed sizes]], ...] for the tensors of one call, in argument order."""
    return [[_types.get_dtype(d).name, [bucket_size(int(s)) for s in shape]]
            for d, shape in zip(dtypes, shapes)]


def _is_tensor_arg(a) -> bool:
    return a.type in (TENSOR, TENSORS)


def _values(op: Op, kwargs: dict, keep: list, tensors_given: bool = False):
    """vt_value[] of one call as the dispatcher holds it, for the key: the non-tensor arguments
    boxed from kwargs (defaults filled in, the schema's coercions applied, by the same _box as a
    call), the tensor arguments as placeholders (tag only; the shape bucket describes them). An
    optional tensor not in kwargs is absent (None), or present when tensors_given (an entry's
    options name the absent ones as "none")."""
    args = op.args
    vals = ffi.new("vt_value[]", max(len(args), 1))
    keep.append(vals)
    for i, a in enumerate(args):
        if _is_tensor_arg(a):
            if a.name in kwargs:
                present = kwargs[a.name] is not None
            else:
                present = tensors_given or not a.optional
            if present:
                vals[i].tag = a.type
            else:
                _box(op.name, a, i, None, vals[i], keep)
            continue
        if a.name in kwargs:
            v = kwargs[a.name]
        elif a.has_default or a.optional:
            v = a.default
        else:
            raise TypeError(f"tune({op.name}): argument '{a.name}' has no default: give it in "
                            f"kwargs (--arg {a.name}=VALUE): {op.schema}")
        _box(op.name, a, i, v, vals[i], keep)
    return vals


def _option(name: str, v) -> list:
    tag = v.tag
    if tag == BOOL:
        value = bool(v.v.b)
    elif tag == INT:
        value = int(v.v.i)
    elif tag == FLOAT:
        value = "zero" if v.v.f == 0.0 else "nonzero"
    elif tag == STR:
        value = ffi.string(v.v.s).decode()
    elif tag == INTS:
        value = [int(v.v.ints.data[k]) for k in range(v.v.ints.len)]
    elif tag == DTYPE:
        value = _types.from_key(v.v.dtype.code, v.v.dtype.bits).name
    elif tag == DEVICE:
        value = _DEVICE_NAMES.get(v.v.device.type, str(v.v.device.type))
    else:
        value = None
    return [name, _KINDS[tag], value]


def options(op, kwargs=None) -> list:
    """The options part of a call's key: [name, kind, value] per non-tensor argument (an absent
    optional tensor included, as "none"), in schema order, defaults filled in. A float is kept
    as "zero" or "nonzero" only; every other kind exactly."""
    o = op if isinstance(op, Op) else Op(str(op))
    keep: list = []
    vals = _values(o, dict(kwargs or {}), keep)
    return [_option(a.name, vals[i]) for i, a in enumerate(o.args)
            if vals[i].tag not in (TENSOR, TENSORS)]


def _option_kwargs(op: Op, opts: list) -> dict:
    """Values that box to the given options (a "nonzero" float as 1.0: only zero-ness counts)."""
    names = {a.name for a in op.args}
    out = {}
    for name, kind, value in opts:
        if name not in names:
            raise ValueError(f"{op.name} has no argument '{name}': {op.schema}")
        if kind == "float":
            value = 0.0 if value == "zero" else 1.0
        out[name] = value
    for a in op.args:
        if not _is_tensor_arg(a) and a.name not in out:
            raise ValueError(f"{op.name}: the options name no value for '{a.name}'")
    return out


def _bucket_arrays(bkt: list, keep: list):
    n = len(bkt)
    dts = ffi.new("vt_dtype[]", max(n, 1))
    nd = ffi.new("int32_t[]", max(n, 1))
    sz = ffi.new("int64_t[]", [s for _, shape in bkt for s in shape] or [0])
    keep += [dts, nd, sz]
    for i, (d, shape) in enumerate(bkt):
        t = _types.get_dtype(d)
        dts[i].code, dts[i].bits, dts[i].lanes = t.code, t.bits, 1
        nd[i] = len(shape)
    return dts, nd, sz, n


def key(op, dtypes, shapes, kwargs=None) -> int:
    """The runtime's key of a call with tensors of these dtypes and shapes and these non-tensor
    arguments (vtrt_tune_key): equal keys share a tuned winner."""
    o = op if isinstance(op, Op) else Op(str(op))
    keep: list = []
    vals = _values(o, dict(kwargs or {}), keep)
    dts, nd, sz, n = _bucket_arrays(bucket(dtypes, shapes), keep)
    return int(lib.vtrt_tune_key(dts, nd, sz, n, vals, len(o.args)))


def _set_runtime(op: Op, code: int, bkt: list, opts: list, provider: str | None) -> None:
    keep: list = []
    vals = _values(op, _option_kwargs(op, opts), keep, tensors_given=True)
    dts, nd, sz, n = _bucket_arrays(bkt, keep)
    if lib.vtrt_op_tune_set(op.handle(), code, dts, nd, sz, n, vals, len(op.args),
                            provider.encode() if provider else ffi.NULL) != 0:
        raise error()


def describe_options(opts: list) -> str:
    """'causal=True dropout_p=0 scale=None' for printed tables ("!=0": any nonzero float)."""
    def text(kind, value):
        if kind == "float":
            return "0" if value == "zero" else "!=0"
        if kind == "str":
            return repr(value)
        return str(value)
    return " ".join(f"{name}={text(kind, value)}" for name, kind, value in opts)


# -- applying tables to dispatch --------------------------------------------------------------

_applied_ops: set = set()  # ops whose runtime tables apply() filled


def _loaded_hashes() -> dict:
    # loader._loaded, not loader.packs(): apply() runs from the loader's listener, under its lock
    return {name: p.manifest_info.sha256 for name, p in list(loader._loaded.items())}


def _usable(e: dict, hashes: dict) -> bool:
    if any(hashes.get(p) != h for p, h in e["packs"].items()):
        return False  # a pack it timed is gone or was rebuilt: this entry is stale
    return _current_name(e["device"]) == e["device_name"]


def apply(path=None) -> int:
    """Fill the runtime's tuned tables from the loaded packs' shipped tables and the user cache
    (usable entries only); returns how many entries took effect. Runs after every pack load and
    unload, so a rebuilt pack's stale entries stop applying at once."""
    hashes = _loaded_hashes()
    chosen: dict = {}
    sources = [Path(p.path) / PACK_TABLE for p in list(loader._loaded.values())]
    sources.append(Path(path) if path else cache_path())  # last: the user's entries win
    for src in sources:
        try:
            table = _read_table(src)
        except ValueError:
            continue  # a broken table must not break loading packs; tune() reports it
        for e in table:
            if _usable(e, hashes):
                k = (e["op"], e["device"], json.dumps(e["bucket"]), json.dumps(e["options"]))
                chosen[k] = e
    for name in list(_applied_ops):
        h = lib.vtrt_find_op(name.encode())
        if h != ffi.NULL:
            lib.vtrt_op_tune_clear(h, -1)
    _applied_ops.clear()
    lib.vtrt_clear_error()
    count = 0
    for (opname, kind, _, _), e in chosen.items():
        if lib.vtrt_find_op(opname.encode()) == ffi.NULL:
            lib.vtrt_clear_error()
            continue
        try:
            _set_runtime(Op(opname), CPU if kind == "cpu" else CUDA, e["bucket"], e["options"],
                         e["provider"])
        except Exception:  # noqa: BLE001 - a provider that is gone, options the schema does not
            # have: the entry does not apply
            lib.vtrt_clear_error()
            continue
        _applied_ops.add(opname)
        count += 1
    return count


def _on_packs_changed() -> None:
    try:
        apply()
    except Exception as e:  # noqa: BLE001 - tuning is an optimisation; loading must not fail on it
        import warnings
        warnings.warn(f"vibetensor: tuned providers not applied: {e}", RuntimeWarning, stacklevel=2)


loader.listeners.append(_on_packs_changed)


# -- tuning ------------------------------------------------------------------------------------

class Result:
    """One tuned case: per-provider median microseconds per call, the winner, its bucket."""

    __slots__ = ("op", "device", "dtypes", "shapes", "bucket", "options", "kwargs", "times_us",
                 "declined", "winner", "priority_choice")

    def __repr__(self):
        times = ", ".join(f"{p} {t:.1f} us" for p, t in sorted(self.times_us.items(),
                                                                key=lambda kv: kv[1]))
        opts = f" {describe_options(self.options)}" if self.options else ""
        return (f"<tuned {self.op} {self.dtypes} {[list(s) for s in self.shapes]}{opts} on "
                f"{self.device}: {self.winner} ({times})>")

    def speedup(self) -> float:
        """Priority choice's time / winner's time (1.0 when they are the same provider)."""
        if self.priority_choice not in self.times_us:
            return float("nan")
        return self.times_us[self.priority_choice] / self.times_us[self.winner]


def _tensor_args(op: Op) -> list:
    return [a for a in op.args if a.type == TENSOR]


def _random(shape, dtype, device):
    if dtype.is_floating_point:
        return Op("core::normal")(list(shape), 0.0, 1.0, dtype, device)
    if dtype.name == "bool":
        return Op("core::randint")(0, 2, list(shape), _types.int64, device).__ne__(0)
    return Op("core::randint")(0, 8, list(shape), dtype, device)


def _record_fields(r):
    if isinstance(r, dict):
        return r["op"], r["device"], r["dtypes"], r["shapes"], r.get("options")
    return r.op, r.device, r.dtypes, r.shapes, r.options


def _cases(op: Op, shapes, dtypes, trace, device, kwargs: dict) -> list[tuple]:
    """(dtypes, shapes, call kwargs, options) per case, one per (bucket, options): the first
    call seen of each. A trace's calls keep their own non-tensor arguments (kwargs override)."""
    required = [a for a in _tensor_args(op) if not a.optional]
    plain = {a.name for a in op.args if not _is_tensor_arg(a)}
    out = []
    if trace is not None:
        recs = trace.records if hasattr(trace, "records") else trace
        found = False
        for r in recs:
            name, rd, d, s, seen = _record_fields(r)
            if name != op.name or rd.split(":")[0] != device.type:
                continue
            found = True
            if len(s) != len(required):  # calls with optional tensors are not replayed
                continue
            call = dict(seen or {})
            call.update(kwargs)
            if seen is not None and not plain <= set(call):
                continue  # an argument the record kept only in part (a long string or list)
            out.append((list(d), [tuple(x) for x in s], call))
        if not found:
            raise ValueError(f"tune({op.name}): the trace has no call of it on {device}")
        if not out:
            raise ValueError(f"tune({op.name}): no call of it on {device} in the trace can be "
                             f"replayed (calls that pass optional tensors, or arguments the "
                             f"trace kept only in part, are not)")
    if shapes is not None:
        if dtypes is None:
            dtypes = ["float32"]
        elif isinstance(dtypes, (str, _types.dtype)):
            dtypes = [dtypes]
        for case in shapes:
            if case and all(isinstance(s, int) for s in case):  # one shape: every tensor argument
                case = [tuple(case)] * len(required)
            case = [tuple(int(x) for x in s) for s in case]
            if len(case) != len(required):
                raise ValueError(f"tune({op.name}): a case needs {len(required)} shapes (one per "
                                 f"tensor argument: {', '.join(a.name for a in required)}), got "
                                 f"{len(case)}: {case}")
            for d in dtypes:
                dt = _types.get_dtype(d).name
                out.append(([dt] * len(case), case, dict(kwargs)))
    if trace is None and shapes is None:
        raise ValueError(f"tune({op.name}): give shapes=[...] or trace=...")
    seen_keys, unique = set(), []
    for dts, shp, call in out:
        opts = options(op, call)
        k = json.dumps([bucket(dts, shp), opts])
        if k not in seen_keys:
            seen_keys.add(k)
            unique.append((dts, shp, call, opts))
    return unique


def _time(fn, sync, warmup: int, min_time: float, max_calls: int) -> float:
    """Median microseconds per call over batches, after warm-up calls."""
    for _ in range(warmup):
        fn()
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    one = max(time.perf_counter() - t0, 1e-7)
    per_batch = max(1, min(max_calls // 5, int(min_time / 5 / one)))
    samples = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(per_batch):
            fn()
        sync()
        samples.append((time.perf_counter() - t0) / per_batch * 1e6)
    return statistics.median(samples)


def tune(op, shapes=None, dtypes=None, device="cpu", *, trace=None, kwargs=None,
         warmup: int = 2, min_time: float = 0.2, max_calls: int = 1000, save: bool = True,
         cache=None) -> list[Result]:
    """Time every provider of `op` on `device` for each case and keep the fastest.

    shapes: a list of cases; a case is one shape per tensor argument of the op (in schema order),
    or one shape for all of them. dtypes: one dtype or a list (each case runs in each). trace: a
    vt.ops.trace (or its JSON records) whose calls of `op` give the cases instead. kwargs: the
    op's non-tensor arguments (defaults otherwise; with a trace, they override the calls' own).
    Cases are grouped, and entries keyed, by shape bucket and options (see options()): a causal
    and a non-causal call are tuned apart. A provider that declines a case (raises
    NotImplementedError) is left out of it. save=False measures without touching the cache.
    """
    o = op if isinstance(op, Op) else Op(str(op))
    dev = _types.device(device)
    code = _device_code(dev)
    if code not in _DEVICE_KINDS:
        raise ValueError(f"tune({o.name}): device {dev} has no providers to choose from "
                         f"(cpu or cuda expected)")
    provs = providers(o, dev)
    if not provs:
        raise ValueError(f"tune({o.name}): no provider on {dev} (vt.ops.providers lists them)")
    kwargs = dict(kwargs or {})
    names = {a.name for a in o.args}
    bad = [k for k in kwargs if k not in names]
    if bad:
        raise TypeError(f"tune({o.name}): unknown argument(s) {bad}: {o.schema}")
    tensors = [a.name for a in o.args if _is_tensor_arg(a) and kwargs.get(a.name) is not None]
    if tensors:
        raise TypeError(f"tune({o.name}): kwargs are the non-tensor arguments; {tensors} are "
                        f"tensors (their shapes come from shapes= or the trace)")
    if code == CUDA:
        idx = dev.index or 0

        def sync():
            if lib.vtrt_cuda_synchronize(idx) != 0:
                raise error()
    else:
        def sync():
            return None

    tensor_names = [a.name for a in _tensor_args(o) if not a.optional]
    priority_choice = provs[0].name
    results, new_entries = [], []
    dname = device_name(dev)
    hashes = _loaded_hashes()
    for dts, shp, case_kwargs, opts in _cases(o, shapes, dtypes, trace, dev, kwargs):
        inputs = {n: _random(s, _types.get_dtype(d), dev)
                  for n, d, s in zip(tensor_names, dts, shp)}
        call_kwargs = {**case_kwargs, **inputs}
        res = Result()
        res.op, res.device, res.dtypes, res.shapes = o.name, str(dev), dts, shp
        res.bucket, res.options, res.kwargs = bucket(dts, shp), opts, case_kwargs
        res.times_us, res.declined, res.priority_choice = {}, {}, priority_choice
        for p in provs:
            with use(o.name, p.name, dev):
                try:
                    res.times_us[p.name] = _time(lambda: o(**call_kwargs), sync, warmup,
                                                 min_time, max_calls)
                except NotImplementedError as e:
                    res.declined[p.name] = str(e)
        if not res.times_us:
            raise NotImplementedError(f"tune({o.name}): every provider on {dev} declined "
                                      f"{dts} {shp} {describe_options(opts)}: {res.declined}")
        res.winner = min(res.times_us, key=res.times_us.get)
        results.append(res)
        timed_packs = {p.pack for p in provs if p.name in res.times_us}
        new_entries.append({
            "op": o.name, "device": _DEVICE_KINDS[code], "device_name": dname,
            "bucket": res.bucket, "options": res.options, "provider": res.winner,
            "packs": {name: hashes[name] for name in sorted(timed_packs) if name in hashes},
            "times_us": {k: round(v, 3) for k, v in res.times_us.items()},
            "example_shapes": [list(s) for s in shp],
            "tuned_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        })
    if save:
        _write_entries(new_entries, Path(cache) if cache else cache_path())
        apply(cache)
    return results


__all__ = ["tune", "apply", "clear", "entries", "cache_path", "device_name", "bucket",
           "bucket_size", "options", "key", "describe_options", "ignored_reason", "Result",
           "PACK_TABLE", "FORMAT"]
