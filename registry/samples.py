"""Example arguments for ops, for `vt-ops test` (registry/opcheck.py) and `vt-ops bench`.

What it is:
- `Call`: one call of an op (positional and keyword arguments). Tensors in it are cpu tensors;
  `place(value, device)` moves a call's arguments to another device (a strided cpu view becomes a
  view with the same strides there, so meta steps see the layout cpu saw), and `DEV` stands for
  "the device this call runs on" where an op takes a Device argument.
- `Maker`: what a samples table builds tensors with (`s.f(2, 3)` random floats, `s.pos` positive,
  `s.i(4, high=5)` indices in range, `s.b` booleans, `s.op(name)` to compute an input such as a
  forward's saved statistics). Seeded: the same table gives the same values in every run.
- `from_schema(op, s)`: a call generated from the op's schema alone, where every argument can be
  made up (tensors are 2x3 floats, other arguments take their defaults); None when one cannot.
- Where samples come from, first match wins: a samples file given on the command line, the pack's
  own `samples.py` beside its manifest.json, the built-in tables (samples_core.py,
  samples_attention.py), then `from_schema`. A samples file defines `samples(s)` returning
  {op name: function returning a Call or a list of Calls}, and may define
  `NOT_COVERED = {op name: "why no sample can exist"}`, `NO_GRAD = {op name: {argument names
  its backward rule gives no gradient by design}}`, `AUX_OUTPUTS = {op name: {indices of outputs
  that carry no gradient, such as saved statistics}}`, `RANDOM` (ops drawing from the generator)
  and `DATA_DEPENDENT` (ops whose output shapes depend on values) sets. docs/OPCHECK.md shows one.

What it is not: a check of anything (opcheck.py runs the calls and compares).
Imports the frontend lazily: the registry stays below it, and only the opcheck child and the bench
build tensors.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from vibetensor.runtime import BOOL, DEVICE, DTYPE, FLOAT, INT, INTS, SCALAR, STR, TENSOR, TENSORS

SAMPLES_FILE = "samples.py"  # a pack's own samples, beside its manifest.json


class _Dev:
    """Stands for the device a call runs on, where an op takes a Device argument."""

    def __repr__(self):
        return "DEV"


DEV = _Dev()


class Call:
    """One call: positional and keyword arguments (cpu tensors and DEV placeholders)."""

    __slots__ = ("args", "kwargs", "generated")

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs, self.generated = args, kwargs, False

    def map(self, fn) -> "Call":
        """The same call with `fn` applied to every argument (recursing into lists and tuples)."""
        c = Call(*[_walk(a, fn) for a in self.args], **{k: _walk(v, fn) for k, v in self.kwargs.items()})
        c.generated = self.generated
        return c

    def on(self, device) -> "Call":
        return self.map(lambda v: place(v, device))

    def __repr__(self):
        parts = [show(a) for a in self.args] + [f"{k}={show(v)}" for k, v in self.kwargs.items()]
        return f"({', '.join(parts)})"


def _walk(v, fn):
    if isinstance(v, list):
        return [_walk(x, fn) for x in v]
    if isinstance(v, tuple):
        return tuple(_walk(x, fn) for x in v)
    return fn(v)


def show(v) -> str:
    """A short description of an argument: T(2, 3):float32 for tensors."""
    if hasattr(v, "_h") and hasattr(v, "shape"):
        return f"T{tuple(v.shape)}:{str(v.dtype).rsplit('.', 1)[-1]}"
    if isinstance(v, list):
        return "[" + ", ".join(show(x) for x in v) + "]"
    if isinstance(v, tuple):
        return "(" + ", ".join(show(x) for x in v) + ")"
    return repr(v)


def tensors_of(call: Call) -> list:
    found = []
    call.map(lambda v: found.append(v) if hasattr(v, "_h") else None)
    return found


def place(v, device):
    """`v` on `device`: tensors moved keeping their strides, DEV replaced by the device."""
    if v is DEV:
        return device
    if not hasattr(v, "_h"):
        return v
    import vibetensor as vt

    if str(v.device) == str(vt.device(device)):
        return v
    if v.is_contiguous() or v.numel() == 0:
        return v.to(device)
    base = v.as_strided([v.storage_offset() + 1 + sum((n - 1) * s for n, s in zip(v.shape, v.stride()))],
                        [1], 0)
    moved = base.to(device)
    return moved.as_strided(v.shape, v.stride(), v.storage_offset())


class Maker:
    """Seeded cpu tensors for samples tables (`s` in a table's functions)."""

    DEV = DEV

    def __init__(self, seed: int = 2026):
        import numpy as np
        import vibetensor as vt

        self.np, self.vt = np, vt
        self.rng = np.random.default_rng(seed)

    def call(self, *args, **kwargs) -> Call:
        return Call(*args, **kwargs)

    def f(self, *shape, dtype="float32", low=-2.0, high=2.0):
        """Random floats in [low, high), exactly representable in `dtype`."""
        a = self.rng.uniform(low, high, shape)
        if dtype == "bfloat16":
            return self.vt.tensor(a.astype(self.np.float32)).to(self.vt.bfloat16)
        return self.vt.tensor(a.astype(dtype))

    def pos(self, *shape, dtype="float32"):
        """Positive floats (log, sqrt, divisors)."""
        return self.f(*shape, dtype=dtype, low=0.5, high=2.0)

    def i(self, *shape, high=3, low=0, dtype="int64"):
        """Integers in [low, high): valid indices into a dim of size `high`."""
        return self.vt.tensor(self.rng.integers(low, high, shape).astype(dtype))

    def b(self, *shape):
        return self.vt.tensor(self.rng.integers(0, 2, shape).astype(bool))

    def op(self, name: str):
        """An op handle, to compute inputs (a forward's saved outputs for its backward op)."""
        return self.vt.ops.Op(name)


# -- samples generated from the schema -------------------------------------------------------------

def _generable(op) -> bool:
    return all(a.has_default or a.optional or a.type not in (INT, INTS, TENSORS, STR, DTYPE)
               for a in op.args)


def from_schema(op, s: Maker) -> Call | None:
    """A call made from `op.args` alone, or None when an argument cannot be made up (an int list
    with no default, a tensor list, a string with no default: only the pack knows valid values)."""
    args = []
    for a in op.args:
        if a.has_default:
            args.append(a.default)
        elif a.optional:
            args.append(None)
        elif a.type == TENSOR:
            args.append(s.f(2, 3))
        elif a.type == FLOAT:
            args.append(0.5)
        elif a.type == SCALAR:
            args.append(1.5)
        elif a.type == BOOL:
            args.append(False)
        elif a.type == DEVICE:
            args.append(DEV)
        elif a.type in (INT, INTS, TENSORS, STR, DTYPE):
            return None
        else:  # pragma: no cover - schema types are closed
            return None
    c = Call(*args)
    c.generated = True
    return c


# -- where samples come from -----------------------------------------------------------------------

class Source:
    """The samples of one pack: `calls(op)` -> list of Calls (or None), `not_covered` (op -> why)."""

    def __init__(self, layers: list, not_covered: dict, origin: list, extra_modules: list,
                 no_grad: dict, aux_outputs: dict):
        # [(kind, {op: entry})], first match wins: a samples file's table, then its NOT_COVERED,
        # then the built-in tables and theirs ("table" entries build calls, "not covered" say why)
        self.layers, self.not_covered, self.origin = layers, not_covered, origin
        self.no_grad = no_grad  # op -> argument names that get no gradient by design
        self.aux_outputs = aux_outputs  # op -> indices of outputs with no gradient (saved stats)
        self.extra_modules = extra_modules  # samples files: their RANDOM / DATA_DEPENDENT sets

    def find(self, op_name: str):
        """('table', fn) | ('not covered', why) | ('schema', None): the first source that speaks."""
        for kind, entries in self.layers:
            if op_name in entries:
                return kind, entries[op_name]
        return "schema", None

    def has(self, op_name: str) -> bool:
        """Whether the op has a sample, without building it (a builder may crash: that must
        happen inside a check, where the checker reports it)."""
        kind, _ = self.find(op_name)
        if kind == "table":
            return True
        if kind == "not covered":
            return False
        from vibetensor.registry.ops import Op

        return _generable(Op(op_name))

    def calls(self, op_name: str, s: Maker):
        """The op's calls, or None when it has none."""
        kind, entry = self.find(op_name)
        if kind == "table":
            made = entry()
            return list(made) if isinstance(made, (list, tuple)) else [made]
        if kind == "not covered":
            return None
        from vibetensor.registry.ops import Op

        c = from_schema(Op(op_name), s)
        return None if c is None else [c]


def _load_file(path: Path):
    from . import manifest as _manifest

    st = os.stat(path)
    why = _manifest._unsafe(st, sticky_ok=False)  # it runs code, like the pack's library
    if why:
        raise _manifest.PackError(f"refusing samples file {path}: {why}")
    spec = importlib.util.spec_from_file_location(f"_vt_samples_{abs(hash(str(path)))}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    if not callable(getattr(mod, "samples", None)):
        raise ValueError(f"samples file {path} must define samples(s) -> {{op name: function}}")
    return mod


def source(pack_name: str, pack_folder, s: Maker, extra_file=None) -> Source:
    """The samples for a pack: `extra_file`, then the pack's samples.py, then the built-in tables
    (the first that names an op decides for it)."""
    layers, not_covered, origin, mods, no_grad, aux = [], {}, [], [], {}, {}

    def keep_first(dst, src):
        dst.update({k: v for k, v in src.items() if k not in dst})

    files = [Path(extra_file)] if extra_file else []
    if pack_folder is not None and (Path(pack_folder) / SAMPLES_FILE).is_file():
        files.append(Path(pack_folder) / SAMPLES_FILE)
    for path in files:
        mod = _load_file(path)
        mods.append(mod)
        origin.append(str(path))
    from . import samples_attention, samples_core

    # every built-in table: a pack that provides kernels for core's or attention's ops uses it
    for mod in mods + [samples_core, samples_attention]:
        layers.append(("table", dict(mod.samples(s))))
        layers.append(("not covered", dict(getattr(mod, "NOT_COVERED", {}))))
        keep_first(not_covered, getattr(mod, "NOT_COVERED", {}))
        keep_first(no_grad, getattr(mod, "NO_GRAD", {}))
        keep_first(aux, getattr(mod, "AUX_OUTPUTS", {}))
        if getattr(mod, "PACK", None) == pack_name and mod not in mods:
            origin.append(f"built-in table registry/{mod.__name__.rsplit('.', 1)[-1]}.py")
    return Source(layers, not_covered, origin, mods, no_grad, aux)


__all__ = ["Call", "Maker", "DEV", "place", "show", "tensors_of", "from_schema", "source",
           "Source", "SAMPLES_FILE"]
