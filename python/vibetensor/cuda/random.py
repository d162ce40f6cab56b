"""The CUDA devices' Philox generators (torch.cuda's seeding names). Each device has one (seed,
offset) state; a random op reserves a range of counters from it, so results depend only on the
seed and the order of ops. `vt.manual_seed(s)` seeds cpu and every CUDA device. Inside a CUDA
graph, random ops read seed and offset from device memory that each replay refreshes, so replays
draw fresh numbers. Without CUDA the seeding calls do nothing (as torch's)."""
from __future__ import annotations

import random as _pyrandom

from vibetensor.runtime import check, ffi, lib
from vibetensor.runtime import dtypes as T

from ._device import _device_index, device_count, is_available

def _dev(i):
    return T.device("cuda", i)._vt()


def manual_seed(seed: int) -> None:
    """Seeds the current device's generator."""
    if is_available():
        lib.vtrt_manual_seed(_dev(_device_index(None)), int(seed) & (2**64 - 1))


def manual_seed_all(seed: int) -> None:
    for i in range(device_count()):
        lib.vtrt_manual_seed(_dev(i), int(seed) & (2**64 - 1))


def seed() -> None:
    """Seeds the current device with a random number."""
    manual_seed(_pyrandom.getrandbits(63))


def seed_all() -> None:
    manual_seed_all(_pyrandom.getrandbits(63))


def initial_seed() -> int:
    """The current device generator's seed: the last one set by any seeding call or set_rng_state
    (the built-in default before any), read from the runtime so vt.manual_seed counts too."""
    s, o = ffi.new("uint64_t*"), ffi.new("uint64_t*")
    check(lib.vtrt_rng_get_state(_dev(_device_index(None)), s, o))
    return int(s[0])


def get_rng_state(device="cuda"):
    """The generator state as a 16-byte uint8 cpu tensor: seed then offset (little-endian)."""
    import numpy as np

    from vibetensor import from_numpy

    s, o = ffi.new("uint64_t*"), ffi.new("uint64_t*")
    check(lib.vtrt_rng_get_state(_dev(_device_index(device)), s, o))
    return from_numpy(np.array([s[0], o[0]], dtype="<u8").view(np.uint8).copy())


def set_rng_state(new_state, device="cuda") -> None:
    import numpy as np

    a = np.asarray(new_state.numpy() if hasattr(new_state, "numpy") else new_state, dtype=np.uint8)
    if a.size != 16:
        raise ValueError(f"set_rng_state: expected 16 bytes (seed, offset), got {a.size}")
    seed_, offset = (int(x) for x in a.reshape(16).view("<u8"))
    check(lib.vtrt_rng_set_state(_dev(_device_index(device)), seed_, offset))


def get_rng_state_all() -> list:
    return [get_rng_state(i) for i in range(device_count())]


def set_rng_state_all(new_states) -> None:
    for i, s in enumerate(new_states):
        set_rng_state(s, i)


__all__ = ["manual_seed", "manual_seed_all", "seed", "seed_all", "initial_seed", "get_rng_state",
           "set_rng_state", "get_rng_state_all", "set_rng_state_all"]
