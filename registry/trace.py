"""Provenance of op calls: which provider served each call, from which pack, and why.

    with vt.ops.trace() as t:
        y = model(x)
    print(t.summary())                 # grouped by (op, provider, reason)
    t.to_json("calls.json")            # every record
    t.to_chrome_trace("calls.trace")   # chrome://tracing, ui.perfetto.dev

`VT_TRACE=1` traces the whole process and prints the summary to stderr at exit (or writes it to
VT_TRACE_FILE; VT_TRACE=json / VT_TRACE=chrome write that format there instead).

A record also keeps the call's non-tensor arguments (`options`: name -> value, defaults filled
in), which is what `vt.ops.tune(op, trace=t)` replays besides the shapes.

The runtime does the recording (runtime/src/trace.cpp): while any trace is open every call,
including the calls ops make through the host (depth 1, 2, ...), appends a fixed-size C record to
one buffer; this module drains that buffer only when a trace is entered, left or read, so tracing
costs a call no Python work. Closed, a call pays one predictable branch in the dispatcher.
"""
from __future__ import annotations

import atexit
import json
import os
import struct
import sys
import threading
import time

import numpy as np

from vibetensor.runtime import dtypes as _types
from vibetensor.runtime import BOOL, DEVICE, DTYPE, FLOAT, INT, INTS, NONE, STR, ffi, lib

from . import loader

REASONS = {
    lib.VTRT_REASON_PRIORITY: "priority",  # the highest priority provider of the device
    lib.VTRT_REASON_PIN: "pin",            # vt.ops.use pinned it
    lib.VTRT_REASON_TUNED: "tuned",        # the tuned table's winner for this shape bucket
    lib.VTRT_REASON_FALLBACK: "fallback",  # the preferred provider declined the call
    lib.VTRT_REASON_META: "meta",          # the op's meta step is its whole result (views, ...)
}
_DEVICE_NAMES = {_types.CPU: "cpu", _types.CUDA: "cuda", _types.META: "meta"}
_CHUNK = 16384  # records taken from the runtime per native call

_lock = threading.Lock()
_active: list["Trace"] = []  # open traces, outermost first; each gets every record drained
_buf = None  # cffi array of _CHUNK records, made on first use


class Record:
    """One op call. Times are in nanoseconds of the monotonic clock (time.perf_counter_ns)."""

    __slots__ = ("op", "provider", "pack", "pack_version", "pack_sha256", "reason", "declined",
                 "device", "dtypes", "shapes", "options", "depth", "status", "start_ns", "end_ns",
                 "thread")

    @property
    def duration_us(self) -> float:
        return (self.end_ns - self.start_ns) / 1e3

    @property
    def ok(self) -> bool:
        return self.status == 0

    def as_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__slots__}
        d["shapes"] = [list(s) for s in self.shapes]
        d["duration_us"] = round(self.duration_us, 3)
        return d

    def __repr__(self):
        why = f"fallback from {self.declined}" if self.reason == "fallback" else self.reason
        return (f"<call {self.op} -> {self.provider} ({self.pack}) on {self.device} [{why}] "
                f"{', '.join(f'{d}{list(s)}' for d, s in zip(self.dtypes, self.shapes))} "
                f"{self.duration_us:.1f} us depth {self.depth}>")


# vtrt_trace_option: arg, tag, len, then a 24-byte union (checked against cffi's layout here)
_OPTION = struct.Struct("<iiq24s")
_OPTION_SIZE = ffi.sizeof("vtrt_trace_option")
assert _OPTION_SIZE == _OPTION.size and ffi.offsetof("vtrt_trace_option", "v") == 16
assert lib.VTRT_TRACE_STR == 24 and lib.VTRT_TRACE_INTS == 3


