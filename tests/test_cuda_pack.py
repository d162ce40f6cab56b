"""CUDA op packs, end to end: `vt-ops new NAME --cuda` scaffolds a pack whose CUDA kernel is written
on the SDK's launchers (vt/cuda/*.cuh), `vt-ops build` compiles it with nvcc (sm_90 by default,
`--cuda-arch` / VT_CUDA_ARCH to change), and a pack built the same way can take over an existing op
(core::add) on cuda under its own provider name.

Where nvcc exists (here and in CI) the packs are built, loaded and run on the cpu, and their CUDA
registrations are checked; where a GPU is visible (the GPU machine) the `gpu` tests also run them:
the provider serves `a + b` on cuda (its call counter moves), `vt.ops.use` pins core back, unload
hands the op back to core, and computing goes on. A last GPU test covers core's own CUDA computes
(binary ops in six dtypes, broadcast and strided; copy_/to_dtype with dtype conversion; fills).

Loads happen in child interpreters (packtools.run_py), so this process never sees the packs.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import vibetensor as vt

sys.path.insert(0, str(Path(__file__).resolve().parent / "packs"))
import packtools as pt  # noqa: E402


def _nvcc():
    for cand in (shutil.which("nvcc"), os.environ.get("CUDACXX"),
                 *(str(Path(r) / "bin" / "nvcc") for r in (os.environ.get("CUDA_HOME"), "/usr/local/cuda") if r)):
        if cand and Path(cand).is_file():
            return cand
    return None


needs_nvcc = pytest.mark.skipif(_nvcc() is None, reason="needs nvcc: CUDA sources compile only where it is found")
gpu = pytest.mark.skipif(not vt.cuda.is_available(), reason="needs a CUDA GPU (run on the GPU machine)")


# ---- the test packs (built once per session) -----------------------------------------------------

def _scaffold(tmp_path_factory):
    """`vt-ops new demo --cuda` + `vt-ops build`: (source folder, pack folder)."""
    def make():
        work = tmp_path_factory.mktemp("cudascaffold")
        pt.vt_ops("new", "demo", "--cuda", cwd=work)
        src = work / "demo"
        proc = pt.vt_ops("build", src)
        return src, src / "build" / "packs" / "demo", proc.stdout
    return pt.once("cuda_scaffold", make)


# A provider of core::add on cuda (priority 10) that counts its calls, plus two ops of its own:
#   gpuadd::calls() -> int                 how many times its core::add compute ran
#   gpuadd::sum_all(Tensor self) -> Tensor  float32 total (cpu, and cuda with vt/cuda/reduce.cuh)
GPUADD_CPP = r"""
#include <vt/loops.hpp>

#include <atomic>

std::atomic<long long> g_gpuadd_calls{0};  // bumped by the CUDA compute of core::add

namespace {

VT_META_FN(sum_all_meta, "gpuadd::sum_all") {
  const vt_tensor* self = c.arg(0, "self").tensor();
  if (!vt::same_dtype(self->dtype, vt::kFloat32))
    c.fail(VT_ERR_TYPE, "expected float32, got %s", vt::dtype_name(self->dtype));
  vt::check_ndim(c.op, self, "self");
  const int64_t none = 0;
  c.set_out(0, c.empty(&none, 0, vt::kFloat32));
}

VT_COMPUTE(sum_all_cpu, "gpuadd::sum_all") {
  const vt_tensor* self = c.arg(0, "self").tensor();
  const vt_tensor* ops[1] = {self};
  double s = 0;
  vt::loop_over<1>(c.op, ops).run(0, self->numel, [&](char* const* p, const int64_t* st, int64_t n) {
    for (int64_t i = 0; i < n; ++i) s += *reinterpret_cast<const float*>(p[0] + i * st[0]);
  });
  *vt::data<float>(c.out(0)) = (float)s;
}

vt_status calls_kernel(const vt_kernel_ctx*, const vt_value*, int32_t, vt_value* outs, int32_t) {
  outs[0].tag = VT_INT;
  outs[0].v.i = g_gpuadd_calls.load();
  return VT_OK;
}

}  // namespace

#ifdef VT_WITH_CUDA
vt::KernelFn add_cuda, sum_all_cuda;  // gpuadd_cuda.cu
#endif

