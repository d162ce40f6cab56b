"""The CUDA tier: tensors on a GPU, copies both ways, and core::add's CUDA kernel. Runs where a GPU
is visible (the H100 machine); on a CPU-only machine only the 'no CUDA' behaviour is checked."""
import numpy as np
import pytest

import vibetensor as vt

cuda = pytest.mark.skipif(not vt.cuda.is_available(), reason="needs a CUDA GPU")


def test_without_cuda_to_cuda_is_a_clear_error():
    if vt.cuda.is_available():
        pytest.skip("a GPU is present: the round trips below cover it")
    with pytest.raises((NotImplementedError, RuntimeError), match="CUDA|cuda"):
        vt.ones(3).to("cuda")


@cuda
def test_create_and_copy_both_ways():
    x = np.random.default_rng(0).standard_normal((33, 17)).astype(np.float32)
    g = vt.from_numpy(x).to("cuda")
    assert g.device == vt.device("cuda:0") and g.is_cuda
    assert g.shape == (33, 17) and g.dtype is vt.float32
    back = g.cpu().numpy()
    np.testing.assert_array_equal(back, x)
    z = vt.zeros(4, 5, device="cuda")
    assert z.is_cuda and np.all(z.cpu().numpy() == 0)
    f = vt.full((2, 3), 2.5, device="cuda")
    np.testing.assert_array_equal(f.cpu().numpy(), np.full((2, 3), 2.5, np.float32))


@cuda
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
@pytest.mark.parametrize("shapes", [((5, 7), (5, 7)), ((4, 1, 3), (2, 3)), ((0, 3), (1, 3)),
                                    ((1000, 257), (257,))])
def test_add_runs_on_cuda(dtype, shapes):
    rng = np.random.default_rng(1)
    a = (rng.standard_normal(shapes[0]) * 10).astype(dtype)
    b = (rng.standard_normal(shapes[1]) * 10).astype(dtype)
    ga, gb = vt.from_numpy(a).to("cuda"), vt.from_numpy(b).to("cuda")
    out = ga + gb
    assert out.is_cuda
    np.testing.assert_allclose(out.cpu().numpy(), a + b, rtol=1e-6)
    out2 = vt.ops.core.add(ga, gb, alpha=2)
    np.testing.assert_allclose(out2.cpu().numpy(), a + 2 * b, rtol=1e-6)


@cuda
def test_add_on_cuda_strided_input():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    g = vt.from_numpy(a).to("cuda")
    out = g.T + g.T
    np.testing.assert_array_equal(out.cpu().numpy(), (a + a).T)


@cuda
def test_cuda_provider_is_listed_and_device_mismatch_is_refused():
    provs = vt.ops.providers("core::add", device="cuda")
    assert any(p.name == "core" and p.active for p in provs)
    with pytest.raises(ValueError, match=r"\[core::add\].*cpu.*cuda:0"):
        vt.ops.core.add(vt.ones(3), vt.ones(3, device="cuda"))
    vt.cuda.synchronize()


