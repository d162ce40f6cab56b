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
