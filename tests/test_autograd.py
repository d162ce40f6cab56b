"""Autograd semantics: the native engine's behaviour, independent of any one op family."""
import gc
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import vibetensor as vt


def leaf(values, dtype=vt.float64):
    return vt.tensor(values, dtype=dtype).requires_grad_()


def test_leaf_flags_and_grad_fn():
    x = leaf([1.0, 2.0])
    assert x.requires_grad and x.is_leaf and x.grad_fn is None and x.grad is None
    y = x * x
    assert y.requires_grad and not y.is_leaf
    assert "core::mul" in repr(y.grad_fn)
    c = vt.tensor([1.0, 2.0])
    assert not (c * c).requires_grad  # nothing requires grad: nothing is recorded


def test_accumulates_across_two_backward_calls():
    x = leaf([1.0, 2.0, 3.0])
    (x * x).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 4 * np.array([1.0, 2.0, 3.0]))
    x.grad = None
    assert x.grad is None


def test_backward_twice_needs_retain_graph():
    x = leaf([1.0, 2.0])
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [4.0, 8.0])
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_no_grad_and_set_grad_enabled():
    x = leaf([1.0])
    with vt.no_grad():
        y = x * x
    assert not y.requires_grad and y.grad_fn is None
    with vt.set_grad_enabled(False):
        assert not vt.is_grad_enabled()
        with vt.enable_grad():
            assert (x * x).requires_grad
    assert vt.is_grad_enabled()

    @vt.no_grad()
    def f(t):
        return t * t

    assert not f(x).requires_grad


def test_diamond_graph_sums_both_paths():
    x = leaf([2.0, 3.0])
    a = x * x          # 2x
    b = x + x          # 2
    (a * b).sum().backward()  # d/dx (x^2 * 2x) = 6x^2
    np.testing.assert_allclose(x.grad.numpy(), 6 * np.array([2.0, 3.0]) ** 2)


def test_hooks_see_and_replace_gradients():
    x = leaf([1.0, 2.0])
    seen = []
    y = x * x
    y.register_hook(lambda g: seen.append(g.numpy().copy()))
    x.register_hook(lambda g: g * 0.5)
    y.sum().backward()
    np.testing.assert_allclose(seen[0], [1.0, 1.0])
    np.testing.assert_allclose(x.grad.numpy(), [1.0, 2.0])  # 2x halved


def test_hook_exception_propagates_with_its_type():
    x = leaf([1.0])

    def bad(g):
        raise KeyError("from hook")

    x.register_hook(bad)
    with pytest.raises(KeyError, match="from hook"):
        (x * x).sum().backward()
    assert (vt.ones(2) + vt.ones(2)).tolist() == [2.0, 2.0]


def test_retain_grad_on_non_leaf():
    x = leaf([1.0, 2.0])
    y = x * x
    y.retain_grad()
    (y * y).sum().backward()
    np.testing.assert_allclose(y.grad.numpy(), 2 * np.array([1.0, 4.0]))


def test_version_counter_detects_in_place_modification():
    x = leaf([1.0, 2.0])
    y = x * 1.0
    z = y * y            # saves y
    with vt.no_grad():
        y.add_(vt.ones(2, dtype=vt.float64))
    with pytest.raises(RuntimeError, match="modified in place"):
        z.sum().backward()


def test_in_place_on_leaf_requiring_grad_is_refused():
    x = leaf([1.0, 2.0])
    with pytest.raises(RuntimeError, match="leaf tensor that requires grad"):
        x.add_(vt.ones(2, dtype=vt.float64))
    with vt.no_grad():
        x.add_(vt.ones(2, dtype=vt.float64))
    np.testing.assert_allclose(x.detach().numpy(), [2.0, 3.0])


def test_autograd_grad_and_double_backward():
    x = leaf([1.0, 2.0, 3.0])
    y = (x * x * x).sum()
    (g,) = vt.autograd.grad(y, x, create_graph=True)
    np.testing.assert_allclose(g.numpy(), 3 * np.array([1.0, 4.0, 9.0]))
    assert x.grad is None  # grad() does not accumulate
    (gg,) = vt.autograd.grad(g.sum(), x)
    np.testing.assert_allclose(gg.numpy(), 6 * np.array([1.0, 2.0, 3.0]))


def test_non_scalar_backward_needs_gradient():
    x = leaf([1.0, 2.0])
    with pytest.raises(RuntimeError, match="one-element"):
        (x * x).backward()
    (x * x).backward(vt.tensor([1.0, 10.0], dtype=vt.float64))
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 40.0])


def test_detach_cuts_history():
    x = leaf([3.0])
    d = (x * x).detach()
    assert not d.requires_grad and d.is_leaf
    assert d.item() == 9.0


