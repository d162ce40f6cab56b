"""Streams and events, as torch.cuda has them.

The current stream is per thread and per device; it starts as the device's legacy default stream
(`default_stream()`, handle 0), which orders itself with every other blocking stream. `Stream()`
hands out one of a per-device pool of non-blocking streams (32 per priority, round-robin, never
destroyed), like torch. Every op on a CUDA tensor runs on its device's current stream.
"""
from __future__ import annotations

from vibetensor.runtime import check, error, ffi, lib

from ._device import _device_index, _require, is_available

_NULL = ffi.NULL
_new = object.__new__
_current_device = lib.vtrt_cuda_current_device
_current = lib.vtrt_cuda_current_stream
_record = lib.vtrt_cuda_event_record


def _make(ptr, index) -> "Stream":
    s = _new(Stream)
    s._ptr = ptr
    s.device_index = index
    return s


class Stream:
    """A CUDA stream: `Stream(device=None, priority=0)`; priority < 0 is the high-priority pool."""

    __slots__ = ("_ptr", "device_index")

    def __new__(cls, device=None, priority=0):
        idx = _device_index(device)
        out = ffi.new("void**")
        check(lib.vtrt_cuda_stream_from_pool(idx, 1 if priority < 0 else 0, out))
        return _make(out[0], idx)

    @property
    def cuda_stream(self) -> int:
        """The cudaStream_t as an integer (0: the legacy default stream)."""
        return int(ffi.cast("uintptr_t", self._ptr))

    @property
    def device(self):
        from vibetensor.runtime import dtypes as T

        return T.device("cuda", self.device_index)

    @property
    def priority(self) -> int:
        out = ffi.new("int32_t*")
        check(lib.vtrt_cuda_stream_priority(self._ptr, out))
        return out[0]

    def query(self) -> bool:
        """True when all work queued on the stream has completed."""
        r = lib.vtrt_cuda_stream_query(self.device_index, self._ptr)
        if r < 0:
            raise error()
        return bool(r)

    def synchronize(self) -> None:
        check(lib.vtrt_cuda_stream_synchronize(self.device_index, self._ptr))

    def wait_event(self, event: "Event") -> None:
        """Work queued on this stream from now on waits until `event` has completed."""
        if event._ev is not None:
            check(lib.vtrt_cuda_stream_wait_event(self.device_index, self._ptr, event._ev))

    def wait_stream(self, stream: "Stream") -> None:
        """Work queued on this stream from now on waits for the work queued on `stream` now."""
        if stream._ptr != self._ptr or stream.device_index != self.device_index:
            self.wait_event(stream.record_event())

    def record_event(self, event: "Event" = None) -> "Event":
        event = Event() if event is None else event
        event.record(self)
        return event

    def __eq__(self, other):
        return (isinstance(other, Stream) and self._ptr == other._ptr
                and self.device_index == other.device_index)

    def __hash__(self):
        return hash((self.cuda_stream, self.device_index))

    def __repr__(self):
        return f"<vibetensor.cuda.Stream device=cuda:{self.device_index} cuda_stream={self.cuda_stream:#x}>"


class ExternalStream(Stream):
    """Wraps a cudaStream_t made elsewhere (e.g. torch's `s.cuda_stream`); the caller keeps it
    alive for as long as vibetensor may use it."""

    def __new__(cls, stream_ptr: int, device=None):
        idx = _device_index(device)
        s = _new(cls)
        s._ptr = ffi.cast("void*", int(stream_ptr))
        s.device_index = idx
        return s


def current_stream(device=None) -> Stream:
    """The calling thread's current stream on a device (default: the current device)."""
    idx = _device_index(device)
    return _make(lib.vtrt_cuda_current_stream(idx), idx)


def default_stream(device=None) -> Stream:
    """The device's legacy default stream (handle 0)."""
    return _make(_NULL, _device_index(device))