@cuda
def test_autograd_crosses_devices():
    # to()/cuda()/cpu() are core::to_device calls with a backward rule: gradients come home
    x = vt.tensor([1.0, -2.0, 3.0]).requires_grad_()
    w = vt.tensor([0.5, 4.0, -1.0], device="cuda").requires_grad_()
    assert w.is_leaf and w.is_cuda
    y = (x.cuda() * w + x.cuda()).cpu()
    assert y.tolist() == [1.5, -10.0, 0.0]
    (y * vt.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert x.grad.device == vt.device("cpu") and w.grad.is_cuda
    np.testing.assert_allclose(x.grad.numpy(), [1.5, 10.0, 0.0])
    np.testing.assert_allclose(w.grad.cpu().numpy(), [1.0, -4.0, 9.0])


@cuda
def test_meta_then_cuda_same_shapes_and_errors():
    a, b = vt.ones(4, 1, device="cuda"), vt.ones(3, device="cuda")
    assert (a + b).shape == (a.to("meta") + b.to("meta")).shape == (4, 3)
    for dev in ("cuda", "meta"):
        with pytest.raises(ValueError) as info:
            vt.ones(2, 3, device=dev) + vt.ones(4, device=dev)
        assert "[core::add]" in str(info.value)


@cuda
def test_typed_scalar_on_cuda_is_a_clear_error_until_its_kernel_exists():
    # core::add_scalar has a meta step; its CUDA compute arrives with the CUDA op issue
    x = vt.ones(3, device="cuda")
    try:
        r = x + 1.0
    except NotImplementedError as e:
        assert "core::add_scalar" in str(e) and "cuda" in str(e)
    else:
        assert r.cpu().tolist() == [2.0, 2.0, 2.0]


# copies and casts on cuda take the word-wide strided move (fastest dim contiguous on both sides)
# and the vectorised float32 <-> 16-bit casts where they can, else the element-wise kernels: every
# case against numpy, bit for bit
@cuda
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16", "int64", "uint8"])
@pytest.mark.parametrize("shape,perm,offset", [
    ((2, 5, 3, 64), (0, 2, 1, 3), 0),   # attention heads: (B, T, H, D) -> (B, H, T, D), words of 16 B
    ((4, 6, 10), (1, 0, 2), 0),         # rows of 10 elements: words of 8/4/2 B by dtype
    ((3, 7, 9), (1, 0, 2), 0),          # odd rows: element-wise
    ((5, 33), (1, 0), 0),               # a true transpose: dim 0 strided, element-wise
    ((2, 4, 16), (1, 0, 2), 1),         # a view one element in: misaligned, narrower words
])
def test_strided_copy_matches_numpy(dtype, shape, perm, offset):
    rng = np.random.default_rng(1)
    n = int(np.prod(shape))
    base = (rng.standard_normal(n + offset) * 50).astype(np.float32)
    ref = base[offset:].reshape(shape).transpose(perm)
    t = vt.tensor(base).to(getattr(vt, dtype))
    view = t.to("cuda")[offset:].reshape(shape).permute(*perm)
    got = view.contiguous().to("cpu")
    want = vt.tensor(base).to(getattr(vt, dtype))[offset:].reshape(shape).permute(*perm).contiguous()
    assert got.shape == ref.shape
    np.testing.assert_array_equal(got.to(vt.float32).numpy(), want.to(vt.float32).numpy())


@cuda
@pytest.mark.parametrize("src,dst", [("float32", "bfloat16"), ("float32", "float16"),
                                     ("bfloat16", "float32"), ("float16", "float32")])
@pytest.mark.parametrize("n,offset", [(4099, 0), (4096, 1), (7, 0)])
def test_float_casts_match_cpu_bits(src, dst, n, offset):
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.standard_normal(n + offset).astype(np.float32) * 1e3,
                        np.array([np.inf, -np.inf, np.nan, 1e-40, 65504.0, 70000.0], np.float32)])
    t = vt.tensor(x).to(getattr(vt, src))[offset:]
    got = t.to("cuda").to(getattr(vt, dst)).to("cpu")
    want = t.to(getattr(vt, dst))
    np.testing.assert_array_equal(got.to(vt.float32).numpy(), want.to(vt.float32).numpy())


@cuda
@pytest.mark.parametrize("src,dst", [("float32", "bfloat16"), ("bfloat16", "float32"),
                                     ("float16", "float32"), ("float32", "float16")])
def test_float_casts_of_strided_and_broadcast_views_match_cpu(src, dst):
    rng = np.random.default_rng(3)
    x = vt.tensor(rng.standard_normal((6, 40, 3)).astype(np.float32) * 300).to(getattr(vt, src))
    for view in (lambda t: t.transpose(0, 2), lambda t: t[:, ::3, 1], lambda t: t[:1].expand(4, 40, 3)):
        got = view(x.to("cuda")).to(getattr(vt, dst)).to("cpu")
        want = view(x).to(getattr(vt, dst))
        assert got.shape == want.shape
        np.testing.assert_array_equal(got.to(vt.float32).numpy(), want.to(vt.float32).numpy())
