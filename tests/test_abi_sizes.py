"""The ABI's layout, checked as C: opsdk/tools/abi_sizes.c pins every struct size, field offset and
enum value at compile time. It must compile as C99 (and C11) with the system C compiler and run,
its checks must actually fire when a layout changes, the header must be clean C and C++, and the
runtime the Python package loaded must agree with the header."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INCLUDE = ROOT / "opsdk" / "include"
ABI_SIZES = ROOT / "opsdk" / "tools" / "abi_sizes.c"


def _cc(cxx=False):
    for name in (("c++", "g++", "clang++") if cxx else ("cc", "gcc", "clang")):
        exe = shutil.which(name)
        if exe:
            return exe
    pytest.skip(f"no {'C++' if cxx else 'C'} compiler")


def _compile(args, cxx=False):
    proc = subprocess.run([_cc(cxx), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=120)
    return proc.returncode, proc.stdout


@pytest.mark.parametrize("std", ["c99", "c11"])
def test_abi_sizes_compiles_and_runs(tmp_path, std):
    exe = tmp_path / "abi_sizes"
    rc, out = _compile([f"-std={std}", "-Wall", "-Wextra", "-Wpedantic", "-Werror", "-I", INCLUDE, ABI_SIZES,
                        "-o", exe])
    assert rc == 0, out
    run = subprocess.run([str(exe)], stdout=subprocess.PIPE, text=True, timeout=30)
    assert run.returncode == 0
    from vibetensor.runtime import lib
    m = re.search(r"vt op-pack ABI (\d+)\.(\d+): vt_dtype 4, vt_device 8, vt_tensor \(prefix\) 48, "
                  r"vt_int_list 16, vt_value 24, vt_kernel_ctx 32, vt_host (\d+) bytes", run.stdout)
    assert m, run.stdout
    assert (int(m.group(1)), int(m.group(2))) == (lib.VT_ABI_MAJOR, lib.VT_ABI_MINOR)
    assert int(m.group(3)) == 184  # ABI 1.1 (1.0 was 120); grows (append-only) with the minor


def test_abi_sizes_catches_a_layout_change(tmp_path):
    """A copy of the header with vt_tensor.ndim widened to 64 bits must fail to compile."""
    (tmp_path / "vt").mkdir()
    header = (INCLUDE / "vt" / "oppack.h").read_text()
    assert header.count("  int32_t ndim;") == 1
    (tmp_path / "vt" / "oppack.h").write_text(header.replace("  int32_t ndim;", "  int64_t ndim;"))
    rc, out = _compile(["-std=c99", "-fsyntax-only", "-I", tmp_path, ABI_SIZES])
    assert rc != 0
    assert "vt_abi_check" in out or "ndim" in out or "vt_tensor" in out, out


def test_abi_sizes_catches_a_moved_host_field(tmp_path):
    (tmp_path / "vt").mkdir()
    header = (INCLUDE / "vt" / "oppack.h").read_text()
    a = "  void (*retain)(vt_tensor* t);\n"
    b = "  void (*release)(vt_tensor* t);\n"
    assert a + b in header
    (tmp_path / "vt" / "oppack.h").write_text(header.replace(a + b, b + a))  # same size, swapped
    rc, out = _compile(["-std=c99", "-fsyntax-only", "-I", tmp_path, ABI_SIZES])
    assert rc != 0, "swapping two host-table fields went unnoticed"


@pytest.mark.parametrize("lang,std", [("c", "c99"), ("c", "c11"), ("c++", "c++14"), ("c++", "c++17")])
def test_header_alone_is_clean(tmp_path, lang, std):
    src = tmp_path / ("t.c" if lang == "c" else "t.cpp")
    src.write_text('#include "vt/oppack.h"\n'
                   "static vt_status init(const vt_host* host, vt_pack* pack) {\n"
                   "  (void)pack; return host->size >= sizeof(vt_host) ? VT_OK : VT_ERR_ABI;\n}\n"
                   "VT_OPPACK_DEFINE(init)\n")
    rc, out = _compile([f"-std={std}", "-Wall", "-Wextra", "-Wpedantic", "-Werror", "-fsyntax-only",
                        "-I", INCLUDE, src], cxx=(lang == "c++"))
    assert rc == 0, out


def test_runtime_host_table_matches_header():
    """The host table the runtime hands to packs carries the size and version the header pins."""
    from vibetensor.runtime import ffi, lib
    h = lib.vtrt_host()
    assert h != ffi.NULL
    size = ffi.cast("uint32_t*", h)[0]
    major, minor = ffi.cast("uint16_t*", h)[2], ffi.cast("uint16_t*", h)[3]
    assert (major, minor) == (lib.VT_ABI_MAJOR, lib.VT_ABI_MINOR)
    assert size == 184  # ABI 1.1
    for t, n in [("vt_dtype", 4), ("vt_device", 8), ("vt_int_list", 16), ("vt_value", 24), ("vt_tensor", 48)]:
        assert ffi.sizeof(t) == n, t


def test_abi_doc_quotes_match_the_header():
    """docs/ABI.md quotes vt/oppack.h; opsdk/tools/abi_doc.py --check fails when they drift."""
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(root / "opsdk" / "tools" / "abi_doc.py"), "--check"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout
