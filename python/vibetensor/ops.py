"""`vt.ops`: the op packs and the ops they bring.

    vt.ops.load("path/to/pack")          # a folder with manifest.json (or a pack name)
    vt.ops.packs()                       # loaded packs
    vt.ops.providers("core::add")        # implementations, best first, .active marks the live one
    vt.ops.use("core::add", "mine")      # pin a provider; `with vt.ops.use(...):` pins for a block
    vt.ops.unload("mine")                # the next best provider serves at once
    vt.ops.core.add(a, b, alpha=2.0)     # any op, by namespace and name
    add2 = vt.ops.core.add.partial(2.0)  # trailing arguments boxed once: add2(a, b) in hot loops
    with vt.ops.trace() as t: ...        # which provider served each call, and why (docs/TRACE.md)
    vt.ops.tune("attention::sdpa", shapes=[...])  # time the providers per shape, keep the winner
"""
from __future__ import annotations

from vibetensor.registry import (Op, Pack, PackError, available, get, is_mapped, load, op_names,
                                 packs, pinned, providers, unload, use, user_dir)
from vibetensor.registry.trace import Trace, trace
from vibetensor.registry.tune import tune

from vibetensor.registry import loader as _loader

from . import _ops


class Namespace:
    """`vt.ops.<namespace>`: attribute access resolves `<namespace>::<name>` (cached)."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, name: str) -> Op:
        if name.startswith("__"):
            raise AttributeError(name)
        return _ops.op(f"{self._name}::{name}")

    def __dir__(self):
        prefix = self._name + "::"
        return [n[len(prefix):] for n in op_names() if n.startswith(prefix)]

    def __repr__(self):
        return f"<vt.ops namespace '{self._name}'>"


_namespaces: dict = {}
_namespaces_gen = [-1]


def __getattr__(name: str) -> Namespace:
    if name.startswith("__"):
        raise AttributeError(name)
    if _namespaces_gen[0] != _loader.generation[0]:  # packs changed: list the namespaces again
        _namespaces.clear()
        for n in op_names():
            ns = n.split("::")[0]
            _namespaces.setdefault(ns, Namespace(ns))
        _namespaces_gen[0] = _loader.generation[0]
    ns = _namespaces.get(name)
    if ns is None:
        raise AttributeError(f"vt.ops has no namespace '{name}' (loaded namespaces: "
                             f"{sorted(_namespaces)})")
    return ns


__all__ = ["load", "unload", "packs", "get", "providers", "pinned", "use", "available",
           "user_dir", "is_mapped", "op_names", "Op", "Pack", "PackError", "Namespace", "trace",
           "Trace", "tune"]

# `with vt.ops.shadow("attention::sdpa", "composed") as sh:` runs a second provider beside the
# active one on every call and records where they diverge (docs/OPCHECK.md)
from vibetensor.registry.shadow import ShadowDivergence, shadow  # noqa: E402

__all__ += ["shadow", "ShadowDivergence"]

# vt.ops.reload(pack): rebuild a pack and swap its library under the same name (registry/reload.py)
from vibetensor.registry.reload import reload  # noqa: E402

__all__ += ["reload"]
