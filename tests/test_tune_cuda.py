"""Issue 12 on CUDA: vt.ops.tune and vt.ops.trace with CUDA providers (GPU machine only).

tune on cuda, for attention::sdpa (flash, composed, and hopper when VT_ATTN_HOPPER_PACK names a built
ops/attention_hopper pack) and core::matmul (core's cuBLASLt, and cutlass when VT_CUTLASS_PACK names a
built ops/matmul_cutlass pack): every provider that takes a case is timed, one that declines is left
out with its reason; the winner is stored keyed by the GPU's name and the hashes of the packs timed;
dispatch then uses it (trace reason "tuned"), a pin still wins over it, a cpu call of the same bucket
is untouched, and every provider's result matches the priority provider's.

trace on cuda: a record carries the device "cuda:0", provider, pack, version and hash, dtypes and
shapes. Its times are host times around the dispatcher call (runtime/src/dispatcher.cpp,
call_traced): for a CUDA kernel that is the launch, not the kernel's run, so only what holds for host
times is asserted (inside the caller's window, start before end). summary() and groups() gather cuda
and cpu calls of one (op, provider, reason) in one group listing both devices; the JSON and Chrome
exports carry the cuda records.

Every test skips without a GPU; the packs' provider tests skip without their env variable (building
them takes minutes: bench/gpu_session.sh builds them with VT_CUTLASS=1 / VT_HOPPER=1).
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

import vibetensor as vt
from vibetensor.registry import capabilities as caps
from vibetensor.registry import tune as T
from vibetensor.runtime import lib

GPU = vt.cuda.is_available()
pytestmark = pytest.mark.skipif(not GPU, reason="needs a CUDA GPU (run on the GPU machine)")

DEV = "cuda"
DEV0 = "cuda:0"  # what a record says for a call on the default GPU
SDPA, MATMUL = "attention::sdpa", "core::matmul"
FAST = dict(min_time=0.005, warmup=1, max_calls=20)  # a ranking, not a benchmark
TOL = {"bfloat16": 2e-2, "float16": 1e-2, "float32": 1e-3}  # max |a - b| / max |b|


@pytest.fixture
def cache(tune_cache):  # conftest.py: a private cache file
    return tune_cache


def _pack_from_env(var):
    """The pack folder `var` names, loaded for the test and unloaded after; None when unset."""
    folder = os.environ.get(var)
    if not folder:
        yield None
        return
    pack = vt.ops.load(folder)
    try:
        yield pack
    finally:
        vt.ops.unload(pack)


@pytest.fixture
def hopper():
    yield from _pack_from_env("VT_ATTN_HOPPER_PACK")


@pytest.fixture
def cutlass():
    yield from _pack_from_env("VT_CUTLASS_PACK")


def served(op, fn):
    """(provider, reason, device) of the one top-level call of `op` fn makes, and fn's result."""
    with vt.ops.trace() as t:
        out = fn()
    (r,) = [r for r in t.records if r.depth == 0 and r.op == op]
    return (r.provider, r.reason, r.device), out


def as_np(t) -> np.ndarray:
    return np.asarray(t.to(vt.float32).cpu().numpy(), np.float64)


def rel(a, b) -> float:
    a, b = as_np(a), as_np(b)
    assert np.isfinite(a).all() and np.isfinite(b).all()
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-3))


def sha(pack_name: str) -> str:
    return vt.ops.get(pack_name).manifest_info.sha256


def check_entries(cache, results, op):
    """The cache holds one entry per result: this GPU's name, the bucket and options (the
    defaults here: no kwargs were given), the winner, and the hashes of exactly the packs whose
    providers were timed (a pack that only declined is not named: its rebuild cannot change the
    ranking)."""
    by_key = {json.dumps([e["bucket"], e["options"]]): e for e in T.entries(cache)
              if e["op"] == op}
    assert len(by_key) == len(results)
    packs_of = {p.name: p.pack for p in vt.ops.providers(op, DEV)}
    for r in results:
        assert r.options == T.options(op)
        e = by_key[json.dumps([T.bucket(r.dtypes, r.shapes), r.options])]
        assert e["device"] == "cuda" and e["device_name"] == vt.cuda.get_device_name(0)
        assert e["device_name"] == T.device_name(DEV0) and e["provider"] == r.winner
        assert e["packs"] == {packs_of[p]: sha(packs_of[p]) for p in r.times_us}
        assert set(e["times_us"]) == set(r.times_us)


