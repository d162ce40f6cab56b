"""Loading and unloading op packs: verify the manifest, dlopen through the runtime, keep track."""
from __future__ import annotations

import ctypes
import os
import threading
from pathlib import Path

from vibetensor.runtime import checked, error, ffi, lib

from . import capabilities as _caps
from . import manifest as _manifest
from . import search
from . import sign as _sign

_lock = threading.Lock()
_loaded: dict[str, "Pack"] = {}
# Bumped on every load/unload: cached op handles compare it and re-resolve when it moved.
generation = [0]
# Called (no arguments) after every load/unload, e.g. to refresh the frontend's hot-op handles.
listeners: list = []


def _changed():
    generation[0] += 1
    for fn in listeners:
        fn()


class Pack:
    """A loaded op pack. `ops` are the ops it defines; `kernels` what it provides."""

    def __init__(self, m: _manifest.Manifest, handle, skipped=()):
        self.manifest_info = m
        self.name, self.version, self.path = m.name, m.version, m.folder
        self.library = m.library
        self._h = handle
        # (device, provider, why) of providers the capability check kept off this machine
        self.skipped = list(skipped)

    @property
    def capabilities(self) -> dict:
        """What the pack declares its providers need and promise (registry/capabilities.py)."""
        return _caps.parse(self.manifest_info)

    @property
    def manifest(self) -> dict:
        return self.manifest_info.raw

    @property
    def ops(self) -> list:
        return list(self.manifest_info.ops)

    @property
    def kernels(self) -> list:
        return list(self.manifest_info.kernels)

    @property
    def loaded(self) -> bool:
        return self._h is not None

    def __repr__(self):
        state = "loaded" if self.loaded else "unloaded"
        return f"<Pack {self.name} {self.version} ({state}) at {self.path}>"


_preloaded = []


def _preload_blas():
    """ops/core links libscipy_openblas; load it globally once so the pack's DT_NEEDED resolves
    wherever pip put it (the pack's RPATH covers the usual layout; this covers the rest)."""
    if _preloaded:
        return
    _preloaded.append(True)
    try:
        import scipy_openblas32 as sob
    except ImportError:
        return
    libdir = Path(sob.get_lib_dir())
    for cand in sorted(libdir.glob("libscipy_openblas*.so*")):
        try:
            _preloaded.append(ctypes.CDLL(str(cand), mode=ctypes.RTLD_GLOBAL))
        except OSError:
            pass
        break


def _resolve(spec) -> Path:
    p = Path(spec)
    # A bare name ("mypack") that is also a folder in the working directory without a manifest (say,
    # the source folder `vt-ops new mypack` made) still means the pack of that name.
    bare = isinstance(spec, str) and os.sep not in spec and "/" not in spec
    if p.exists() and not (bare and p.is_dir() and not (p / _manifest.MANIFEST).is_file()):
        if p.is_file() and p.name == _manifest.MANIFEST:
            return p.parent
        if p.is_file() and (p.parent / _manifest.MANIFEST).is_file():
            # the pack's library itself: its folder, when that folder's manifest names this file
            try:
                if _manifest.read(p.parent).library.name == p.name:
                    return p.parent
            except _manifest.PackError:
                pass
            raise _manifest.PackError(f"{p} is not the library that {p.parent / _manifest.MANIFEST} "
                                      f"names; load the pack by its folder")
        if p.is_file():
            raise _manifest.PackError(f"{p} is a file with no {_manifest.MANIFEST} beside it; an op "
                                      f"pack is a folder holding {_manifest.MANIFEST} and its library")
        return p
    for folder in search.available():
        try:
            if _manifest.read(folder).name == str(spec):
                return folder
        except _manifest.PackError:
            continue
    raise _manifest.PackError(f"no op pack named or at {spec!r} (searched built-ins, VT_OPS_PATH, "
                              f"{search.user_dir()} and '{search.ENTRY_POINT_GROUP}' entry points)")


def load(spec, lock=None, trusted_keys=None) -> Pack:
    """Load the pack at a folder path (or a pack name on the search path) and return it. With
    `lock` (a lockfile path or a read lock, see registry/lock.py) only a pack the lock names, with
    the same version, library hash and kernels, is loaded. With `trusted_keys` (public keys or
    key files, see registry/sign.py; default: those in VT_TRUSTED_KEYS) only a pack whose manifest
    one of them signed is loaded; the packs shipped inside vibetensor are exempt."""
    folder = _resolve(spec)
    m = _manifest.read(folder)
    if lock is not None:
        from . import lock as _lock_mod

        _lock_mod.check(_lock_mod.read(lock), m)
    trusted = _sign.trusted_from_env() if trusted_keys is None else _sign.parse_trusted(trusted_keys)
    if trusted is not None and not _shipped(folder):
        _sign.check(m, trusted)  # the manifest's bytes; verify() below ties the library to them
    with _lock:
        if m.name in _loaded:
            other = _loaded[m.name]
            raise _manifest.PackError(f"pack '{m.name}' is already loaded from {other.path}; "
                                      f"unload it first")
        fd = _manifest.open_library(m)
        try:
            _manifest.verify(m, fd)  # hashes and checks the file behind fd ...
            skipped = _caps.plan(m, _loaded, lib.VT_ABI_MINOR)  # refuses, or says what to drop
            # ... and dlopen maps that same file (no window to swap the path in between)
            pack = _map(m, fd, skipped)
        finally:
            os.close(fd)
    return pack


