"""Hot reload: `vt.ops.reload(pack)` rebuilds a pack and swaps its library under the same name.

    pack = vt.ops.load("mypack/build/packs/mypack")
    ...edit mypack/src/mypack.cpp...
    pack = vt.ops.reload("mypack")        # vt-ops build of its source folder, then the swap

What happens, in order:
1. When the pack's source folder is known (the build folder's vt-ops.json, written by
   `vt-ops build`, or `source=`), `vt-ops build` runs in a child process. A failed build changes
   nothing: the old pack stays loaded and the error says why.
2. The new library is checked as any load checks it (location, hash, lock, signature,
   capabilities) before the old one is touched. An unchanged library (same sha256) is not
   swapped.
3. Drain: every GPU is synchronised, so work queued by the old kernels has finished; calls that
   are running on other threads finish on the old code (their dispatch snapshot holds it).
4. The new library is mapped and its init runs while the old pack keeps serving; an init that
   fails, or defines other ops than its manifest lists, changes nothing (the old pack stays
   loaded and the error says why).
5. The swap is atomic for callers: under the runtime's registry lock each op's dispatch snapshot
   goes from the old kernels to the new in one store (vtrt_pack_reload_fd). A call made on any
   thread at any moment runs the old build or the new one, never fails for the swap; an op
   defined again with the same schema keeps its handle. (An op whose schema changed is a new op:
   a call through a handle resolved before the swap fails as after an unload; Python's op
   objects resolve again by name.)
6. The old code stays mapped for good (the runtime keeps the old pack's reference): tensors,
   autograd graphs and dispatch snapshots made before the reload go on running it, and nothing
   that may still point into it is ever unmapped (each reload keeps one old library mapped: fine
   while you develop, a reason not to reload in a loop in production).

CUDA graphs record the packs whose kernels they captured. Replaying one that captured kernels of
a pack reloaded since raises RuntimeError naming the pack: capture it again to run the new code
(the old code stays mapped, so nothing would crash; the error is there because the graph would
silently go on computing what the old code computed).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from vibetensor.runtime import lib

from . import capabilities as _caps
from . import loader
from . import manifest as _manifest
from . import sign as _sign

def source_of(pack) -> Path | None:
    """The source folder `vt-ops build` built this pack from, when its pack folder lies in a
    build folder that recorded it (<build>/packs/<name>, <build>/vt-ops.json)."""
    state = Path(pack.path).resolve().parent.parent / "vt-ops.json"
    try:
        src = json.loads(state.read_text()).get("source")
    except (OSError, ValueError, AttributeError):
        return None
    return Path(src) if src and (Path(src) / "CMakeLists.txt").is_file() else None


def _rebuild(source: Path, build: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "vibetensor.cli", "build", str(source), "-o", str(build)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.strip().splitlines()[-15:])
        raise _manifest.PackError(f"reload: `vt-ops build {source}` failed; the loaded pack is "
                                  f"unchanged:\n{tail}")


def _drain() -> None:
    """Wait for the work queued on every GPU (none to wait for on a machine without one; NVML
    tells that without initialising CUDA)."""
    if not _caps.cuda_devices():
        return
    for i in range(max(0, lib.vtrt_cuda_device_count())):
        lib.vtrt_cuda_synchronize(i)


def reload(pack, *, source=None, rebuild: bool = True, lock=None, trusted_keys=None):
    """Rebuild (when its source folder is known, or `source` names it; not with rebuild=False)
    and swap the loaded pack `pack` (a name or a Pack) for its library on disk; returns the new
    Pack (the old one is stale). `lock` and `trusted_keys` apply as in vt.ops.load."""
    name = pack.name if isinstance(pack, loader.Pack) else str(pack)
    old = loader.get(name)
    if old is None or (isinstance(pack, loader.Pack) and pack is not old):
        raise ValueError(f"reload: pack '{name}' is not loaded (or this handle is stale); loaded: "
                         f"{sorted(p.name for p in loader.packs())}")
    folder = Path(old.path)
    if rebuild:
        src = Path(source) if source is not None else source_of(old)
        if src is not None:
            _rebuild(src, folder.resolve().parent.parent)  # <build>/packs/<name>
    m = _manifest.read(folder)
    if m.name != name:
        raise _manifest.PackError(f"reload: {folder} now holds pack '{m.name}', not '{name}'")
    if m.sha256 == old.manifest_info.sha256:
        return old  # the same library: nothing to swap
    if lock is not None:
        from . import lock as _lock_mod

        _lock_mod.check(_lock_mod.read(lock), m)
    trusted = _sign.trusted_from_env() if trusted_keys is None else _sign.parse_trusted(trusted_keys)
    if trusted is not None and not loader._shipped(folder):
        _sign.check(m, trusted)
    new_fd = _manifest.open_library(m)
    try:
        _manifest.verify(m, new_fd)
        st = os.fstat(new_fd)
        if (st.st_dev, st.st_ino) == old.library_id:
            raise _manifest.PackError(
                f"reload: pack '{name}': {m.library} was rewritten in place, so the code this "
                f"process runs changed under it; restart the process (build tools that replace "
                f"the file, as linkers do, reload safely)")
        others = {k: v for k, v in loader._loaded.items() if k != name}
        skipped = _caps.plan(m, others, lib.VT_ABI_MINOR)
        for other in others.values():  # the packs that require this one must still accept it
            spec = other.capabilities.get("requires", {}).get(name)
            if spec is not None and not _caps.version_in(m.version, spec):
                raise _manifest.PackError(
                    f"reload: pack '{other.name}' requires pack '{name}' {spec}; the new build "
                    f"is version {m.version}, so the loaded one stays")
        _drain()
        with loader._lock:
            if loader._loaded.get(name) is not old:
                raise _manifest.PackError(f"reload: pack '{name}' was unloaded or replaced meanwhile")
            return loader._map(m, new_fd, skipped, replacing=old)  # 4. and 5., or nothing changes
    finally:
        os.close(new_fd)