# ---- attention::sdpa --------------------------------------------------------------------------

# (B, H, S, D): sequence lengths multiples of 128 and D 64 / 128, so every provider (hopper too)
# takes them
SDPA_CASES = [(2, 16, 256, 64), (1, 16, 1024, 128)]
SDPA_DTYPES = ["bfloat16", "float16"]


def qkv(shape, dtype, device=DEV):
    return [vt.randn(*shape, dtype=getattr(vt, dtype), device=device) for _ in range(3)]


def test_tune_sdpa_on_cuda(cache, hopper):
    provs = vt.ops.providers(SDPA, DEV)
    names = [p.name for p in provs]
    assert {"flash", "composed"} <= set(names)
    hopper_serves = hopper is not None and caps.cuda_devices()[:1] == [(9, 0)]
    assert ("hopper" in names) == hopper_serves
    if hopper_serves:
        assert names[0] == "hopper"  # priority 20, above flash's 10
    res = vt.ops.tune(SDPA, shapes=[list(s) for s in SDPA_CASES], dtypes=SDPA_DTYPES, device=DEV,
                      **FAST)
    assert [(r.dtypes[0], r.shapes[0]) for r in res] == [(d, s) for s in SDPA_CASES
                                                         for d in SDPA_DTYPES]
    for r in res:
        assert r.device.startswith("cuda") and r.declined == {}
        assert set(r.times_us) == set(names) and all(t > 0 for t in r.times_us.values())
        assert r.winner == min(r.times_us, key=r.times_us.get)
        assert r.priority_choice == names[0] and r.speedup() >= 1.0
    check_entries(cache, res, SDPA)
    if hopper_serves:
        assert all(e["packs"]["attention_hopper"] == hopper.manifest_info.sha256
                   for e in T.entries(cache))

    for r in res:
        dt, shape = r.dtypes[0], r.shapes[0]
        q, k, v = qkv(shape, dt)
        call = lambda: vt.ops.attention.sdpa(q, k, v)  # noqa: E731
        who, out = served(SDPA, call)
        assert who == (r.winner, "tuned", DEV0), (dt, shape)
        with vt.ops.use(SDPA, r.priority_choice, DEV):
            who, want = served(SDPA, call)
        assert who == (r.priority_choice, "pin", DEV0)
        assert rel(out[0], want[0]) <= TOL[dt], (r.winner, dt, shape)
        for p in names:  # every provider timed gives the priority provider's result
            with vt.ops.use(SDPA, p, DEV):
                assert rel(call()[0], want[0]) <= TOL[dt], (p, dt, shape)
        # a pin wins over the tuned choice; unpinned, the tuned choice serves again
        other = next(p for p in names if p != r.winner)
        with vt.ops.use(SDPA, other, DEV):
            assert served(SDPA, call)[0] == (other, "pin", DEV0)
        assert served(SDPA, call)[0] == (r.winner, "tuned", DEV0)
        # the entries are for non-causal calls: a causal one of the same shape is not steered
        causal = lambda: vt.ops.attention.sdpa(q, k, v, causal=True)  # noqa: E731
        assert served(SDPA, causal)[0][1] in ("priority", "fallback")

    # same bucket, other shape (200 -> 256, 60 -> 64): tuned; an untuned bucket: priority
    q, k, v = qkv((2, 16, 200, 60), "bfloat16")
    assert served(SDPA, lambda: vt.ops.attention.sdpa(q, k, v))[0][:2] in {
        (res[0].winner, "tuned"), ("flash", "fallback")}  # hopper takes D 64 / 128 only
    q, k, v = qkv((4, 16, 512, 64), "bfloat16")
    assert served(SDPA, lambda: vt.ops.attention.sdpa(q, k, v))[0] == (names[0], "priority", DEV0)
    # the cuda table is not the cpu one: the same bucket on cpu runs by priority
    q, k, v = qkv(SDPA_CASES[0], "bfloat16", "cpu")
    cpu_first = vt.ops.providers(SDPA, "cpu")[0].name
    assert served(SDPA, lambda: vt.ops.attention.sdpa(q, k, v))[0] == (cpu_first, "priority", "cpu")