def test_custom_function():
    class Cube(vt.autograd.Function):
        @staticmethod
        def forward(ctx, x, k):
            ctx.save_for_backward(x)
            ctx.k = k
            return x * x * x * k

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * x * x * (3.0 * ctx.k), None

    x = leaf([1.0, 2.0])
    y = Cube.apply(x, 2.0)
    assert "Cube" in repr(y.grad_fn)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 6 * np.array([1.0, 4.0]))
    assert vt.autograd.gradcheck(lambda t: Cube.apply(t, 2.0), (leaf([0.5, -1.5]),))


def test_gradcheck_catches_a_wrong_backward():
    class Wrong(vt.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * x

        @staticmethod
        def backward(ctx, g):
            return g  # should be 2x * g

    with pytest.raises(vt.autograd.GradcheckError, match="mismatch"):
        vt.autograd.gradcheck(Wrong.apply, (leaf([1.5, 2.0]),))


def test_requires_grad_only_for_floats():
    with pytest.raises(TypeError, match="floating"):
        vt.tensor([1, 2]).requires_grad_()


def test_graph_memory_is_released():
    """200 forward+backward iterations of a small MLP: no allocator growth after the first."""
    rng = np.random.default_rng(0)
    w1 = vt.from_numpy(rng.standard_normal((16, 32)).astype(np.float32)).requires_grad_()
    w2 = vt.from_numpy(rng.standard_normal((32, 4)).astype(np.float32)).requires_grad_()
    x = vt.from_numpy(rng.standard_normal((8, 16)).astype(np.float32))

    def step():
        h = x @ w1
        h = h * h
        loss = ((h @ w2) * (h @ w2)).mean()
        loss.backward()
        with vt.no_grad():
            w1.grad = None
            w2.grad = None

    step()
    gc.collect()
    base = vt.memory_stats()["allocated"]
    for _ in range(200):
        step()
    gc.collect()
    assert vt.memory_stats()["allocated"] <= base


SQUARE_PACK = r"""
#include "vt/autograd.hpp"
// gradpack::square(x) = x * x, float64 contiguous; backward 2 * x * g computed with core ops
VT_KERNEL(square_cpu, "gradpack::square") {
  const vt_tensor* x = c.arg(0, "x").tensor();
  if (!vt::same_dtype(x->dtype, vt::kFloat64) || !vt::is_contiguous(x))
    c.fail(VT_ERR_TYPE, "expected a contiguous float64 tensor");
  vt::Tensor out = c.empty_like(x);
  const double* a = vt::data<const double>(x);
  double* o = vt::data<double>(out.get());
  for (int64_t i = 0; i < x->numel; ++i) o[i] = a[i] * a[i];
  c.set_out(0, std::move(out));
}
VT_BACKWARD(square_backward, "gradpack::square") {
  vt::Tensor two_x = vt::call(g.host, "core::add", {g.saved(0), g.saved(0)});
  g.set_grad(0, vt::call(g.host, "core::mul", {two_x, g.grad_out(0)}));
}
static vt_status init(const vt_host* host, vt_pack* pack) {
  return vt::init_guard(host, "gradpack", [&] {
    vt::Registrar r(host, pack, "gradpack", 0);
    r.def("gradpack::square(Tensor x) -> Tensor", VT_CPU, square_cpu, square_backward, 1, 0);
  });
}
VT_OPPACK_DEFINE(init)
"""


def test_unloaded_pack_keeps_backward_rules_alive(tmp_path):
    """A graph recorded through a pack's op still runs backward after the pack was unloaded:
    the library stays mapped until the graph is gone, then it is closed."""
    src = tmp_path / "gradpack"
    (src / "src").mkdir(parents=True)
    (src / "src" / "square.cpp").write_text(SQUARE_PACK)
    (src / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.19)\nproject(gradpack LANGUAGES CXX)\n"
        "find_package(VibeTensor REQUIRED)\n"
        "vt_add_oppack(NAME gradpack VERSION 0.1.0 SOURCES src/square.cpp)\n")
    build = subprocess.run([sys.executable, "-m", "vibetensor.cli", "build", str(src)],
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stdout + build.stderr
    pack_dir = next(p.parent for p in (src / "build").rglob("manifest.json"))
    code = textwrap.dedent(f"""
        import gc
        import vibetensor as vt
        p = vt.ops.load({str(pack_dir)!r})
        x = vt.tensor([1.0, 2.0], dtype=vt.float64).requires_grad_()
        y = vt.ops.gradpack.square(x)
        vt.ops.unload(p)
        assert vt.ops.is_mapped(p), "library must stay mapped while the graph refers to it"
        y.backward(vt.ones(2, dtype=vt.float64))
        print("grad", x.grad.numpy().tolist())
        del y
        gc.collect()
        print("mapped after graph gone", vt.ops.is_mapped(p))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "grad [2.0, 4.0]" in out.stdout
    assert "mapped after graph gone False" in out.stdout
