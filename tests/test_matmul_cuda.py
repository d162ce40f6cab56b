"""matmul, bmm, addmm and linear on cuda: core's cuBLASLt computes (ops/core/cuda/matmul.cu) and the
CUTLASS provider (ops/matmul_cutlass), against numpy float64 and torch.

What the GPU tests cover (test_linalg.py runs its tables on every device too): operands as
transposed, sliced, offset (not 16-byte aligned) and expanded views; batch broadcasting whose
dims fold into one strided-batched call and whose dims do not (host loop); 1-D operands; the bias
epilogue (linear, addmm with a 1-D self and beta = 1) and the copied-init path (2-D self, a
stepped or 0-d bias, beta != 1, float64); k = 0 and other 0-size dims; float16/bfloat16/float64;
the TF32 flag (off: float32 accuracy; on: TF32 rounding, and no change to bfloat16); the same bits
twice; gradients on cuda against cpu; CUTLASS against cuBLASLt, pinned and unpinned.
Without a GPU only the flag plumbing runs (vt.backends needs no device).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

import vibetensor as vt
import vibetensor.backends
from conftest import HAS_TORCH, assert_close, make, to_numpy, torch_tensor

if HAS_TORCH:
    import torch as _torch

GPU = vt.cuda.is_available()
gpu = pytest.mark.skipif(not GPU, reason="needs a CUDA GPU (run on the GPU machine)")
FLOATS = ["float32", "float64", "float16", "bfloat16"]
ROOT = Path(__file__).resolve().parent.parent


def _ref(a, b):
    return np.matmul(np.asarray(a, np.float64), np.asarray(b, np.float64))


def _scale(k):
    return 4 * max(1.0, k / 4)  # a GEMM sums k products: widen atol with k


@pytest.fixture
def no_tf32():
    """TF32 off during the test (the default), whatever a failing test left behind."""
    vt.backends.cuda.matmul.allow_tf32 = False
    yield
    vt.backends.cuda.matmul.allow_tf32 = False


# -- the flag (no GPU needed) ----------------------------------------------------------------------

def test_allow_tf32_flag_reaches_the_pack():
    m = vt.backends.cuda.matmul
    assert m.allow_tf32 is False  # torch's default
    try:
        m.allow_tf32 = True
        assert m.allow_tf32 is True
        assert vt.ops.core.set_cuda_matmul_flags(True) is True  # the op returns the previous setting
        m.allow_tf32 = False
        assert vt.ops.core.set_cuda_matmul_flags(False) is False
    finally:
        m.allow_tf32 = False
    with pytest.raises(AttributeError):
        m.allow_fp32_everything = True  # a typo is an error, not a silent new attribute
    assert isinstance(vt.backends.cuda.is_built(), bool)


# -- cuBLASLt: layouts, batches, dtypes ------------------------------------------------------------

# (self, other, self layout, other layout): 1-D, transposed/sliced/expanded operands, batches that
# fold (linear case, bmm) and do not (broadcast over two dims), odd sizes
CASES = [
    ((4,), (4,), "contiguous", "contiguous"), ((3,), (3, 5), "sliced", "transposed"),
    ((6, 3), (3,), "transposed", "sliced"), ((37, 53), (53, 29), "contiguous", "contiguous"),
    ((37, 53), (53, 29), "transposed", "transposed"), ((40, 64), (64, 24), "sliced", "contiguous"),
    ((5, 8), (8, 6), "expanded", "expanded"), ((2, 7, 16), (16, 9), "contiguous", "transposed"),
    ((2, 7, 16), (16, 9), "transposed", "contiguous"), ((3, 8, 16), (3, 16, 8), "sliced", "transposed"),
    ((2, 1, 5, 8), (4, 8, 3), "contiguous", "contiguous"), ((2, 3, 5, 8), (1, 3, 8, 3), "transposed", "sliced"),
    ((3, 4, 5), (5,), "contiguous", "contiguous"), ((128, 256), (256, 64), "contiguous", "transposed"),
]


@gpu
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}@{c[1]}-{c[2]}-{c[3]}")
def test_matmul_layouts(rng, dtype, case, no_tf32, torch):
    sa, sb, la, lb = case
    a, an = make(rng, sa, dtype, la, "cuda")
    b, bn = make(rng, sb, dtype, lb, "cuda")
    out = a @ b
    assert out.device.type == "cuda" and out.is_contiguous()
    assert_close(out, _ref(an, bn), dtype, scale=_scale(sa[-1]), msg=f"{sa}@{sb} {la}/{lb}")
    if torch is not None and torch.cuda.is_available():
        ta = torch_tensor(an, dtype).cuda()
        tb = torch_tensor(bn, dtype).cuda()
        assert_close(out, to_numpy(ta @ tb).astype(np.float64), scale=2 * _scale(sa[-1]), msg="vs torch")


@gpu
@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32"])
def test_offset_views_not_16_byte_aligned(rng, dtype, no_tf32):
    """Views starting one element into their storage: cuBLASLt is told the true alignment."""
    base, bn = make(rng, (40, 65), dtype, device="cuda")
    w, wn = make(rng, (64, 48), dtype, device="cuda")
    a, an = base[:, 1:], bn[:, 1:]  # starts one element in, rows 65 apart
    assert_close(a @ w, _ref(an, wn), dtype, scale=_scale(64))
    assert_close(vt.linear(a, w.mT, w[0]), _ref(an, wn) + wn[0], dtype, scale=_scale(64))  # bias epilogue
    flat, fn = make(rng, (3 * 64 + 1,), dtype, device="cuda")
    v = flat[1:].reshape(3, 64)
    assert_close(v @ w, _ref(fn[1:].reshape(3, 64), wn), dtype, scale=_scale(64))


@gpu
@pytest.mark.parametrize("dtype", FLOATS)
def test_bmm_views(rng, dtype, no_tf32):
    for la, lb in (("contiguous", "contiguous"), ("transposed", "sliced"), ("sliced", "transposed")):
        a, an = make(rng, (4, 9, 16), dtype, la, "cuda")
        b, bn = make(rng, (4, 16, 12), dtype, lb, "cuda")
        assert_close(vt.bmm(a, b), _ref(an, bn), dtype, scale=_scale(16), msg=f"{la}/{lb}")
    # batch dim not outermost in memory: (b, m, k) viewed from an (m, b, k) buffer
    p, pn = make(rng, (9, 4, 16), dtype, device="cuda")
    b, bn = make(rng, (4, 16, 12), dtype, device="cuda")
    assert_close(vt.bmm(p.permute(1, 0, 2), b), _ref(pn.transpose(1, 0, 2), bn), dtype, scale=_scale(16))


# -- epilogues and the init path -----------------------------------------------------------------

@gpu
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("xshape", [(7,), (5, 24), (2, 3, 24), (0, 24), (2, 0, 24)])
def test_linear_bias(rng, dtype, xshape, no_tf32):
    k = xshape[-1] if len(xshape) > 1 else 7
    xshape = xshape if len(xshape) > 1 else (k,)
    x, xn = make(rng, xshape, dtype, device="cuda")
    w, wn = make(rng, (16, k), dtype, device="cuda")
    for bias_kind in ("none", "contiguous", "sliced", "scalar"):
        if bias_kind == "none":
            b, bn = None, 0.0
        elif bias_kind == "scalar":
            b, bn = make(rng, (), dtype, device="cuda")
        else:
            b, bn = make(rng, (16,), dtype, bias_kind, "cuda")
        out = vt.linear(x, w, b)
        ref = np.asarray(xn, np.float64) @ np.asarray(wn, np.float64).T + bn
        assert_close(out, ref, dtype, scale=_scale(k), msg=f"{xshape} bias {bias_kind}")


@gpu
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("self_shape", [(24,), (9, 24), (9, 1), (1, 24), ()])
def test_addmm(rng, dtype, self_shape, no_tf32):
    s, sn = make(rng, self_shape, dtype, device="cuda")
    m1, m1n = make(rng, (9, 32), dtype, "transposed", "cuda")
    m2, m2n = make(rng, (32, 24), dtype, device="cuda")
    for beta, alpha in ((1.0, 1.0), (1.0, 2.0), (0.5, -1.0), (0.0, 1.0)):
        out = vt.addmm(s, m1, m2, beta=beta, alpha=alpha)
        ref = beta * np.broadcast_to(sn, (9, 24)) + alpha * _ref(m1n, m2n)
        assert_close(out, ref, dtype, scale=2 * _scale(32), msg=f"{self_shape} beta={beta} alpha={alpha}")
    nan = vt.full(self_shape, float("nan"), dtype=getattr(vt, dtype), device="cuda")
    assert np.isfinite(to_numpy(vt.addmm(nan, m1, m2, beta=0.0))).all()  # beta = 0 ignores self


@gpu
@pytest.mark.parametrize("dtype", FLOATS)
def test_zero_sizes(rng, dtype):
    dt = getattr(vt, dtype)
    z = lambda *s: vt.zeros(*s, dtype=dt, device="cuda")  # noqa: E731
    assert (z(0, 3) @ z(3, 4)).shape == (0, 4)
    assert (z(2, 3) @ z(3, 0)).shape == (2, 0)
    assert (z(0, 2, 3) @ z(3, 4)).shape == (0, 2, 4)
    assert to_numpy(vt.ones(2, 0, dtype=dt, device="cuda") @ z(0, 3)).tolist() == [[0.0] * 3] * 2  # k = 0
    s, sn = make(rng, (2, 3), dtype, device="cuda")
    assert_close(vt.addmm(s, z(2, 0), z(0, 3), beta=0.5), 0.5 * sn, dtype)
    b, bn = make(rng, (3,), dtype, device="cuda")
    assert_close(vt.linear(z(4, 0), z(3, 0), b), np.broadcast_to(bn, (4, 3)), dtype)
    assert vt.bmm(z(0, 2, 3), z(0, 3, 4)).shape == (0, 2, 4)


# -- TF32 and determinism --------------------------------------------------------------------------

def _normal(rng, shape, dtype="float32"):
    return vt.from_numpy(rng.standard_normal(shape).astype(np.float32)).to(getattr(vt, dtype)).to("cuda")


@gpu
def test_tf32_flag(rng, no_tf32):
    a, b = _normal(rng, (512, 1024)), _normal(rng, (1024, 256))
    ref = _ref(a.cpu().numpy(), b.cpu().numpy())
    err = lambda t: float(np.abs(t.cpu().numpy() - ref).max() / np.abs(ref).max())  # noqa: E731
    off = a @ b
    assert err(off) < 1e-5  # plain float32
    vt.backends.cuda.matmul.allow_tf32 = True
    on = a @ b
    on_linear = vt.linear(a, b.mT.contiguous())
    assert 1e-5 < err(on) < 5e-3  # TF32: 10 mantissa bits in, float32 accumulate
    assert err(on_linear) < 5e-3
    ah, bh = a.to(vt.bfloat16), b.to(vt.bfloat16)
    bf_on = ah @ bh
    vt.backends.cuda.matmul.allow_tf32 = False
    assert np.array_equal(to_numpy(ah @ bh), to_numpy(bf_on))  # the flag only touches float32
    assert np.array_equal((a @ b).cpu().numpy(), off.cpu().numpy())  # off again: the float32 bits


@gpu
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("shape", [((256, 512), (512, 384)), ((64, 16384), (16384, 64)), ((8, 96, 64), (64, 80))])
def test_same_bits_twice(rng, dtype, shape, no_tf32):
    """Deterministic: the same product twice gives the same bits (the long-k case may split k)."""
    a, b = _normal(rng, shape[0], dtype), _normal(rng, shape[1], dtype)
    first = to_numpy(a @ b)
    for _ in range(3):
        assert np.array_equal(to_numpy(a @ b), first)
    bias = _normal(rng, (shape[1][-1],), dtype)
    w = b.mT.contiguous()
    lin = to_numpy(vt.linear(a, w, bias))
    assert np.array_equal(to_numpy(vt.linear(a, w, bias)), lin)


# -- gradients on cuda -----------------------------------------------------------------------------

def _pair(rng, shape):
    v = rng.standard_normal(shape).astype(np.float32)
    return (vt.tensor(v).requires_grad_(), vt.tensor(v).to("cuda").detach().requires_grad_())


@gpu
@pytest.mark.parametrize("shapes", [((3, 4), (4, 5)), ((4,), (2, 4, 5)), ((2, 1, 3, 4), (3, 4, 2)),
                                    ((2, 3, 4), (4,)), ((5, 6, 4), (4, 3))], ids=str)
def test_matmul_grad_cuda_vs_cpu(rng, shapes, no_tf32):
    (a, ga), (b, gb) = _pair(rng, shapes[0]), _pair(rng, shapes[1])
    g = rng.standard_normal(np.matmul(np.zeros(shapes[0]), np.zeros(shapes[1])).shape).astype(np.float32)
    (a @ b * vt.tensor(g)).sum().backward()
    (ga @ gb * vt.tensor(g).to("cuda")).sum().backward()
    for cpu_t, cuda_t in ((a, ga), (b, gb)):
        assert cuda_t.grad.device.type == "cuda"
        np.testing.assert_allclose(cuda_t.grad.cpu().numpy(), cpu_t.grad.numpy(), rtol=1e-5, atol=1e-5)


@gpu
def test_linear_addmm_bmm_grad_cuda_vs_cpu(rng, no_tf32):
    (x, gx), (w, gw), (b, gbias) = _pair(rng, (2, 3, 8)), _pair(rng, (5, 8)), _pair(rng, (5,))
    sq = lambda y: (y * y).sum()  # noqa: E731
    sq(vt.linear(x, w, b)).backward()
    sq(vt.linear(gx, gw, gbias)).backward()
    (s, gs), (m1, gm1), (m2, gm2) = _pair(rng, (4,)), _pair(rng, (3, 6)), _pair(rng, (6, 4))
    sq(vt.addmm(s, m1, m2, beta=0.5, alpha=2.0)).backward()
    sq(vt.addmm(gs, gm1, gm2, beta=0.5, alpha=2.0)).backward()
    (p, gp), (q, gq) = _pair(rng, (2, 3, 4)), _pair(rng, (2, 4, 5))
    sq(vt.bmm(p, q)).backward()
    sq(vt.bmm(gp, gq)).backward()
    for cpu_t, cuda_t in ((x, gx), (w, gw), (b, gbias), (s, gs), (m1, gm1), (m2, gm2), (p, gp), (q, gq)):
        np.testing.assert_allclose(cuda_t.grad.cpu().numpy(), cpu_t.grad.numpy(), rtol=1e-4, atol=1e-4)


# -- the CUTLASS provider --------------------------------------------------------------------------

def _cutlass_pack(tmp_path_factory):
    """The built pack folder: VT_CUTLASS_PACK when set (a GPU session script may build it first),
    else `vt-ops build ops/matmul_cutlass` into a temporary folder (once per session)."""
    given = os.environ.get("VT_CUTLASS_PACK")
    if given:
        return Path(given)
    sys.path.insert(0, str(Path(__file__).resolve().parent / "packs"))
    import packtools as pt

    def make():
        try:
            import cutlass_library  # noqa: F401
        except ImportError:
            pytest.skip("needs the CUTLASS headers: pip install nvidia-cutlass==4.2.0.0")
        out = tmp_path_factory.mktemp("matmul_cutlass")
        pt.vt_ops("build", ROOT / "ops" / "matmul_cutlass", "-o", out)
        return out / "packs" / "matmul_cutlass"

    return pt.once("matmul_cutlass", make)


@gpu
def test_cutlass_provider_serves_and_matches_cublaslt(rng, tmp_path_factory, no_tf32):
    folder = _cutlass_pack(tmp_path_factory)
    assert (folder / "manifest.json").is_file()
    pack = vt.ops.load(str(folder))
    try:
        assert [p.name for p in vt.ops.providers("core::matmul", "cuda")] == ["core", "cutlass"]
        assert [p.name for p in vt.ops.providers("core::matmul", "cuda") if p.active] == ["core"]
        bf = lambda *s: _normal(rng, s, "bfloat16")  # noqa: E731
        a, b, w, bias = bf(256, 512), bf(512, 384), bf(384, 512), bf(384)
        x3, p3, q3 = bf(4, 64, 512), bf(3, 128, 64), bf(3, 64, 256)
        cases = {  # name -> (op call, float64 reference)
            "matmul": (lambda: a @ b, lambda: _ref(to_numpy(a), to_numpy(b))),
            "matmul_kmajor_b": (lambda: a @ w.mT, lambda: _ref(to_numpy(a), to_numpy(w).T)),
            "matmul_folded": (lambda: x3 @ b, lambda: _ref(to_numpy(x3), to_numpy(b))),
            "matmul_transposed_a": (lambda: a.mT.contiguous().mT @ b, lambda: _ref(to_numpy(a), to_numpy(b))),
            "bmm": (lambda: vt.bmm(p3, q3), lambda: _ref(to_numpy(p3), to_numpy(q3))),
            "linear": (lambda: vt.linear(x3, w, bias),
                       lambda: _ref(to_numpy(x3), to_numpy(w).T) + to_numpy(bias)),
        }
        core = {k: to_numpy(f()) for k, (f, _) in cases.items()}
        with vt.ops.use("core::matmul", "cutlass", "cuda"), vt.ops.use("core::bmm", "cutlass", "cuda"), \
                vt.ops.use("core::linear", "cutlass", "cuda"):
            assert vt.ops.pinned("core::matmul", "cuda") == "cutlass"
            for name, (f, ref) in cases.items():
                got = f()
                assert got.dtype is vt.bfloat16 and got.device.type == "cuda"
                r = ref()
                assert_close(got, r, "bfloat16", scale=_scale(512), msg=f"cutlass {name}")
                # against cuBLASLt: both round one float32 sum to bfloat16; the orders of the sums differ
                np.testing.assert_allclose(to_numpy(got), core[name], rtol=2e-2, atol=2e-2 * np.abs(r).max(),
                                           err_msg=f"cutlass vs cuBLASLt {name}")
            with pytest.raises(NotImplementedError, match=r"\[core::matmul\].*bfloat16 only.*'core'"):
                a.to(vt.float32) @ b.to(vt.float32)
            with pytest.raises(NotImplementedError, match=r"\[core::matmul\].*multiples of 8"):
                bf(16, 12) @ bf(12, 16)
            with pytest.raises(NotImplementedError, match=r"\[core::matmul\].*1-D"):
                bf(512) @ b
        assert vt.ops.pinned("core::matmul", "cuda") is None
        assert np.array_equal(to_numpy(a @ b), core["matmul"])  # core serves again
    finally:
        vt.ops.unload(pack)
    assert [p.name for p in vt.ops.providers("core::matmul", "cuda")] == ["core"]
