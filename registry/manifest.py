"""Pack manifests: the `manifest.json` beside every op-pack library (format: docs/LAYOUT.md)."""
from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from vibetensor.runtime import lib

MANIFEST = "manifest.json"


class PackError(ImportError):
    """A pack that cannot be loaded: bad manifest, wrong ABI, wrong hash, unsafe location."""


@dataclass
class Manifest:
    name: str
    version: str
    abi: tuple
    library: Path
    sha256: str
    ops: list = field(default_factory=list)
    kernels: list = field(default_factory=list)
    devices: list = field(default_factory=list)
    folder: Path = Path(".")
    raw: dict = field(default_factory=dict)
    manifest_stat: os.stat_result | None = None  # of the manifest file that was read
    text: bytes = b""  # the manifest's bytes as read: what a signature (registry/sign.py) covers


def _open_nofollow(path: Path) -> int:
    return os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)


def read(folder: str | os.PathLike) -> Manifest:
    folder = Path(folder)
    path = folder / MANIFEST
    try:
        fd = _open_nofollow(path)
    except FileNotFoundError:
        raise PackError(f"{folder} is not an op pack: it has no {MANIFEST}") from None
    except OSError as e:
        raise PackError(f"{path}: unreadable manifest: {e.strerror}"
                        f"{' (it is a symbolic link)' if path.is_symlink() else ''}") from None
    try:
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            text = f.read(1 << 24)
            raw = json.loads(text.decode())
    except (OSError, ValueError, RecursionError) as e:
        raise PackError(f"{path}: unreadable manifest: {e}") from None
    if not isinstance(raw, dict):
        raise PackError(f"{path}: the manifest must be a JSON object, got {type(raw).__name__}")
    missing = [k for k in ("name", "version", "abi", "library", "sha256") if k not in raw]
    if missing:
        raise PackError(f"{path}: manifest lacks {', '.join(missing)}")
    bad = [k for k in ("name", "library", "sha256") if not isinstance(raw[k], str) or not raw[k]]
    if bad:
        raise PackError(f"{path}: {', '.join(bad)} must be non-empty strings")
    abi = raw["abi"]
    if not (isinstance(abi, list) and len(abi) == 2 and
            all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 1 << 16 for x in abi)):
        raise PackError(f"{path}: 'abi' must be [major, minor] (two integers), got {abi!r}")
    if not isinstance(raw["version"], (str, int, float)) or isinstance(raw["version"], bool):
        raise PackError(f"{path}: 'version' must be a string, got {raw['version']!r}")
    lists = {"ops": str, "devices": str, "requires": str, "kernels": dict, "backward": (str, dict)}
    for key, kind in lists.items():
        v = raw.get(key, [])
        if not isinstance(v, list) or not all(isinstance(x, kind) for x in v):
            what = kind.__name__ if isinstance(kind, type) else "string or object"
            raise PackError(f"{path}: '{key}' must be a list of {what} values, got {v!r:.80}")
    if not isinstance(raw.get("schemas", {}), dict):
        raise PackError(f"{path}: 'schemas' must be an object, got {raw['schemas']!r:.80}")
    lib_name = raw["library"]
    if os.path.basename(lib_name) != lib_name or lib_name in (".", ".."):
        raise PackError(f"{path}: 'library' must be a file name in the pack folder, got {lib_name!r}")
    m = Manifest(raw["name"], str(raw["version"]), tuple(abi), folder / lib_name,
                 str(raw["sha256"]).lower(), list(raw.get("ops", [])),
                 list(raw.get("kernels", [])), list(raw.get("devices", [])), folder, raw)
    m.manifest_stat = st
    m.text = text
    return m


# ---- where a pack may be loaded from ----------------------------------------------------------
#
# Loading a pack runs its code, so its files must be ones only we (or root) could have written:
# the library, manifest.json and the pack folder must be owned by us or root and not writable by
# group or others, the folder must not be a symbolic link, and no folder above it may let
# another user rename or replace what lies below: each is owned by us or root and is not group-
# or world-writable, unless it is sticky (like /tmp: others cannot rename what they do not own).
# The walk goes up to "/", or stops at a folder named in VT_OPS_TRUSTED_ROOTS (os.pathsep-
# separated): folders the user vouches for, e.g. a shared group-writable project folder.