def test_tuned_sdpa_entry_follows_the_hopper_pack(cache):
    """An entry naming the hopper pack's hash applies while that pack is loaded, stops when it is
    unloaded (a pack it timed is gone: stale) and applies again once the same build is back."""
    folder = os.environ.get("VT_ATTN_HOPPER_PACK")
    if not folder or caps.cuda_devices()[:1] != [(9, 0)]:
        pytest.skip("needs VT_ATTN_HOPPER_PACK (a built ops/attention_hopper) and a Hopper GPU")
    q, k, v = qkv((2, 16, 256, 64), "float16")
    call = lambda: vt.ops.attention.sdpa(q, k, v)  # noqa: E731
    pack = vt.ops.load(folder)
    try:
        (r,) = vt.ops.tune(SDPA, shapes=[[2, 16, 256, 64]], dtypes="float16", device=DEV, **FAST)
        (e,) = T.entries(cache)
        assert e["packs"] == {"attention": sha("attention"),
                              "attention_hopper": pack.manifest_info.sha256}
        assert served(SDPA, call)[0] == (r.winner, "tuned", DEV0)
    finally:
        vt.ops.unload(pack)
    assert T.apply() == 0  # applied again at the unload already; nothing usable is left
    assert served(SDPA, call)[0] == ("flash", "priority", DEV0)
    pack = vt.ops.load(folder)
    try:
        assert served(SDPA, call)[0] == (r.winner, "tuned", DEV0)
    finally:
        vt.ops.unload(pack)


# ---- core::matmul -----------------------------------------------------------------------------

# (self, other): a square-ish GEMM and a skinny one with a long k, all sizes multiples of 8 (what
# the cutlass provider takes in bfloat16)
MATMUL_CASES = [[(256, 512), (512, 384)], [(32, 4096), (4096, 128)]]


def test_tune_matmul_on_cuda(cache, cutlass):
    names = [p.name for p in vt.ops.providers(MATMUL, DEV)]
    assert names == (["core", "cutlass"] if cutlass is not None else ["core"])
    res = vt.ops.tune(MATMUL, shapes=MATMUL_CASES, dtypes=["bfloat16", "float32"], device=DEV,
                      **FAST)
    assert len(res) == 4
    for r in res:
        assert r.priority_choice == "core" and r.winner == min(r.times_us, key=r.times_us.get)
        if cutlass is not None and r.dtypes[0] == "float32":  # cutlass declines float32
            assert set(r.times_us) == {"core"} and set(r.declined) == {"cutlass"}
            assert "bfloat16 only" in r.declined["cutlass"]
        else:
            assert set(r.times_us) == set(names) and r.declined == {}
    check_entries(cache, res, MATMUL)

    for r in res:
        dt = getattr(vt, r.dtypes[0])
        a = vt.randn(*r.shapes[0], dtype=dt, device=DEV)
        b = vt.randn(*r.shapes[1], dtype=dt, device=DEV)
        who, out = served(MATMUL, lambda: a @ b)
        assert who == (r.winner, "tuned", DEV0)
        with vt.ops.use(MATMUL, "core", DEV):
            who, want = served(MATMUL, lambda: a @ b)
        assert who == ("core", "pin", DEV0)
        assert out.shape == want.shape and out.device.type == "cuda"
        assert rel(out, want) <= TOL[r.dtypes[0]] * 2, (r.winner, r.dtypes, r.shapes)
        if cutlass is not None and r.dtypes[0] == "bfloat16":
            with vt.ops.use(MATMUL, "cutlass", DEV):
                who, got = served(MATMUL, lambda: a @ b)
            assert who == ("cutlass", "pin", DEV0) and rel(got, want) <= 4e-2
        assert served(MATMUL, lambda: a @ b)[0] == (r.winner, "tuned", DEV0)


# ---- trace --------------------------------------------------------------------------------------