namespace {
vt_status init(const vt_host* host, vt_pack* pack) {
  return vt::init_guard(host, "gpuadd", [&] {
    vt::Registrar r(host, pack, "gpuadd", 10);
    r.def("gpuadd::calls() -> int", VT_CPU, calls_kernel);
    r.define("gpuadd::sum_all(Tensor self) -> Tensor", sum_all_meta);
    r.compute("gpuadd::sum_all", VT_CPU, sum_all_cpu);
#ifdef VT_WITH_CUDA
    r.compute("gpuadd::sum_all", VT_CUDA, sum_all_cuda);
    r.compute("core::add", VT_CUDA, add_cuda);  // an op core defines: its meta step stays core's
#endif
  });
}
}  // namespace

VT_OPPACK_DEFINE(init)
"""

GPUADD_CU = r"""
#include <vt/cuda/elementwise.cuh>
#include <vt/cuda/reduce.cuh>

#include <atomic>

extern std::atomic<long long> g_gpuadd_calls;

namespace {

struct AddAlpha {
  double alpha;
  template <class T> __device__ T operator()(T x, T y) const {
    using A = vt::cuda::acc_t<T>;
    return T(A(x) + A(alpha) * A(y));
  }
};

__global__ void sum_kernel(const float* x, int64_t n, float* out) {
  float s = 0.f;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    s += x[i];
  s = vt::cuda::block_sum(s);
  if (threadIdx.x == 0) atomicAdd(out, s);
}

}  // namespace

VT_COMPUTE(add_cuda, "core::add") {
  const vt_tensor* a = c.arg(0, "self").tensor();
  const vt_tensor* b = c.arg(1, "other").tensor();
  const double alpha = c.arg(2, "alpha").float_();
  vt::cuda::dispatch(vt::kFloatingTypes, a->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    vt::cuda::elementwise<T, T, T>(c, AddAlpha{alpha}, c.out(0), a, b);
  });
  g_gpuadd_calls.fetch_add(1);  // the observable side effect
}

VT_COMPUTE(sum_all_cuda, "gpuadd::sum_all") {
  const vt_tensor* self = c.arg(0, "self").tensor();
  const vt_tensor* out = c.out(0);
  if (!vt::is_contiguous(self)) c.fail(VT_ERR_NOT_IMPL, "the cuda sum_all takes contiguous tensors");
  vt::cuda::check(c, cudaMemsetAsync(out->data, 0, sizeof(float), vt::cuda::stream(c)), "cudaMemsetAsync");
  if (self->numel == 0) return;
  vt::cuda::launch(c, "sum_kernel", sum_kernel, vt::cuda::grid_for(self->numel), 512, 0,
                   vt::data<const float>(self), self->numel, vt::data<float>(out));
}
"""


def _gpuadd(tmp_path_factory):
    """The provider pack, made the way a user makes one: `vt-ops new gpuadd --cuda`, its two
    sources replaced, `vt-ops build`. Returns the pack folder."""
    def make():
        work = tmp_path_factory.mktemp("gpuadd")
        pt.vt_ops("new", "gpuadd", "--cuda", cwd=work)
        src = work / "gpuadd"
        (src / "src" / "gpuadd.cpp").write_text(GPUADD_CPP)
        (src / "src" / "gpuadd_cuda.cu").write_text(GPUADD_CU)
        return pt.build(src, src / "build", "gpuadd")
    return pt.once("gpuadd_pack", make)


@pytest.fixture(scope="session")
def scaffold(tmp_path_factory):
    return _scaffold(tmp_path_factory)


@pytest.fixture(scope="session")
def gpuadd(tmp_path_factory):
    return _gpuadd(tmp_path_factory)


# ---- vt-ops new --cuda ----------------------------------------------------------------------------

def test_new_cuda_scaffolds_a_cuda_kernel_on_the_sdk_launchers(tmp_path):
    proc = pt.vt_ops("new", "demo", "--cuda", "--namespace", "dm", cwd=tmp_path)
    assert "(CPU + CUDA)" in proc.stdout
    root = tmp_path / "demo"
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert files == [".gitignore", "CMakeLists.txt", "README.md", "src/demo.cpp", "src/demo_cuda.cu",
                     "tests/test_demo.py"]
    cmake = (root / "CMakeLists.txt").read_text()
    assert "CUDA_SOURCES src/demo_cuda.cu" in cmake and "LANGUAGES C CXX)" in cmake
    cu = (root / "src" / "demo_cuda.cu").read_text()
    assert "#include <vt/cuda/elementwise.cuh>" in cu and "vt::cuda::elementwise<T, T>" in cu
    assert 'VT_COMPUTE(scale_cuda, "dm::scale")' in cu and "{{" not in cu
    cpp = (root / "src" / "demo.cpp").read_text()
    assert 'r.compute("dm::scale", VT_CUDA, scale_cuda)' in cpp and "VT_META_FN(scale_meta" in cpp
    # without --cuda: the plain template, no .cu
    pt.vt_ops("new", "plain", cwd=tmp_path)
    assert not list((tmp_path / "plain").rglob("*.cu"))


# ---- vt-ops build with nvcc -----------------------------------------------------------------------

@needs_nvcc
def test_cuda_scaffold_builds_for_sm90_and_loads(scaffold):
    src, folder, log = scaffold
    assert "compiling src/demo_cuda.cu (CUDA)" in log, log
    man = json.loads((folder / "manifest.json").read_text())
    assert man["devices"] == ["cpu", "cuda"]
    assert {(k["op"], k["device"]) for k in man["kernels"]} == {("demo::scale", "cpu"), ("demo::scale", "cuda")}
    cmds = (src / "build" / "compile_commands.json").read_text()
    assert "arch=compute_90" in cmds and "sm_90" in cmds  # Hopper by default
    r = pt.result(f"""
        import numpy as np
        p = vt.ops.load({str(folder)!r})
        x = vt.from_numpy(np.arange(6, dtype=np.float32).reshape(2, 3))
        out = {{'cpu': vt.ops.demo.scale(x.transpose(0, 1), 2.0).numpy().tolist(),
               'cuda_providers': [(q.name, q.active) for q in vt.ops.providers('demo::scale', device='cuda')]}}
        try:
            m = vt.ops.demo.scale(vt.empty(4, 5, device='meta'), 3.0)
            out['meta'] = [list(m.shape), str(m.dtype), m.device.type]
        except Exception as e:  # a runtime without the meta device yet
            out['meta'] = repr(e)
        vt.ops.unload(p)
        out['ok'] = still_computes()
        print(json.dumps(out))
    """)
    assert r["cpu"] == [[0.0, 6.0], [2.0, 8.0], [4.0, 10.0]]
    assert r["cuda_providers"] == [["demo", True]]
    if isinstance(r["meta"], list):
        assert r["meta"] == [[4, 5], str(vt.float32), "meta"]
    assert r["ok"]


@needs_nvcc
def test_cuda_scaffold_own_tests_pass(scaffold):
    """The scaffold's tests/ as its author runs them (cpu here; cuda too on a GPU machine)."""
    src, _, _ = scaffold
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(src / "tests")],
                          cwd=src, env=pt.clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=pt.TIMEOUT)
    assert proc.returncode == 0, proc.stdout
    assert " passed" in proc.stdout and "failed" not in proc.stdout


