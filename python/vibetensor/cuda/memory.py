"""The CUDA caching allocator seen from Python, with torch.cuda's names: memory_stats (the same
keys as torch's), memory_allocated/reserved and their peaks, memory_snapshot, empty_cache,
set_per_process_memory_fraction, mem_get_info; and the pinned host allocator's counters.

Without a GPU the queries answer as torch does before CUDA is initialised: {} / 0 / [].
"""
from __future__ import annotations

from vibetensor.runtime import check, error, ffi, lib

from ._device import _device_index, device_count, is_available

_METRICS = ("allocation", "segment", "active", "inactive_split", "allocated_bytes",
            "reserved_bytes", "active_bytes", "inactive_split_bytes", "requested_bytes")
_POOLS = ("all", "small_pool", "large_pool")
_KINDS = ("current", "peak", "allocated", "freed")
_COUNTERS = ("num_alloc_retries", "num_ooms", "num_sync_all_streams", "num_device_alloc",
             "num_device_free")


def memory_stats(device=None) -> dict:
    """A flat dict: "<metric>.<pool>.<kind>" (e.g. "allocated_bytes.all.current") for metric in
    allocation, segment, active, inactive_split, allocated_bytes, reserved_bytes, active_bytes,
    inactive_split_bytes, requested_bytes; pool in all, small_pool, large_pool; kind in current,
    peak, allocated, freed. Plus num_alloc_retries, num_ooms, num_sync_all_streams,
    num_device_alloc, num_device_free, and limit_bytes (the per-process cap; 0 = none)."""
    if not is_available():
        return {}
    s = ffi.new("vtrt_cuda_memory_stats*")
    check(lib.vtrt_cuda_memory_stats_get(_device_index(device), s))
    out = {}
    for m in _METRICS:
        arr = getattr(s, m)
        for i, p in enumerate(_POOLS):
            st = arr[i]
            for k in _KINDS:
                out[f"{m}.{p}.{k}"] = getattr(st, k)
    for c in _COUNTERS:
        out[c] = getattr(s, c)
    out["limit_bytes"] = s.limit_bytes
    return dict(sorted(out.items()))


def _stat(key, device):
    return memory_stats(device).get(key, 0)


def memory_allocated(device=None) -> int:
    """Bytes of device memory held by live tensors (rounded block sizes)."""
    return _stat("allocated_bytes.all.current", device)


def max_memory_allocated(device=None) -> int:
    return _stat("allocated_bytes.all.peak", device)


def memory_reserved(device=None) -> int:
    """Bytes the allocator holds from CUDA (allocated + cached)."""
    return _stat("reserved_bytes.all.current", device)


def max_memory_reserved(device=None) -> int:
    return _stat("reserved_bytes.all.peak", device)


def reset_peak_memory_stats(device=None) -> None:
    if is_available():
        check(lib.vtrt_cuda_reset_peak_memory_stats(_device_index(device)))


reset_max_memory_allocated = reset_peak_memory_stats


def reset_accumulated_memory_stats(device=None) -> None:
    if is_available():
        check(lib.vtrt_cuda_reset_accumulated_memory_stats(_device_index(device)))


def empty_cache() -> None:
    """Returns every cached, unused segment of every device to CUDA (tensors keep theirs)."""
    for i in range(device_count()):
        check(lib.vtrt_cuda_empty_cache(i))


def set_per_process_memory_fraction(fraction: float, device=None) -> None:
    """Caps this process's reserved memory on a device at fraction * its total memory; a request
    beyond the cap raises MemoryError (after the cache is freed and the request retried)."""
    if not isinstance(fraction, (int, float)):
        raise TypeError("set_per_process_memory_fraction: fraction must be a float")
    check(lib.vtrt_cuda_set_memory_fraction(_device_index(device), float(fraction)))


def mem_get_info(device=None) -> tuple:
    """(free, total) bytes of the device, as CUDA reports them."""
    f, t = ffi.new("int64_t*"), ffi.new("int64_t*")
    check(lib.vtrt_cuda_mem_get_info(_device_index(device), f, t))
    return (f[0], t[0])


