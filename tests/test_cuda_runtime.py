"""The CUDA runtime (vibetensor.cuda, torch.cuda's names): devices, streams, events, the caching
allocator, pinned memory, graphs, graph-safe RNG.

On a machine without a GPU only the "no CUDA" behaviour runs (clear errors, empty stats). The GPU
tests run where `vt.cuda.is_available()`; the two-GPU ones need `device_count() >= 2`.
"""
from __future__ import annotations

import gc
import os
import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest

import vibetensor as vt
import vibetensor.cuda as vcuda  # the package (also vt.cuda once vibetensor/__init__ imports it)
from vibetensor.runtime import ffi, lib

HAS_GPU = vcuda.is_available()
gpu = pytest.mark.skipif(not HAS_GPU, reason="needs a CUDA GPU (vt.cuda.is_available() is False)")
no_gpu = pytest.mark.skipif(HAS_GPU, reason="checks the behaviour without a GPU")
two_gpus = pytest.mark.skipif(not HAS_GPU or vcuda.device_count() < 2, reason="needs 2 CUDA GPUs")


def _has_cuda_kernel(op):
    try:
        return len(vt.ops.providers(op, device="cuda")) > 0
    except Exception:  # the op is unknown, or providers() has another signature
        return False


def full(like, v):
    """A CUDA tensor of `like`'s shape filled with v: the tests combine tensors only, so they
    need no CUDA kernels beyond add/sub/mul/div, fill and copies."""
    return vt.full(like.shape, float(v), device=like.device)


def settle():
    """Frees what reference cycles hold and waits for the GPU, so counters are final."""
    gc.collect()
    if HAS_GPU:
        vcuda.synchronize()


# ---- without a GPU ------------------------------------------------------------------------------

@no_gpu
def test_without_cuda_queries_say_no():
    assert vcuda.is_available() is False
    assert vcuda.device_count() == 0
    assert vcuda.memory_stats() == {}
    assert vcuda.memory_allocated() == 0 and vcuda.max_memory_allocated() == 0
    assert vcuda.memory_reserved() == 0 and vcuda.memory_snapshot() == []
    assert vcuda.is_current_stream_capturing() is False
    vcuda.empty_cache()  # nothing to free: no error
    vcuda.reset_peak_memory_stats()
    vcuda.manual_seed(1)  # as torch: seeding without CUDA does nothing
    vcuda.manual_seed_all(1)
    assert vcuda.host_memory_stats()["reserved_bytes"] == 0


@no_gpu
@pytest.mark.parametrize("make", [
    lambda: vcuda.Stream(), lambda: vcuda.Event(), lambda: vcuda.CUDAGraph(),
    lambda: vcuda.set_device(0), lambda: vcuda.current_stream(), lambda: vcuda.default_stream(),
    lambda: vcuda.synchronize(), lambda: vcuda.current_device(), lambda: vcuda.graph_pool_handle(),
    lambda: vcuda.set_per_process_memory_fraction(0.5), lambda: vcuda.mem_get_info(),
    lambda: vcuda.get_device_name(0), lambda: vcuda.init(), lambda: vcuda.device(0),
    lambda: vt.ones(3).pin_memory(),
], ids=["Stream", "Event", "CUDAGraph", "set_device", "current_stream", "default_stream",
        "synchronize", "current_device", "graph_pool_handle", "fraction", "mem_get_info",
        "get_device_name", "init", "device", "pin_memory"])
def test_without_cuda_gpu_calls_raise_a_clear_error(make):
    with pytest.raises(RuntimeError, match="CUDA is not available: "):
        make()


@no_gpu
def test_without_cuda_the_reason_is_specific():
    why = ffi.string(lib.vtrt_cuda_unavailable_reason()).decode()
    if vcuda.is_built():
        assert "no CUDA device" in why
    else:
        assert "built without CUDA" in why
    assert vcuda.get_allocator_backend() in ("native", "cudaMallocAsync", "none")


@no_gpu
def test_without_cuda_tensors_are_not_pinned():
    t = vt.ones(4)
    assert t.is_pinned() is False