@needs_nvcc
def test_cuda_arch_is_overridable(scaffold, tmp_path):
    src, _, _ = scaffold
    build = tmp_path / "b80"
    pt.vt_ops("build", src, "-o", build, env=pt.clean_env(VT_CUDA_ARCH="80"))
    cmds = (build / "compile_commands.json").read_text()
    assert "arch=compute_80" in cmds and "compute_90" not in cmds
    assert json.loads((build / "vt-ops.json").read_text())["cuda_arch"] == "80"
    assert (build / "packs" / "demo" / "manifest.json").is_file()


@needs_nvcc
def test_provider_pack_registers_on_cuda_and_unloads(gpuadd):
    """Without a GPU: the pack's cuda provider of core::add is listed and active on cuda, the cpu
    is untouched, its cpu op works, and unload hands core::add back to core."""
    man = json.loads((gpuadd / "manifest.json").read_text())
    assert ("core::add", "cuda", "gpuadd", 10) in {(k["op"], k["device"], k["provider"], k["priority"])
                                                    for k in man["kernels"]}
    assert man["requires"] == ["core::add"]
    r = pt.result(f"""
        import numpy as np
        prov = lambda d: [(q.name, q.pack, q.priority, q.active) for q in vt.ops.providers('core::add', device=d)]
        out = {{'before': prov('cuda')}}
        p = vt.ops.load({str(gpuadd)!r})
        out['cuda'] = prov('cuda')
        out['cpu'] = prov('cpu')
        out['add'] = (vt.ones(3) + vt.ones(3)).numpy().tolist()
        out['calls'] = vt.ops.gpuadd.calls()
        x = np.arange(12, dtype=np.float32).reshape(3, 4)
        out['sum'] = float(vt.ops.gpuadd.sum_all(vt.from_numpy(x).transpose(0, 1)).numpy())
        vt.ops.unload(p)
        out['after'] = prov('cuda')
        out['ok'] = still_computes()
        print(json.dumps(out))
    """)
    assert r["cuda"] == [["gpuadd", "gpuadd", 10, True], ["core", "core", 0, False]]
    assert r["before"] == r["after"] == [["core", "core", 0, True]]
    assert r["cpu"] == [["core", "core", 0, True]]
    assert r["add"] == [2.0, 2.0, 2.0] and r["calls"] == 0
    assert r["sum"] == 66.0
    assert r["ok"]