def _record_dtype() -> np.dtype:
    """vtrt_trace_record as a numpy structured dtype (offsets from cffi, so they match the C
    compiler's layout): a drained chunk is one copy, and grouping is vectorised."""
    T = "vtrt_trace_record"
    K, D, N = lib.VTRT_TRACE_TENSORS, lib.VTRT_TRACE_DIMS, lib.VTRT_TRACE_NAME
    ptr = "<u8" if ffi.sizeof("void*") == 8 else "<u4"
    dt = np.dtype([("code", "u1"), ("bits", "u1"), ("lanes", "<u2")])
    fields = [("op", ptr, "op"), ("provider", f"S{N}", "provider"), ("pack", f"S{N}", "pack"),
              ("declined", f"S{N}", "declined"), ("reason", "<i4", "reason"),
              ("depth", "<i4", "depth"), ("status", "<i4", "status"),
              ("dev_type", "<i4", "device"), ("start_ns", "<i8", "start_ns"),
              ("end_ns", "<i8", "end_ns"), ("thread", "<u8", "thread"),
              ("ntensors", "<i4", "ntensors"), ("dtypes", (dt, (K,)), "dtypes"),
              ("ndims", ("<i4", (K,)), "ndims"), ("sizes", ("<i8", (K, D)), "sizes"),
              ("noptions", "<i4", "noptions"),
              ("options", (f"V{_OPTION_SIZE}", (lib.VTRT_TRACE_OPTIONS,)), "options")]
    names = [f[0] for f in fields] + ["dev_index"]
    formats = [f[1] for f in fields] + ["<i4"]
    offsets = [ffi.offsetof(T, f[2]) for f in fields] + [ffi.offsetof(T, "device") + 4]
    return np.dtype({"names": names, "formats": formats, "offsets": offsets,
                     "itemsize": ffi.sizeof(T)})


_RECORD = _record_dtype()
_op_names: dict = {}  # vt_op* as an int -> name (ops are never freed, so pointers stay theirs)


def _op_name(ptr: int) -> str:
    name = _op_names.get(ptr)
    if name is None:
        name = _op_names[ptr] = ffi.string(lib.vtrt_op_name(ffi.cast("vt_op*", ptr))).decode()
    return name


_arg_names: dict = {}  # (vt_op* as an int, loader generation) -> the schema's argument names


def _arg_name(ptr: int, i: int) -> str:
    key = (ptr, loader.generation[0])
    names = _arg_names.get(key)
    if names is None:
        h = ffi.cast("vt_op*", ptr)
        info = ffi.new("vtrt_arg_info*")
        names = []
        for j in range(lib.vtrt_op_num_args(h)):
            lib.vtrt_op_arg(h, j, info)
            names.append(ffi.string(info.name).decode())
        _arg_names[key] = names
    return names[i] if i < len(names) else f"arg{i}"


_CUT = object()  # a value the record kept only part of (a long string or int list)


def _option_value(tag: int, length: int, raw: bytes):
    if tag == NONE:
        return None
    if tag in (BOOL, INT):
        (i,) = struct.unpack_from("<q", raw)
        return bool(i) if tag == BOOL else i
    if tag == FLOAT:
        return struct.unpack_from("<d", raw)[0]
    if tag == STR:
        return raw.split(b"\0", 1)[0].decode(errors="replace") if length < len(raw) else _CUT
    if tag == INTS:
        k = lib.VTRT_TRACE_INTS
        return list(struct.unpack_from(f"<{length}q", raw)) if length <= k else _CUT
    if tag == DTYPE:
        return _dtype_name(raw[0], raw[1])
    if tag == DEVICE:
        kind, index = struct.unpack_from("<ii", raw)
        return _device_name(kind, index)
    return _CUT


def _options(op_ptr: int, n: int, raw: bytes) -> dict:
    """name -> value of a record's kept non-tensor arguments (ones kept in part are left out)."""
    out = {}
    for j in range(n):
        arg, tag, length, payload = _OPTION.unpack_from(raw, j * _OPTION_SIZE)
        v = _option_value(tag, length, payload)
        if v is not _CUT:
            out[_arg_name(op_ptr, arg)] = v
    return out


def _pack_info(names) -> dict:
    """pack name -> (version, sha256) of the packs loaded now (None, None for others)."""
    out = {}
    for name in names:
        p = loader.get(name)
        m = p.manifest_info if p is not None else None
        out[name] = (m.version, m.sha256) if m is not None else (None, None)
    return out


def _dtype_name(code: int, bits: int) -> str:
    try:
        return _types.from_key(code, bits).name
    except KeyError:
        return f"dtype({code},{bits})"


def _device_name(kind: int, index: int) -> str:
    if kind == _types.CUDA:
        return f"cuda:{index}"
    return _DEVICE_NAMES.get(kind, str(kind))