def _trusted_roots() -> list[str]:
    return [os.path.abspath(p) for p in os.environ.get("VT_OPS_TRUSTED_ROOTS", "").split(os.pathsep) if p]


def _unsafe(st: os.stat_result, *, sticky_ok: bool) -> str | None:
    """Why another local user could change what this file or folder holds (None: nobody can)."""
    if st.st_uid not in (os.getuid(), 0):
        return f"it belongs to another user (uid {st.st_uid})"
    if st.st_mode & stat.S_IWOTH and not (sticky_ok and st.st_mode & stat.S_ISVTX):
        return "it is world-writable"
    if st.st_mode & stat.S_IWGRP and not (sticky_ok and st.st_mode & stat.S_ISVTX):
        return "it is group-writable"
    return None


def check_location(m: Manifest, lib_stat: os.stat_result) -> None:
    """Refuse a pack whose files another local user could have changed (see above)."""
    def refuse(p, what, why):
        raise PackError(f"pack '{m.name}': refusing {p}: the {what} {why}, so another user could "
                        f"swap the code it runs (fix the permissions, or name a trusted folder "
                        f"in VT_OPS_TRUSTED_ROOTS)")
    folder = os.path.abspath(m.folder)
    if os.path.islink(folder):
        refuse(folder, "pack folder", "is a symbolic link")
    for st, p, what in ((lib_stat, m.library, "library"), (m.manifest_stat, Path(folder) / MANIFEST, "manifest")):
        why = _unsafe(st, sticky_ok=False)
        if why:
            refuse(p, what, why)
    trusted = _trusted_roots()
    # the folders as named and as they really are (a symlinked ancestor is replaceable by whoever
    # can write the folder holding the link, its target by whoever can write the target's parents)
    for chain in (folder, os.path.realpath(folder)):
        d = chain
        while True:
            if d in trusted:
                break
            why = _unsafe(os.stat(d), sticky_ok=d != chain)
            if why:
                refuse(d, "pack folder" if d == chain else "folder above the pack", why)
            parent = os.path.dirname(d)
            if parent == d:
                break
            d = parent


def verify(m: Manifest, fd: int) -> None:
    """Refuse a pack we must not dlopen: ABI, location, permissions, hash. `fd` is the library,
    opened without following links: the hash is of exactly the file that will be loaded."""
    major, minor = m.abi
    if major != lib.VT_ABI_MAJOR or minor > lib.VT_ABI_MINOR:
        raise PackError(
            f"pack '{m.name}' was built for op-pack ABI {major}.{minor}; this runtime speaks "
            f"{lib.VT_ABI_MAJOR}.{lib.VT_ABI_MINOR} (majors must match and the pack's minor must "
            f"not be newer): rebuild it with `vt-ops build`")
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise PackError(f"pack '{m.name}': {m.library} is not a regular file")
    check_location(m, st)
    digest = sha256_of_fd(fd)
    if digest != m.sha256:
        raise PackError(f"pack '{m.name}': sha256 of {m.library.name} is {digest}, the manifest says "
                        f"{m.sha256}: the library changed after it was built")


def open_library(m: Manifest) -> int:
    """The pack's library, opened for hashing and loading (never through a symbolic link)."""
    try:
        return _open_nofollow(m.library)
    except FileNotFoundError:
        raise PackError(f"pack '{m.name}': library {m.library} does not exist") from None
    except OSError as e:
        link = " (it is a symbolic link)" if m.library.is_symlink() else ""
        raise PackError(f"pack '{m.name}': refusing {m.library}: {e.strerror}{link}") from None


def sha256_of_fd(fd: int) -> str:
    h = hashlib.sha256()
    offset = 0
    while chunk := os.pread(fd, 1 << 20, offset):
        h.update(chunk)
        offset += len(chunk)
    return h.hexdigest()

