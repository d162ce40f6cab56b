"""`vt-ops` from the outside: new, build (cold, incremental, compiler errors), list and info. Each
command runs as `python -m vibetensor.cli ...` in a subprocess, as a user would run it."""
import json
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "packs"))
import packtools as pt  # noqa: E402

SCAFFOLD = ["CMakeLists.txt", "README.md", ".gitignore", "src/demo.cpp", "tests/test_demo.py"]


# ---- new ------------------------------------------------------------------------------------------

def test_new_creates_the_pack_files(tmp_path):
    proc = pt.vt_ops("new", "demo", cwd=tmp_path)
    dest = tmp_path / "demo"
    for rel in SCAFFOLD:
        assert (dest / rel).is_file(), rel
        assert rel in proc.stdout
    assert "created pack 'demo'" in proc.stdout and "vt-ops build" in proc.stdout
    for f in dest.rglob("*"):
        if f.is_file():
            text = f.read_text()
            assert "{{" not in text and "__name__" not in f.name, f
    src = (dest / "src" / "demo.cpp").read_text()
    assert '"demo::scale(Tensor self, float factor) -> Tensor"' in src
    assert "VT_OPPACK_DEFINE(init)" in src
    cm = (dest / "CMakeLists.txt").read_text()
    assert "find_package(VibeTensor REQUIRED)" in cm and "NAME demo" in cm
    assert "vt.ops.demo.scale" in (dest / "tests" / "test_demo.py").read_text()


def test_new_with_dir_and_namespace(tmp_path):
    pt.vt_ops("new", "demo", "--dir", tmp_path / "elsewhere", "--namespace", "myns", cwd=tmp_path)
    src = (tmp_path / "elsewhere" / "src" / "demo.cpp").read_text()
    assert "myns::scale" in src and "demo::scale" not in src
    assert not (tmp_path / "demo").exists()


