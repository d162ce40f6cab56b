"""examples/c_pack (a whole op pack in plain C99 against vt/oppack.h alone): build it with vt-ops,
load it and check cexample::axpy against numpy. The pack is loaded into this process (as a user
would) and unloaded again when the module's tests are done."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import vibetensor as vt

sys.path.insert(0, str(Path(__file__).resolve().parent / "packs"))
import packtools as pt  # noqa: E402

EXAMPLE = pt.ROOT / "examples" / "c_pack"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return pt.once("c_pack", lambda: pt.build(EXAMPLE, tmp_path_factory.mktemp("c_pack_build"), "cexample"))


@pytest.fixture(scope="module")
def pack(folder):
    p = vt.ops.load(folder)
    yield p
    vt.ops.unload(p)
    assert "cexample::axpy" not in vt.ops.op_names()


def test_manifest(folder):
    man = json.loads((folder / "manifest.json").read_text())
    assert man["name"] == "cexample" and man["library"] == "libvt_cexample.so"
    assert man["schemas"] == {"cexample::axpy": "cexample::axpy(Tensor x, Tensor y, float a) -> Tensor"}
    assert man["kernels"] == [{"op": "cexample::axpy", "device": "cpu", "provider": "cexample", "priority": 0}]
    assert man["requires"] == [] and man["devices"] == ["cpu"]


def test_exports_only_the_two_entry_points(folder):
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("no nm")
    out = subprocess.run([nm, "-D", "--defined-only", str(folder / "libvt_cexample.so")],
                         stdout=subprocess.PIPE, text=True, check=True).stdout
    syms = {line.split()[-1] for line in out.splitlines() if line.split()[-2:-1] == ["T"]}
    assert syms == {"vt_oppack_abi_version", "vt_oppack_init"}


@pytest.mark.parametrize("shape", [(), (0,), (5,), (3, 4), (1 << 17,)])
def test_axpy_matches_numpy(pack, shape):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape).astype(np.float32)
    y = rng.standard_normal(shape).astype(np.float32)
    out = vt.ops.cexample.axpy(vt.from_numpy(x), vt.from_numpy(y), 3.0)
    assert out.shape == shape and out.dtype == vt.float32
    np.testing.assert_allclose(out.numpy(), np.float32(3.0) * x + y, rtol=1e-6)


def test_axpy_int_scalar_and_keyword(pack):
    x = vt.from_numpy(np.arange(4, dtype=np.float32))
    y = vt.from_numpy(np.ones(4, np.float32))
    np.testing.assert_array_equal(vt.ops.cexample.axpy(x, y, a=2).numpy(), [1, 3, 5, 7])


def test_axpy_rejects_float64(pack):
    x = vt.from_numpy(np.ones(3))
    with pytest.raises(TypeError, match=r"\[cexample::axpy\] only float32"):
        vt.ops.cexample.axpy(x, x, 1.0)


def test_axpy_rejects_shape_mismatch(pack):
    a = vt.from_numpy(np.ones(3, np.float32))
    b = vt.from_numpy(np.ones(4, np.float32))
    with pytest.raises(ValueError, match=r"\[cexample::axpy\] .*size 3 vs 4"):
        vt.ops.cexample.axpy(a, b, 1.0)
    with pytest.raises(ValueError, match=r"\[cexample::axpy\] .*same shape"):
        vt.ops.cexample.axpy(a, vt.from_numpy(np.ones((3, 1), np.float32)), 1.0)


def test_axpy_rejects_non_contiguous(pack):
    a = vt.from_numpy(np.ones((3, 4), np.float32)).transpose(0, 1)
    b = vt.from_numpy(np.ones((4, 3), np.float32))
    with pytest.raises(ValueError, match=r"\[cexample::axpy\] .*contiguous"):
        vt.ops.cexample.axpy(a, b, 1.0)


def test_axpy_argument_errors_name_the_op(pack):
    x = vt.from_numpy(np.ones(3, np.float32))
    with pytest.raises(TypeError, match=r"cexample::axpy"):
        vt.ops.cexample.axpy(x, x)
    with pytest.raises(TypeError, match=r"cexample::axpy"):
        vt.ops.cexample.axpy(x, 1.0, 1.0)
