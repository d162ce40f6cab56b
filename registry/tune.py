"""Per-shape tuned providers: time every provider of an op on given shapes, keep the winner.

    vt.ops.tune("attention::sdpa", shapes=[[(1, 8, 256, 64)] * 3], dtypes="float32")
    vt.ops.tune("core::matmul", trace=t)      # the shapes a trace saw

The winner is stored per (op, shape bucket, device type and name, hashes of the packs whose
providers were timed) in a JSON cache: VT_TUNE_CACHE, else $XDG_CACHE_HOME/vibetensor/tuned.json
(~/.cache/... without XDG_CACHE_HOME). The runtime dispatches a call whose bucket has a winner to
that provider (trace reason "tuned"), unless the op is pinned with vt.ops.use: pins win.

Shape bucket: each tensor argument's dtype and sizes, every size rounded up to a power of two
(100 -> 128, 129 -> 256), so one measurement serves nearby shapes. An entry applies only while
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
from pathlib import Path

from vibetensor.runtime import CPU, CUDA, TENSOR, error, ffi, lib
from vibetensor.runtime import dtypes as _types

from . import loader
from .ops import Op, _device_code, providers, use

PACK_TABLE = "tuned.json"  # a pack's shipped table, beside its manifest.json
FORMAT = 1
_DEVICE_KINDS = {CPU: "cpu", CUDA: "cuda"}


# -- the cache file ---------------------------------------------------------------------------

def cache_path() -> Path:
    env = os.environ.get("VT_TUNE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "vibetensor" / "tuned.json"


def _read_table(path: Path) -> list[dict]:
    try:
        with open(path) as f:
            doc = json.load(f)
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as e:
        raise ValueError(f"tuned table {path} is unreadable: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("entries"), list):
        raise ValueError(f"tuned table {path}: expected {{\"format\": {FORMAT}, \"entries\": [...]}}")
    return [e for e in doc["entries"] if _valid_entry(e)]


def _valid_entry(e) -> bool:
    try:
        return (isinstance(e["op"], str) and isinstance(e["provider"], str)
                and e["device"] in ("cpu", "cuda") and isinstance(e["device_name"], str)
                and isinstance(e["packs"], dict)
                and all(isinstance(d, str) and all(isinstance(s, int) for s in shape)
                        for d, shape in e["bucket"]))
    except (KeyError, TypeError, ValueError):
        return False


def _entry_key(e: dict) -> tuple:
    return (e["op"], e["device"], e["device_name"], json.dumps(e["bucket"]),
            json.dumps(e["packs"], sort_keys=True))


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


def _set_runtime(op: Op, code: int, bkt: list, provider: str | None) -> None:
    n = len(bkt)
    dts = ffi.new("vt_dtype[]", max(n, 1))
    nd = ffi.new("int32_t[]", max(n, 1))
    sizes = [s for _, shape in bkt for s in shape]
    sz = ffi.new("int64_t[]", sizes or [0])
    for i, (d, shape) in enumerate(bkt):
        t = _types.get_dtype(d)
        dts[i].code, dts[i].bits, dts[i].lanes = t.code, t.bits, 1
        nd[i] = len(shape)
    if lib.vtrt_op_tune_set(op.handle(), code, dts, nd, sz, n,
                            provider.encode() if provider else ffi.NULL) != 0:
        raise error()


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
                chosen[(e["op"], e["device"], json.dumps(e["bucket"]))] = e
    for name in list(_applied_ops):
        h = lib.vtrt_find_op(name.encode())
        if h != ffi.NULL:
            lib.vtrt_op_tune_clear(h, -1)
    _applied_ops.clear()
    lib.vtrt_clear_error()
    count = 0
    for (opname, kind, _), e in chosen.items():
        if lib.vtrt_find_op(opname.encode()) == ffi.NULL:
            lib.vtrt_clear_error()
            continue
        try:
            _set_runtime(Op(opname), CPU if kind == "cpu" else CUDA, e["bucket"], e["provider"])
        except Exception:  # noqa: BLE001 - a provider that is gone: the entry does not apply
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

    __slots__ = ("op", "device", "dtypes", "shapes", "bucket", "times_us", "declined", "winner",
                 "priority_choice")

    def __repr__(self):
        times = ", ".join(f"{p} {t:.1f} us" for p, t in sorted(self.times_us.items(),
                                                                key=lambda kv: kv[1]))
        return (f"<tuned {self.op} {self.dtypes} {[list(s) for s in self.shapes]} on "
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


def _cases(op: Op, shapes, dtypes, trace, device) -> list[tuple]:
    """(dtypes, shapes) per case, one per bucket (the first shape seen of each)."""
    required = [a for a in _tensor_args(op) if not a.optional]
    out = []
    if trace is not None:
        recs = trace.records if hasattr(trace, "records") else trace
        for r in recs:
            rd = r["device"] if isinstance(r, dict) else r.device
            name = r["op"] if isinstance(r, dict) else r.op
            if name == op.name and rd.split(":")[0] == device.type:
                d = r["dtypes"] if isinstance(r, dict) else r.dtypes
                s = r["shapes"] if isinstance(r, dict) else r.shapes
                if len(s) == len(required):  # calls with optional tensors are not replayed
                    out.append((list(d), [tuple(x) for x in s]))
        if not out:
            raise ValueError(f"tune({op.name}): the trace has no call of it on {device}")
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
                out.append(([dt] * len(case), case))
    if trace is None and shapes is None:
        raise ValueError(f"tune({op.name}): give shapes=[...] or trace=...")
    seen, unique = set(), []
    for dts, shp in out:
        key = json.dumps(bucket(dts, shp))
        if key not in seen:
            seen.add(key)
            unique.append((dts, shp))
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
    op's non-tensor arguments (defaults otherwise). A provider that declines a case (raises
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
    for dts, shp in _cases(o, shapes, dtypes, trace, dev):
        inputs = {n: _random(s, _types.get_dtype(d), dev)
                  for n, d, s in zip(tensor_names, dts, shp)}
        call_kwargs = {**kwargs, **inputs}
        res = Result()
        res.op, res.device, res.dtypes, res.shapes = o.name, str(dev), dts, shp
        res.bucket = bucket(dts, shp)
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
                                      f"{dts} {shp}: {res.declined}")
        res.winner = min(res.times_us, key=res.times_us.get)
        results.append(res)
        timed_packs = {p.pack for p in provs if p.name in res.times_us}
        new_entries.append({
            "op": o.name, "device": _DEVICE_KINDS[code], "device_name": dname,
            "bucket": res.bucket, "provider": res.winner,
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
           "bucket_size", "Result", "PACK_TABLE"]
