"""What the CUDA benchmarks share: CUDA-event timing and the device copy ceiling.
(Imported as `from _timing import ...`: the benchmarks run as scripts from bench/.)"""
from __future__ import annotations

import statistics


def event_ms(fn, event, sync, burst, repeats, warmup=3):
    """Median over `repeats` of the mean time of `burst` back-to-back calls of fn, in ms, timed
    with CUDA events (`event()` makes one; vt's or torch's), after `warmup` calls and a sync.
    One call is queued before each start event, so the device is busy when timing starts and the
    host's launch of the first timed call is not counted (it added ~15-20 µs to a burst of 3
    calls of ~40 µs kernels until 2026-12-02); a host-bound fn still shows its host time."""
    for _ in range(warmup):  # caching allocator, code paths, clocks
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start, end = event(), event()
        fn()
        start.record()
        for _ in range(burst):
            fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / burst)
    return statistics.median(times)


def copy_ceiling(torch, trials):
    """Device copy rate in bytes/s (read + write) of 1 GiB, by torch or else by vibetensor."""
    n = 1 << 28  # float32 elements: 1 GiB
    if torch is not None:
        a, b = torch.empty(n, device="cuda"), torch.empty(n, device="cuda")
        ms = event_ms(lambda: b.copy_(a), lambda: torch.cuda.Event(enable_timing=True),
                      torch.cuda.synchronize, 5, trials)
    else:
        import vibetensor as vt
        import vibetensor.cuda as vcuda

        a, b = vt.zeros(n, device="cuda"), vt.zeros(n, device="cuda")
        ms = event_ms(lambda: b.copy_(a), lambda: vcuda.Event(enable_timing=True),
                      vcuda.synchronize, 5, trials)
    del a, b
    return 2 * n * 4 / (ms * 1e-3)


def torch_sdpa_times(torch, tq, tk, tv, tg, causal, measure, enable_gqa=False):
    """torch's scaled_dot_product_attention timed as the attention benchmarks time ours, in ms:
    {"fwd", "bwd" (from a saved forward), "fwd+bwd"}; measure(fn, "torch") times one callable.
    enable_gqa: k and v with fewer heads than q (grouped-query attention)."""
    def sdpa(q, k, v):
        kw = {"enable_gqa": True} if enable_gqa else {}
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal, **kw)

    tqg, tkg, tvg = (x.detach().requires_grad_() for x in (tq, tk, tv))
    tout = sdpa(tqg, tkg, tvg)

    def fwd():
        sdpa(tq, tk, tv)

    def bwd():
        torch.autograd.grad(tout, (tqg, tkg, tvg), tg, retain_graph=True)

    def fwd_bwd():
        o = sdpa(tqg, tkg, tvg)
        torch.autograd.grad(o, (tqg, tkg, tvg), tg)

    return {"fwd": measure(fwd, "torch"), "bwd": measure(bwd, "torch"), "fwd+bwd": measure(fwd_bwd, "torch")}