def test_rng_state_round_trip_on_cpu():
    """vtrt_rng_get_state/set_state (also what vt.cuda.get/set_rng_state use) on cpu."""
    d = vt.device("cpu")._vt()
    s, o = ffi.new("uint64_t*"), ffi.new("uint64_t*")
    vt.manual_seed(1234)
    assert lib.vtrt_rng_get_state(d, s, o) == 0 and (s[0], o[0]) == (1234, 0)
    a = vt.rand(10).numpy().copy()
    assert lib.vtrt_rng_get_state(d, s, o) == 0 and o[0] > 0 and o[0] % 4 == 0
    assert lib.vtrt_rng_set_state(d, 1234, 0) == 0
    np.testing.assert_array_equal(vt.rand(10).numpy(), a)
    assert lib.vtrt_rng_set_state(d, 1, 3) != 0  # offsets are multiples of 4
    assert "multiple of 4" in ffi.string(lib.vtrt_last_error()).decode()


def test_cpu_memory_stats_still_work():
    s = vt.memory_stats("cpu")
    assert s["allocated"] >= 0 and s["reserved"] >= s["allocated"]


# ---- devices, streams, events -----------------------------------------------------------------

@gpu
def test_device_basics():
    n = vcuda.device_count()
    assert n >= 1 and vcuda.current_device() in range(n)
    assert isinstance(vcuda.get_device_name(), str) and vcuda.get_device_name()
    major, minor = vcuda.get_device_capability(0)
    assert major >= 7
    free, total = vcuda.mem_get_info()
    assert 0 < free <= total
    with vcuda.device(0):
        assert vcuda.current_device() == 0
    vcuda.set_device(0)
    assert vcuda.current_device() == 0
    with pytest.raises(ValueError, match="invalid CUDA device"):
        vcuda.set_device(n)


@gpu
def test_current_stream_is_per_thread_and_restored():
    base = vcuda.current_stream()
    assert base == vcuda.default_stream() and base.cuda_stream == 0
    s = vcuda.Stream()
    assert s.cuda_stream != 0 and s != base
    with vcuda.stream(s):
        assert vcuda.current_stream() == s
        seen = []
        th = threading.Thread(target=lambda: seen.append(vcuda.current_stream()))
        th.start()
        th.join()
        assert seen[0] == base  # another thread still has its own (default) stream
    assert vcuda.current_stream() == base
    hi = vcuda.Stream(priority=-1)
    assert hi.priority <= s.priority


@gpu
def test_side_stream_ordering_with_events():
    x = vt.ones(1 << 22, device="cuda")  # queued on the default stream
    s = vcuda.Stream()
    s.wait_stream(vcuda.current_stream())
    with vcuda.stream(s):
        y = x
        for _ in range(50):
            y = y + x
        done = vcuda.Event()
        done.record()
    vcuda.current_stream().wait_event(done)
    z = y + y  # on the default stream, after the side stream's work
    out = z.cpu().numpy()
    assert out.min() == out.max() == 102.0
    assert vcuda.current_stream() == vcuda.default_stream()
    s.synchronize()
    assert s.query() and done.query()


@gpu
def test_event_elapsed_time():
    a, b = vcuda.Event(enable_timing=True), vcuda.Event(enable_timing=True)
    x = vt.ones(1 << 22, device="cuda")
    a.record()
    for _ in range(20):
        x = x + x
    b.record()
    b.synchronize()
    assert a.elapsed_time(b) > 0
    untimed = vcuda.Event()
    untimed.record()
    untimed.synchronize()
    with pytest.raises(RuntimeError, match="enable_timing"):
        a.elapsed_time(untimed)


# ---- the caching allocator ------------------------------------------------------------------------