# ---- on a GPU -------------------------------------------------------------------------------------

@gpu
@needs_nvcc
def test_gpu_provider_serves_is_pinned_back_and_unloads(gpuadd):
    r = pt.result(f"""
        import numpy as np
        rng = np.random.default_rng(0)
        A = rng.standard_normal((257, 129)).astype(np.float32)
        B = rng.standard_normal((257, 129)).astype(np.float32)
        R = rng.standard_normal((129,)).astype(np.float32)
        a, b, row = (vt.from_numpy(v).to('cuda') for v in (A, B, R))
        close = lambda t, ref: bool(np.allclose(t.cpu().numpy(), ref, rtol=1e-5, atol=1e-5))
        out = {{}}
        p = vt.ops.load({str(gpuadd)!r})
        out['active'] = [q.name for q in vt.ops.providers('core::add', device='cuda') if q.active]
        out['calls0'] = vt.ops.gpuadd.calls()
        out['plain'] = close(a + b, A + B)                             # contiguous: vectorised kernel
        out['bcast'] = close(a + row, A + R)                           # broadcast: strided kernel
        out['strided'] = close(a.transpose(0, 1) + b.transpose(0, 1), (A + B).T)
        out['alpha'] = close(vt.ops.core.add(a, b, alpha=2.0), A + 2 * B)
        out['half'] = close(a.to(vt.float16) + b.to(vt.float16), (A.astype(np.float16) + B.astype(np.float16)))
        out['calls1'] = vt.ops.gpuadd.calls()
        out['cpu_add'] = (vt.ones(2) + vt.ones(2)).numpy().tolist()   # cpu: still core
        out['calls_cpu'] = vt.ops.gpuadd.calls()
        s = vt.ops.gpuadd.sum_all(a)
        out['sum'] = [s.device.type, bool(np.isclose(float(s.cpu().numpy()), A.sum(dtype=np.float64), rtol=1e-4))]
        with vt.ops.use('core::add', 'core', device='cuda'):
            out['pinned'] = vt.ops.pinned('core::add', device='cuda')
            out['in_pin'] = close(a + b, A + B)
            out['calls_pin'] = vt.ops.gpuadd.calls()
        out['unpinned'] = close(a + b, A + B)
        out['calls2'] = vt.ops.gpuadd.calls()
        vt.ops.unload(p)
        out['after'] = [q.name for q in vt.ops.providers('core::add', device='cuda') if q.active]
        out['after_add'] = close(a + b, A + B) and close(a + row, A + R)
        vt.cuda.synchronize()
        out['ok'] = still_computes()
        print(json.dumps(out))
    """)
    assert r["active"] == ["gpuadd"] and r["calls0"] == 0
    assert r["plain"] and r["bcast"] and r["strided"] and r["alpha"] and r["half"]
    assert r["calls1"] == 5                        # every cuda add above went through the pack
    assert r["cpu_add"] == [2.0, 2.0] and r["calls_cpu"] == 5
    assert r["sum"] == ["cuda", True]              # vt/cuda/reduce.cuh's block_sum
    assert r["pinned"] == "core" and r["in_pin"] and r["calls_pin"] == 5
    assert r["unpinned"] and r["calls2"] == 6
    assert r["after"] == ["core"] and r["after_add"] and r["ok"]