class _Chunk:
    """Records drained together: the raw array and the pack versions and hashes of that time."""

    __slots__ = ("rows", "packs")

    def __init__(self, rows, packs):
        self.rows, self.packs = rows, packs

    def records(self) -> list[Record]:
        rows = self.rows
        # only the tensors and dims some record uses become Python ints (not 8 x 8 per record)
        nt_max = int(rows["ntensors"].max(initial=0))
        nd_max = int(rows["ndims"][:, :nt_max].max(initial=0))
        cols = [rows[f].tolist() for f in ("op", "provider", "pack", "declined", "reason",
                                           "depth", "status", "dev_type", "dev_index",
                                           "start_ns", "end_ns", "thread", "ntensors")]
        cols.append(rows["ndims"][:, :nt_max].tolist())
        cols.append(rows["sizes"][:, :nt_max, :nd_max].tolist())
        no_max = int(rows["noptions"].max(initial=0))
        stride = no_max * _OPTION_SIZE
        blob = np.ascontiguousarray(rows["options"][:, :no_max]).tobytes()  # one copy, sliced
        nopts = rows["noptions"].tolist()
        parsed: dict = {}  # (op, options' bytes) -> dict: a loop's calls repeat their arguments
        codes = rows["dtypes"]["code"][:, :nt_max].tolist()
        bits = rows["dtypes"]["bits"][:, :nt_max].tolist()
        names: dict = {}
        strings: dict = {}

        def text(b: bytes) -> str:
            t = strings.get(b)
            if t is None:
                t = strings[b] = b.decode()
            return t

        out = []
        for (op, prov, pack, declined, reason, depth, status, dev_type, dev_index, t0, t1,
             thread, nt, ndims, sizes), cs, bs in zip(zip(*cols), codes, bits):
            rec = Record()
            rec.op = _op_name(op)
            rec.provider, rec.pack = text(prov), text(pack)
            rec.pack_version, rec.pack_sha256 = self.packs.get(rec.pack, (None, None))
            rec.reason = REASONS.get(reason, str(reason))
            rec.declined = text(declined) or None
            rec.device = _device_name(dev_type, dev_index)
            nt = min(nt, len(ndims))
            dts = []
            for c, b in zip(cs[:nt], bs[:nt]):
                n = names.get((c, b))
                if n is None:
                    n = names[(c, b)] = _dtype_name(c, b)
                dts.append(n)
            rec.dtypes = dts
            rec.shapes = [tuple(sizes[i][:ndims[i]]) for i in range(nt)]
            no, at = nopts[len(out)], len(out) * stride
            raw = blob[at:at + no * _OPTION_SIZE]
            opts = parsed.get((op, raw))
            if opts is None:
                opts = parsed[(op, raw)] = _options(op, no, raw)
            rec.options = dict(opts)
            rec.depth, rec.status, rec.start_ns, rec.end_ns, rec.thread = (depth, status, t0, t1,
                                                                           thread)
            out.append(rec)
        return out


def _words_hash(col) -> np.ndarray:
    """A 64-bit hash per fixed-size bytes value (provider names): grouping sorts integers."""
    words = np.ascontiguousarray(col).view("<u8").reshape(len(col), -1)
    h = np.full(len(col), 1469598103934665603, dtype=np.uint64)
    for j in range(words.shape[1]):
        h = (h ^ words[:, j]) * np.uint64(1099511628211)
    return h


def _drain() -> None:
    """Move the runtime's buffered records into every open trace. Called under _lock."""
    global _buf
    if not _active:
        return
    if _buf is None:
        _buf = ffi.new("vtrt_trace_record[]", _CHUNK)
    while True:
        n = lib.vtrt_trace_take(_buf, _CHUNK)
        if n == 0:
            break
        rows = np.frombuffer(ffi.buffer(_buf, n * _RECORD.itemsize), dtype=_RECORD)
        if any(t.keep_records for t in _active):
            rows = rows.copy()  # kept past the next take into the same buffer
        chunk = _Chunk(rows, _pack_info(np.unique(rows["pack"]).astype(str).tolist()))
        for t in _active:
            t._take(chunk)


def _sync() -> None:
    lib.vtrt_trace_set_enabled(1 if _active else 0, max((t.capacity for t in _active), default=0))