def _map(m: _manifest.Manifest, fd: int, skipped: list, replacing: "Pack | None" = None) -> Pack:
    """dlopen the checked library open as `fd`, run its init (dropping the `skipped` providers)
    and publish it; the caller holds _lock. With `replacing` (a hot reload, registry/reload.py)
    the new code takes that loaded pack's place in one atomic step, or nothing changes."""
    _preload_blas()
    lib_stat = os.fstat(fd)
    providers = [ffi.new("char[]", p.encode()) for _, p, _ in skipped]
    skip_types = ffi.new("int32_t[]", [_caps.device_code(d) for d, _, _ in skipped] or [0])
    skip_names = ffi.new("char*[]", providers or [ffi.NULL])
    path = os.fsencode(str(m.library.resolve()))
    if replacing is not None:
        # the runtime checks the new init's ops against the manifest before it swaps anything
        names = [ffi.new("char[]", op.encode()) for op in m.ops]
        handle = lib.vtrt_pack_reload_fd(replacing._h, fd, path, ffi.new("char*[]", names or [ffi.NULL]),
                                         len(names), skip_types, skip_names, len(skipped))
        if handle == ffi.NULL:
            raise _manifest.PackError(str(error())) from None
        del _loaded[replacing.name]
        replacing._h = None
    else:
        before = set(_op_names())
        handle = lib.vtrt_pack_load_fd_skipping(fd, path, m.name.encode(), skip_types, skip_names,
                                                len(skipped))
        if handle == ffi.NULL:
            raise _manifest.PackError(str(error())) from None
        defined = set(_op_names()) - before
        if defined != set(m.ops):
            lib.vtrt_pack_unload(handle)
            extra, missing = sorted(defined - set(m.ops)), sorted(set(m.ops) - defined)
            raise _manifest.PackError(
                f"pack '{m.name}': its init defined other ops than its manifest lists (defined "
                f"but not listed: {extra}; listed but not defined: {missing}): rebuild it with "
                f"`vt-ops build` so the manifest is written from the library")
    pack = Pack(m, handle, skipped)
    pack.library_id = (lib_stat.st_dev, lib_stat.st_ino)  # the file mapped (registry/reload.py)
    _loaded[m.name] = pack
    _changed()
    return pack


def _shipped(folder) -> bool:
    """Whether a pack folder lies inside vibetensor's own installation (the built-in packs)."""
    try:
        Path(folder).resolve().relative_to(search.BUILTIN_DIR.resolve())
        return True
    except ValueError:
        return False


def _op_names():
    names = (lib.vtrt_op_name_at(i) for i in range(lib.vtrt_op_count()))
    return [ffi.string(n).decode() for n in names if n != ffi.NULL]


def unload(pack) -> None:
    """Remove a pack's ops and kernels now; the next best provider serves each op at once. The
    library itself stays mapped while dispatch snapshots, autograd graphs or tensors use it.
    `pack` is a name or a Pack; a Pack unloads only itself (by identity), so a stale handle
    of an unloaded pack never unloads the pack loaded again under the same name."""
    name = pack.name if isinstance(pack, Pack) else str(pack)
    with _lock:
        p = _loaded.get(name)
        if isinstance(pack, Pack) and p is not pack:
            state = "another load of it is loaded now" if p is not None else "it is not loaded"
            raise ValueError(f"unload: this handle of pack '{name}' is stale (unloaded already; {state}); "
                             f"unload by name or with the Pack that vt.ops.load returned last")
        if p is None:
            raise ValueError(f"unload: pack '{name}' is not loaded (loaded: {sorted(_loaded)})")
        del _loaded[name]
        handle, p._h = p._h, None
        checked_status = lib.vtrt_pack_unload(handle)
        _changed()
    if checked_status != 0:
        raise error()


def packs() -> list[Pack]:
    with _lock:
        return list(_loaded.values())


def get(name: str) -> Pack | None:
    return _loaded.get(name)


def is_mapped(pack: Pack) -> bool:
    """Whether the pack's library is still dlopen'ed (true until nothing refers to it)."""
    return bool(lib.vtrt_pack_is_mapped(os.fsencode(str(pack.library.resolve()))))


def load_builtin() -> None:
    """Load the packs shipped in the wheel (all of them, or those named in VT_BUILTIN_PACKS,
    comma-separated; an empty value loads none)."""
    wanted = os.environ.get("VT_BUILTIN_PACKS")
    names = None if wanted is None else {n.strip() for n in wanted.split(",") if n.strip()}
    chosen = [m for m in map(_manifest.read, search.builtin())
              if m.name not in _loaded and (names is None or m.name in names)]
    for m in _dependency_order(chosen):
        load(m.folder)


def _dependency_order(manifests: list) -> list:
    """The manifests ordered so each pack comes after the packs it requires (when those are
    among them; a missing or circular requirement is left for load() to refuse clearly)."""
    by_name = {m.name: m for m in manifests}
    done, order = set(), []

    def visit(m, path):
        if m.name in done or m.name in path:
            return
        try:
            needs = _caps.parse(m).get("requires", {})
        except _manifest.PackError:
            needs = {}
        for name in needs:
            if name in by_name:
                visit(by_name[name], path | {m.name})
        done.add(m.name)
        order.append(m)

    for m in manifests:
        visit(m, frozenset())
    return order


__all__ = ["Pack", "load", "unload", "packs", "get", "is_mapped", "load_builtin", "checked"]
