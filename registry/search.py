"""Where packs are found, in order: an explicit path, the built-in packs shipped in the wheel,
`VT_OPS_PATH` (os.pathsep-separated folders), the per-user folder, and installed distributions
that advertise an entry point in the `vibetensor.oppacks` group (value: a module whose folder, or
an attribute naming a folder, holds the pack)."""
from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path

from .manifest import MANIFEST

ENTRY_POINT_GROUP = "vibetensor.oppacks"
# Compiled files (the binding, the packs) sit together in the installed package, also in editable
# installs where the Python sources stay in the source tree: locate packs from the binding.
from vibetensor.runtime import _vtrt_cffi  # noqa: E402

BUILTIN_DIR = Path(_vtrt_cffi.__file__).resolve().parent.parent / "packs"


def user_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "vibetensor" / "packs"


def _packs_in(folder: Path):
    """A folder is a pack itself, or holds packs one level down."""
    if (folder / MANIFEST).is_file():
        yield folder
        return
    if folder.is_dir():
        for child in sorted(folder.iterdir()):
            if (child / MANIFEST).is_file():
                yield child


def _entry_point_packs():
    try:
        eps = metadata.entry_points(group=ENTRY_POINT_GROUP)
    except TypeError:  # Python 3.10
        eps = metadata.entry_points().get(ENTRY_POINT_GROUP, [])
    for ep in eps:
        try:
            obj = ep.load()
        except Exception:  # a broken plugin distribution must not break discovery
            continue
        path = getattr(obj, "__file__", None)
        folder = Path(path).parent if path else Path(str(obj))
        yield from _packs_in(folder)


def available() -> list[Path]:
    """Every pack folder on the search path (first occurrence of a path wins)."""
    seen, out = set(), []
    roots = [BUILTIN_DIR]
    roots += [Path(p) for p in os.environ.get("VT_OPS_PATH", "").split(os.pathsep) if p]
    roots.append(user_dir())
    found = [f for root in roots for f in _packs_in(root)]
    found += list(_entry_point_packs())
    for f in found:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out


def builtin() -> list[Path]:
    return list(_packs_in(BUILTIN_DIR))