def set_stream(stream: Stream) -> None:
    """Makes `stream` current on its device and that device current (prefer `with stream(s)`)."""
    if stream is None:
        return
    lib.vtrt_cuda_exchange_device(stream.device_index)
    check(lib.vtrt_cuda_set_current_stream(stream.device_index, stream._ptr))


_xdev = lib.vtrt_cuda_exchange_device
_xstream = lib.vtrt_cuda_exchange_stream


class StreamContext:
    """`with vt.cuda.stream(s):` — s becomes its device's current stream and that device the
    current device for the block; both come back on exit. `stream(None)` does nothing."""

    __slots__ = ("stream", "_prev", "_prev_dev")

    def __init__(self, stream):
        self.stream = stream

    def __enter__(self):
        s = self.stream
        if s is not None:
            i = s.device_index
            self._prev_dev = _xdev(i)
            self._prev = _xstream(i, s._ptr)
        return s

    def __exit__(self, *exc):
        s = self.stream
        if s is not None:
            i = s.device_index
            _xstream(i, self._prev)
            if self._prev_dev != i and self._prev_dev >= 0:
                _xdev(self._prev_dev)
        return False


def stream(stream) -> StreamContext:
    return StreamContext(stream)


class Event:
    """A CUDA event: `Event(enable_timing=False, blocking=False, interprocess=False)`. Created on
    the device of the stream it is first recorded on."""

    __slots__ = ("_ev", "_dev", "enable_timing", "blocking", "interprocess")

    def __init__(self, enable_timing=False, blocking=False, interprocess=False):
        _require()
        self._ev = None
        self._dev = -1
        self.enable_timing, self.blocking, self.interprocess = enable_timing, blocking, interprocess

    def record(self, stream: Stream = None) -> None:
        if stream is None:
            if self._ev is not None:  # the common case: three plain calls, no Stream object
                dev = _current_device()
                if dev == self._dev:
                    check(_record(dev, self._ev, _current(dev)))
                    return
            stream = current_stream()
        if self._ev is None:
            out = ffi.new("void**")
            check(lib.vtrt_cuda_event_create(stream.device_index, int(self.enable_timing),
                                             int(self.blocking), int(self.interprocess), out))
            self._ev, self._dev = out[0], stream.device_index
        elif stream.device_index != self._dev:
            raise ValueError(f"Event.record: the event belongs to cuda:{self._dev}, the stream to "
                             f"cuda:{stream.device_index}")
        check(lib.vtrt_cuda_event_record(self._dev, self._ev, stream._ptr))

    def wait(self, stream: Stream = None) -> None:
        """Makes `stream` (default: the current one) wait for this event."""
        if self._ev is not None:
            (current_stream() if stream is None else stream).wait_event(self)

    def query(self) -> bool:
        """True when the work recorded before the event has completed (or it was never recorded)."""
        if self._ev is None:
            return True
        r = lib.vtrt_cuda_event_query(self._dev, self._ev)
        if r < 0:
            raise error()
        return bool(r)

    def synchronize(self) -> None:
        if self._ev is not None:
            check(lib.vtrt_cuda_event_synchronize(self._dev, self._ev))

    def elapsed_time(self, end_event: "Event") -> float:
        """Milliseconds between this event and `end_event` (both recorded, both with timing)."""
        if self._ev is None or end_event._ev is None:
            raise RuntimeError("Event.elapsed_time: both events must be recorded first")
        ms = ffi.new("float*")
        check(lib.vtrt_cuda_event_elapsed_time(self._dev, self._ev, end_event._ev, ms))
        return float(ms[0])

    @property
    def cuda_event(self) -> int:
        return 0 if self._ev is None else int(ffi.cast("uintptr_t", self._ev))

    def __del__(self):
        if getattr(self, "_ev", None) is not None:
            lib.vtrt_cuda_event_destroy(self._dev, self._ev)

    def __repr__(self):
        return f"<vibetensor.cuda.Event {self.cuda_event:#x}>"


__all__ = ["Stream", "ExternalStream", "Event", "StreamContext", "current_stream",
           "default_stream", "set_stream", "stream", "is_available"]
