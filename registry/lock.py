"""Locked packs: a lockfile names the op packs a deployment may load, byte for byte.

    vt-ops lock core attention mypack/build/packs/mypack -o vt-ops.lock
    vt.ops.load("mypack/build/packs/mypack", lock="vt-ops.lock")

An entry holds the pack's version, library file name and sha256, and the kernels it registers
(op, device, provider, priority). A load under a lock refuses a pack the lock does not name, or
one whose version, library hash or kernel table differ, saying which. The hash in the lock is
compared with the manifest's, and the loader checks the manifest's hash against the very file it
maps, so a library swapped after locking is refused too. Priorities are part of the lock because
they decide which provider serves an op.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from . import manifest as _manifest

LOCK_VERSION = 1


def _kernels(m: _manifest.Manifest) -> list:
    return sorted([k.get("op"), k.get("device"), k.get("provider"), k.get("priority")]
                  for k in m.kernels)


def entry(m: _manifest.Manifest) -> dict:
    """What the lock records of one pack."""
    return {"version": m.version, "library": m.library.name, "sha256": m.sha256,
            "kernels": _kernels(m)}


def write(folders, path) -> dict:
    """Writes a lockfile for the packs in `folders` (each a pack folder) to `path`; returns it."""
    packs = {}
    for folder in folders:
        m = _manifest.read(folder)
        if m.name in packs:
            raise _manifest.PackError(f"lock: pack '{m.name}' is named twice ({folder})")
        packs[m.name] = entry(m)
    data = {"vt_ops_lock": LOCK_VERSION, "packs": dict(sorted(packs.items()))}
    tmp = Path(f"{path}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)
    return data


def read(lock) -> dict:
    """A lockfile (a path) or an already-read lock (a dict), validated."""
    if isinstance(lock, dict):
        data, where = lock, "lock"
    else:
        where = str(lock)
        try:
            data = json.loads(Path(lock).read_text())
        except OSError as e:
            raise _manifest.PackError(f"lock {where}: cannot read it: {e.strerror}") from None
        except ValueError as e:
            raise _manifest.PackError(f"lock {where}: not JSON ({e})") from None
    if not isinstance(data, dict) or data.get("vt_ops_lock") != LOCK_VERSION:
        raise _manifest.PackError(f"{where}: not a vt-ops lockfile of version {LOCK_VERSION} "
                                  f"(write one with `vt-ops lock`)")
    packs = data.get("packs")
    if not isinstance(packs, dict) or not all(
            isinstance(e, dict) and {"version", "library", "sha256", "kernels"} <= set(e)
            for e in packs.values()):
        raise _manifest.PackError(f"{where}: 'packs' must map pack names to entries with "
                                  f"version, library, sha256 and kernels")
    return data


def check(lock: dict, m: _manifest.Manifest) -> None:
    """Raises PackError unless the lock admits the pack described by manifest m."""
    want = lock["packs"].get(m.name)
    if want is None:
        raise _manifest.PackError(f"pack '{m.name}' ({m.folder}) is not in the lock (it names "
                                  f"{sorted(lock['packs'])})")
    have = entry(m)
    for key in ("version", "library", "sha256"):
        if str(want[key]).lower() != str(have[key]).lower():
            raise _manifest.PackError(f"pack '{m.name}': {key} is {have[key]}, the lock says "
                                      f"{want[key]}")
    if [list(k) for k in want["kernels"]] != [list(k) for k in have["kernels"]]:
        changed = sorted({tuple(k) for k in want["kernels"]} ^ {tuple(k) for k in have["kernels"]},
                         key=str)
        raise _manifest.PackError(f"pack '{m.name}': its kernels (op, device, provider, priority) "
                                  f"differ from the lock's: {changed[:4]}")
