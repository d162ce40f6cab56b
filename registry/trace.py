"""Provenance of op calls: which provider served each call, from which pack, and why.

    with vt.ops.trace() as t:
        y = model(x)
    print(t.summary())                 # grouped by (op, provider, reason)
    t.to_json("calls.json")            # every record
    t.to_chrome_trace("calls.trace")   # chrome://tracing, ui.perfetto.dev

`VT_TRACE=1` traces the whole process and prints the summary to stderr at exit (or writes it to
VT_TRACE_FILE; VT_TRACE=json / VT_TRACE=chrome write that format there instead).

The runtime does the recording (runtime/src/trace.cpp): while any trace is open every call,
including the calls ops make through the host (depth 1, 2, ...), appends a fixed-size C record to
one buffer; this module drains that buffer only when a trace is entered, left or read, so tracing
costs a call no Python work. Closed, a call pays one predictable branch in the dispatcher.
"""
from __future__ import annotations

import atexit
import json
import os
import sys
import threading
import time

from vibetensor.runtime import dtypes as _types
from vibetensor.runtime import ffi, lib

from . import loader

REASONS = {
    lib.VTRT_REASON_PRIORITY: "priority",  # the highest priority provider of the device
    lib.VTRT_REASON_PIN: "pin",            # vt.ops.use pinned it
    lib.VTRT_REASON_TUNED: "tuned",        # the tuned table's winner for this shape bucket
    lib.VTRT_REASON_FALLBACK: "fallback",  # the preferred provider declined the call
    lib.VTRT_REASON_META: "meta",          # the op's meta step is its whole result (views, ...)
}
_DEVICE_NAMES = {_types.CPU: "cpu", _types.CUDA: "cuda", _types.META: "meta"}
_CHUNK = 4096  # records taken from the runtime per native call

_lock = threading.Lock()
_active: list["Trace"] = []  # open traces, outermost first; each gets every record drained
_buf = None  # cffi array of _CHUNK records, made on first use


class Record:
    """One op call. Times are in nanoseconds of the monotonic clock (time.perf_counter_ns)."""

    __slots__ = ("op", "provider", "pack", "pack_version", "pack_sha256", "reason", "declined",
                 "device", "dtypes", "shapes", "depth", "status", "start_ns", "end_ns", "thread")

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


def _pack_info(name: str, cache: dict) -> tuple:
    info = cache.get(name)
    if info is None:
        p = loader.get(name)
        m = p.manifest_info if p is not None else None
        info = (m.version, m.sha256) if m is not None else (None, None)
        cache[name] = info
    return info


def _dtype_name(dt) -> str:
    try:
        return _types.from_key(dt.code, dt.bits).name
    except KeyError:
        return f"dtype({dt.code},{dt.bits})"


def _convert(r, packs: dict, ops: dict) -> Record:
    rec = Record()
    key = int(ffi.cast("uintptr_t", r.op))
    op = ops.get(key)
    if op is None:
        op = ops[key] = ffi.string(lib.vtrt_op_name(r.op)).decode()
    rec.op = op
    rec.provider = ffi.string(r.provider).decode()
    rec.pack = ffi.string(r.pack).decode()
    rec.pack_version, rec.pack_sha256 = _pack_info(rec.pack, packs) if rec.pack else (None, None)
    rec.reason = REASONS.get(r.reason, str(r.reason))
    rec.declined = ffi.string(r.declined).decode() or None
    kind = _DEVICE_NAMES.get(r.device.type, str(r.device.type))
    rec.device = f"cuda:{r.device.index}" if r.device.type == _types.CUDA else kind
    n = r.ntensors
    rec.dtypes = [_dtype_name(r.dtypes[i]) for i in range(n)]
    rec.shapes = [tuple(r.sizes[i][d] for d in range(min(r.ndims[i], lib.VTRT_TRACE_DIMS)))
                  for i in range(n)]
    rec.depth, rec.status = r.depth, r.status
    rec.start_ns, rec.end_ns, rec.thread = r.start_ns, r.end_ns, r.thread
    return rec


def _drain() -> None:
    """Move the runtime's buffered records into every open trace. Called under _lock."""
    global _buf
    if lib.vtrt_trace_pending() == 0:
        return
    if _buf is None:
        _buf = ffi.new("vtrt_trace_record[]", _CHUNK)
    packs: dict = {}
    ops: dict = {}
    while True:
        n = lib.vtrt_trace_take(_buf, _CHUNK)
        if n == 0:
            break
        recs = [_convert(_buf[i], packs, ops) for i in range(n)]
        for t in _active:
            t._take(recs)


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
        self._records: list[Record] = []
        self._groups: dict = {}  # (op, provider, reason) -> running totals
        self._open = False
        self._dropped_at_start = 0
        self.dropped = 0

    def _take(self, recs) -> None:
        if self.keep_records:
            self._records.extend(recs)
        acc = self._groups
        for r in recs:
            g = acc.get((r.op, r.provider, r.reason))
            if g is None:
                g = acc[(r.op, r.provider, r.reason)] = {
                    "op": r.op, "provider": r.provider, "reason": r.reason, "pack": r.pack,
                    "pack_version": r.pack_version, "pack_sha256": r.pack_sha256, "calls": 0,
                    "errors": 0, "total_us": 0.0, "min_depth": r.depth, "max_depth": r.depth,
                    "declined": set(), "devices": set()}
            g["calls"] += 1
            g["errors"] += r.status != 0
            g["total_us"] += (r.end_ns - r.start_ns) / 1e3
            if r.depth < g["min_depth"]:
                g["min_depth"] = r.depth
            if r.depth > g["max_depth"]:
                g["max_depth"] = r.depth
            g["devices"].add(r.device)
            if r.declined:
                g["declined"].add(r.declined)

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
