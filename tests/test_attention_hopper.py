"""The attention_hopper pack (ops/attention_hopper): a third provider ("hopper", priority 20) of
attention::sdpa and attention::sdpa_backward on cuda: the forward on CUTLASS's Hopper FMHA kernels, the
backward our own on wgmma (by default bwd_ws.cuh, FlashAttention-3's warp specialisation, and for
GQA/MQA the zero-spill group walkers of bwd_wgmma2.cuh; VT_HOPPER_BWD at load picks one for every
call: ws, wgmma2, wgmma (the first kernel, bwd_wgmma.cuh), wgmma3 (wgmma2 with dQ's bulk
reduce-add), or cutlass, example 88's float16 backward, and this file then expects its declines). test_hopper_backward_choices runs the backward under each value in a process
of its own, so one GPU run checks them all whatever the environment says.

Without a GPU (any machine with nvcc and the nvidia-cutlass headers): the pack builds and loads
after the attention pack, registers "hopper" above flash for both ops on cuda and nothing else,
declares its shape rules (the limits a tool checks with registry/capabilities.py), leaves the meta
step (the attention pack's) alone, and unloads back to flash.
Which provider serves which call, from the declared rules alone (no GPU): hopper both ways in
bfloat16 and float16, any Tq and Tk, at D 64 and 128 (D 32, ViT's heads: flash both ways); at D 256
hopper forward, the backward not (flash's compute, which runs the composed one).
VT_HOPPER_FWD_D64 (the D = 64 forward's tile for every call, read at load) other than the tiles
built fails the load.
On a Hopper GPU: forward, lse and the three gradients against a float64 reference, the composed
provider and torch — bfloat16 and float16, causal and not, D 64 and 128, Tq == Tk and Tq != Tk
both ways, partial tiles (ViT's 65 tokens, miniGPT's 100, a partial key tile under causal rows past
Tk, causal with more keys than queries), strided views — with the trace showing who served: hopper
both ways (under VT_HOPPER_BWD=cutlass, flash for the causal backward shapes example 88 cannot take);
each D = 64 forward tile VT_HOPPER_FWD_D64 picks, against the reference; the D = 256 forward (its
backward served by another provider); GQA and MQA (k, v with fewer heads) forward and gradients,
the backwards that decline them falling through to flash.
Host-side (no GPU): the GQA backward's walk over a group's query heads, and the forward's per-member
launches' addressing, emulated in float64.
Every call hopper does not take (another dtype or head dim, a mask, dropout,
grad_lse) is served by flash, with the reason, or refused with it when pinned.

The pack: VT_ATTN_HOPPER_PACK (a built pack folder), else the in-tree build of `vt-ops build
ops/attention_hopper`, brought up to date (a first build, minutes on 2 cores, only on a Hopper GPU;
elsewhere the tests skip until it exists).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import vibetensor as vt
from vibetensor._attention import scaled_dot_product_attention as sdpa
from vibetensor.registry import capabilities as caps
from conftest import to_numpy

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    torch = None

ROOT = Path(__file__).resolve().parent.parent
OP, BACKWARD = "attention::sdpa", "attention::sdpa_backward"
GPU = vt.cuda.is_available()
# VT_HOPPER_BWD=cutlass: example 88's float16 backward instead of ours (A/B timing), read at load
CUTLASS_BWD = os.environ.get("VT_HOPPER_BWD") == "cutlass"


def _hopper_gpu() -> bool:
    """device 0 has compute capability 9.0 (sm_90a code runs there only)"""
    return GPU and caps.cuda_devices()[:1] == [(9, 0)]


def _build_pack() -> Path:
    """The pack folder: VT_ATTN_HOPPER_PACK, else the in-tree build brought up to date by `vt-ops
    build` (seconds when nothing changed). A full build takes minutes on 2 cores, beyond this file's
    budget: a first build happens here only on a Hopper GPU (where the kernels are the point);
    elsewhere the tests skip until `vt-ops build ops/attention_hopper` has been run once, or when
    bringing that build up to date outlasts packtools' timeout."""
    given = os.environ.get("VT_ATTN_HOPPER_PACK")
    if given:
        return Path(given)
    if not (shutil.which("nvcc") or Path("/usr/local/cuda/bin/nvcc").exists()):
        pytest.skip("needs nvcc to build ops/attention_hopper")
    try:
        import cutlass_library  # noqa: F401
    except ImportError:
        pytest.skip("needs the CUTLASS headers: pip install nvidia-cutlass==4.2.0.0")
    folder = ROOT / "ops" / "attention_hopper" / "build" / "packs" / "attention_hopper"
    if not (folder / "manifest.json").is_file() and not _hopper_gpu():
        pytest.skip("ops/attention_hopper is not built (minutes on 2 cores): vt-ops build ops/attention_hopper, "
                    "or VT_ATTN_HOPPER_PACK=<built pack folder>")
    sys.path.insert(0, str(Path(__file__).resolve().parent / "packs"))
    import packtools as pt

    global _build_timed_out
    if _build_timed_out:  # once per session: each test of this file would wait packtools' timeout again
        pytest.skip(_build_timed_out)

    def make():
        global _build_timed_out
        # its own process group: on a timeout the whole build (vt-ops, ninja, nvcc) stops, instead
        # of ninja carrying on orphaned in the build folder while the next session starts another
        proc = subprocess.Popen([sys.executable, "-m", "vibetensor.cli", "build", str(ROOT / "ops" / "attention_hopper")],
                                env=pt.clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        try:
            output, _ = proc.communicate(timeout=pt.TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            if _hopper_gpu():
                raise
            _build_timed_out = f"bringing ops/attention_hopper's build up to date took over {pt.TIMEOUT} s"
            pytest.skip(_build_timed_out)
        assert proc.returncode == 0, f"vt-ops build ops/attention_hopper failed:\n{output}"
        return folder

    return pt.once("attention_hopper", make)


_build_timed_out = ""  # the reason, once bringing the build up to date has timed out in this session


@pytest.fixture
def hopper():
    """The loaded pack, unloaded after the test."""
    pack = vt.ops.load(str(_build_pack()))
    try:
        yield pack
    finally:
        vt.ops.unload(pack)


def names(op, device="cuda"):
    return [p.name for p in vt.ops.providers(op, device)]


# ---- registration, declared rules, the meta step (no GPU needed) ----------------------------------
def test_registers_hopper_above_flash_for_both_ops(hopper):
    assert hopper.name == "attention_hopper" and hopper.ops == []  # the ops are the attention pack's
    kernels = sorted((k["op"], k["device"], k["provider"], k["priority"]) for k in hopper.kernels)
    assert kernels == [(OP, "cuda", "hopper", 20), (BACKWARD, "cuda", "hopper", 20)]
    declared = hopper.capabilities
    assert declared["requires"] == {"attention": ">=0.1,<1"}
    assert hopper.manifest["cuda_architectures"] == ["90a-real"]  # sm_90a machine code only
    if GPU and not _hopper_gpu():  # sm_90a code runs on compute capability 9.0 only
        assert [s[1] for s in hopper.skipped] == ["hopper"]
        assert names(OP) == ["flash", "composed"]
        return
    assert hopper.skipped == []
    for op in (OP, BACKWARD):
        provs = vt.ops.providers(op, "cuda")
        assert [(p.name, p.priority) for p in provs] == [("hopper", 20), ("flash", 10), ("composed", 0)]
        assert [p.name for p in provs if p.active] == ["hopper"]
        assert names(op, "cpu") == ["flash", "composed"]  # cpu untouched


def test_unload_gives_the_ops_back_to_flash():
    pack = vt.ops.load(str(_build_pack()))
    vt.ops.unload(pack)
    assert names(OP) == ["flash", "composed"] and names(BACKWARD) == ["flash", "composed"]


def test_declared_limits_match_the_served_calls(hopper):
    entry = caps.for_kernel(hopper.capabilities, OP, "hopper", "cuda")
    assert entry["dtypes"] == ["bfloat16", "float16"]
    assert entry["compute_capability"] == {"min": "9.0", "max": "9.0"}
    backward = caps.for_kernel(hopper.capabilities, BACKWARD, "hopper", "cuda")
    # the backward's own entry: what the forward takes but D = 256
    assert {k: v for k, v in backward.items() if k not in ("limits", "shapes")} == \
        {k: v for k, v in entry.items() if k not in ("limits", "shapes")}

    def unmet(dtype, B, H, Tq, Tk, D, Dv=None, declared=entry):
        return caps.unmet(declared, dtype, {"q": (B, H, Tq, D), "k": (B, H, Tk, D), "v": (B, H, Tk, Dv or D)})

    assert unmet("bfloat16", 2, 4, 256, 384, 64) == []
    assert unmet("bfloat16", 1, 1, 128, 128, 128) == []
    assert unmet("float16", 2, 4, 256, 256, 64) == []
    assert unmet("float32", 2, 4, 256, 256, 64) == ["dtype float32 is not one of ['bfloat16', 'float16']"]
    assert unmet("bfloat16", 2, 4, 256, 256, 96) == ["q.shape[-1] = 96 is not one of [64, 128, 256]",
                                                     "v.shape[-1] = 96 is not one of [64, 128, 256]"]
    assert unmet("bfloat16", 128, 8, 65, 65, 32) == ["q.shape[-1] = 32 is not one of [64, 128, 256]",
                                                     "v.shape[-1] = 32 is not one of [64, 128, 256]"]  # ViT: flash
    assert unmet("bfloat16", 2, 4, 256, 256, 256) == []  # the forward at D = 256 ...
    assert unmet("bfloat16", 2, 4, 256, 256, 256, declared=backward) == [  # ... not its backward
        "q.shape[-1] = 256 is not one of [64, 128]", "v.shape[-1] = 256 is not one of [64, 128]"]
    assert unmet("bfloat16", 2, 4, 256, 256, 64, declared=backward) == []
    assert unmet("bfloat16", 2, 4, 200, 256, 64) == []  # partial tiles: masked
    assert unmet("bfloat16", 2, 4, 256, 100, 128) == []
    assert unmet("float16", 64, 6, 65, 65, 64) == []


def declared_provider(op, dtype, shapes):
    """The provider a tool picks from the declared rules: the first of the op's cuda providers by
    priority whose rules (capabilities.unmet: dtype, head dims) the call meets — the dispatcher's
    choice up to what only a compute can check (mask, dropout, strides, grad_lse)."""
    packs = {p.name: p for p in vt.ops.packs()}
    for prov in vt.ops.providers(op, "cuda"):
        declared = caps.for_kernel(packs[prov.pack].capabilities, op, prov.name, "cuda")
        if not caps.unmet(declared, dtype, shapes):
            return prov.name
    return None


# (dtype, (B, H, Tq, Tk, D), who serves the forward, who the backward)
SERVED = [
    ("float16", (64, 6, 65, 65, 64), "hopper", "hopper"),    # ViT: 64 patches and the class token
    ("float16", (32, 6, 100, 100, 64), "hopper", "hopper"),  # miniGPT's sequences
    ("float16", (1, 2, 100, 300, 128), "hopper", "hopper"),
    ("bfloat16", (64, 6, 65, 65, 64), "hopper", "hopper"),
    ("bfloat16", (8, 16, 2048, 2048, 128), "hopper", "hopper"),
    ("bfloat16", (128, 8, 65, 65, 32), "flash", "flash"),  # ViT's head dim 32: flash (hopper's was no faster)
    ("float16", (2, 4, 256, 256, 96), "composed", "composed"),  # head dim: neither flash nor hopper
    ("bfloat16", (2, 4, 2048, 2048, 256), "hopper", "composed"),  # D = 256: hopper's forward only
    ("float32", (2, 4, 256, 256, 64), "flash", "flash"),      # flash's float32 kernels (flash32_*.cu)
    ("float32", (2, 4, 256, 256, 32), "flash", "flash"),  # head dim 32: flash's float32 kernel
]


@pytest.mark.parametrize("case", SERVED, ids=lambda c: f"{c[0]}-{'x'.join(map(str, c[1]))}")
def test_which_provider_serves_which_call(hopper, case):
    dtype, (B, H, Tq, Tk, D), fwd, bwd = case
    if GPU and not _hopper_gpu():
        pytest.skip("hopper is not registered on this GPU (sm_90a code)")
    shapes = {"q": (B, H, Tq, D), "k": (B, H, Tk, D), "v": (B, H, Tk, D)}
    assert declared_provider(OP, dtype, shapes) == fwd
    assert declared_provider(BACKWARD, dtype, shapes) == bwd


def test_meta_step_is_the_attention_packs(hopper):
    """on the meta device only the attention pack's meta step runs: the same shapes and checks"""
    m = lambda *s, dt=vt.bfloat16: vt.empty(s, dtype=dt, device="meta")  # noqa: E731
    q, k, v = m(2, 4, 256, 64), m(2, 4, 384, 64), m(2, 4, 384, 64)
    out, lse, rng = vt.ops.Op(OP)(q, k, v, None, True, None, 0.0)
    assert (tuple(out.shape), out.dtype, out.device.type) == ((2, 4, 256, 64), vt.bfloat16, "meta")
    assert (tuple(lse.shape), lse.dtype) == ((2, 4, 256), vt.float32)
    assert (tuple(rng.shape), rng.dtype) == ((2,), vt.int64)
    dq, dk, dv = vt.ops.Op(BACKWARD)(out, q, k, v, out, lse, None, True, 0.125, 0.0, 0, 0)
    assert [tuple(t.shape) for t in (dq, dk, dv)] == [(2, 4, 256, 64), (2, 4, 384, 64), (2, 4, 384, 64)]
    with pytest.raises(ValueError, match=r"\[attention::sdpa\] k must have the head dim D of q"):
        vt.ops.Op(OP)(q, m(2, 4, 384, 128), v, None, False, None, 0.0)


# ---- on a Hopper GPU ------------------------------------------------------------------------------
needs_hopper = pytest.mark.skipif(not _hopper_gpu(), reason="needs a Hopper GPU (compute capability 9.0)")
TOL = 1e-2  # max |got - want| / max |want|, bfloat16 outputs


def rel_err(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert not np.isnan(got).any(), "NaN in the result (an element never written?)"
    return np.abs(got - want).max() / max(np.abs(want).max(), 1e-3)


def half(a, dt=vt.bfloat16):
    """a numpy array as a 16-bit cuda tensor, and the float64 of its rounded values"""
    t = vt.tensor(np.ascontiguousarray(a, np.float32)).to(dt).to("cuda")
    return t, to_numpy(t).astype(np.float64)


def reference(q, k, v, g, causal, scale):
    """out, lse (natural log) and dq, dk, dv in float64"""
    s = q @ np.swapaxes(k, -1, -2) * scale
    if causal:  # key j for query i when j <= i, top-left aligned
        s = np.where(np.triu(np.ones(s.shape[-2:], bool), 1), -np.inf, s)
    mx = s.max(-1, keepdims=True)
    e = np.exp(s - mx)
    lse = (mx + np.log(e.sum(-1, keepdims=True)))[..., 0]
    p = e / e.sum(-1, keepdims=True)
    out = p @ v
    dv = np.swapaxes(p, -1, -2) @ g
    dp = g @ np.swapaxes(v, -1, -2)
    ds = p * (dp - (dp * p).sum(-1, keepdims=True)) * scale
    return out, lse, ds @ k, np.swapaxes(ds, -1, -2) @ q, dv


def poison(*shapes):
    """NaN-filled cuda tensors freed again, so the next outputs of these sizes reuse them"""
    ts = [vt.full(s, float("nan"), dtype=dt, device="cuda") for s, dt in shapes]
    del ts


def run(q, k, v, g, causal, scale=None):
    """forward (out, lse, rng), the gradients through the op's backward rule, and the trace records"""
    B, H, Tq, D = q.shape
    poison(((B, H, Tq, D), q.dtype), ((B, H, Tq), vt.float32))
    qg, kg, vg = (t.detach().requires_grad_() for t in (q, k, v))
    with vt.ops.trace() as t:
        out, lse, rng = vt.ops.Op(OP)(q, k, v, None, causal, scale, 0.0)
        grads = vt.autograd.grad(sdpa(qg, kg, vg, is_causal=causal, scale=scale), (qg, kg, vg), g)
    served = {(r.op, r.provider, r.reason) for r in t.records if r.op in (OP, BACKWARD)}
    return (out, lse, rng), grads, served


# (B, H, Tq, Tk): Tq == Tk, Tq < Tk, Tq > Tk (the causal rows past Tk see every key); partial tiles:
# ViT's 65 tokens, miniGPT's 100, Tq > Tk with a partial key tile (causal rows past Tk must not see
# the zero-filled keys), a partial query tile against whole key tiles, a single query
SHAPES = [(2, 3, 256, 256), (1, 2, 128, 384), (1, 2, 384, 128),
          (2, 3, 65, 65), (2, 2, 100, 100), (1, 2, 300, 100), (1, 2, 200, 256), (1, 2, 1, 130)]


@needs_hopper
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("D", [64, 128])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("causal", [False, True])
def test_hopper_forward_and_grads(hopper, dtype, D, shape, causal):
    B, H, Tq, Tk = shape
    dt = getattr(vt, dtype)
    rng = np.random.default_rng(hash((dtype, D, shape, causal)) % 2**32)
    (tq, q), (tk, k), (tv, v) = (half(rng.standard_normal((B, H, T, D)), dt) for T in (Tq, Tk, Tk))
    tg, g = half(rng.standard_normal((B, H, Tq, D)), dt)
    want_out, want_lse, *want_grads = reference(q, k, v, g, causal, 1 / np.sqrt(D))
    (out, lse, st), grads, served = run(tq, tk, tv, tg, causal)
    # ours takes every shape here; example 88's (VT_HOPPER_BWD=cutlass, float16) not causal rows
    # past Tk meeting a partial key block, nor causal with more keys than queries (pack.cu)
    hopper_backward = not (CUTLASS_BWD and dtype == "float16" and causal and (Tq > Tk and Tk % 128 or Tk > Tq))
    backward_by = ("hopper", "priority") if hopper_backward else ("flash", "fallback")
    assert served == {(OP, "hopper", "priority"), (BACKWARD, *backward_by)}
    assert out.dtype is dt and lse.dtype is vt.float32 and to_numpy(st).tolist() == [0, 0]
    assert rel_err(to_numpy(out), want_out) <= TOL
    assert np.abs(to_numpy(lse) - want_lse).max() <= 1e-2  # natural log, like the other providers
    for name, got, w in zip("qkv", grads, want_grads):
        assert got.dtype is dt
        assert rel_err(to_numpy(got), w) <= TOL, f"d{name}"
    # the composed provider on the same inputs
    with vt.ops.use(OP, "composed", "cuda"), vt.ops.use(BACKWARD, "composed", "cuda"):
        (c_out, c_lse, _), c_grads, _ = run(tq, tk, tv, tg, causal)
    assert rel_err(to_numpy(out), to_numpy(c_out)) <= TOL
    assert np.abs(to_numpy(lse) - to_numpy(c_lse)).max() <= 1e-2
    for name, got, c in zip("qkv", grads, c_grads):
        assert rel_err(to_numpy(got), to_numpy(c)) <= TOL, f"d{name} vs composed"
    if torch is not None and torch.cuda.is_available():
        tdt = getattr(torch, dtype)
        tt = [torch.from_numpy(a.astype(np.float32)).to("cuda", tdt).requires_grad_() for a in (q, k, v)]
        t_out = F.scaled_dot_product_attention(*tt, is_causal=causal)
        t_grads = torch.autograd.grad(t_out, tt, torch.from_numpy(g.astype(np.float32)).to("cuda", tdt))
        assert rel_err(to_numpy(out), t_out.detach().double().cpu().numpy()) <= TOL
        for name, got, t in zip("qkv", grads, t_grads):
            assert rel_err(to_numpy(got), t.double().cpu().numpy()) <= TOL, f"d{name} vs torch"


@needs_hopper
def test_hopper_scale_and_strided_views(hopper):
    """a scale other than 1/sqrt(D) (the example's fixed one) and q, k, v as views of one fused
    (B, T, 3, H, D) projection: strides TMA reads where they lie"""
    B, T, H, D = 2, 256, 4, 64
    rng = np.random.default_rng(7)
    fused, f64 = half(rng.standard_normal((B, T, 3, H, D)), vt.float16)  # float16: hopper's backward too
    q, k, v = (fused[:, :, i].permute(0, 2, 1, 3) for i in range(3))
    assert not q.is_contiguous()
    qn, kn, vn = (np.transpose(f64[:, :, i], (0, 2, 1, 3)) for i in range(3))
    tg, g = half(rng.standard_normal((B, H, T, D)), vt.float16)
    want_out, want_lse, *want_grads = reference(qn, kn, vn, g, True, 0.3)
    (out, lse, _), grads, served = run(q, k, v, tg, True, scale=0.3)
    assert (OP, "hopper", "priority") in served and (BACKWARD, "hopper", "priority") in served
    assert rel_err(to_numpy(out), want_out) <= TOL
    assert np.abs(to_numpy(lse) - want_lse).max() <= 1e-2
    for name, got, w in zip("qkv", grads, want_grads):
        assert rel_err(to_numpy(got), w) <= TOL, f"d{name}"


@needs_hopper
@pytest.mark.parametrize("Tq", [65, 100])
def test_hopper_backward_takes_lse_in_any_layout(hopper, Tq):
    """the backward reads lse through TMA (16-byte row strides): rows it cannot read where they lie
    (a contiguous (B, H, 65); a view with rows of 103) are copied into rows of a multiple of 8 first,
    the others (rows of 100, a view with rows of 68) read in place — the same gradients either way"""
    B, H, Tk, D = 2, 3, 128, 64
    rng = np.random.default_rng(Tq)
    (tq, q), (tk, k), (tv, v), (tg, g) = (half(rng.standard_normal((B, H, T, D)), vt.float16)
                                          for T in (Tq, Tk, Tk, Tq))
    *_, dq, dk, dv = reference(q, k, v, g, False, 0.125)
    out, lse, _ = vt.ops.Op(OP)(tq, tk, tv, None, False, 0.125, 0.0)
    wide = vt.zeros((B, H, Tq + 3), dtype=vt.float32, device="cuda")
    view = wide[:, :, :Tq]
    view.copy_(lse)
    for rows in (lse, view):
        with vt.ops.trace() as t:
            grads = vt.ops.Op(BACKWARD)(tg, tq, tk, tv, out, rows, None, False, 0.125, 0.0, 0, 0)
        assert {r.provider for r in t.records if r.op == BACKWARD} == {"hopper"}
        for name, got, want in zip("qkv", grads, (dq, dk, dv)):
            assert rel_err(to_numpy(got), want) <= TOL, f"d{name} with lse strides {rows.stride()}"


# calls hopper declines: (what, dtype, (B, H, Tq, Tk, D), mask, dropout_p, the reason it gives)
DECLINED = [
    ("float32", "float32", (1, 2, 128, 128, 64), None, 0.0, "dtype float32"),
    ("head_dim_96", "bfloat16", (1, 2, 128, 128, 96), None, 0.0, "head dims D = 96"),
    ("mask", "bfloat16", (1, 2, 128, 128, 64), "bool", 0.0, "a mask"),
    ("dropout", "bfloat16", (1, 2, 128, 128, 64), None, 0.1, "dropout_p = 0.1"),
]


@needs_hopper
@pytest.mark.parametrize("case", DECLINED, ids=lambda c: c[0])
def test_hopper_declines_to_flash(hopper, case):
    _, dname, (B, H, Tq, Tk, D), mask, p, why = case
    dt = getattr(vt, dname)
    rng = np.random.default_rng(3)
    q, k, v = (vt.tensor(rng.standard_normal((B, H, T, D)).astype(np.float32)).to(dt).to("cuda")
               for T in (Tq, Tk, Tk))
    m = vt.ones((Tq, Tk), dtype=vt.bool, device="cuda") if mask else None
    with vt.ops.trace() as t:
        out, _, _ = vt.ops.Op(OP)(q, k, v, m, False, None, p)
    rec = [r for r in t.records if r.op == OP][-1]
    assert (rec.provider, rec.reason, rec.declined) == ("flash", "fallback", "hopper")
    with vt.ops.use(OP, "flash", "cuda"):
        want, _, _ = vt.ops.Op(OP)(q, k, v, m, False, None, p)
    if p == 0.0:
        assert np.array_equal(to_numpy(out), to_numpy(want))
    with vt.ops.use(OP, "hopper", "cuda"):  # pinned: no fallback, the reason reaches the caller
        with pytest.raises(NotImplementedError, match=rf"\[attention::sdpa\] the hopper provider does not serve.*{why}"):
            vt.ops.Op(OP)(q, k, v, m, False, None, p)


# causal shapes example 88's backward cannot take: (B, H, Tq, Tk), the reason it gives under VT_HOPPER_BWD=cutlass
CAUSAL_EDGES = [
    ((1, 2, 300, 100), r"causal with Tq = 300 > Tk = 100 and Tk not a multiple of 128"),  # rows past a partial key block
    ((1, 2, 128, 384), r"causal with Tk = 384 > Tq = 128"),  # key blocks no query sees: dK, dV zero
]


@needs_hopper
@pytest.mark.parametrize("case", CAUSAL_EDGES, ids=lambda c: "x".join(map(str, c[0])))
def test_hopper_backward_causal_edges(hopper, case):
    """ours serves them (the key blocks no query sees get dK = dV = 0); example 88's, pinned,
    refuses them with the reason and, unpinned, leaves them to flash"""
    (B, H, Tq, Tk), why = case
    rng = np.random.default_rng(Tq + Tk)
    (tq, q), (tk, k), (tv, v), (tg, g) = (half(rng.standard_normal((B, H, T, 64)), vt.float16)
                                          for T in (Tq, Tk, Tk, Tq))
    out, lse, _ = vt.ops.Op(OP)(tq, tk, tv, None, True, None, 0.0)
    if CUTLASS_BWD:
        with vt.ops.use(BACKWARD, "hopper", "cuda"):
            with pytest.raises(NotImplementedError, match=why):
                vt.ops.Op(BACKWARD)(tg, tq, tk, tv, out, lse, None, True, 0.125, 0.0, 0, 0)
    with vt.ops.trace() as t:
        grads = vt.ops.Op(BACKWARD)(tg, tq, tk, tv, out, lse, None, True, 0.125, 0.0, 0, 0)
    assert [r.provider for r in t.records if r.op == BACKWARD] == ["flash" if CUTLASS_BWD else "hopper"]
    *_, dq, dk, dv = reference(q, k, v, g, True, 0.125)
    for name, got, want in zip("qkv", grads, (dq, dk, dv)):
        assert rel_err(to_numpy(got), want) <= TOL, f"d{name}"
    if Tk > Tq:  # keys past the last query: no query sees them
        assert not to_numpy(grads[1])[:, :, Tq:].any() and not to_numpy(grads[2])[:, :, Tq:].any()


@needs_hopper
def test_hopper_declines_head_dim_32(hopper):
    """D = 32 (ViT's heads): flash serves both ops; pinned to hopper, the refusal names the head dims
    it takes"""
    rng = np.random.default_rng(32)
    q, k, v, g = (half(rng.standard_normal((4, 8, 65, 32)))[0] for _ in range(4))
    with vt.ops.trace() as t:
        out, lse, _ = vt.ops.Op(OP)(q, k, v, None, False, None, 0.0)
        vt.ops.Op(BACKWARD)(g, q, k, v, out, lse, None, False, 32 ** -0.5, 0.0, 0, 0)
    assert [(r.op, r.provider) for r in t.records if r.op in (OP, BACKWARD)] == [(OP, "flash"), (BACKWARD, "flash")]
    for op in (OP, BACKWARD):
        with vt.ops.use(op, "hopper", "cuda"):
            with pytest.raises(NotImplementedError, match=r"D == Dv in \{64, 128(, 256)?\}"):
                if op == OP:
                    vt.ops.Op(OP)(q, k, v, None, False, None, 0.0)
                else:
                    vt.ops.Op(BACKWARD)(g, q, k, v, out, lse, None, False, 32 ** -0.5, 0.0, 0, 0)


@needs_hopper
def test_hopper_backward_declines_grad_lse(hopper):
    rng = np.random.default_rng(5)
    q, k, v, g = (half(rng.standard_normal((1, 2, 128, 64)), vt.float16)[0] for _ in range(4))
    out, lse, _ = vt.ops.Op(OP)(q, k, v, None, False, None, 0.0)
    glse = vt.ones((1, 2, 128), dtype=vt.float32, device="cuda")
    with vt.ops.trace() as t:
        vt.ops.Op(BACKWARD)(g, q, k, v, out, lse, None, False, 0.125, 0.0, 0, 0, glse)
    rec = [r for r in t.records if r.op == BACKWARD][-1]
    assert (rec.provider, rec.reason, rec.declined) == ("flash", "fallback", "hopper")


@needs_hopper
@pytest.mark.parametrize("D", [64, 128])
def test_hopper_backward_bfloat16_pinned(hopper, D):
    """bfloat16 backward pinned to hopper: ours serves it (example 88's never did), in several key
    blocks and query blocks, causal, against the float64 reference"""
    rng = np.random.default_rng(D)
    B, H, T = 2, 2, 384
    (tq, q), (tk, k), (tv, v), (tg, g) = (half(rng.standard_normal((B, H, T, D))) for _ in range(4))
    out, lse, _ = vt.ops.Op(OP)(tq, tk, tv, None, True, None, 0.0)
    with vt.ops.use(BACKWARD, "hopper", "cuda"), vt.ops.trace() as t:
        grads = vt.ops.Op(BACKWARD)(tg, tq, tk, tv, out, lse, None, True, 1 / np.sqrt(D), 0.0, 0, 0)
    assert [r.provider for r in t.records if r.op == BACKWARD] == ["hopper"]
    *_, dq, dk, dv = reference(q, k, v, g, True, 1 / np.sqrt(D))
    for name, got, want in zip("qkv", grads, (dq, dk, dv)):
        assert got.dtype is vt.bfloat16
        assert rel_err(to_numpy(got), want) <= TOL, f"d{name}"


# ---- head dim 256: the forward only ----------------------------------------------------------------
@needs_hopper
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("shape", [(2, 3, 256, 256), (2, 2, 65, 65), (1, 2, 300, 100), (1, 2, 128, 384)],
                         ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("causal", [False, True])
def test_hopper_forward_d256(hopper, dtype, shape, causal):
    """D = 256: hopper's forward (out, lse) against float64; the backward is declined by hopper and
    served by the next provider (flash's compute, which runs the composed one at D = 256), its
    gradients against float64 too; pinned to hopper, the backward's refusal names the head dims"""
    B, H, Tq, Tk = shape
    D, dt = 256, getattr(vt, dtype)
    rng = np.random.default_rng(hash((dtype, shape, causal)) % 2**32)
    (tq, q), (tk, k), (tv, v), (tg, g) = (half(rng.standard_normal((B, H, T, D)), dt) for T in (Tq, Tk, Tk, Tq))
    want_out, want_lse, *want_grads = reference(q, k, v, g, causal, 1 / 16)
    (out, lse, _), grads, _ = run(tq, tk, tv, tg, causal)
    with vt.ops.trace() as t:
        vt.ops.Op(OP)(tq, tk, tv, None, causal, None, 0.0)
        vt.ops.Op(BACKWARD)(tg, tq, tk, tv, out, lse, None, causal, 1 / 16, 0.0, 0, 0)
    recs = {r.op: r for r in t.records if r.op in (OP, BACKWARD)}
    assert recs[OP].provider == "hopper"
    assert (recs[BACKWARD].provider, recs[BACKWARD].reason, recs[BACKWARD].declined) == ("flash", "fallback", "hopper")
    assert rel_err(to_numpy(out), want_out) <= TOL
    assert np.abs(to_numpy(lse) - want_lse).max() <= 1e-2
    for name, got, w in zip("qkv", grads, want_grads):
        assert rel_err(to_numpy(got), w) <= TOL, f"d{name}"
    with vt.ops.use(BACKWARD, "hopper", "cuda"):
        with pytest.raises(NotImplementedError, match=r"D == Dv in \{64, 128\} for the backward"):
            vt.ops.Op(BACKWARD)(tg, tq, tk, tv, out, lse, None, causal, 1 / 16, 0.0, 0, 0)


# ---- GQA / MQA: k and v with Hkv heads, query head h on kv head h // (H // Hkv) ----------------------
def gqa_reference(q, k, v, g, causal, scale):
    """out, lse, dq, dk, dv in float64 with k and v repeated over each group (torch's enable_gqa), dk
    and dv summed back over it"""
    G = q.shape[1] // k.shape[1]
    out, lse, dq, dk, dv = reference(q, np.repeat(k, G, 1), np.repeat(v, G, 1), g, causal, scale)
    fold = lambda a: a.reshape(a.shape[0], -1, G, *a.shape[2:]).sum(2)  # noqa: E731
    return out, lse, dq, fold(dk), fold(dv)


def _needs_gqa_op():
    """the attention pack's GQA (enable_gqa, the op's 8th argument): skip until it is there"""
    m = lambda *s: vt.empty(s, dtype=vt.bfloat16, device="meta")  # noqa: E731
    try:
        vt.ops.Op(OP)(m(1, 4, 8, 64), m(1, 2, 8, 64), m(1, 2, 8, 64), None, False, None, 0.0, True)
    except (ValueError, TypeError) as e:
        pytest.skip(f"the attention pack has no GQA yet: {e}")


# (B, H, Hkv, Tq, Tk, D): GQA, MQA, partial tiles, Tq != Tk both ways, a group of 8 (Llama's 32/8 at a
# small size). The backward splits a group over CTAs while (key blocks x Hkv x B) CTAs would leave SMs
# idle (bwd_wgmma.cuh's run<>): on the H200's 132 SMs the small shapes run one query head a CTA; 5x16/4
# at 1024 keys (160 CTAs) walks all 4 heads of a group in one CTA, 4x12/2 at 1024 keys splits each
# group of 6 over 3 CTAs of 2 heads.
GQA_SHAPES = [(2, 8, 2, 256, 256, 64), (1, 4, 1, 100, 100, 128), (2, 6, 3, 65, 65, 64), (1, 4, 2, 128, 384, 128),
              (1, 4, 2, 300, 100, 64), (1, 8, 1, 200, 256, 128), (2, 16, 2, 130, 130, 64),
              (5, 16, 4, 1024, 1024, 64), (4, 12, 2, 512, 1024, 128)]


@needs_hopper
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("shape", GQA_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("causal", [False, True])
def test_hopper_gqa_forward_and_grads(hopper, dtype, shape, causal):
    _needs_gqa_op()
    B, H, Hkv, Tq, Tk, D = shape
    dt = getattr(vt, dtype)
    rng = np.random.default_rng(hash((dtype, shape, causal)) % 2**32)
    (tq, q), (tg, g) = (half(rng.standard_normal((B, H, Tq, D)), dt) for _ in range(2))
    (tk, k), (tv, v) = (half(rng.standard_normal((B, Hkv, Tk, D)), dt) for _ in range(2))
    scale = 1 / np.sqrt(D)
    want_out, want_lse, *want_grads = gqa_reference(q, k, v, g, causal, scale)
    poison(((B, H, Tq, D), dt), ((B, H, Tq), vt.float32), ((B, Hkv, Tk, D), dt))
    qg, kg, vg = (t.detach().requires_grad_() for t in (tq, tk, tv))
    with vt.ops.trace() as t:
        out, lse, _ = vt.ops.Op(OP)(tq, tk, tv, None, causal, None, 0.0, True)
        grads = vt.autograd.grad(sdpa(qg, kg, vg, is_causal=causal, enable_gqa=True), (qg, kg, vg), tg)
    # example 88's backward (VT_HOPPER_BWD=cutlass, float16) declines GQA: flash's
    backward_by = ("flash", "fallback") if CUTLASS_BWD and dtype == "float16" else ("hopper", "priority")
    assert {(r.op, r.provider, r.reason) for r in t.records if r.op in (OP, BACKWARD)} == \
        {(OP, "hopper", "priority"), (BACKWARD, *backward_by)}
    assert rel_err(to_numpy(out), want_out) <= TOL
    assert np.abs(to_numpy(lse) - want_lse).max() <= 1e-2
    for name, got, w in zip("qkv", grads, want_grads):
        assert got.dtype is dt and tuple(got.shape) == w.shape
        assert rel_err(to_numpy(got), w) <= TOL, f"d{name}"
    if torch is not None and torch.cuda.is_available():
        tdt = getattr(torch, dtype)
        tt = [torch.from_numpy(a.astype(np.float32)).to("cuda", tdt).requires_grad_() for a in (q, k, v)]
        t_out = F.scaled_dot_product_attention(*tt, is_causal=causal, enable_gqa=True)
        t_grads = torch.autograd.grad(t_out, tt, torch.from_numpy(g.astype(np.float32)).to("cuda", tdt))
        assert rel_err(to_numpy(out), t_out.detach().double().cpu().numpy()) <= TOL
        for name, got, tg_ in zip("qkv", grads, t_grads):
            assert rel_err(to_numpy(got), tg_.double().cpu().numpy()) <= TOL, f"d{name} vs torch"


@needs_hopper
def test_hopper_gqa_strided_views(hopper):
    """GQA on q, k, v as views of one fused (B, T, H + 2 Hkv, D) projection (Llama's layout): head
    strides D, not T * D, through the per-member launches' G x head strides"""
    _needs_gqa_op()
    B, T, H, Hkv, D = 2, 200, 8, 2, 128
    rng = np.random.default_rng(8)
    fused, f64 = half(rng.standard_normal((B, T, H + 2 * Hkv, D)))
    tq, tk, tv = (fused[:, :, a:b].permute(0, 2, 1, 3) for a, b in ((0, H), (H, H + Hkv), (H + Hkv, H + 2 * Hkv)))
    q, k, v = (np.transpose(f64[:, :, a:b], (0, 2, 1, 3)) for a, b in ((0, H), (H, H + Hkv), (H + Hkv, H + 2 * Hkv)))
    tg, g = half(rng.standard_normal((B, H, T, D)))
    want_out, want_lse, *want_grads = gqa_reference(q, k, v, g, True, 0.1)
    with vt.ops.trace() as t:
        out, lse, _ = vt.ops.Op(OP)(tq, tk, tv, None, True, 0.1, 0.0, True)
        grads = vt.ops.Op(BACKWARD)(tg, tq, tk, tv, out, lse, None, True, 0.1, 0.0, 0, 0)
    assert [r.provider for r in t.records if r.op in (OP, BACKWARD)] == ["hopper", "hopper"]
    assert rel_err(to_numpy(out), want_out) <= TOL
    assert np.abs(to_numpy(lse) - want_lse).max() <= 1e-2
    for name, got, w in zip("qkv", grads, want_grads):
        assert rel_err(to_numpy(got), w) <= TOL, f"d{name}"


def _load_in_subprocess(env: dict, body: str = "") -> subprocess.CompletedProcess:
    """loads the pack in a fresh process under `env` (the pack reads its variables at load) and runs
    `body` (with vt and the pack loaded); prints 'ERR <message>' when the load fails, else LOADED"""
    folder = _build_pack()
    code = ("import vibetensor as vt\ntry:\n    vt.ops.load(%r)\nexcept Exception as e:\n    print('ERR', e)\n"
            "else:\n    print('LOADED')\n" % str(folder)) + body
    return subprocess.run([sys.executable, "-c", code], env=dict(os.environ, **env), capture_output=True, text=True,
                          timeout=300, cwd=str(ROOT / "tests"))


def test_unknown_forward_tile_fails_the_load():
    """VT_HOPPER_FWD_D64 is read at load: a tile not built fails it, naming those that are"""
    done = _load_in_subprocess({"VT_HOPPER_FWD_D64": "128x128"})
    assert "ERR" in done.stdout and "VT_HOPPER_FWD_D64='128x128'" in done.stdout, done.stdout + done.stderr
    assert "'128x64', '128x64p' (persistent) or '192x128'" in done.stdout
    for tile in ("128x64", "128x64p", "192x128", ""):  # the built tiles (and unset) load
        done = _load_in_subprocess({"VT_HOPPER_FWD_D64": tile})
        assert done.stdout.strip() == "LOADED", (tile, done.stdout + done.stderr)


# each D = 64 forward tile, in its own process: out and lse against the float64 reference, causal and
# not, whole and partial tiles (ViT's 65 tokens, Tq > Tk with a partial key tile, Tk > Tq, one query;
# 400 queries: the persistent walk's tiles over more than one (b, h))
_TILE_CHECK = '''
D = 64
import numpy as np
from test_attention_hopper import half, reference, rel_err, to_numpy, OP
for (B, H, Tq, Tk) in [(2, 3, 256, 256), (2, 3, 65, 65), (1, 2, 300, 100), (1, 2, 128, 384), (1, 2, 1, 130),
                       (1, 2, 400, 400)]:
    for causal in (False, True):
        for dt in (vt.bfloat16, vt.float16):
            rng = np.random.default_rng(Tq * 7 + Tk)
            (tq, q), (tk, k), (tv, v) = (half(rng.standard_normal((B, H, T, D)), dt) for T in (Tq, Tk, Tk))
            want_out, want_lse, *_ = reference(q, k, v, q, causal, D ** -0.5)
            with vt.ops.trace() as t:
                out, lse, _ = vt.ops.Op(OP)(tq, tk, tv, None, causal, None, 0.0)
            assert [r.provider for r in t.records if r.op == OP] == ["hopper"]
            err = rel_err(to_numpy(out), want_out)
            lse_err = np.abs(to_numpy(lse) - want_lse).max()
            assert err <= 1e-2 and lse_err <= 1e-2, (B, H, Tq, Tk, causal, dt, err, lse_err)
print("CHECKED")
'''


@needs_hopper
@pytest.mark.parametrize("tile", ["128x64", "128x64p", "192x128"])
def test_hopper_forward_d64_tiles(tile):
    done = _load_in_subprocess({"VT_HOPPER_FWD_D64": tile}, _TILE_CHECK)
    assert done.stdout.split() == ["LOADED", "CHECKED"], done.stdout + done.stderr


@needs_hopper
@pytest.mark.parametrize("D", [64, 128])
def test_hopper_causal_forward_sections(hopper, D):
    """The causal forward's longest-first order runs the (b, h) pairs in sections whose K and V fit
    32 MiB of L2: at T * D * 4 bytes = 1 MiB a head, 40 pairs make a section of 32 and one of 8
    (narrower); every pair's every query tile must come out right (float64 reference a pair at a time)"""
    B, H, T = 4, 10, 2 ** 18 // D
    rng = np.random.default_rng(D)
    (tq, q), (tk, k), (tv, v) = (half(rng.standard_normal((B, H, T, D)), vt.bfloat16) for _ in range(3))
    with vt.ops.trace() as t:
        out, lse, _ = vt.ops.Op(OP)(tq, tk, tv, None, True, None, 0.0)
    assert [r.provider for r in t.records if r.op == OP] == ["hopper"]
    out, lse = to_numpy(out).astype(np.float64), to_numpy(lse).astype(np.float64)
    keep = np.tril(np.ones((T, T), bool))
    for b in range(B):
        for h in range(H):
            s = np.where(keep, q[b, h] @ k[b, h].T * D ** -0.5, -np.inf)
            want_lse = np.logaddexp.reduce(s, axis=-1)
            want_out = np.exp(s - want_lse[:, None]) @ v[b, h]
            assert rel_err(out[b, h], want_out) <= 1e-2, (b, h)
            assert np.abs(lse[b, h] - want_lse).max() <= 1e-2, (b, h)


BACKWARD_CHOICES = ["default", "wgmma2", "wgmma3", "cutlass", "ws", "ws1", "ws2"]  # VT_HOPPER_BWD's values (read at load)


def test_unknown_backward_choice_fails_the_load():
    """VT_HOPPER_BWD other than 'default', 'wgmma2', 'wgmma3', 'cutlass', 'ws', 'ws1' or 'ws2': the pack refuses to load,
    saying what it takes; each of those (and unset) loads"""
    done = _load_in_subprocess({"VT_HOPPER_BWD": "fast"})
    assert "ERR" in done.stdout and "VT_HOPPER_BWD='fast'" in done.stdout, done.stdout + done.stderr
    assert all(f"'{choice}'" in done.stdout for choice in BACKWARD_CHOICES), done.stdout
    for choice in BACKWARD_CHOICES + [""]:
        done = _load_in_subprocess({"VT_HOPPER_BWD": choice})
        assert done.stdout.strip() == "LOADED", (choice, done.stdout + done.stderr)


# the backward under one VT_HOPPER_BWD value, in its own process: dq, dk, dv of every SHAPES case,
# both head dims, both dtypes, causal and not, against the float64 reference, outputs poisoned first;
# who serves (hopper, or flash where example 88's backward declines under 'cutlass') checked too
_BACKWARD_CHECK = '''
import os
import numpy as np
from test_attention_hopper import half, reference, rel_err, to_numpy, poison, OP, BACKWARD, SHAPES
cutlass = os.environ["VT_HOPPER_BWD"] == "cutlass"
bad = []
for (B, H, Tq, Tk) in SHAPES:
    for D in (64, 128):
        for causal in (False, True):
            for dt in (vt.bfloat16, vt.float16):
                rng = np.random.default_rng(Tq * 7 + Tk + D)
                (tq, q), (tk, k), (tv, v), (tg, g) = (half(rng.standard_normal((B, H, T, D)), dt)
                                                      for T in (Tq, Tk, Tk, Tq))
                scale = 1 / np.sqrt(D)
                *_, dq, dk, dv = reference(q, k, v, g, causal, scale)
                out, lse, _ = vt.ops.Op(OP)(tq, tk, tv, None, causal, None, 0.0)
                poison(((B, H, Tq, D), dt), ((B, H, Tk, D), dt))
                with vt.ops.trace() as t:
                    grads = vt.ops.Op(BACKWARD)(tg, tq, tk, tv, out, lse, None, causal, scale, 0.0, 0, 0)
                declined = cutlass and dt is vt.float16 and causal and (Tq > Tk and Tk % 128 or Tk > Tq)
                served = [r.provider for r in t.records if r.op == BACKWARD]
                errs = [rel_err(to_numpy(got), want) for got, want in zip(grads, (dq, dk, dv))]
                if served != ["flash" if declined else "hopper"] or max(errs) > 1e-2:
                    bad.append(((B, H, Tq, Tk), D, causal, str(dt), served, ["%.3g" % e for e in errs]))
# q, k, v (and so dq, dk, dv, in the layouts the meta step picks from them) as views of one fused
# (B, T, 3, H, D) projection
for D in (64, 128):
    for dt in (vt.bfloat16, vt.float16):
        rng = np.random.default_rng(D)
        fused, f64 = half(rng.standard_normal((2, 200, 3, 3, D)), dt)
        tq, tk, tv = (fused[:, :, i].permute(0, 2, 1, 3) for i in range(3))
        q, k, v = (np.transpose(f64[:, :, i], (0, 2, 1, 3)) for i in range(3))
        tg, g = half(rng.standard_normal((2, 3, 200, D)), dt)
        *_, dq, dk, dv = reference(q, k, v, g, True, 0.3)
        out, lse, _ = vt.ops.Op(OP)(tq, tk, tv, None, True, 0.3, 0.0)
        with vt.ops.trace() as t:
            grads = vt.ops.Op(BACKWARD)(tg, tq, tk, tv, out, lse, None, True, 0.3, 0.0, 0, 0)
        served = [r.provider for r in t.records if r.op == BACKWARD]
        errs = [rel_err(to_numpy(got), want) for got, want in zip(grads, (dq, dk, dv))]
        if served != ["hopper"] or max(errs) > 1e-2:
            bad.append(("fused views", D, str(dt), served, [tuple(x.stride()) for x in grads], ["%.3g" % e for e in errs]))
# GQA and MQA: served by the backwards that take them (GQA_BACKWARDS), declined to flash by the others
from test_attention_hopper import gqa_reference, GQA_BACKWARDS
gqa = os.environ["VT_HOPPER_BWD"] in GQA_BACKWARDS
for (B, H, Hkv, Tq, Tk, D) in [(2, 8, 2, 256, 256, 64), (1, 4, 1, 100, 300, 128), (1, 6, 2, 300, 100, 64)]:
    for causal in (False, True):
        for dt in (vt.bfloat16, vt.float16):
            rng = np.random.default_rng(H * 100 + Hkv + D)
            (tq, q), (tg, g) = (half(rng.standard_normal((B, H, Tq, D)), dt) for _ in range(2))
            (tk, k), (tv, v) = (half(rng.standard_normal((B, Hkv, Tk, D)), dt) for _ in range(2))
            *_, dq, dk, dv = gqa_reference(q, k, v, g, causal, 0.125)
            try:
                out, lse, _ = vt.ops.Op(OP)(tq, tk, tv, None, causal, 0.125, 0.0, True)
            except (ValueError, TypeError):
                break  # the attention pack has no GQA yet
            poison(((B, H, Tq, D), dt), ((B, Hkv, Tk, D), dt))
            with vt.ops.trace() as t:
                grads = vt.ops.Op(BACKWARD)(tg, tq, tk, tv, out, lse, None, causal, 0.125, 0.0, 0, 0)
            served = [r.provider for r in t.records if r.op == BACKWARD]
            errs = [rel_err(to_numpy(got), want) for got, want in zip(grads, (dq, dk, dv))]
            # under 'cutlass' bfloat16 runs on the default backward (example 88's has no bfloat16)
            by = "hopper" if gqa or (cutlass and dt is vt.bfloat16) else "flash"
            if served != [by] or max(errs) > 1e-2:
                bad.append(("gqa", (B, H, Hkv, Tq, Tk), D, causal, str(dt), served, ["%.3g" % e for e in errs]))
print("BAD", bad) if bad else print("CHECKED")
'''
GQA_BACKWARDS = ("default", "wgmma2", "wgmma3", "ws", "ws1", "ws2")  # the VT_HOPPER_BWD values whose backward takes Hkv < H


@needs_hopper
@pytest.mark.parametrize("choice", BACKWARD_CHOICES)
def test_hopper_backward_choices(choice):
    """every backward VT_HOPPER_BWD picks, validated in one GPU run: default (ws, GQA/MQA included),
    wgmma2 (zero-spill), wgmma3 (wgmma2 with dQ's bulk reduce-add),
    cutlass (example 88's for float16, ours for bfloat16), ws (FlashAttention-3's order of a step's
    products), ws1 (ws in its first order), ws2 (ws with dV issued before the dS store)"""
    done = _load_in_subprocess({"VT_HOPPER_BWD": choice}, _BACKWARD_CHECK)
    assert done.stdout.split() == ["LOADED", "CHECKED"], done.stdout + done.stderr


# ---- our backward's tile walk, emulated on the host (no GPU) --------------------------------------
def emulate_tile_walk(q, k, v, g, causal, scale):
    """bwd_wgmma.cuh's algorithm block by block in float64, with its index math as written there: one
    CTA per key block of 128, the query blocks from i_first = k0 // Br (causal) on, zero-filled rows
    past Tq and Tk (LSE and Dsum 0 there), the mask applied only on the tiles its `masked` test picks
    (and checked to be a no-op elsewhere), dK and dV stored for keys < Tk, dQ accumulated then scaled."""
    B, H, Tq, D = q.shape
    Tk = k.shape[2]
    Br, Bc = (128 if D == 64 else 64), 128
    nq, nk = -(-Tq // Br), -(-Tk // Bc)
    out, lse = reference(q, k, v, g, causal, scale)[:2]
    dsum = (g * out).sum(-1)

    def pad(a, n):  # rows past the tensor's end zero-filled, as cp.async's zfill leaves them
        return np.concatenate([a, np.zeros(a.shape[:2] + (n - a.shape[2],) + a.shape[3:])], axis=2)

    qp, gp, lp, dp = pad(q, nq * Br), pad(g, nq * Br), pad(lse, nq * Br), pad(dsum, nq * Br)
    kp, vp = pad(k, nk * Bc), pad(v, nk * Bc)
    dq = np.zeros(qp.shape)
    dk, dv = np.zeros(kp.shape), np.zeros(vp.shape)
    log2e = 1 / np.log(2)
    for kb in range(nk):
        k0 = kb * Bc
        keys = k0 + np.arange(Bc)[:, None]
        kj, vj = kp[:, :, k0:k0 + Bc], vp[:, :, k0:k0 + Bc]
        for i in range(k0 // Br if causal else 0, nq):
            q0 = i * Br
            queries = q0 + np.arange(Br)[None, :]
            qi, gi = qp[:, :, q0:q0 + Br], gp[:, :, q0:q0 + Br]
            st = kj @ np.swapaxes(qi, -1, -2)  # S^T (keys, queries)
            pt = np.exp2(st * scale * log2e - lp[:, :, None, q0:q0 + Br] * log2e)
            drop = (keys >= Tk) | (queries >= Tq) | (causal & (keys > queries))
            masked = (causal and k0 + Bc - 1 > q0) or q0 + Br > Tq or k0 + Bc > Tk
            if masked:
                pt = np.where(drop, 0.0, pt)
            else:
                assert not drop.any(), f"tile (key block {kb}, query block {i}) needs its mask"
            dpt = vj @ np.swapaxes(gi, -1, -2)
            dst = pt * (dpt - dp[:, :, None, q0:q0 + Br])
            dv[:, :, k0:k0 + Bc] += pt @ gi
            dk[:, :, k0:k0 + Bc] += dst @ qi
            dq[:, :, q0:q0 + Br] += np.swapaxes(dst, -1, -2) @ kj
    return dq[:, :, :Tq] * scale, dk[:, :, :Tk] * scale, dv[:, :, :Tk]


@pytest.mark.parametrize("D", [64, 128])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("causal", [False, True])
def test_backward_tile_walk_emulated(D, shape, causal):
    B, H, Tq, Tk = shape
    rng = np.random.default_rng(Tq * 1000 + Tk + D)
    q, g = (rng.standard_normal((1, 1, Tq, D)) for _ in range(2))
    k, v = (rng.standard_normal((1, 1, Tk, D)) for _ in range(2))
    want = reference(q, k, v, g, causal, 1 / np.sqrt(D))[2:]
    got = emulate_tile_walk(q, k, v, g, causal, 1 / np.sqrt(D))
    for name, a, w in zip("qkv", got, want):
        assert np.abs(a - w).max() <= 1e-9 * max(np.abs(w).max(), 1.0), f"d{name}"


# ---- GQA's index math, emulated on the host (no GPU) ---------------------------------------------
def emulate_group_walk(q, k, v, g, causal, scale, splits=1):
    """backward_kernel2's GQA walk (bwd_wgmma2.cuh) in float64: one CTA per (key block, y, b), y =
    kv head hk * splits + part, walking steps n = 0 .. heads * blocks - 1 (heads = group / splits),
    step n on query head y * heads + n // blocks and query block i_first + n % blocks, the next step's
    Q/dO/LSE/Dsum prefetched into the other stage (n & 1) while this one runs; dK and dV summed over
    the walk in one accumulator, stored once (splits > 1: as fp32 partials (split, B, Hkv, Tk, D) that
    dkv_sum adds in split order); dQ added into the query head's rows"""
    B, H, Tq, D = q.shape
    Hkv, Tk = k.shape[1], k.shape[2]
    group = H // Hkv
    Br, Bc = (128 if D == 64 else 64), 128
    nq, nk = -(-Tq // Br), -(-Tk // Bc)
    out, lse = gqa_reference(q, k, v, g, causal, scale)[:2]
    dsum = (g * out).sum(-1)

    def pad(a, n):
        return np.concatenate([a, np.zeros(a.shape[:2] + (n - a.shape[2],) + a.shape[3:])], axis=2)

    qp, gp, lp, dp = pad(q, nq * Br), pad(g, nq * Br), pad(lse, nq * Br), pad(dsum, nq * Br)
    kp, vp = pad(k, nk * Bc), pad(v, nk * Bc)
    dq = np.zeros(qp.shape)
    part_k, part_v = np.full((splits,) + kp.shape, np.nan), np.full((splits,) + vp.shape, np.nan)
    heads = group // splits
    for b in range(B):
        for y in range(Hkv * splits):
            hk, part = y // splits, y % splits
            for kb in range(nk):
                k0 = kb * Bc
                i_first = k0 // Br if causal else 0
                blocks = nq - i_first
                steps = heads * blocks
                head = lambda n: y * heads + n // blocks  # noqa: E731
                block = lambda n: i_first + n % blocks  # noqa: E731
                kj, vj = kp[b, hk, k0:k0 + Bc], vp[b, hk, k0:k0 + Bc]
                stage = [None, None]

                def load(n, s):
                    hq, q0 = head(n), block(n) * Br
                    stage[s] = (hq, q0, qp[b, hq, q0:q0 + Br], gp[b, hq, q0:q0 + Br], lp[b, hq, q0:q0 + Br],
                                dp[b, hq, q0:q0 + Br])

                acc_dk, acc_dv = np.zeros((Bc, D)), np.zeros((Bc, D))
                if i_first < nq:
                    load(0, 0)
                for n in range(steps):
                    s = n & 1
                    if n + 1 < steps:
                        load(n + 1, s ^ 1)
                    hq, q0, qi, gi, li, di = stage[s]
                    assert (hq, q0) == (head(n), block(n) * Br)
                    keys, queries = k0 + np.arange(Bc)[:, None], q0 + np.arange(Br)[None, :]
                    pt = np.exp(kj @ qi.T * scale - li[None, :])
                    pt = np.where((keys >= Tk) | (queries >= Tq) | (causal & (keys > queries)), 0.0, pt)
                    dst = pt * (vj @ gi.T - di[None, :])
                    acc_dv += pt @ gi
                    acc_dk += dst @ qi
                    dq[b, hq, q0:q0 + Br] += dst.T @ kj
                    assert hq // group == hk  # the query head's kv head
                part_k[part, b, hk, k0:k0 + Bc], part_v[part, b, hk, k0:k0 + Bc] = acc_dk, acc_dv
    dk, dv = part_k[0], part_v[0]
    for part in range(1, splits):  # dkv_sum's order
        dk, dv = dk + part_k[part], dv + part_v[part]
    return dq[:, :, :Tq] * scale, dk[:, :, :Tk] * scale, dv[:, :, :Tk]


# (B, H, Hkv, Tq, Tk, D, splits): splits as run<> picks them for too small a grid (a divisor of the group)
@pytest.mark.parametrize("shape", [(1, 4, 2, 256, 256, 64, 1), (2, 3, 1, 100, 300, 128, 1), (1, 6, 2, 300, 100, 64, 1),
                                   (1, 2, 2, 65, 65, 128, 1), (1, 4, 1, 200, 256, 128, 2), (2, 6, 1, 130, 130, 64, 3),
                                   (1, 8, 2, 100, 300, 64, 4)], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("causal", [False, True])
def test_backward_group_walk_emulated(shape, causal):
    B, H, Hkv, Tq, Tk, D, splits = shape
    rng = np.random.default_rng(H * 1000 + Tq + Tk + D)
    q, g = (rng.standard_normal((B, H, Tq, D)) for _ in range(2))
    k, v = (rng.standard_normal((B, Hkv, Tk, D)) for _ in range(2))
    want = gqa_reference(q, k, v, g, causal, 1 / np.sqrt(D))[2:]
    got = emulate_group_walk(q, k, v, g, causal, 1 / np.sqrt(D), splits)
    for name, a, w in zip("qkv", got, want):
        assert a.shape == w.shape and np.abs(a - w).max() <= 1e-9 * max(np.abs(w).max(), 1.0), f"d{name}"


@pytest.mark.parametrize("layout", ["contiguous", "fused"])
def test_forward_group_launches_emulated(layout):
    """fmha_run.cuh's GQA forward: launch g of G runs Hkv "heads" j whose q, out and lse start g query
    heads in and step G heads at a time, while k and v step one head: query head g + j * G meets kv
    head j = (g + j * G) // G, and the launches together write every head's out and lse once. Emulated
    with numpy strides (elements) on contiguous tensors and on Llama-style fused projections."""
    B, H, Hkv, Tq, Tk, D = 2, 8, 2, 5, 7, 4
    G = H // Hkv
    rng = np.random.default_rng(0)
    if layout == "contiguous":
        q, k, v = rng.standard_normal((B, H, Tq, D)), rng.standard_normal((B, Hkv, Tk, D)), rng.standard_normal((B, Hkv, Tk, D))
    else:  # (B, T, heads, D) projections viewed as (B, heads, T, D)
        q = np.transpose(rng.standard_normal((B, Tq, H, D)), (0, 2, 1, 3))
        k, v = (np.transpose(rng.standard_normal((B, Tk, Hkv, D)), (0, 2, 1, 3)) for _ in range(2))
    out, lse = np.full((B, H, Tq, D), np.nan), np.full((B, H, Tq), np.nan)
    item = q.itemsize
    for g in range(G):
        # the launch's views: pointers moved g heads, head strides G x (q, out); lse (H * Tq, G * Tq)
        qg = np.lib.stride_tricks.as_strided(q[:, g:], (B, Hkv, Tq, D),
                                             (q.strides[0], q.strides[1] * G, q.strides[2], q.strides[3]))
        og = np.lib.stride_tricks.as_strided(out[:, g:], (B, Hkv, Tq, D),
                                             (out.strides[0], out.strides[1] * G, out.strides[2], out.strides[3]))
        flat = lse.reshape(-1)[g * Tq:]
        lg = np.lib.stride_tricks.as_strided(flat, (B, Hkv, Tq), (H * Tq * item, G * Tq * item, item))
        s = qg @ np.swapaxes(k, -1, -2) * 0.5
        lg[...] = np.logaddexp.reduce(s, axis=-1)
        og[...] = np.exp(s - lg[..., None]) @ v
    want_out, want_lse = gqa_reference(q, k, v, np.zeros_like(q), False, 0.5)[:2]
    assert not np.isnan(out).any() and not np.isnan(lse).any()
    np.testing.assert_allclose(out, want_out, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(lse, want_lse, rtol=1e-12, atol=1e-12)
