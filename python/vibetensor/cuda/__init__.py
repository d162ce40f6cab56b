"""vibetensor.cuda — the CUDA runtime with torch.cuda's names.

Devices (is_available, device_count, current_device, set_device, `device(i)` guard, properties,
synchronize), streams and events (Stream, Event, current_stream, `stream(s)`), the caching
allocator (memory_stats, memory_allocated, memory_snapshot, empty_cache,
set_per_process_memory_fraction), CUDA graphs (CUDAGraph, `graph(g)`, graph_pool_handle) and
the per-device Philox generators (manual_seed, manual_seed_all, get/set_rng_state).

On a machine without a GPU (or a build without CUDA) is_available() is False, device_count() is 0,
the memory queries return {} / 0 / [], and Stream(), Event(), CUDAGraph(), set_device() raise
RuntimeError("CUDA is not available: ...").
"""
from ._device import (can_device_access_peer, current_device, device, device_count, device_of,
                      get_device_capability, get_device_name, get_device_properties, is_available,
                      is_built, set_device, synchronize)
from .graphs import CUDAGraph, graph, graph_pool_handle, is_current_stream_capturing
from .memory import (empty_cache, empty_host_cache, get_allocator_backend, host_memory_stats,
                     max_memory_allocated, max_memory_reserved, mem_get_info, memory_allocated,
                     memory_reserved, memory_snapshot, memory_stats, memory_summary,
                     reset_accumulated_memory_stats, reset_max_memory_allocated,
                     reset_peak_memory_stats, set_per_process_memory_fraction)
from .random import (get_rng_state, get_rng_state_all, initial_seed, manual_seed, manual_seed_all,
                     seed, seed_all, set_rng_state, set_rng_state_all)
from .streams import (Event, ExternalStream, Stream, StreamContext, current_stream, default_stream,
                      set_stream, stream)


def is_initialized() -> bool:
    return is_available()


def init() -> None:
    """Initialises CUDA now (it is otherwise done on first use); raises without a GPU."""
    if not is_available():
        from ._device import _unavailable

        raise _unavailable()