class Trace:
    """Records op calls while open (`with vt.ops.trace() as t:`). Traces nest: an inner trace
    sees its own calls, the outer one all of them. `capacity` bounds the runtime's buffer between
    drains; calls past it are counted in `dropped`. keep_records=False keeps only the groups
    (summary), so a long run costs no memory per call."""

    def __init__(self, capacity: int = 1_000_000, keep_records: bool = True):
        if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity <= 0:
            raise ValueError(f"trace: capacity must be a positive int, got {capacity!r}")
        self.capacity = capacity
        self.keep_records = bool(keep_records)
        self._chunks: list[_Chunk] = []  # drained, turned into Records only when asked
        self._records: list[Record] = []
        self._converted = 0  # chunks already in _records
        self._groups: dict = {}  # (op, provider, reason) -> running totals
        self._open = False
        self._dropped_at_start = 0
        self.dropped = 0

    def _take(self, chunk: _Chunk) -> None:
        if self.keep_records:
            self._chunks.append(chunk)
        rows = chunk.rows
        with np.errstate(over="ignore"):
            key = (_words_hash(rows["provider"]) ^ rows["op"].astype(np.uint64)) * np.uint64(31) \
                + rows["reason"].astype(np.uint64)
        uniq, first, inv = np.unique(key, return_index=True, return_inverse=True)
        inv = inv.reshape(-1)
        k = len(uniq)
        calls = np.bincount(inv, minlength=k)
        total = np.bincount(inv, weights=(rows["end_ns"] - rows["start_ns"]) / 1e3, minlength=k)
        errors = np.bincount(inv, weights=rows["status"] != 0, minlength=k)
        lo = np.full(k, np.iinfo(np.int32).max)
        hi = np.full(k, -1)
        np.minimum.at(lo, inv, rows["depth"])
        np.maximum.at(hi, inv, rows["depth"])
        dev = (inv.astype(np.int64) << 32) | (rows["dev_type"].astype(np.int64) << 16) \
            | rows["dev_index"].astype(np.int64)
        devices = [(d >> 32, (d >> 16) & 0xFFFF, d & 0xFFFF) for d in np.unique(dev).tolist()]
        declined = np.flatnonzero(rows["declined"] != b"")
        refused = []
        if len(declined):
            with np.errstate(over="ignore"):
                dk = _words_hash(rows["declined"][declined]) * np.uint64(31) + \
                    inv[declined].astype(np.uint64)
            _, at = np.unique(dk, return_index=True)
            refused = [(int(inv[declined[i]]), int(declined[i])) for i in at.tolist()]
        gkeys = []
        for j in range(k):
            r = rows[first[j]]
            op, prov, why = _op_name(int(r["op"])), r["provider"].decode(), REASONS.get(
                int(r["reason"]), str(int(r["reason"])))
            g = self._groups.get((op, prov, why))
            if g is None:
                pack = r["pack"].decode()
                version, sha = chunk.packs.get(pack, (None, None))
                g = self._groups[(op, prov, why)] = {
                    "op": op, "provider": prov, "reason": why, "pack": pack,
                    "pack_version": version, "pack_sha256": sha, "calls": 0, "errors": 0,
                    "total_us": 0.0, "min_depth": int(lo[j]), "max_depth": int(hi[j]),
                    "declined": set(), "devices": set()}
            g["calls"] += int(calls[j])
            g["errors"] += int(errors[j])
            g["total_us"] += float(total[j])
            g["min_depth"] = min(g["min_depth"], int(lo[j]))
            g["max_depth"] = max(g["max_depth"], int(hi[j]))
            gkeys.append(g)
        for j, kind, index in devices:
            gkeys[j]["devices"].add(_device_name(kind, index))
        for j, i in refused:
            gkeys[j]["declined"].add(rows["declined"][i].decode())

    def __enter__(self):
        with _lock:
            if self._open:
                raise RuntimeError("trace: this trace is already open")
            _drain()  # records made before this trace opened belong to the outer ones only
            self._dropped_at_start = lib.vtrt_trace_dropped()
            _active.append(self)
            self._open = True
            _sync()
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self) -> None:
        with _lock:
            if not self._open:
                return
            _drain()
            self.dropped = lib.vtrt_trace_dropped() - self._dropped_at_start
            _active.remove(self)
            self._open = False
            _sync()

    @property
    def records(self) -> list[Record]:
        if not self.keep_records:
            raise ValueError("trace: this trace keeps groups only (keep_records=False)")
        if self._open:
            with _lock:
                _drain()
        while self._converted < len(self._chunks):
            self._records.extend(self._chunks[self._converted].records())
            self._converted += 1
        return list(self._records)

    @property
    def calls(self) -> int:
        """How many calls were recorded (dropped ones not counted)."""
        return sum(g["calls"] for g in self.groups())

    def groups(self) -> list[dict]:
        """Calls grouped by (op, provider, reason): count, total and mean time, depth range,
        pack, version and hash, and for fallbacks which provider declined. Most time first."""
        if self._open:
            with _lock:
                _drain()
        out = []
        for g in self._groups.values():
            g = dict(g, mean_us=g["total_us"] / g["calls"], declined=sorted(g["declined"]),
                     devices=sorted(g["devices"]))
            out.append(g)
        out.sort(key=lambda g: -g["total_us"])
        return out

    def summary(self) -> str:
        """A table of groups(): what served each op, why, how often and how long."""
        rows = [("op", "provider", "pack", "reason", "calls", "total us", "mean us", "depth")]
        for g in self.groups():
            ver = f"{g['pack']} {g['pack_version']}" if g["pack_version"] else g["pack"]
            why = g["reason"]
            if g["declined"]:
                why += f" (declined: {', '.join(g['declined'])})"
            if g["errors"]:
                why += f" [{g['errors']} failed]"
            depth = (str(g["min_depth"]) if g["min_depth"] == g["max_depth"]
                     else f"{g['min_depth']}-{g['max_depth']}")
            rows.append((g["op"], g["provider"], ver, why, str(g["calls"]),
                         f"{g['total_us']:.1f}", f"{g['mean_us']:.2f}", depth))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) if i < 4 else c.rjust(w)
                           for i, (c, w) in enumerate(zip(r, widths))).rstrip() for r in rows]
        tail = f"{self.calls} calls" + (f", {self.dropped} dropped (capacity {self.capacity})"
                               if self.dropped else "")
        return "\n".join(lines + [tail])

    def to_json(self, path) -> None:
        """Every record and the groups, as one JSON document."""
        doc = {"records": [r.as_dict() for r in self.records], "summary": self.groups(),
               "dropped": self.dropped}
        _write(path, doc)

    def to_chrome_trace(self, path) -> None:
        """The records as complete events ("ph": "X") of the Trace Event Format, which
        chrome://tracing and Perfetto open; nested calls show under their caller."""
        pid = os.getpid()
        events = [{"name": r.op, "cat": r.provider or "none", "ph": "X", "pid": pid,
                   "tid": r.thread, "ts": r.start_ns / 1e3, "dur": (r.end_ns - r.start_ns) / 1e3,
                   "args": {"provider": r.provider, "pack": r.pack, "version": r.pack_version,
                            "reason": r.reason, "declined": r.declined, "device": r.device,
                            "dtypes": r.dtypes, "shapes": [list(s) for s in r.shapes],
                            "options": r.options,
                            "depth": r.depth, "status": r.status}}
                  for r in self.records]
        _write(path, {"traceEvents": events, "displayTimeUnit": "ns"})

    def __repr__(self):
        state = "open" if self._open else "closed"
        return f"<vt.ops.trace ({state}) {sum(g['calls'] for g in self._groups.values())} calls>"


