"""Builds the plain-C example pack with vt-ops, loads it and checks cexample::axpy against numpy.
(Picked up by the project's tests; also runs alone: pytest examples/c_pack.)"""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

vt = pytest.importorskip("vibetensor")

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def pack(tmp_path_factory):
    build = tmp_path_factory.mktemp("c_pack_build")
    subprocess.run([sys.executable, "-m", "vibetensor.cli", "build", str(HERE), "-o", str(build)], check=True)
    p = vt.ops.load(build / "packs" / "cexample")
    yield p
    vt.ops.unload(p)


@pytest.mark.parametrize("shape", [(), (0,), (5,), (3, 4)])
def test_axpy_matches_numpy(pack, shape):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape).astype(np.float32)
    y = rng.standard_normal(shape).astype(np.float32)
    out = vt.ops.cexample.axpy(vt.from_numpy(x), vt.from_numpy(y), 3.0)
    np.testing.assert_allclose(out.numpy(), np.float32(3.0) * x + y, rtol=1e-6)


def test_axpy_rejects_float64(pack):
    x = vt.from_numpy(np.ones(3))
    with pytest.raises(TypeError, match=r"\[cexample::axpy\] only float32"):
        vt.ops.cexample.axpy(x, x, 1.0)


def test_axpy_rejects_shape_mismatch(pack):
    a = vt.from_numpy(np.ones(3, np.float32))
    b = vt.from_numpy(np.ones(4, np.float32))
    with pytest.raises(ValueError, match=r"\[cexample::axpy\] .*size 3 vs 4"):
        vt.ops.cexample.axpy(a, b, 1.0)
