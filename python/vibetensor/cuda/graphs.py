"""CUDA graphs: capture a sequence of ops once, replay it with one launch.

    g = vt.cuda.CUDAGraph()
    with vt.cuda.graph(g):          # captured on a side stream, into a private memory pool
        y = (x * 2 + 1).sin()
    x.copy_(new_input); g.replay()  # y holds the new result

Rules (as torch's): static shapes and addresses (refill inputs with copy_), no host syncs inside
the capture (.item(), .cpu(), printing raise a clear error), keep the captured tensors alive while
you replay. Random ops draw fresh numbers at each replay, the same ones the eager sequence would.
Capture mode: "thread_local" by default (other threads may keep using CUDA while one thread
captures); "global" and "relaxed" as in torch. A graph remembers the op packs whose kernels it
captured (g.packs()); after vt.ops.reload of one of them, replay() raises RuntimeError naming it
rather than run the old code: capture again.
"""
from __future__ import annotations

import gc

from vibetensor.runtime import check, checked, ffi, lib

from ._device import _require, synchronize
from .memory import empty_cache
from .streams import Stream, current_stream, stream as _stream_ctx

_MODES = {"global": 0, "thread_local": 1, "relaxed": 2}


def _pool_id(pool) -> int:
    if pool is None:
        return 0
    if isinstance(pool, tuple):  # torch's handles are tuples (0, id)
        pool = pool[-1]
    return int(pool)


def graph_pool_handle() -> int:
    """A fresh private-pool id; pass it as `pool=` to several graphs to let them share memory
    (they must not replay concurrently)."""
    _require()
    return int(lib.vtrt_cuda_graph_pool_handle())


def is_current_stream_capturing() -> bool:
    return bool(lib.vtrt_cuda_is_current_stream_capturing())


class CUDAGraph:
    """A captured CUDA graph: capture_begin/capture_end around the ops (on a non-default stream),
    then replay(). reset() frees it (and its share of the private pool)."""

    __slots__ = ("_g",)

    def __init__(self):
        _require()
        self._g = ffi.gc(checked(lib.vtrt_cuda_graph_new()), lib.vtrt_cuda_graph_free)

    def capture_begin(self, pool=None, capture_error_mode: str = "thread_local") -> None:
        if capture_error_mode not in _MODES:
            raise ValueError(f"capture_error_mode must be one of {', '.join(_MODES)}, "
                             f"got {capture_error_mode!r}")
        check(lib.vtrt_cuda_graph_capture_begin(self._g, _pool_id(pool), _MODES[capture_error_mode]))

    def capture_end(self) -> None:
        check(lib.vtrt_cuda_graph_capture_end(self._g))

    def _abort(self) -> None:
        lib.vtrt_cuda_graph_capture_abort(self._g)

    def replay(self) -> None:
        """Launches the graph on the current stream. Raises RuntimeError, naming the pack, when a
        pack whose kernels the capture ran was reloaded since (vt.ops.reload): the graph would
        go on running the old code; capture again."""
        check(lib.vtrt_cuda_graph_replay(self._g))

    def packs(self) -> list[str]:
        """The op packs whose kernels the capture ran (the graph keeps their code mapped)."""
        n = lib.vtrt_cuda_graph_num_packs(self._g)
        return [ffi.string(lib.vtrt_cuda_graph_pack(self._g, i)).decode() for i in range(n)]

    def reset(self) -> None:
        check(lib.vtrt_cuda_graph_reset(self._g))

    def pool(self) -> int:
        """The id of this graph's private memory pool (to share it: `pool=g.pool()`)."""
        return int(lib.vtrt_cuda_graph_pool(self._g))


class graph:
    """`with vt.cuda.graph(g, pool=None, stream=None, capture_error_mode="thread_local"):`
    captures the block into `g`. Before capture it synchronizes, collects garbage and empties the
    cache (as torch); the capture runs on `stream` (default: one side stream shared by all
    captures), which first waits for the current stream. An exception inside the block ends the
    capture, discards it and propagates."""

    default_capture_stream = None

    def __init__(self, cuda_graph: CUDAGraph, pool=None, stream: Stream = None,
                 capture_error_mode: str = "thread_local"):
        if stream is None:
            if graph.default_capture_stream is None:
                graph.default_capture_stream = Stream()
            stream = graph.default_capture_stream
        self.cuda_graph = cuda_graph
        self.pool = pool
        self.capture_stream = stream
        self.capture_error_mode = capture_error_mode
        self._ctx = _stream_ctx(stream)

    def __enter__(self):
        synchronize()
        gc.collect()
        empty_cache()
        self.capture_stream.wait_stream(current_stream(self.capture_stream.device_index))
        self._ctx.__enter__()
        try:
            self.cuda_graph.capture_begin(self.pool, self.capture_error_mode)
        except BaseException:
            self._ctx.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                self.cuda_graph.capture_end()
            else:
                self.cuda_graph._abort()
        finally:
            self._ctx.__exit__(None, None, None)
        return False


__all__ = ["CUDAGraph", "graph", "graph_pool_handle", "is_current_stream_capturing"]