def _write(path, doc) -> None:
    with open(os.fspath(path), "w") as f:
        json.dump(doc, f, indent=1)


def trace(capacity: int = 1_000_000, keep_records: bool = True) -> Trace:
    """A new trace; use it as a context manager (`with vt.ops.trace() as t:`)."""
    return Trace(capacity, keep_records)


# -- VT_TRACE: the whole process --------------------------------------------------------------

_process_trace: Trace | None = None


def _finish_process_trace() -> None:
    t = _process_trace
    if t is None:
        return
    t.close()
    mode = os.environ.get("VT_TRACE", "1").strip().lower()
    path = os.environ.get("VT_TRACE_FILE")
    if mode == "json" and path:
        t.to_json(path)
    elif mode == "chrome" and path:
        t.to_chrome_trace(path)
    elif path:
        with open(path, "w") as f:
            f.write(t.summary() + "\n")
    else:
        sys.stderr.write("vibetensor trace (VT_TRACE):\n" + t.summary() + "\n")


def start_from_env() -> None:
    """VT_TRACE=1 (or summary, json, chrome): trace from now until the process exits."""
    global _process_trace
    mode = os.environ.get("VT_TRACE", "").strip().lower()
    if not mode or mode == "0" or _process_trace is not None:
        return
    if mode not in ("1", "summary", "json", "chrome"):
        raise ValueError(f"VT_TRACE={mode!r}: expected 1, summary, json or chrome")
    if mode in ("json", "chrome") and not os.environ.get("VT_TRACE_FILE"):
        raise ValueError(f"VT_TRACE={mode} needs VT_TRACE_FILE, the file to write")
    _process_trace = Trace(keep_records=mode in ("json", "chrome")).__enter__()
    atexit.register(_finish_process_trace)
    threading.Thread(target=_drain_forever, name="vt-trace-drain", daemon=True).start()


def _drain_forever() -> None:
    """The process trace's drainer: keeps the runtime's buffer short on a long run."""
    while _process_trace is not None and _process_trace._open:
        time.sleep(0.25)
        with _lock:
            _drain()


__all__ = ["Trace", "Record", "trace", "REASONS", "start_from_env"]
