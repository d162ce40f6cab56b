"""Where the op-pack SDK lives (headers, CMake package, tools, templates).

Installed: site-packages/vibetensor/sdk. Source tree (editable or uninstalled runs): opsdk/.
Both have the same layout: include/ cmake/ tools/ templates/. Finding it imports nothing of the
frontend, so `vt-ops new` and `vt-ops build` work even where the runtime is not built.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

_MARKER = Path("cmake") / "VibeTensorConfig.cmake"


def _candidates():
    env = os.environ.get("VT_SDK_DIR")
    if env:
        yield Path(env)
    here = Path(__file__).resolve().parent  # vibetensor/cli or <repo>/cli
    yield here.parent / "sdk"  # installed: vibetensor/sdk
    yield here.parent / "opsdk"  # source tree: <repo>/opsdk
    try:
        spec = importlib.util.find_spec("vibetensor")  # does not execute vibetensor/__init__.py
    except (ImportError, ValueError):
        spec = None
    for loc in (spec.submodule_search_locations or []) if spec else []:
        yield Path(loc) / "sdk"


def sdk_dir() -> Path:
    """The SDK folder (the one holding cmake/VibeTensorConfig.cmake).

    >>> (sdk_dir() / "include" / "vt" / "oppack.h").is_file()
    True
    """
    tried = []
    for c in _candidates():
        if (c / _MARKER).is_file():
            return c.resolve()
        tried.append(str(c))
    raise FileNotFoundError(
        "vibetensor op-pack SDK not found (looked in: " + ", ".join(tried) + "); set VT_SDK_DIR"
    )
