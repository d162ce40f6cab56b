"""Helpers for the tests that build op packs (tests/test_packs.py, test_abi_misuse.py, test_cli.py,
test_c_pack.py): run `vt-ops`, build a pack once per test session, compile a deliberately broken
library by hand, and run Python code in a fresh interpreter (so a misbehaving pack, or a test of
process-wide state, cannot disturb the test process).

Imported by the tests as `packtools` (they put this folder on sys.path).
"""
from __future__ import annotations

import hashlib
import json
import re
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent          # tests/packs
TESTS = HERE.parent                             # tests
ROOT = TESTS.parent                             # the repository
TIMEOUT = 300

_cache: dict = {}  # key -> result, for the whole pytest session (one build per pack per session)


def clean_env(**extra) -> dict:
    """os.environ without the pack search variables (so the developer's own packs never leak in),
    plus `extra` (a value of None removes the variable)."""
    env = {k: v for k, v in os.environ.items() if k not in ("VT_OPS_PATH",)}
    # only the core pack at import: these tests reason about exactly which packs and ops exist
    env["VT_BUILTIN_PACKS"] = "core"
    for k, v in extra.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = str(v)
    return env


def vt_ops(*args, cwd=None, env=None, check=True) -> subprocess.CompletedProcess:
    """`vt-ops ARGS...` as a subprocess (stdout and stderr merged into .stdout)."""
    proc = subprocess.run([sys.executable, "-m", "vibetensor.cli", *map(str, args)], cwd=cwd,
                          env=env or clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=TIMEOUT)
    if check and proc.returncode != 0:
        raise AssertionError(f"vt-ops {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stdout}")
    return proc


def build(source: Path, build_dir: Path, name: str) -> Path:
    """`vt-ops build SOURCE -o BUILD_DIR`; returns the pack folder BUILD_DIR/packs/NAME."""
    vt_ops("build", source, "-o", build_dir)
    folder = Path(build_dir) / "packs" / name
    assert (folder / "manifest.json").is_file(), f"no manifest.json in {folder}"
    return folder


def once(key, factory):
    """factory() the first time `key` is asked for in this session, the cached result after."""
    if key not in _cache:
        _cache[key] = factory()
    return _cache[key]


def compiler(cxx: bool) -> str:
    names = ("c++", "g++", "clang++") if cxx else ("cc", "gcc", "clang")
    for n in names:
        exe = shutil.which(n)
        if exe:
            return exe
    pytest.skip(f"no {'C++' if cxx else 'C'} compiler found")


def sdk_include() -> Path:
    from vibetensor.cli import sdk_dir
    return sdk_dir() / "include"


def compile_raw(source: Path, folder: Path, name: str, abi=(1, 0), **manifest_extra) -> Path:
    """Compile SOURCE into FOLDER/libvt_NAME.so with the system compiler, bypassing
    vt_add_oppack (whose build-time describe step would refuse a broken pack), and hand-write a
    manifest.json with the library's real sha256. Returns FOLDER."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lib = folder / f"libvt_{name}.so"
    cxx = Path(source).suffix in (".cpp", ".cc", ".cxx")
    cmd = [compiler(cxx), "-shared", "-fPIC", "-O1", "-fvisibility=hidden",
           "-std=c++17" if cxx else "-std=c99", f"-I{sdk_include()}", str(source), "-o", str(lib)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout}"
    if "ops" not in manifest_extra:  # what init defines, as vt_describe would record it
        manifest_extra["ops"] = defined_ops(source, name)
    write_manifest(folder, name, lib, abi=abi, **manifest_extra)
    return folder


def defined_ops(source: Path, name: str) -> list:
    """The ops of namespace NAME a test pack's source defines with a literal schema."""
    return sorted(set(re.findall(rf'define_op\(pack, "({name}::\w+)\(', Path(source).read_text())))


def write_manifest(folder: Path, name: str, lib: Path, abi=(1, 0), **extra) -> None:
    man = {"name": name, "version": "0.1.0", "abi": list(abi), "library": Path(lib).name,
           "sha256": sha256(lib), "ops": [], "kernels": [], "devices": ["cpu"]}
    man.update(extra)
    (Path(folder) / "manifest.json").write_text(json.dumps(man, indent=1))


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


PRELUDE = """\
import json, os, sys
import vibetensor as vt

def mapped(path):
    # whether a library is mapped into this process, from the kernel's own record
    path = os.path.realpath(str(path))
    with open('/proc/self/maps') as f:
        return any(line.rstrip().endswith(path) for line in f)

def raises(fn, *args, **kwargs):
    # (exception class name, message) of what fn raises; ('', '') when it returns
    try:
        fn(*args, **kwargs)
    except BaseException as e:
        return type(e).__name__, str(e)
    return '', ''

def still_computes():
    return (vt.ones(3) + vt.ones(3)).numpy().tolist() == [2.0, 2.0, 2.0]
"""


def run_py(code: str, env=None, cwd=None, check=True) -> subprocess.CompletedProcess:
    """Run PRELUDE + code in a fresh interpreter. With check, a nonzero exit fails the test with
    the child's output. Children report results as JSON on their last stdout line (see `result`)."""
    src = PRELUDE + textwrap.dedent(code)
    proc = subprocess.run([sys.executable, "-c", src], cwd=cwd or TESTS, env=env or clean_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=TIMEOUT)
    if check and proc.returncode != 0:
        raise AssertionError(f"child python exited with {proc.returncode}\n--- stdout\n{proc.stdout}"
                             f"\n--- stderr\n{proc.stderr}")
    return proc


def result(code: str, env=None, cwd=None):
    """Run code whose last action is `print(json.dumps(...))`; returns the decoded object."""
    proc = run_py(code, env=env, cwd=cwd)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert lines, f"child printed nothing\n--- stderr\n{proc.stderr}"
    return json.loads(lines[-1])


# ---- the packs several test files share ---------------------------------------------------------

def user_pack(tmp_path_factory) -> Path:
    """The end-to-end user pack: `vt-ops new mypack`, its source replaced by
    tests/packs/useradd/mypack.cpp (a 'mine' provider of core::add, priority 10, that counts its
    calls; `mypack::calls() -> int` reads the count), then `vt-ops build`. Returns the pack folder
    (…/build/packs/mypack). Built once per session."""
    def make():
        work = tmp_path_factory.mktemp("userpack")
        vt_ops("new", "mypack", cwd=work)
        src = work / "mypack"
        shutil.copyfile(HERE / "useradd" / "mypack.cpp", src / "src" / "mypack.cpp")
        return build(src, work / "build", "mypack")
    return once("user_pack", make)


def copy_pack(folder: Path, dest: Path) -> Path:
    """A copy of a pack folder (manifest + library) at dest, with sane permissions."""
    shutil.copytree(folder, dest)
    os.chmod(dest, 0o755)
    return dest