@pytest.mark.parametrize("name", ["MyPack", "1abc", "my-pack", "my pack", "class", "a.b", ""])
def test_new_refuses_bad_names(tmp_path, name):
    proc = pt.vt_ops("new", name, cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stdout                # click's usage error
    assert "must be a lowercase identifier" in proc.stdout
    assert list(tmp_path.iterdir()) == []                   # nothing written


def test_new_refuses_bad_namespace(tmp_path):
    proc = pt.vt_ops("new", "demo", "--namespace", "Bad-NS", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "namespace" in proc.stdout
    assert list(tmp_path.iterdir()) == []


def test_new_refuses_non_empty_folder(tmp_path):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "mine.txt").write_text("keep me")
    proc = pt.vt_ops("new", "demo", cwd=tmp_path, check=False)
    assert proc.returncode != 0 and "not empty" in proc.stdout
    assert [p.name for p in (tmp_path / "demo").iterdir()] == ["mine.txt"]


# ---- build ----------------------------------------------------------------------------------------

def _steps(out: str) -> list:
    return re.findall(r"^\s*\[\d+/\d+\] (.*)$", out, re.M)


def test_build_cold_incremental_and_rebuild(tmp_path):
    pt.vt_ops("new", "demo", cwd=tmp_path)
    src = tmp_path / "demo"
    cold = pt.vt_ops("build", src, cwd=tmp_path).stdout
    assert "configuring" in cold and "new build folder" in cold
    steps = _steps(cold)
    assert "compiling src/demo.cpp (CXX)" in steps
    assert any(s.startswith("writing manifest.json of demo") for s in steps)
    assert re.search(r"built in \d+\.\d s", cold)
    folder = src / "build" / "packs" / "demo"
    assert f"pack 'demo' 0.1.0 -> {folder}" in cold and "ops: demo::scale" in cold
    man = json.loads((folder / "manifest.json").read_text())
    assert man["ops"] == ["demo::scale"] and man["sha256"] == pt.sha256(folder / man["library"])

    again = pt.vt_ops("build", src, cwd=tmp_path).stdout
    assert "up to date" in again
    assert "configuring" not in again and "compiling" not in again

    # change the source: only the pack recompiles (not the SDK's describe tool), manifest follows
    cpp = src / "src" / "demo.cpp"
    cpp.write_text(cpp.read_text().replace("out = self * factor", "out = self * factor (edited)"))
    edit = pt.vt_ops("build", src, cwd=tmp_path).stdout
    steps = _steps(edit)
    assert "compiling src/demo.cpp (CXX)" in steps
    assert not any("vt_describe" in s for s in steps) and "configuring" not in edit
    man2 = json.loads((folder / "manifest.json").read_text())
    assert man2["sha256"] == pt.sha256(folder / man2["library"])

    # a build option change reconfigures the same folder
    dbg = pt.vt_ops("build", src, "--debug", cwd=tmp_path).stdout
    assert "configuring" in dbg and "Debug" in dbg and "build_type" in dbg

    # and the scaffolded pack works
    r = pt.result(f"""
        vt.ops.load({str(folder)!r})
        x = vt.tensor([[1.0, 2.0], [3.0, 4.0]])
        print(json.dumps([vt.ops.demo.scale(x, 2.5).numpy().tolist(),
                          vt.ops.demo.scale(x.transpose(0, 1), -1.0).numpy().tolist(),
                          raises(vt.ops.demo.scale, vt.arange(3), 2.0)]))
    """)
    assert r[0] == [[2.5, 5.0], [7.5, 10.0]]
    assert r[1] == [[-1.0, -3.0], [-2.0, -4.0]]
    assert r[2][0] == "TypeError" and "[demo::scale]" in r[2][1]


def test_build_shows_compiler_errors(tmp_path):
    pt.vt_ops("new", "demo", cwd=tmp_path)
    src = tmp_path / "demo"
    cpp = src / "src" / "demo.cpp"
    good = cpp.read_text()
    lines = good.count("\n")
    cpp.write_text(good + "int this_is_broken = ;\n")
    proc = pt.vt_ops("build", src, "-o", tmp_path / "b", check=False)
    out = proc.stdout
    assert proc.returncode != 0
    # the compiler's own diagnostic, with file and line, then a one-line summary naming the file
    assert re.search(rf"demo\.cpp:{lines + 1}:\d+: error:", out), out
    assert "int this_is_broken = ;" in out
    assert "build failed in src/demo.cpp" in out
    assert "Traceback" not in out
    assert not (tmp_path / "b" / "packs" / "demo" / "manifest.json").exists()
    # fixed: the same build folder recovers
    cpp.write_text(good)
    ok = pt.vt_ops("build", src, "-o", tmp_path / "b").stdout
    assert "compiling src/demo.cpp (CXX)" in _steps(ok)
    assert (tmp_path / "b" / "packs" / "demo" / "manifest.json").is_file()


def test_build_refuses_a_folder_without_cmakelists(tmp_path):
    proc = pt.vt_ops("build", tmp_path, check=False)
    assert proc.returncode != 0 and "has no CMakeLists.txt" in proc.stdout and "vt-ops new" in proc.stdout


def test_build_reports_cmake_errors(tmp_path):
    (tmp_path / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.19)\nproject(x LANGUAGES C CXX)\n"
        "find_package(VibeTensor REQUIRED)\nvt_add_oppack(NAME Bad-Name VERSION 0.1.0 SOURCES a.cpp)\n")
    proc = pt.vt_ops("build", tmp_path, check=False)
    assert proc.returncode != 0
    assert "must be a lowercase identifier" in proc.stdout
    assert "CMake configuration failed" in proc.stdout


# ---- list and info ----------------------------------------------------------------------------------

def test_list_shows_core_ops_and_active_providers():
    out = pt.vt_ops("list").stdout
    assert re.search(r"^core \S+\s+\[loaded\]", out, re.M), out
    for op in ["core::add", "core::matmul", "core::sum"]:
        assert re.search(rf"^\s+{re.escape(op)}\s+cpu: \*core\[0\]", out, re.M), op


def test_list_json():
    recs = json.loads(pt.vt_ops("list", "--json").stdout)
    core = next(r for r in recs if r["name"] == "core")
    assert core["loaded"] is True
    rows = [r for r in core["ops"]["core::add"] if r["device"] == "cpu"]
    assert len(rows) == 1
    assert {k: rows[0][k] for k in ("provider", "priority", "pack", "active")} == \
        {"provider": "core", "priority": 0, "pack": "core", "active": True}


def test_list_shows_available_user_pack(tmp_path_factory):
    mypack = pt.user_pack(tmp_path_factory)
    out = pt.vt_ops("list", env=pt.clean_env(VT_OPS_PATH=mypack.parent)).stdout
    assert re.search(rf"^mypack 0\.1\.0\s+\[available\]\s+{re.escape(str(mypack))}$", out, re.M), out
    assert re.search(r"^\s+mypack::calls\s+cpu: mine\[10\]$", out, re.M)
    assert re.search(r"^\s+core::add\s+cpu: mine\[10\] \(provides\)$", out, re.M)
    # listing does not load it: core still serves core::add
    assert re.search(r"^\s+core::add\s+cpu: \*core\[0\]", out, re.M)


@pytest.mark.parametrize("text", ["{oops", "42", '["a list"]',
                                  '{"name": "weird", "version": "1", "kernels": [{"op": "weird::a"}]}'])
def test_list_survives_a_malformed_manifest(tmp_path, text):
    (tmp_path / "weird").mkdir()
    (tmp_path / "weird" / "manifest.json").write_text(text)
    proc = pt.vt_ops("list", env=pt.clean_env(VT_OPS_PATH=tmp_path), check=False)
    assert proc.returncode == 0 and "Traceback" not in proc.stdout, proc.stdout
    assert re.search(rf"\[available\]\s+{re.escape(str(tmp_path / 'weird'))}\n\s+manifest unreadable: ", proc.stdout)
    assert re.search(r"^\s+core::add\s+cpu: \*core\[0\]", proc.stdout, re.M)   # the rest still lists
    info = pt.vt_ops("info", tmp_path / "weird", check=False)
    assert info.returncode == 0 and "manifest unreadable" in info.stdout


def test_info_core():
    from vibetensor.registry.search import builtin
    core = next(f for f in builtin() if f.name == "core")
    man = json.loads((core / "manifest.json").read_text())
    out = pt.vt_ops("info", "core").stdout
    assert "core 0.1.0  [loaded]" in out
    assert f"library: {man['library']}" in out
    assert f"sha256: {pt.sha256(core / man['library'])}" in out
    assert "abi: %d.%d" % tuple(man["abi"]) in out
    assert "core::add(Tensor self, Tensor other, float alpha=1.0) -> Tensor" in out
    assert re.search(r"^\s+core::add\s+cpu: \*core\[0\]", out, re.M)


def test_info_by_folder_and_json(tmp_path_factory):
    mypack = pt.user_pack(tmp_path_factory)
    out = pt.vt_ops("info", mypack).stdout
    assert "mypack 0.1.0  [available]" in out
    assert "requires: core::add" in out and "mypack::calls() -> int" in out
    assert re.search(r"core::add\s+cpu: mine\[10\] \(provides\)", out)
    rec = json.loads(pt.vt_ops("info", mypack, "--json").stdout)
    assert rec["name"] == "mypack" and rec["loaded"] is False
    assert rec["manifest"]["sha256"] == pt.sha256(mypack / "libvt_mypack.so")


def test_info_unknown_pack():
    proc = pt.vt_ops("info", "no_such_pack", check=False)
    assert proc.returncode != 0 and "no pack named 'no_such_pack'" in proc.stdout
