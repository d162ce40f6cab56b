"""Capability manifests: a pack declares per provider what it needs (compute capability, ABI
minor, other packs) and promises (dtypes, CUDA graphs, determinism, shapes); vt_describe writes
the declaration into manifest.json; loading refuses unmet pack requirements and drops providers no
visible GPU can run, while the rest of the pack loads; `vt-ops info` shows it all."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import vibetensor as vt
from vibetensor.cli import main
from vibetensor.registry import capabilities as C
from vibetensor.registry import manifest as M

sys.path.insert(0, str(Path(__file__).resolve().parent / "packs"))
import packtools as pt  # noqa: E402

SOURCE = pt.HERE / "caps" / "caps_pack.c"
KERNELS = [{"op": "caps::twice", "device": "cpu", "provider": "plain", "priority": 0},
           {"op": "caps::twice", "device": "cuda", "provider": "plain", "priority": 0},
           {"op": "caps::twice", "device": "cuda", "provider": "fast", "priority": 10}]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The compiled test pack and what vt_describe (the SDK's build-time tool) says of it."""
    folder = pt.compile_raw(SOURCE, tmp_path_factory.mktemp("caps") / "caps", "caps", abi=(1, 1),
                            kernels=KERNELS, devices=["cpu", "cuda"])
    tool = folder.parent / "vt_describe"
    subprocess.run([pt.compiler(False), "-std=c99", f"-I{pt.sdk_include()}",
                    str(pt.sdk_include().parent / "tools" / "describe.c"), "-o", str(tool), "-ldl"],
                   check=True, timeout=120)
    out = subprocess.run([str(tool), str(folder / "libvt_caps.so")], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return folder, json.loads(out.stdout)


def with_caps(built, tmp_path, caps, **extra):
    """A copy of the test pack whose manifest declares `caps`."""
    folder = pt.copy_pack(built[0], tmp_path / "caps")
    man = json.loads((folder / "manifest.json").read_text())
    man["capabilities"] = caps
    man.update(extra)
    (folder / "manifest.json").write_text(json.dumps(man))
    return folder


@pytest.fixture
def gpus(monkeypatch):
    """Pretend the machine has GPUs of these compute capabilities."""
    def set_(*ccs):
        monkeypatch.setattr(C, "cuda_devices", lambda: list(ccs))
    return set_


@pytest.fixture
def loaded():
    packs = []
    yield packs
    for p in packs:
        if p.loaded:
            vt.ops.unload(p)


def names(op, device):
    return [p.name for p in vt.ops.providers(op, device=device)]


def test_describe_copies_the_declaration_into_the_manifest(built):
    caps = built[1]["capabilities"]
    assert caps["requires"] == {"core": ">=0.1,<1"}
    fast = next(e for e in caps["providers"] if e["provider"] == "fast")
    assert fast["compute_capability"] == {"min": "8.0"} and fast["limits"][0]["one_of"] == [64, 128]
    assert [k["provider"] for k in built[1]["kernels"]] == ["plain", "plain", "fast"]


def test_builtin_packs_declare_real_capabilities():
    core, attn = vt.ops.get("core").capabilities, vt.ops.get("attention").capabilities
    assert attn["requires"] == {"core": ">=0.1,<1"} and core["abi_minor"] == 1
    flash = C.for_kernel(attn, "attention::sdpa", "flash", "cuda")
    assert flash["dtypes"] == ["bfloat16", "float16", "float32"] and flash["compute_capability"] == {"min": "8.0"}
    assert flash["cuda_graphs"] is True
    # the per-op entry overrides the provider's general one
    assert C.for_kernel(core, "core::nonzero", "core", "cuda")["cuda_graphs"] is False
    assert C.for_kernel(core, "core::add", "core", "cuda")["cuda_graphs"] is True
    allreduce = M.read(Path(vt.ops.get("core").path).parent / "on_demand" / "allreduce")
    assert C.for_kernel(C.parse(allreduce), "allreduce::all_reduce_", "nccl", "cuda")["deterministic"] is False


def test_declared_limits_are_machine_checkable():
    flash = C.for_kernel(vt.ops.get("attention").capabilities, "attention::sdpa", "flash", "cuda")
    assert C.unmet(flash, "bfloat16", {"q": (2, 4, 128, 64), "v": (2, 4, 128, 64)}) == []
    assert C.unmet(flash, "float32", {"q": (128, 8, 65, 32), "v": (128, 8, 65, 32)}) == []  # the ViT's head dim
    why = C.unmet(flash, "float64", {"q": (2, 4, 128, 96), "v": (2, 4, 128, 64)})
    assert why == ["dtype float64 is not one of ['bfloat16', 'float16', 'float32']",
                   "q.shape[-1] = 96 is not one of [32, 64, 128]"]
    assert C.unmet({"limits": [{"arg": "self", "dim": -1, "multiple_of": 8}]}, None,
                   {"self": (4, 12)}) == ["self.shape[-1] = 12 is not a multiple of 8"]


def test_a_gpu_below_the_range_drops_only_that_provider(built, tmp_path, gpus, loaded):
    gpus((7, 5))
    pack = vt.ops.load(with_caps(built, tmp_path, built[1]["capabilities"]))
    loaded.append(pack)
    assert names("caps::twice", "cuda") == ["plain"]  # fast is not registered on cuda ...
    assert pack.skipped == [("cuda", "fast", "needs compute capability >= 8.0, the GPU has 7.5")]
    x = vt.tensor([1.0, 2.5])  # ... and the rest of the pack works
    assert vt.ops.caps.twice(x).numpy().tolist() == [2.0, 5.0]
    out = CliRunner().invoke(main, ["info", "caps"])
    assert "not registered here: fast on cuda (needs compute capability >= 8.0" in out.output


def test_a_gpu_in_range_keeps_every_provider(built, tmp_path, gpus, loaded):
    gpus((7, 5), (9, 0))  # one GPU that can run it is enough
    pack = vt.ops.load(with_caps(built, tmp_path, built[1]["capabilities"]))
    loaded.append(pack)
    assert names("caps::twice", "cuda") == ["fast", "plain"] and pack.skipped == []


def test_the_built_architectures_narrow_the_range(built, tmp_path, gpus, loaded):
    gpus((8, 0))
    pack = vt.ops.load(with_caps(built, tmp_path, built[1]["capabilities"],
                                 cuda_architectures=["90a-real"]))
    loaded.append(pack)
    assert names("caps::twice", "cuda") == ["plain"]
    assert "GPU code for 90a-real only, the GPU has 8.0" in pack.skipped[0][2]


@pytest.mark.parametrize("archs,cc,ok", [
    (["90"], (9, 0), True), (["90"], (10, 0), True), (["90"], (8, 9), False),
    (["90-real"], (10, 0), False), (["80-real"], (8, 6), True), (["90a-real"], (9, 0), True),
    (["90a"], (10, 0), False), (["80", "90a"], (8, 6), True), (["native"], (7, 0), True)])
def test_built_admits(archs, cc, ok):
    assert C.built_admits(archs, cc) is ok


GPUS = [("GPU-aaaa", (9, 0)), ("GPU-bbbb", (8, 0))]


@pytest.mark.parametrize("env,ccs", [
    (None, [(9, 0), (8, 0)]), ("", []), ("-1", []), ("GPU-bbbb", [(8, 0)]),
    ("GPU-bbbb,GPU-aaaa", [(8, 0), (9, 0)]), ("0", [(8, 0), (9, 0)]), ("7", []), ("1,-1,0", [(8, 0), (9, 0)])])
def test_visible_gpus_follow_cuda_visible_devices(env, ccs):
    """An index may mean any GPU (CUDA's order is not NVML's): it counts them all, so a provider
    is never dropped while a GPU it could run on is visible."""
    assert C.visible(GPUS, env) == (sorted(ccs) if env is not None else ccs)


@pytest.mark.parametrize("requires,message", [
    ({"nosuch": ">=1"}, "pack 'caps' requires pack 'nosuch' (>=1), which is not loaded"),
    ({"core": ">=2"}, "pack 'caps' requires pack 'core' >=2, but version 0.1.0 is loaded"),
    ({"core": "<0.1"}, "pack 'caps' requires pack 'core' <0.1, but version 0.1.0 is loaded"),
])
def test_unmet_pack_requirements_are_refused(built, tmp_path, requires, message):
    folder = with_caps(built, tmp_path, {"requires": requires})
    with pytest.raises(vt.ops.PackError, match=message.replace("(", r"\(").replace(")", r"\)")):
        vt.ops.load(folder)
    assert vt.ops.get("caps") is None and "caps::twice" not in vt.ops.op_names()


def test_abi_minor_requirements(built):
    m = M.read(built[0])
    m.raw["capabilities"] = {"abi_minor": 1}
    with pytest.raises(vt.ops.PackError, match="pack 'caps' needs op-pack ABI minor 1; this runtime speaks minor 0"):
        C.plan(m, {}, host_minor=0)
    assert C.plan(m, {}, host_minor=1) == []
    m.raw["capabilities"] = {"abi_minor": 2}  # more than the header it was built with: a wrong declaration
    with pytest.raises(vt.ops.PackError, match="needs ABI minor 2 but was built against 1.1"):
        C.plan(m, {}, host_minor=5)
    m.raw["capabilities"] = {"providers": [{"provider": "plain", "device": "cpu", "abi_minor": 1}]}
    assert C.plan(m, {}, host_minor=0) == [("cpu", "plain", "needs op-pack ABI minor 1, this runtime speaks minor 0")]


@pytest.mark.parametrize("caps,message", [
    ([], "capabilities must be a JSON object"),
    ({"provider": []}, "unknown keys \\['provider'\\]"),
    ({"providers": [{"provider": "nope", "device": "cpu"}]}, "registers no provider 'nope'"),
    ({"providers": [{"provider": "fast", "device": "tpu"}]}, "'device' must be one of"),
    ({"providers": [{"provider": "fast", "device": "cuda", "ops": ["caps::thrice"]}]}, "no kernel on cuda for"),
    ({"providers": [{"provider": "fast", "device": "cuda", "dtypes": ["float8"]}]}, "'dtypes' must list"),
    ({"providers": [{"provider": "fast", "device": "cuda", "compute_capability": {"min": 8}}]},
     "'compute_capability' must be"),
    ({"providers": [{"provider": "plain", "device": "cpu", "compute_capability": {"min": "8.0"}}]},
     "applies to cuda providers only"),
    ({"providers": [{"provider": "fast", "device": "cuda", "cuda_graphs": "yes"}]}, "'cuda_graphs' must be true or false"),
    ({"providers": [{"provider": "fast", "device": "cuda", "limits": [{"arg": "x", "dim": -1}]}]}, "limits\\[0\\] must be"),
    ({"requires": {"core": "about 1"}}, "is not a version range"),
])
def test_malformed_declarations_are_refused(built, tmp_path, caps, message):
    folder = with_caps(built, tmp_path, caps)
    with pytest.raises(vt.ops.PackError, match=message):
        vt.ops.load(folder)
    assert vt.ops.get("caps") is None


@pytest.mark.parametrize("version,spec,ok", [
    ("0.1.0", ">=0.1,<1", True), ("1.0", ">=0.1,<1", False), ("0.10.2", ">0.9", True),
    ("2", "==2.0.0", True), ("2.0.1", "!=2.0.1", False), ("1.0rc1", ">=0", False)])
def test_version_ranges(version, spec, ok):
    assert C.version_in(version, spec) is ok


def test_builtin_packs_load_after_what_they_require():
    folders = [Path(vt.ops.get(n).path) for n in ("attention", "core")]
    order = [m.name for m in vt.registry.loader._dependency_order([M.read(f) for f in folders])]
    assert order == ["core", "attention"]


def test_info_shows_the_capabilities():
    out = CliRunner().invoke(main, ["info", "attention"])
    assert out.exit_code == 0, out.output
    assert "needs packs: core >=0.1,<1" in out.output
    assert ("flash on cuda: compute capability 8.0+; bfloat16/float16/float32; CUDA graphs; deterministic; "
            "q.shape[-1] one_of [32, 64, 128]") in out.output
    assert "composed on cpu: deterministic" in out.output


def test_vt_ops_build_refuses_a_malformed_declaration(tmp_path):
    """The declaration is checked at build time too: a provider it names that the pack does not
    register fails `vt-ops build` (and leaves no manifest to load)."""
    src = tmp_path / "src"
    src.mkdir()
    text = SOURCE.read_text().replace('{\\"provider\\": \\"plain\\", \\"device\\": \\"cpu\\"',
                                      '{\\"provider\\": \\"plane\\", \\"device\\": \\"cpu\\"')
    assert "plane" in text
    (src / "caps_pack.c").write_text(text)
    (src / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.19)\nproject(caps LANGUAGES C)\nfind_package(VibeTensor REQUIRED)\n"
        "vt_add_oppack(NAME caps VERSION 0.1.0 SOURCES caps_pack.c)\n")
    out = pt.vt_ops("build", src, "-o", tmp_path / "build", check=False)
    assert out.returncode != 0
    assert "capability declaration is refused: pack 'caps': capabilities: providers[0]: the pack " \
           "registers no provider 'plane'" in out.stdout, out.stdout
    assert not (tmp_path / "build" / "packs" / "caps" / "manifest.json").exists()


def test_the_pack_template_declares_its_capabilities(tmp_path):
    """`vt-ops new` + `vt-ops build`: the declaration in the template's source reaches
    manifest.json through vt_describe and CMake, and loads."""
    pt.vt_ops("new", "capsdemo", cwd=tmp_path)
    folder = pt.build(tmp_path / "capsdemo", tmp_path / "build", "capsdemo")
    man = json.loads((folder / "manifest.json").read_text())
    assert man["capabilities"]["providers"][0] == {
        "provider": "capsdemo", "device": "cpu", "dtypes": ["float32", "float64"],
        "deterministic": True, "shapes": "any shape and strides"}
    pack = vt.ops.load(folder)
    try:
        assert C.for_kernel(pack.capabilities, "capsdemo::scale", "capsdemo", "cpu")["deterministic"]
    finally:
        vt.ops.unload(pack)