def test_trace_records_cuda_calls(cache, tmp_path):
    q, k, v = qkv((1, 2, 128, 64), "bfloat16")
    a = vt.randn(16, 32, device=DEV)
    b = vt.randn(32, 8, device=DEV)
    ac, bc = a.cpu(), b.cpu()
    first = vt.ops.providers(SDPA, DEV)[0]
    vt.cuda.synchronize()
    t0 = lib.vtrt_trace_now_ns()
    with vt.ops.trace() as t:
        out = vt.ops.attention.sdpa(q, k, v)
        c = a @ b
        cc = ac @ bc
    t1 = lib.vtrt_trace_now_ns()
    assert out[0].device.type == "cuda" and c.device.type == "cuda"
    assert rel(c, cc) <= 5e-3  # (TF32 rounding allowed: another test may have left it on)

    top = [r for r in t.records if r.depth == 0]
    assert [(r.op, r.device) for r in top] == [(SDPA, DEV0), (MATMUL, DEV0), (MATMUL, "cpu")]
    s, m, mc = top
    assert (s.provider, s.pack, s.reason, s.declined) == (first.name, first.pack, "priority", None)
    assert s.pack_version == vt.ops.get(first.pack).version and s.pack_sha256 == sha(first.pack)
    assert s.dtypes == ["bfloat16"] * 3 and s.shapes == [(1, 2, 128, 64)] * 3 and s.ok
    assert (m.provider, m.pack, m.reason) == ("core", "core", "priority")
    assert m.pack_sha256 == sha("core") and m.dtypes == ["float32"] * 2
    assert m.shapes == [(16, 32), (32, 8)] and m.ok
    for r in t.records:  # host times: inside the caller's window, in call order
        assert t0 <= r.start_ns < r.end_ns <= t1
    assert s.end_ns <= m.start_ns and m.end_ns <= mc.start_ns

    groups = {(g["op"], g["provider"], g["reason"]): g for g in t.groups()}
    assert groups[(SDPA, first.name, "priority")]["devices"] == [DEV0]
    g = groups[(MATMUL, "core", "priority")]  # the cuda and the cpu matmul: one group
    assert g["calls"] == sum((r.op, r.provider, r.reason) == (MATMUL, "core", "priority")
                             for r in t.records) >= 2
    assert g["devices"] == ["cpu", DEV0] and g["pack_sha256"] == sha("core")
    text = t.summary()
    assert any(ln.split()[:2] == [SDPA, first.name] for ln in text.splitlines())
    assert text.splitlines()[-1] == f"{t.calls} calls"

    t.to_json(tmp_path / "t.json")
    doc = json.loads((tmp_path / "t.json").read_text())
    rec = next(r for r in doc["records"] if r["op"] == SDPA and r["depth"] == 0)
    assert rec["device"] == DEV0 and rec["shapes"] == [[1, 2, 128, 64]] * 3
    assert rec["pack_sha256"] == sha(first.pack) and rec["duration_us"] > 0
    t.to_chrome_trace(tmp_path / "t.trace")
    ev = json.loads((tmp_path / "t.trace").read_text())["traceEvents"]
    assert len(ev) == len(t.records)
    assert all(e["ph"] == "X" and e["dur"] >= 0 and isinstance(e["ts"], float) for e in ev)
    cuda_mm = [e for e in ev if e["name"] == MATMUL and e["args"]["device"] == DEV0
               and e["args"]["depth"] == 0]
    assert len(cuda_mm) == 1 and cuda_mm[0]["cat"] == "core"
    assert cuda_mm[0]["args"]["dtypes"] == ["float32"] * 2
    assert cuda_mm[0]["args"]["shapes"] == [[16, 32], [32, 8]]


def test_tune_cases_from_a_cuda_trace(cache):
    """tune(trace=t, device="cuda") replays the trace's cuda calls only; a trace without one on
    cuda is refused, naming the device."""
    q, k, v = qkv((1, 4, 128, 64), "float16")
    qc = vt.randn(1, 4, 64, 32)
    with vt.ops.trace() as t:
        vt.ops.attention.sdpa(q, k, v)
        vt.ops.attention.sdpa(qc, qc, qc)
    res = vt.ops.tune(SDPA, trace=t, device=DEV, save=False, **FAST)
    assert [(r.dtypes, r.shapes) for r in res] == [(["float16"] * 3, [(1, 4, 128, 64)] * 3)]
    assert T.entries(cache) == []  # save=False
    with vt.ops.trace() as cpu_only:
        vt.ops.attention.sdpa(qc, qc, qc)
    with pytest.raises(ValueError, match=r"tune\(attention::sdpa\): the trace has no call of it on cuda"):
        vt.ops.tune(SDPA, trace=cpu_only, device=DEV, **FAST)