@gpu
@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "int32", "float16", "bfloat16"])
def test_gpu_core_binary_computes(dtype):
    """core's CUDA add/sub/mul/div in every dtype, contiguous (vectorised, incl. a misaligned
    view), broadcast and strided, in place too; checked against the cpu result."""
    dt = getattr(vt, dtype)
    rng = np.random.default_rng(1)
    A = vt.from_numpy((rng.standard_normal((37, 65)) * 8).astype(np.float32)).to(dt)
    B = vt.from_numpy((rng.standard_normal((37, 65)) * 8 + 20).astype(np.float32)).to(dt)
    # views are taken on each device (moving a view to cuda would make it contiguous)
    views = [lambda a, b: (a, b), lambda a, b: (a, b[0:1]),                       # broadcast
             lambda a, b: (a.transpose(0, 1), b.transpose(0, 1)), lambda a, b: (a[:, 1:], b[:, :-1]),
             lambda a, b: (a.reshape(37 * 65)[1:], b.reshape(37 * 65)[:-1])]  # contiguous, not 16-byte aligned
    tol = {"float16": 1e-2, "bfloat16": 5e-2}.get(dtype, 1e-6)
    gA, gB = A.to("cuda"), B.to("cuda")
    for view in views:
        x, y = view(A, B)
        gx, gy = view(gA, gB)
        for name in ("add", "sub", "mul", "div"):
            got = getattr(vt.ops.core, name)(gx, gy)
            want = getattr(vt.ops.core, name)(x, y)
            assert got.is_cuda and got.dtype == want.dtype and got.shape == want.shape
            np.testing.assert_allclose(got.cpu().to(vt.float64).numpy(), want.to(vt.float64).numpy(),
                                       rtol=tol, atol=tol, err_msg=f"{name} {dtype}")
        got = vt.ops.core.add(gx, gy, alpha=3)
        np.testing.assert_allclose(got.cpu().to(vt.float64).numpy(),
                                   vt.ops.core.add(x, y, alpha=3).to(vt.float64).numpy(), rtol=tol, atol=tol)
    g = A.to("cuda").contiguous()
    g.add_(B.to("cuda"))
    np.testing.assert_allclose(g.cpu().to(vt.float64).numpy(), (A + B).to(vt.float64).numpy(), rtol=tol, atol=tol)


@gpu
def test_gpu_core_copy_and_fill_computes():
    rng = np.random.default_rng(2)
    X = rng.uniform(-120, 120, (33, 17)).astype(np.float32)   # in range of every integer dtype but uint8
    g = vt.from_numpy(X).to("cuda")
    np.testing.assert_array_equal(g.transpose(0, 1).contiguous().cpu().numpy(), X.T)   # strided gather
    for dtype in ("float64", "float16", "bfloat16", "int64", "int32", "int8", "uint8", "bool"):
        dt = getattr(vt, dtype)
        S = np.abs(X) if dtype == "uint8" else X
        got = vt.from_numpy(S).to("cuda").to(dt)                # copy_ with conversion on cuda
        assert got.is_cuda and got.dtype == dt
        np.testing.assert_array_equal(got.cpu().to(vt.float64).numpy(), vt.from_numpy(S).to(dt).to(vt.float64).numpy(),
                                      err_msg=dtype)
        back = got.transpose(0, 1).to(vt.float32)                # strided source, converted back
        np.testing.assert_array_equal(back.cpu().numpy(), vt.from_numpy(S).to(dt).to(vt.float32).numpy().T)
    for dtype in ("float16", "bfloat16", "float64"):                # core::to_dtype's cuda compute
        dt = getattr(vt, dtype)
        got = vt.ops.core.to_dtype(g.transpose(0, 1), dt)
        assert got.is_cuda and got.dtype == dt and got.is_contiguous()
        np.testing.assert_array_equal(got.cpu().to(vt.float64).numpy(),
                                      vt.ops.core.to_dtype(vt.from_numpy(X).transpose(0, 1), dt).to(vt.float64).numpy())
    dst = vt.zeros(4, 17, device="cuda")
    dst.copy_(g[0])                                              # broadcast source
    np.testing.assert_array_equal(dst.cpu().numpy(), np.broadcast_to(X[0], (4, 17)))
    for dtype in ("float32", "float16", "bfloat16", "int64", "uint8", "bool"):
        dt = getattr(vt, dtype)
        np.testing.assert_array_equal(vt.full((5, 3), 7, dtype=dt, device="cuda").cpu().to(vt.float64).numpy(),
                                      vt.full((5, 3), 7, dtype=dt).to(vt.float64).numpy())
        np.testing.assert_array_equal(vt.ones(4, dtype=dt, device="cuda").cpu().to(vt.float64).numpy(), np.ones(4))
        np.testing.assert_array_equal(vt.zeros(4, dtype=dt, device="cuda").cpu().to(vt.float64).numpy(), np.zeros(4))
    big = vt.full((3,), 2**40 + 1, dtype=vt.int64, device="cuda")
    assert big.cpu().numpy().tolist() == vt.full((3,), 2**40 + 1, dtype=vt.int64).numpy().tolist()
    h = vt.zeros(6, 8, device="cuda")
    h.transpose(0, 1)[1:5].fill_(2.5)                            # fill_ through a strided view
    ref = np.zeros((6, 8), np.float32)
    ref.T[1:5] = 2.5
    np.testing.assert_array_equal(h.cpu().numpy(), ref)
    vt.cuda.synchronize()
