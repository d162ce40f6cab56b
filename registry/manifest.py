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


def read(folder: str | os.PathLike) -> Manifest:
    folder = Path(folder)
    path = folder / MANIFEST
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise PackError(f"{folder} is not an op pack: it has no {MANIFEST}") from None
    except (OSError, ValueError) as e:
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
    if not (isinstance(abi, list) and len(abi) == 2 and all(isinstance(x, int) for x in abi)):
        raise PackError(f"{path}: 'abi' must be [major, minor], got {abi!r}")
    lib_name = raw["library"]
    if os.path.basename(lib_name) != lib_name:
        raise PackError(f"{path}: 'library' must be a file name in the pack folder, got {lib_name!r}")
    return Manifest(raw["name"], str(raw["version"]), tuple(abi), folder / lib_name,
                    str(raw["sha256"]).lower(), list(raw.get("ops", [])),
                    list(raw.get("kernels", [])), list(raw.get("devices", [])), folder, raw)


def verify(m: Manifest) -> None:
    """Refuse a pack we must not dlopen: ABI, location, symlinks, hash."""
    major, minor = m.abi
    if major != lib.VT_ABI_MAJOR or minor > lib.VT_ABI_MINOR:
        raise PackError(
            f"pack '{m.name}' was built for op-pack ABI {major}.{minor}; this runtime speaks "
            f"{lib.VT_ABI_MAJOR}.{lib.VT_ABI_MINOR} (majors must match and the pack's minor must "
            f"not be newer): rebuild it with `vt-ops build`")
    library = m.library
    if library.is_symlink():
        raise PackError(f"pack '{m.name}': refusing {library}: it is a symbolic link")
    try:
        st = library.stat()
    except FileNotFoundError:
        raise PackError(f"pack '{m.name}': library {library} does not exist") from None
    for p, what in ((library, "file"), (library.parent, "directory")):
        mode = p.stat().st_mode
        if mode & stat.S_IWOTH:
            raise PackError(f"pack '{m.name}': refusing {p}: the {what} is world-writable, so "
                            f"anyone could swap the code it runs")
    if not stat.S_ISREG(st.st_mode):
        raise PackError(f"pack '{m.name}': {library} is not a regular file")
    digest = sha256_of(library)
    if digest != m.sha256:
        raise PackError(f"pack '{m.name}': sha256 of {library.name} is {digest}, the manifest says "
                        f"{m.sha256}: the library changed after it was built")


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