@gpu
def test_stats_shape_and_back_to_baseline_after_a_loop():
    settle()
    base = vcuda.memory_stats()
    for k in ("allocated_bytes.all.current", "allocated_bytes.all.peak", "reserved_bytes.all.current",
              "reserved_bytes.all.peak", "active_bytes.all.current", "num_alloc_retries", "num_ooms",
              "allocation.small_pool.current", "segment.large_pool.peak"):
        assert k in base
    rng = np.random.default_rng(0)
    sizes = [int(n) for n in rng.integers(1, 3 << 20, 200)]
    for loop in range(2):
        held = []
        for i, n in enumerate(sizes):
            t = vt.empty(n, dtype=vt.uint8, device="cuda")
            if i % 3 == 0:
                held.append(t)
        mid = vcuda.memory_stats()
        assert mid["allocated_bytes.all.current"] > base["allocated_bytes.all.current"]
        assert mid["reserved_bytes.all.current"] >= mid["allocated_bytes.all.current"]
        del held, t
        settle()
        after = vcuda.memory_stats()
        for k in ("allocated_bytes.all.current", "active_bytes.all.current",
                  "allocation.all.current", "requested_bytes.all.current"):
            assert after[k] == base[k], k
        if loop == 0:
            first = after
    # the second loop reused the cached segments: no new cudaMalloc
    assert after["num_device_alloc"] == first["num_device_alloc"]
    assert vcuda.memory_allocated() == base["allocated_bytes.all.current"]


@gpu
def test_rounding_reuse_and_peak():
    settle()
    vcuda.reset_peak_memory_stats()
    a0 = vcuda.memory_allocated()
    t = vt.empty(1000, dtype=vt.uint8, device="cuda")
    assert vcuda.memory_allocated() - a0 == 1024  # 512-byte granularity
    p = t.data_ptr()
    del t
    u = vt.empty(1000, dtype=vt.uint8, device="cuda")  # same stream, same size: same block
    assert u.data_ptr() == p
    big = vt.empty(5 << 20, dtype=vt.uint8, device="cuda")
    assert vcuda.max_memory_allocated() >= a0 + (5 << 20)
    del big, u
    settle()
    assert vcuda.memory_allocated() == a0


@gpu
def test_snapshot_lists_segments_and_blocks():
    t = vt.empty(3 << 20, dtype=vt.uint8, device="cuda")
    snap = vcuda.memory_snapshot()
    blocks = [(seg, b) for seg in snap for b in seg["blocks"]]
    mine = [(seg, b) for seg, b in blocks if b["address"] == t.data_ptr()]
    assert len(mine) == 1
    seg, b = mine[0]
    assert b["state"] == "active_allocated" and b["size"] >= 3 << 20
    assert seg["segment_type"] == "large" and seg["total_size"] >= b["size"]
    assert sum(x["size"] for x in seg["blocks"]) == seg["total_size"]
    del t


@gpu
def test_empty_cache_returns_free_segments():
    settle()
    t = vt.empty(64 << 20, dtype=vt.uint8, device="cuda")
    del t
    settle()
    before = vcuda.memory_reserved()
    vcuda.empty_cache()
    assert vcuda.memory_reserved() <= before - (64 << 20)


@gpu
def test_free_from_another_thread_returns_the_block():
    settle()
    base = vcuda.memory_allocated()
    t = vt.empty(1 << 20, device="cuda")
    box = [t]
    del t
    th = threading.Thread(target=box.clear)  # the last reference dies on another thread
    th.start()
    th.join()
    settle()
    assert vcuda.memory_allocated() == base


@gpu
def test_record_stream_block_is_not_reused_while_a_side_stream_reads_it():
    n = 1 << 24  # 64 MiB of float32
    main, side = vcuda.current_stream(), vcuda.Stream()
    a = vt.ones(n, device="cuda")
    side.wait_stream(main)
    with vcuda.stream(side):
        acc = a
        for _ in range(200):  # a long chain of kernels reading `a` on the side stream
            acc = acc + a
    a.record_stream(side)
    ptr = a.data_ptr()
    del a  # freed on the main stream while the side stream still reads it
    b = vt.empty(n, device="cuda")  # the same size on the main stream
    busy = not side.query()
    b.fill_(-1e9)  # poison whatever block we got
    if busy:
        assert b.data_ptr() != ptr, "a block still read by a side stream was handed out again"
    side.synchronize()
    out = acc.cpu().numpy()
    assert out.min() == out.max() == 201.0
    del b, acc
    settle()
    c = vt.empty(n, device="cuda")  # once the side stream is done the block is reusable
    del c