_STATES = {0: "inactive", 1: "active_allocated", 2: "active_pending_free"}


def memory_snapshot(device=None) -> list:
    """The allocator's segments, each a dict with device, address, total_size, allocated_size,
    active_size, stream, segment_type ("small"/"large"), segment_pool_id (0: the device's pools,
    else a graph pool) and blocks: [{address, size, requested_size, state}], state being
    "active_allocated", "active_pending_free" (freed, stream work still using it) or "inactive".
    Without a device argument: every device."""
    if not is_available():
        return []
    devices = range(device_count()) if device is None else [_device_index(device)]
    out = []
    for d in devices:
        n = lib.vtrt_cuda_memory_snapshot(d, ffi.NULL, 0)
        if n < 0:
            raise error()
        buf = ffi.new("vtrt_cuda_block_info[]", max(n, 1) + 64)  # room for blocks made meanwhile
        n = lib.vtrt_cuda_memory_snapshot(d, buf, len(buf))
        if n < 0:
            raise error()
        seg = None
        for b in buf[0:min(n, len(buf))]:
            if seg is None or b.segment_address != seg["address"]:
                seg = {"device": d, "address": b.segment_address, "total_size": b.segment_size,
                       "allocated_size": 0, "active_size": 0, "requested_size": 0,
                       "stream": b.stream, "segment_type": "small" if b.small_pool else "large",
                       "segment_pool_id": b.private_pool, "blocks": []}
                out.append(seg)
            state = _STATES[b.state]
            seg["blocks"].append({"address": b.address, "size": b.size,
                                  "requested_size": b.requested_size, "state": state})
            if b.state == 1:
                seg["allocated_size"] += b.size
                seg["requested_size"] += b.requested_size
            if b.state != 0:
                seg["active_size"] += b.size
    return out


def get_allocator_backend() -> str:
    """"native" (our caching allocator) or "cudaMallocAsync" (VT_CUDA_ALLOCATOR)."""
    return ffi.string(lib.vtrt_cuda_allocator_backend()).decode()


def host_memory_stats() -> dict:
    """The pinned host allocator: allocated and reserved bytes, requests, cudaHostAlloc calls."""
    s = ffi.new("vtrt_cuda_host_stats*")
    lib.vtrt_cuda_host_stats_get(s)
    return {"allocated_bytes": s.allocated, "reserved_bytes": s.reserved,
            "num_allocs": s.num_allocs, "num_host_allocs": s.num_host_allocs}


def empty_host_cache() -> None:
    """Frees the cached pinned host blocks no tensor uses (waits for copies still reading them)."""
    lib.vtrt_cuda_host_empty_cache()


def memory_summary(device=None, abbreviated=False) -> str:
    """A short human-readable table of memory_stats()."""
    s = memory_stats(device)
    if not s:
        return "CUDA is not available: no memory statistics\n"

    def mb(n):
        return f"{n / 2**20:10.2f} MiB"

    lines = [f"vibetensor CUDA memory ({get_allocator_backend()} allocator)",
             f"{'':24}{'current':>14}{'peak':>14}"]
    for m in ("allocated_bytes", "reserved_bytes", "active_bytes", "requested_bytes",
              "inactive_split_bytes"):
        lines.append(f"{m:24}{mb(s[m + '.all.current']):>14}{mb(s[m + '.all.peak']):>14}")
    for m in ("allocation", "segment", "active"):
        lines.append(f"{m:24}{s[m + '.all.current']:>14}{s[m + '.all.peak']:>14}")
    lines.append("  ".join(f"{c}={s[c]}" for c in _COUNTERS))
    return "\n".join(lines) + "\n"


__all__ = ["memory_stats", "memory_allocated", "max_memory_allocated", "memory_reserved",
           "max_memory_reserved", "reset_peak_memory_stats", "reset_max_memory_allocated",
           "reset_accumulated_memory_stats", "empty_cache", "set_per_process_memory_fraction",
           "mem_get_info", "memory_snapshot", "get_allocator_backend", "host_memory_stats",
           "empty_host_cache", "memory_summary"]
