"""`vt-ops build PATH`: configure (when needed) and compile an op pack with CMake + Ninja.

The pack's CMakeLists.txt calls find_package(VibeTensor) and vt_add_oppack(); we point
VibeTensor_DIR at the SDK this CLI belongs to. The build folder (PATH/build or -o) is reused, so a
re-run only recompiles what changed. Packs land in <build>/packs/<name>/ (library + manifest.json).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import click

from . import main
from ._sdk import sdk_dir

MIN_CMAKE = (3, 19)
_STATE = "vt-ops.json"  # the options the build folder was configured with


def _version(exe: str) -> tuple[int, ...]:
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", out)
    return tuple(int(g) for g in m.groups() if g is not None) if m else ()


def _tool_candidates(name: str, pip_module: str, attr: str):
    found = shutil.which(name)
    if found:
        yield found
    beside = Path(sys.executable).parent / name  # a venv's bin/ that is not on PATH
    if beside.is_file():
        yield str(beside)
    try:  # the pip `cmake` / `ninja` packages
        mod = __import__(pip_module)
        yield str(Path(getattr(mod, attr)) / name)
    except (ImportError, AttributeError):
        pass


def find_cmake() -> str:
    for exe in _tool_candidates("cmake", "cmake", "CMAKE_BIN_DIR"):
        if Path(exe).is_file() and _version(exe) >= MIN_CMAKE:
            return exe
    raise click.ClickException(
        "CMake >= %d.%d not found (install it with `pip install cmake`)" % MIN_CMAKE
    )


def find_ninja() -> str | None:
    for exe in _tool_candidates("ninja", "ninja", "BIN_DIR"):
        if Path(exe).is_file():
            return exe
    return None


def _needs_configure(build: Path, state: dict) -> str | None:
    """Why the build folder must be (re)configured, or None."""
    if not (build / "CMakeCache.txt").is_file():
        return "new build folder"
    try:
        old = json.loads((build / _STATE).read_text())
    except (OSError, ValueError):
        return "no record of the previous configuration"
    changed = sorted(k for k in state if old.get(k) != state[k])
    return ("changed: " + ", ".join(changed)) if changed else None


# ninja "[3/7] Building CXX object ..." or make "[ 42%] Building CXX object ..."
_PROGRESS = re.compile(r"^\[\s*(\d+/\d+|\d+%)\]\s+(.*)$")
_OBJECT = re.compile(r"^Building (\w+) object CMakeFiles/[^/]+\.dir/(.+)\.o(bj)?$")


def _pretty(step: str, source: Path) -> str:
    m = _OBJECT.match(step)
    if m:
        lang, obj = m.group(1), m.group(2)
        if obj.startswith(str(source).lstrip("/") + "/"):  # absolute sources become path-ish names
            obj = obj[len(str(source).lstrip("/")) + 1:]
        if obj.endswith("opsdk/tools/describe.c") or obj.endswith("sdk/tools/describe.c"):
            return "compiling vt_describe (SDK tool, once per build folder)"
        return f"compiling {obj} ({lang})"
    if step.startswith("Linking "):
        return "linking " + step.split()[-1]
    if step.startswith("Describing op pack "):
        return "writing manifest.json of " + step.split()[3]
    return step[0].lower() + step[1:] if step else step


def build_pack(source: Path, build: Path | None = None, build_type: str = "Release",
               cuda_arch: str | None = None, verbose: bool = False, echo=click.echo) -> list[Path]:
    """Configures if needed and builds; returns the pack folders (those with manifest.json)."""
    source = Path(source).resolve()
    if not (source / "CMakeLists.txt").is_file():
        raise click.ClickException(f"{source} has no CMakeLists.txt (make a pack with `vt-ops new NAME`)")
    build = Path(build).resolve() if build else source / "build"
    # always explicit, so a folder configured for another arch goes back to the default
    cuda_arch = str(cuda_arch or os.environ.get("CUDAARCHS") or "90")
    cmake = find_cmake()
    ninja = find_ninja()
    sdk = sdk_dir()
    state = {
        "source": str(source),
        "sdk": str(sdk),
        "generator": "Ninja" if ninja else "Unix Makefiles",
        "build_type": build_type,
        "cuda_arch": cuda_arch,
        "python": sys.executable,
    }
    t0 = time.perf_counter()
    why = _needs_configure(build, state)
    if why:
        try:
            old = json.loads((build / _STATE).read_text())
        except (OSError, ValueError):
            old = {}
        if old and (old.get("generator") != state["generator"] or old.get("source") != state["source"]):
            (build / "CMakeCache.txt").unlink(missing_ok=True)  # CMake refuses to switch these in place
            shutil.rmtree(build / "CMakeFiles", ignore_errors=True)
        build.mkdir(parents=True, exist_ok=True)
        cmd = [cmake, "-S", str(source), "-B", str(build), "-G", state["generator"],
               f"-DCMAKE_BUILD_TYPE={build_type}",
               f"-DVibeTensor_DIR={sdk / 'cmake'}",
               f"-DPython_EXECUTABLE={sys.executable}",
               f"-DPython3_EXECUTABLE={sys.executable}",
               "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON"]
        if ninja:
            cmd.append(f"-DCMAKE_MAKE_PROGRAM={ninja}")
        cmd.append(f"-DCMAKE_CUDA_ARCHITECTURES={cuda_arch}")
        echo(f"configuring {source} ({build_type}, {state['generator']}; {why})")
        if verbose:
            echo(" ".join(cmd))
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if verbose or proc.returncode != 0:
            echo(proc.stdout.rstrip())
        if proc.returncode != 0:
            (build / _STATE).unlink(missing_ok=True)
            raise click.ClickException("CMake configuration failed (see above)")
        for line in proc.stdout.splitlines():  # e.g. "no CUDA compiler found, building without: ..."
            if "vt_add_oppack" in line and not verbose:
                echo("  " + line.lstrip("- "))
        (build / _STATE).write_text(json.dumps(state, indent=1))

    cmd = [cmake, "--build", str(build), "--parallel", str(os.cpu_count() or 2)]
    if verbose:
        cmd.append("--verbose")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    diagnostics, failed, skip_next = [], [], False
    for raw in proc.stdout:
        line = raw.rstrip("\n")
        if verbose:
            echo(line)
            continue
        if skip_next:  # the full command line that follows "FAILED:"
            skip_next = False
            continue
        m = _PROGRESS.match(line)
        if m:
            step = m.group(2)
            if step.startswith("Built target"):
                continue
            echo(f"  [{m.group(1)}] {_pretty(step, source)}")
        elif line.startswith("FAILED: "):
            # ninja >= 1.12 writes "FAILED: [code=1] target"; keep only the target
            failed.append(re.sub(r"^\[code=\d+\]\s*", "", line[len("FAILED: "):]))
            skip_next = state["generator"] == "Ninja"
        elif line.startswith("ninja: build stopped") or re.match(r"^g?make(\[\d+\])?: ", line):
            continue
        elif line == "ninja: no work to do.":
            echo("  up to date")
        else:
            diagnostics.append(line)
            echo(line)  # compiler warnings and errors, as the compiler wrote them
    rc = proc.wait()
    if rc != 0:
        nerr = sum(1 for d in diagnostics if re.search(r"\berror\b", d))
        what = ", ".join(_short(f, build) for f in failed) or "the build"
        raise click.ClickException(
            f"build failed in {what}" + (f" ({nerr} error line{'s' if nerr != 1 else ''} above)" if nerr else "")
        )

    packs = sorted(p.parent for p in build.glob("packs/*/manifest.json"))
    if not packs:  # OUTPUT_DIRECTORY elsewhere in the build tree
        packs = sorted(p.parent for p in build.rglob("manifest.json") if "CMakeFiles" not in p.parts)
    echo(f"built in {time.perf_counter() - t0:.1f} s")
    return packs


def _short(target: str, build: Path) -> str:
    target = target.strip().split(" ")[0]
    if target.endswith("manifest.json"):
        return "describing the pack for manifest.json (its vt_oppack_init failed or it is not a pack)"
    m = re.match(r"CMakeFiles/[^/]+\.dir/(.+)\.o$", target)
    return m.group(1) if m else target


def describe_pack(folder: Path) -> str:
    try:
        man = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError) as e:
        return f"{folder} (unreadable manifest: {e})"
    ops = ", ".join(man.get("ops", [])) or "-"
    provided = sorted({k["op"] for k in man.get("kernels", [])} - set(man.get("ops", [])))
    extra = f"; provides {', '.join(provided)}" if provided else ""
    return (f"pack '{man.get('name')}' {man.get('version')} -> {folder}\n"
            f"  ops: {ops}{extra}; devices: {', '.join(man.get('devices', [])) or '-'}")


@main.command("build")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path), default=".")
@click.option("--release/--debug", default=True, help="Build type (default: release, -O3).")
@click.option("--cuda-arch", metavar="ARCHS", envvar="VT_CUDA_ARCH", show_envvar=True,
              help="GPU architectures of CUDA sources (CMAKE_CUDA_ARCHITECTURES), e.g. 80, '80;90' or "
                   "native (default 90: Hopper).")
@click.option("-o", "--build-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Build folder (default: PATH/build); reused for incremental builds.")
@click.option("-v", "--verbose", is_flag=True, help="Show the full CMake and compiler command lines.")
@click.option("--watch", is_flag=True,
              help="Stay running and rebuild whenever a source file changes (Ctrl-C stops); a running "
                   "process picks the new build up with vt.ops.reload(PACK).")
def build(path, release, cuda_arch, build_dir, verbose, watch):
    """Configure and compile the op pack in PATH (default: the current folder)."""
    def once():
        packs = build_pack(path, build_dir, "Release" if release else "Debug", cuda_arch, verbose)
        if not packs:
            raise click.ClickException("the build made no pack (no vt_add_oppack() in CMakeLists.txt?)")
        for p in packs:
            _check_schemas(p)
            _check_capabilities(p)
            click.echo(describe_pack(p))

    if not watch:
        once()
        return
    source = Path(path).resolve()
    skip = Path(build_dir).resolve() if build_dir else source / "build"
    seen = _snapshot(source, skip)
    try:  # Ctrl-C stops cleanly wherever it lands: in a build, in the echo, in the wait
        while True:
            try:
                once()
            except click.ClickException as e:  # a broken edit: say so and wait for the next one
                click.echo(f"error: {e.format_message()}", err=True)
            click.echo(f"watching {source} for changes (Ctrl-C stops)", err=True)
            while True:
                time.sleep(_WATCH_INTERVAL)
                now = _snapshot(source, skip)
                if now != seen:
                    changed = sorted(str(Path(f).relative_to(source)) for f in set(now) | set(seen)
                                     if now.get(f) != seen.get(f))
                    seen = now
                    click.echo(f"changed: {', '.join(changed[:5])}", err=True)
                    break
    except KeyboardInterrupt:
        return


_WATCH_INTERVAL = 0.3  # seconds between looks at the source tree
_SOURCE_SUFFIXES = {".c", ".cc", ".cpp", ".cxx", ".h", ".hh", ".hpp", ".cu", ".cuh", ".txt", ".cmake"}


def _snapshot(source: Path, skip: Path) -> dict:
    """mtime and size of each source file under `source` (the build folder and hidden folders
    left out): what --watch compares to see an edit."""
    out = {}
    for root, dirs, files in os.walk(source):
        dirs[:] = [d for d in dirs if not d.startswith(".") and Path(root, d).resolve() != skip]
        for f in files:
            p = Path(root, f)
            if p.suffix in _SOURCE_SUFFIXES:
                try:
                    st = p.stat()
                except OSError:
                    continue
                out[str(p)] = (st.st_mtime_ns, st.st_size)
    return out


def _check_capabilities(folder: Path) -> None:
    """Check the pack's capability declaration (VT_OPPACK_CAPABILITIES) as a load would, so a
    malformed one fails the build, not the first load (docs/LAYOUT.md, Capabilities)."""
    try:
        from vibetensor.registry import capabilities, manifest
    except ImportError:  # the SDK without the runtime: the load will check
        return
    try:
        capabilities.parse(manifest.read(folder))
    except manifest.PackError as e:
        (folder / "manifest.json").unlink()  # no manifest: the pack cannot be loaded half-valid
        raise click.ClickException(f"the pack's capability declaration is refused: {e}")


def _check_schemas(folder: Path) -> None:
    """Parse every schema the pack defines with the runtime's own parser, so a schema the
    runtime would refuse at load time fails the build instead (describe.c only records them)."""
    try:
        from vibetensor.runtime import ffi, lib
    except ImportError:  # the SDK without the runtime: the load will check
        return
    man = json.loads((folder / "manifest.json").read_text())
    schemas = man.get("schemas", {})
    bad = []
    for name, schema in (schemas.items() if isinstance(schemas, dict) else []):
        if lib.vtrt_check_schema(schema.encode()) != 0:
            bad.append(ffi.string(lib.vtrt_last_error()).decode())
    if bad:
        (folder / "manifest.json").unlink()  # no manifest: the pack cannot be loaded half-valid
        raise click.ClickException("the pack defines schemas the runtime refuses:\n  " +
                                   "\n  ".join(bad))