@gpu
def test_without_record_stream_the_block_is_reused_on_its_stream():
    """The control of the poison test: the same sequence without record_stream reuses at once."""
    n = 1 << 20
    a = vt.ones(n, device="cuda")
    ptr = a.data_ptr()
    del a
    b = vt.empty(n, device="cuda")
    assert b.data_ptr() == ptr


@gpu
def test_memory_fraction_cap_gives_memory_error():
    settle()
    vcuda.empty_cache()  # what earlier tests cached must not count against the cap
    free, total = vcuda.mem_get_info()
    ooms = vcuda.memory_stats()["num_ooms"]
    vcuda.set_per_process_memory_fraction(0.02)
    try:
        assert vcuda.memory_stats()["limit_bytes"] == int(0.02 * total)
        with pytest.raises(MemoryError, match=r"out of memory.*per-process cap"):
            vt.empty(int(total * 0.05) // 4, device="cuda")
        small = vt.empty(1 << 20, device="cuda")  # under the cap: fine
        del small
    finally:
        vcuda.set_per_process_memory_fraction(1.0)
    assert vcuda.memory_stats()["num_ooms"] == ooms + 1
    t = vt.empty(int(total * 0.05) // 4, device="cuda")  # the cap is lifted
    del t
    with pytest.raises(ValueError):
        vcuda.set_per_process_memory_fraction(1.5)


@gpu
def test_oom_frees_the_cache_retries_then_raises_a_clear_error():
    settle()
    free, total = vcuda.mem_get_info()
    cached = vt.empty(256 << 20, dtype=vt.uint8, device="cuda")
    del cached  # cached, not returned
    s0 = vcuda.memory_stats()
    with pytest.raises(MemoryError) as ei:
        vt.empty(2 * total, dtype=vt.uint8, device="cuda")
    msg = str(ei.value)
    assert "cuda:0" in msg and "tried to allocate" in msg and "reserved" in msg and "free" in msg
    s1 = vcuda.memory_stats()
    assert s1["num_ooms"] == s0["num_ooms"] + 1
    assert s1["num_alloc_retries"] == s0["num_alloc_retries"] + 1
    assert s1["reserved_bytes.all.current"] < s0["reserved_bytes.all.current"]  # cache was freed
    x = vt.ones(10, device="cuda")
    x = x + x  # and the allocator keeps working
    assert x.cpu().tolist() == [2.0] * 10


@gpu
def test_cuda_malloc_async_backend_in_a_subprocess():
    code = ("import vibetensor as vt, vibetensor.cuda as c\n"
            "assert c.get_allocator_backend() == 'cudaMallocAsync'\n"
            "x = vt.ones(1000, device='cuda'); x = x + x\n"
            "assert x.cpu().tolist() == [2.0] * 1000\n"
            "assert c.memory_allocated() >= 4000\n"
            "del x; c.synchronize(); print('ok')\n")
    env = dict(os.environ, VT_CUDA_ALLOCATOR="cudaMallocAsync")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


# ---- pinned memory and copies ---------------------------------------------------------------------

@gpu
def test_pinned_non_blocking_round_trip():
    a = np.arange(1 << 20, dtype=np.float32)
    h = vt.from_numpy(a).pin_memory()
    assert h.is_pinned() and not vt.from_numpy(a).is_pinned()
    np.testing.assert_array_equal(h.numpy(), a)
    d = h.to("cuda", non_blocking=True)
    d2 = d + d
    back = d2.to("cpu", non_blocking=True)
    vcuda.synchronize()
    np.testing.assert_array_equal(back.numpy(), a * 2)


@gpu
def test_pinned_blocks_are_cached_and_reused_after_their_copy():
    h = vt.empty(1 << 20).pin_memory()
    d = h.to("cuda", non_blocking=True)
    del h
    vcuda.synchronize()
    s0 = vcuda.host_memory_stats()
    h2 = vt.empty(1 << 20).pin_memory()  # the cached block, its copy being done
    assert vcuda.host_memory_stats()["num_host_allocs"] == s0["num_host_allocs"]
    del h2, d


@gpu
def test_pageable_copies_stay_correct():
    a = np.random.default_rng(1).standard_normal(1 << 18).astype(np.float32)
    for _ in range(3):
        d = vt.from_numpy(a).to("cuda", non_blocking=True)  # pageable: waits as needed
        np.testing.assert_array_equal(d.cpu().numpy(), a)


# ---- CUDA graphs ------------------------------------------------------------------------------------

def _chain(x):
    three, one, two = full(x, 3), full(x, 1), full(x, 2)
    return ((x * three + one) / two - x) * x


@gpu
def test_graph_replay_equals_eager_bit_for_bit_with_a_private_pool():
    rng = np.random.default_rng(2)
    a = rng.standard_normal(1 << 16).astype(np.float32)
    b = rng.standard_normal(1 << 16).astype(np.float32)
    x = vt.from_numpy(a).to("cuda")
    eager_a = _chain(x).cpu().numpy()
    g = vcuda.CUDAGraph()
    with vcuda.graph(g):
        y = _chain(x)
    assert g.pool() != 0
    segs = [s for s in vcuda.memory_snapshot() if s["segment_pool_id"] == g.pool()]
    assert segs, "the capture's allocations are not in its private pool"
    g.replay()
    np.testing.assert_array_equal(y.cpu().numpy(), eager_a)
    x.copy_(vt.from_numpy(b).to("cuda"))
    g.replay()
    eager_b = _chain(vt.from_numpy(b).to("cuda")).cpu().numpy()
    np.testing.assert_array_equal(y.cpu().numpy(), eager_b)
    del y
    g.reset()
    settle()
    assert not [s for s in vcuda.memory_snapshot() if s["segment_pool_id"] == g.pool() != 0]


@gpu
def test_graphs_share_a_pool_and_capture_begin_end_by_hand():
    x = vt.ones(4096, device="cuda")
    pool = vcuda.graph_pool_handle()
    g1, g2 = vcuda.CUDAGraph(), vcuda.CUDAGraph()
    with vcuda.graph(g1, pool=pool):
        y1 = x + x
    s = vcuda.Stream()
    s.wait_stream(vcuda.current_stream())
    with vcuda.stream(s):
        g2.capture_begin(pool=g1.pool())
        y2 = y1 * y1 + y1
        g2.capture_end()
    assert g1.pool() == g2.pool() == pool
    g1.replay()
    g2.replay()
    assert y2.cpu().tolist() == [6.0] * 4096
    with pytest.raises(RuntimeError, match="reset"):
        g1.capture_begin()


@gpu
def test_capture_on_the_default_stream_is_refused():
    g = vcuda.CUDAGraph()
    with pytest.raises(RuntimeError, match="non-default stream"):
        g.capture_begin()


@gpu
@pytest.mark.parametrize("sync", ["item", "cpu", "synchronize", "event_synchronize"])
def test_host_sync_during_capture_raises_and_the_capture_is_discarded(sync):
    x = vt.ones(16, device="cuda")
    g = vcuda.CUDAGraph()
    with pytest.raises(RuntimeError, match="captur"):
        with vcuda.graph(g):
            y = x + x
            if sync == "item":
                y[0].item()
            elif sync == "cpu":
                y.cpu()
            elif sync == "synchronize":
                vcuda.synchronize()
            else:
                e = vcuda.Event()
                e.record()
                e.synchronize()
    assert not vcuda.is_current_stream_capturing()
    assert (x + x).cpu().tolist() == [2.0] * 16  # CUDA still works afterwards
    with pytest.raises(RuntimeError, match="nothing captured"):
        g.replay()


@gpu
@pytest.mark.skipif(not _has_cuda_kernel("core::uniform"),
                    reason="core::uniform has no CUDA kernel yet: no random op to capture")
def test_graph_replays_draw_fresh_numbers_equal_to_eager():
    g = vcuda.CUDAGraph()
    vt.rand(8, device="cuda")  # warm up outside the capture
    with vcuda.graph(g):
        r = vt.rand(4096, device="cuda")
        r2 = vt.rand(1000, device="cuda") + vt.rand(1000, device="cuda")
    vcuda.manual_seed(7)
    g.replay()
    a1, b1 = r.cpu().numpy().copy(), r2.cpu().numpy().copy()
    g.replay()
    a2, b2 = r.cpu().numpy().copy(), r2.cpu().numpy().copy()
    vcuda.manual_seed(7)
    e1 = vt.rand(4096, device="cuda").cpu().numpy()
    f1 = (vt.rand(1000, device="cuda") + vt.rand(1000, device="cuda")).cpu().numpy()
    e2 = vt.rand(4096, device="cuda").cpu().numpy()
    f2 = (vt.rand(1000, device="cuda") + vt.rand(1000, device="cuda")).cpu().numpy()
    np.testing.assert_array_equal(a1, e1)
    np.testing.assert_array_equal(b1, f1)
    np.testing.assert_array_equal(a2, e2)
    np.testing.assert_array_equal(b2, f2)
    assert not np.array_equal(a1, a2)


@gpu
def test_cuda_rng_state_get_set_and_seeding():
    vt.manual_seed(5)  # seeds cpu and every CUDA device
    st = vcuda.get_rng_state()
    assert st.numel() == 16 and st.dtype is vt.uint8
    assert int(st.numpy().view("<u8")[0]) == 5 and vcuda.initial_seed() == 5
    vcuda.manual_seed_all(9)
    assert int(vcuda.get_rng_state().numpy().view("<u8")[0]) == 9
    vcuda.set_rng_state(st)
    assert int(vcuda.get_rng_state().numpy().view("<u8")[0]) == 5


# A CUDA program that draws Philox numbers the way random kernels must: host->philox_args, then
# vt_philox_unpack on the device. Captured into a graph and replayed twice after a seed, it must
# equal two eager runs after the same seed, bit for bit, and the two replays must differ.
PHILOX_PROGRAM = r"""
#include <cstdio>
#include <vector>
#include <cuda_runtime_api.h>
#include "vt/oppack.h"
#include "vt/philox.h"
extern "C" {
const vt_host* vtrt_host(void);
int32_t vtrt_cuda_device_count(void);
vt_status vtrt_cuda_stream_from_pool(int32_t, int32_t, void**);
vt_status vtrt_cuda_set_current_stream(int32_t, void*);
typedef struct vtrt_cuda_graph vtrt_cuda_graph;
vtrt_cuda_graph* vtrt_cuda_graph_new(void);
vt_status vtrt_cuda_graph_capture_begin(vtrt_cuda_graph*, uint64_t, int32_t);
vt_status vtrt_cuda_graph_capture_end(vtrt_cuda_graph*);
vt_status vtrt_cuda_graph_replay(vtrt_cuda_graph*);
void vtrt_manual_seed(vt_device, uint64_t);
const char* vtrt_last_error(void);
}
__global__ void draw(vt_philox_args a, uint32_t* out, int groups) {
  int g = blockIdx.x * blockDim.x + threadIdx.x;
  if (g >= groups) return;
  vt_philox_seed_offset so = vt_philox_unpack(a);
  vt::philox::Philox4x32 r = vt::philox::philox_group(so.seed, so.offset + g);
  for (int k = 0; k < 4; ++k) out[4 * g + k] = r.x[k];
}
static int captured_args = 0;
static void launch(uint32_t* out, int n, cudaStream_t s) {
  vt_philox_args a;
  vtrt_host()->philox_args(vt_device{VT_CUDA, 0}, n, &a);
  if (a.seed_ptr && a.offset_ptr) captured_args++;
  draw<<<(n / 4 + 127) / 128, 128, 0, s>>>(a, out, n / 4);
}
static std::vector<uint32_t> get(uint32_t* p, int n) {
  std::vector<uint32_t> v(n);
  cudaMemcpy(v.data(), p, n * 4, cudaMemcpyDeviceToHost);
  return v;
}
int main() {
  const int n1 = 4096, n2 = 1000;
  uint32_t *o1, *o2;
  void* sp;
  if (vtrt_cuda_device_count() < 1) return 2;
  cudaMalloc(&o1, n1 * 4);
  cudaMalloc(&o2, n2 * 4);
  vtrt_cuda_stream_from_pool(0, 0, &sp);
  cudaStream_t s = (cudaStream_t)sp;
  vtrt_cuda_set_current_stream(0, sp);
  vtrt_cuda_graph* g = vtrt_cuda_graph_new();
  if (vtrt_cuda_graph_capture_begin(g, 0, 1)) { printf("begin: %s\n", vtrt_last_error()); return 1; }
  launch(o1, n1, s);
  launch(o2, n2, s);
  if (vtrt_cuda_graph_capture_end(g)) { printf("end: %s\n", vtrt_last_error()); return 1; }
  vt_device d{VT_CUDA, 0};
  vtrt_manual_seed(d, 7);
  vtrt_cuda_graph_replay(g);
  cudaStreamSynchronize(s);
  auto r1 = get(o1, n1), r2 = get(o2, n2);
  vtrt_cuda_graph_replay(g);
  cudaStreamSynchronize(s);
  auto r3 = get(o1, n1), r4 = get(o2, n2);
  vtrt_manual_seed(d, 7);
  launch(o1, n1, s); launch(o2, n2, s);
  cudaStreamSynchronize(s);
  auto e1 = get(o1, n1), e2 = get(o2, n2);
  launch(o1, n1, s); launch(o2, n2, s);
  cudaStreamSynchronize(s);
  auto e3 = get(o1, n1), e4 = get(o2, n2);
  printf("captured_args=%d replay1_eq=%d replay2_eq=%d replays_differ=%d\n", captured_args,
         (int)(r1 == e1 && r2 == e2), (int)(r3 == e3 && r4 == e4), (int)(r1 != r3));
  return 0;
}
"""


@gpu
def test_graph_safe_philox_in_a_cuda_kernel(tmp_path):
    nvcc = shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
    if not os.path.exists(nvcc):
        pytest.skip("nvcc is not available to build the test program")
    import vibetensor.runtime as rt

    libdir = os.path.dirname(os.path.abspath(rt._vtrt_cffi.__file__))
    src = tmp_path / "philox_graph.cu"
    src.write_text(PHILOX_PROGRAM)
    exe = tmp_path / "philox_graph"
    cc = "".join(str(x) for x in vcuda.get_device_capability())
    r = subprocess.run([nvcc, "-std=c++17", f"-arch=sm_{cc}", str(src), "-I",
                        str(vt.sdk_dir() / "include"), "-L", libdir, "-lvtrt",
                        f"-Xlinker=-rpath={libdir}", "-o", str(exe)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "captured_args=2 replay1_eq=1 replay2_eq=1 replays_differ=1" in r.stdout, r.stdout


# ---- two GPUs -------------------------------------------------------------------------------------

@two_gpus
def test_second_gpu_device_guard_copies_and_allocators():
    settle()
    a0, a1 = vcuda.memory_allocated(0), vcuda.memory_allocated(1)
    x = vt.from_numpy(np.arange(1000, dtype=np.float32)).to("cuda:0")
    y = x.to("cuda:1")
    assert y.device == vt.device("cuda:1")
    z = y + y
    np.testing.assert_array_equal(z.cpu().numpy(), np.arange(1000, dtype=np.float32) * 2)
    assert vcuda.memory_allocated(1) > a1
    w = z.to("cuda:0")  # back across, both streams joined
    np.testing.assert_array_equal(w.cpu().numpy(), np.arange(1000, dtype=np.float32) * 2)
    with vcuda.device(1):
        assert vcuda.current_device() == 1
        s1 = vcuda.Stream()
        assert s1.device_index == 1
    assert vcuda.current_device() == 0
    with vcuda.stream(s1):
        assert vcuda.current_device() == 1 and vcuda.current_stream(1) == s1
        q = z + z
    assert vcuda.current_device() == 0
    s1.synchronize()
    assert q.cpu().tolist()[:3] == [0.0, 4.0, 8.0]
    del x, y, z, w, q
    settle()
    assert vcuda.memory_allocated(0) == a0 and vcuda.memory_allocated(1) == a1
