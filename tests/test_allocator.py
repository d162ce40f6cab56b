"""The CPU caching allocator, seen through vt.memory_stats(): counters return to baseline, blocks
are reused, peak is tracked, empty_cache hands cached blocks back, blocks are 64-byte aligned and
size classes waste at most a quarter.
"""
from __future__ import annotations

import gc
import threading

import numpy as np
import pytest

import vibetensor as vt

KEYS = {"allocated", "reserved", "peak_allocated", "num_allocs", "num_os_allocs"}


def stats():
    gc.collect()  # tensors in reference cycles (e.g. held by a traceback) are freed first
    return vt.memory_stats()


def sizes(n=100, seed=0):
    """n byte counts spanning the small classes, odd sizes and a few large blocks."""
    rng = np.random.default_rng(seed)
    out = list(rng.integers(0, 300, n // 2)) + list(rng.integers(300, 200_000, n // 2 - 4))
    return [int(x) for x in out] + [0, 1, 64, 1 << 20]


def test_stats_shape():
    s = vt.memory_stats()
    assert set(s) == KEYS and all(isinstance(v, int) and v >= 0 for v in s.values())
    assert s["reserved"] >= s["allocated"] and s["peak_allocated"] >= s["allocated"]
    assert s["num_allocs"] >= s["num_os_allocs"]
    assert s["allocated"] % 64 == 0 and s["reserved"] % 64 == 0


def test_allocated_returns_to_baseline_after_a_loop():
    base = stats()
    held = []
    for i, n in enumerate(sizes()):
        held.append(vt.empty(n, dtype=vt.uint8))
        if i % 3 == 0:  # ops allocate their outputs through the same allocator
            held.append(vt.ones(n % 50 + 1) + 1)
    mid = stats()
    assert mid["allocated"] >= base["allocated"] + sum(sizes())
    assert mid["num_allocs"] >= base["num_allocs"] + 100
    del held
    after = stats()
    assert after["allocated"] == base["allocated"]
    assert after["reserved"] >= mid["allocated"] - base["allocated"]  # cached, not returned


def test_reuse_instead_of_new_os_allocations():
    for n in sizes(seed=1):  # warm the cache with these size classes
        vt.empty(n, dtype=vt.uint8)
    before = stats()
    for _ in range(3):
        for n in sizes(seed=1):
            t = vt.empty(n, dtype=vt.uint8)
            del t
    after = stats()
    assert after["num_allocs"] - before["num_allocs"] == 300
    assert after["num_os_allocs"] == before["num_os_allocs"], "a freed block was not reused"
    assert after["reserved"] == before["reserved"]


def test_freed_block_is_handed_out_again():
    a = vt.empty(1000, dtype=vt.uint8)
    p = a.data_ptr()
    del a
    b = vt.empty(1000, dtype=vt.uint8)  # same size class, last freed: the same block
    assert b.data_ptr() == p


def test_peak():
    vt.reset_peak_memory_stats()
    s0 = stats()
    assert s0["peak_allocated"] == s0["allocated"]
    big = vt.empty(1 << 20, dtype=vt.uint8)
    s1 = stats()
    assert s1["peak_allocated"] >= s0["allocated"] + (1 << 20) == s1["allocated"]
    del big
    s2 = stats()
    assert s2["allocated"] == s0["allocated"] and s2["peak_allocated"] == s1["peak_allocated"]
    vt.reset_peak_memory_stats()
    assert vt.memory_stats()["peak_allocated"] == s2["allocated"]


def test_empty_cache_lowers_reserved():
    held = [vt.empty(n, dtype=vt.uint8) for n in (10_000, 50_000, 300_000, 5 << 20)]
    del held
    before = stats()
    assert before["reserved"] - before["allocated"] >= (5 << 20)  # cached
    vt.empty_cache()
    after = vt.memory_stats()
    assert after["reserved"] < before["reserved"]
    assert after["reserved"] == after["allocated"], "cached blocks remain after empty_cache"
    assert after["allocated"] == before["allocated"]
    t = vt.empty(10_000, dtype=vt.uint8)  # the next allocation goes to the OS again
    assert vt.memory_stats()["num_os_allocs"] == after["num_os_allocs"] + 1
    del t


def test_alignment_and_size_classes():
    vt.empty_cache()
    for n in [1, 63, 64, 65, 200, 256, 257, 1000, 4097, 100_000, 1_000_001]:
        s0 = stats()
        t = vt.empty(n, dtype=vt.uint8)
        grew = vt.memory_stats()["allocated"] - s0["allocated"]
        assert t.data_ptr() % 64 == 0, f"{n} bytes: not 64-byte aligned"
        assert n <= grew and grew % 64 == 0, f"{n} bytes took a {grew}-byte block"
        assert grew <= max(64 * ((n + 63) // 64), n * 1.25), f"{n} bytes wasted {grew - n}"
        del t


def test_views_and_borrowed_memory_do_not_allocate():
    t = vt.arange(24.0).reshape(2, 3, 4)
    s0 = stats()
    views = [t.T, t[1:], t.view(6, 4), t.select(1, 0), t.unsqueeze(0), t.expand(5, 2, 3, 4)]
    borrowed = [vt.from_numpy(np.ones(100)), vt.from_dlpack(np.ones(1000))]
    s1 = vt.memory_stats()
    assert s1["allocated"] == s0["allocated"] and s1["num_allocs"] == s0["num_allocs"]
    del views, borrowed


def test_zero_size_tensors_round_trip():
    base = stats()
    held = [vt.empty(0), vt.zeros(0, 5), vt.ones(3, 0) + 1]
    del held
    assert stats()["allocated"] == base["allocated"]


def test_threads_allocate_and_free_concurrently():
    base = stats()
    errors = []

    def work(seed):
        try:
            for n in sizes(60, seed):
                t = vt.empty(n, dtype=vt.uint8)
                u = vt.ones(n % 97 + 1) * 2
                assert u.sum().item() == 2 * (n % 97 + 1)
                del t, u
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    assert stats()["allocated"] == base["allocated"]


def test_stats_for_cuda_without_cuda():
    if vt.cuda.is_available():  # pragma: no cover
        pytest.skip("CUDA present: the CPU-only error does not apply")
    with pytest.raises(NotImplementedError, match="cuda"):
        vt.memory_stats("cuda")


def test_failed_allocation_is_not_counted():
    s0 = stats()
    with pytest.raises(MemoryError):
        vt.empty(2 ** 50)  # 4 PiB: refused even where memory is overcommitted
    s1 = vt.memory_stats()
    assert s1["allocated"] == s0["allocated"] and s1["reserved"] == s0["reserved"]
    assert (s1["num_allocs"], s1["num_os_allocs"]) == (s0["num_allocs"], s0["num_os_allocs"])
