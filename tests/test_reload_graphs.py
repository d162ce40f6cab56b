"""CUDA graphs and hot reload: a graph notes the op packs whose kernels its capture ran, and once
one of them is reloaded (vt.ops.reload) replay() raises RuntimeError naming it instead of running
the old code. The noted set and its check are plain runtime code with a C API of their own
(vtrt_code_uses_*), tested here on cpu with tests/packs/reload's rl pack; the whole capture,
reload and replay, with tests/packs/reload/rlc.c (a cuda provider composed of core::add), runs
where a GPU is."""
import sys
from pathlib import Path

import pytest

import vibetensor as vt
from vibetensor.runtime import check, ffi, lib

sys.path.insert(0, str(Path(__file__).resolve().parent / "packs"))
import packtools as pt  # noqa: E402
from test_reload import compiled  # noqa: E402  (the rl pack, built with a given SCALE)

HAS_GPU = vt.cuda.is_available()
REPLAY = b"CUDAGraph.replay()"
REFUSED = r"CUDAGraph.replay\(\): pack '{}' was reloaded \(vt.ops.reload\) after this was captured.*capture again"


@pytest.fixture
def work(tmp_path):
    yield tmp_path
    for name in ("rl", "rlc"):
        if vt.ops.get(name) is not None:
            vt.ops.unload(name)


def noted(uses) -> list:
    return [ffi.string(lib.vtrt_code_uses_pack(uses, i)).decode()
            for i in range(lib.vtrt_code_uses_count(uses))]


def test_the_check_passes_until_a_noted_pack_is_reloaded_then_names_it(work):
    pack = vt.ops.load(compiled(work))
    uses = ffi.gc(lib.vtrt_code_uses_new(), lib.vtrt_code_uses_free)
    core = vt.ops.get("core")
    for p in (pack, pack, core):  # noted once each
        lib.vtrt_code_uses_note(uses, p._h)
    assert noted(uses) == ["rl", "core"]
    check(lib.vtrt_code_uses_check(uses, REPLAY))  # nothing reloaded: no error
    compiled(work, scale="3.0f")
    new = vt.ops.reload("rl", rebuild=False)
    with pytest.raises(RuntimeError, match=REFUSED.format("rl")):
        check(lib.vtrt_code_uses_check(uses, REPLAY))
    fresh = ffi.gc(lib.vtrt_code_uses_new(), lib.vtrt_code_uses_free)  # a capture made after it
    lib.vtrt_code_uses_note(fresh, new._h)
    lib.vtrt_code_uses_note(fresh, core._h)
    check(lib.vtrt_code_uses_check(fresh, REPLAY))


def test_a_noted_pack_stays_mapped_after_unload_and_unload_is_not_a_reload(work):
    pack = vt.ops.load(compiled(work))
    h = pack._h
    refs = lib.vtrt_pack_refs(h)
    uses = lib.vtrt_code_uses_new()
    try:
        lib.vtrt_code_uses_note(uses, h)
        assert lib.vtrt_pack_refs(h) == refs + 1  # the set holds the code
        vt.ops.unload(pack)
        assert vt.ops.is_mapped(pack)
        check(lib.vtrt_code_uses_check(uses, REPLAY))  # unloaded, not replaced: the old code is
        # all the capture ever meant, and it is still mapped
    finally:
        lib.vtrt_code_uses_free(uses)
    assert not vt.ops.is_mapped(pack)  # the set was the last holder


def rlc(work: Path, scale: str) -> Path:
    """tests/packs/reload/rlc.c with SCALE = scale, built into work/rlc."""
    src = work / "rlc.c"
    src.write_text((pt.HERE / "reload" / "rlc.c").read_text().replace("#define SCALE 2.0f",
                                                                      f"#define SCALE {scale}"))
    return pt.compile_raw(src, work / "rlc", "rlc", abi=(1, 1), devices=["cuda"],
                          kernels=[{"op": "rlc::scale", "device": "cuda", "provider": "rlc",
                                    "priority": 0}])


@pytest.mark.skipif(not HAS_GPU, reason="needs a CUDA GPU (vt.cuda.is_available() is False); the "
                    "check itself is tested on cpu above")
def test_a_graph_that_captured_a_reloaded_pack_refuses_to_replay(work):
    vt.ops.load(rlc(work, "2.0f"))
    x = vt.ones(256, device="cuda")
    assert vt.ops.rlc.scale(x).cpu().tolist() == [2.0] * 256  # warm up outside the capture
    g, other = vt.cuda.CUDAGraph(), vt.cuda.CUDAGraph()
    with vt.cuda.graph(g):
        y = vt.ops.rlc.scale(x)
    with vt.cuda.graph(other):  # core only
        z = x + x
    assert sorted(g.packs()) == ["core", "rlc"] and other.packs() == ["core"]
    g.replay()
    assert y.cpu().tolist() == [2.0] * 256
    rlc(work, "5.0f")
    vt.ops.reload("rlc", rebuild=False)
    assert vt.ops.rlc.scale(x).cpu().tolist() == [5.0] * 256  # eager calls run the new code
    with pytest.raises(RuntimeError, match=REFUSED.format("rlc")):
        g.replay()
    other.replay()  # a graph that never ran rlc's code is not affected
    assert z.cpu().tolist() == [2.0] * 256
    g.reset()  # captured again: the new code, replayable
    with vt.cuda.graph(g):
        y = vt.ops.rlc.scale(x)
    g.replay()
    assert y.cpu().tolist() == [5.0] * 256
