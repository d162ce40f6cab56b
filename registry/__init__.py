"""vibetensor.registry — finds, verifies, loads and unloads op packs; resolves op handles.

Depends only on the runtime binding (vibetensor.runtime); the frontend builds on it.
"""
from .loader import Pack, get, is_mapped, load, load_builtin, packs, unload
from .manifest import PackError
from .ops import Op, Provider, op_names, pinned, providers, set_tensor_factory, use
from .search import ENTRY_POINT_GROUP, available, user_dir
from . import trace, tune  # provenance (VT_TRACE) and tuned providers (applied on every load)

__all__ = ["Pack", "PackError", "Op", "Provider", "load", "unload", "packs", "get", "is_mapped",
           "load_builtin", "providers", "pinned", "use", "op_names", "available", "user_dir",
           "set_tensor_factory", "ENTRY_POINT_GROUP", "trace", "tune"]

trace.start_from_env()  # VT_TRACE=1: trace the whole process
