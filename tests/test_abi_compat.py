"""ABI 1.1 keeps packs built against ABI 1.0 working: a pack compiled with the 1.0 header (whole
kernels through register_kernel, no meta step) loads into this runtime, its new op runs, its
provider of a core op serves, the meta device refuses its op clearly (it has no meta step) while
core's ops keep their meta step, and after unloading it everything computes as before."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "packs"))
import packtools as pt  # noqa: E402

COMPAT = pt.HERE / "compat"


@pytest.fixture(scope="session")
def abi10_pack(tmp_path_factory):
    def make():
        folder = tmp_path_factory.mktemp("abi10")
        lib = folder / "libvt_abi10.so"
        cmd = [pt.compiler(False), "-shared", "-fPIC", "-O1", "-fvisibility=hidden", "-std=c99",
               f"-I{COMPAT / 'abi10'}", str(COMPAT / "abi10_pack.c"), "-o", str(lib)]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.returncode == 0, proc.stdout
        pt.write_manifest(folder, "abi10", lib, abi=(1, 0),
                          ops=pt.defined_ops(COMPAT / "abi10_pack.c", "abi10"))
        return folder
    return pt.once("abi10", make)


def test_header_really_is_abi_1_0():
    text = (COMPAT / "abi10" / "vt" / "oppack.h").read_text()
    assert "#define VT_ABI_MINOR 0" in text and "register_meta" not in text


def test_abi_1_0_pack_loads_serves_and_unloads(abi10_pack):
    r = pt.result(f"""
        pack = vt.ops.load({str(abi10_pack)!r})
        x = vt.tensor([1.0, 2.0, 3.0])
        twice = vt.ops.abi10.twice(x).tolist()
        served = [q.name for q in vt.ops.providers('core::mul') if q.active]
        prod = (x * x).tolist()
        calls = vt.ops.abi10.calls()
        meta_twice = raises(vt.ops.abi10.twice, x.to('meta'))
        meta_mul = tuple((x.to('meta') * x.to('meta')).shape)
        vt.ops.unload(pack)
        after = (x * x).tolist()
        print(json.dumps(dict(twice=twice, served=served, prod=prod, calls=calls,
                              meta_twice=meta_twice, meta_mul=meta_mul, after=after,
                              ok=still_computes())))
    """)
    assert r["twice"] == [2.0, 4.0, 6.0]
    assert r["served"] == ["abi10"]
    assert r["prod"] == [1.0, 4.0, 9.0] and r["calls"] == 1
    assert r["meta_twice"][0] == "NotImplementedError" and "meta step" in r["meta_twice"][1]
    assert r["meta_mul"] == [3]
    assert r["after"] == [1.0, 4.0, 9.0] and r["ok"]
