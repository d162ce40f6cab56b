"""dtypes and devices: the runtime's codes (DLPack's) with torch's names."""
from __future__ import annotations

from . import CPU, CUDA, META, FLOAT, INT, BOOL, error, ffi, lib


class dtype:
    """A tensor element type: `vt.float32`, `vt.int64`, ... (DLPack code, bits)."""

    __slots__ = ("name", "code", "bits", "itemsize", "is_floating_point", "numpy_name", "_c")
    _by_key: dict = {}
    _by_name: dict = {}

    def __init__(self, name, code, bits, numpy_name):
        self.name, self.code, self.bits, self.numpy_name = name, code, bits, numpy_name
        self.itemsize = max(1, bits // 8)
        self.is_floating_point = code in (2, 4)
        self._c = None
        dtype._by_key[(code, bits)] = self
        dtype._by_name[name] = self

    def __repr__(self):
        return f"vibetensor.{self.name}"

    def __reduce__(self):
        return (get_dtype, (self.name,))

    def _vt(self):
        """The C struct (made once: factories call this on every tensor they make)."""
        if self._c is None:
            v = ffi.new("vt_dtype*")
            v.code, v.bits, v.lanes = self.code, self.bits, 1
            self._c = v[0]
        return self._c


bool_ = dtype("bool", 6, 8, "bool")
uint8 = dtype("uint8", 1, 8, "uint8")
int8 = dtype("int8", 0, 8, "int8")
int32 = dtype("int32", 0, 32, "int32")
int64 = dtype("int64", 0, 64, "int64")
float16 = dtype("float16", 2, 16, "float16")
bfloat16 = dtype("bfloat16", 4, 16, None)  # numpy has no bfloat16
float32 = dtype("float32", 2, 32, "float32")
float64 = dtype("float64", 2, 64, "float64")

_ALIASES = {"float": float32, "double": float64, "half": float16, "long": int64, "int": int32,
            "bool": bool_}



def get_dtype(x) -> dtype:
    if isinstance(x, dtype):
        return x
    if isinstance(x, str):
        d = dtype._by_name.get(x) or _ALIASES.get(x)
        if d is not None:
            return d
    import numpy as np  # numpy dtypes and python types

    try:
        name = np.dtype(x).name
    except TypeError:
        name = None
    if name in dtype._by_name:
        return dtype._by_name[name]
    raise TypeError(f"unsupported dtype {x!r}; expected one of {sorted(dtype._by_name)}")


def from_key(code: int, bits: int) -> dtype:
    return dtype._by_key[(code, bits)]


# Type promotion is the runtime's (runtime/src/promote.cpp, torch's rules); Python only caches
# its answers, so a pair costs one native call per process.
_promoted: dict = {}


def promote(a: dtype, b: dtype) -> dtype:
    r = _promoted.get((a, b))
    if r is None:
        d = lib.vtrt_promote_types(a._vt(), b._vt())
        if d.lanes == 0:
            raise error()
        r = _promoted[(a, b)] = from_key(d.code, d.bits)
    return r


_SCALAR_TAGS = {bool: BOOL, int: INT, float: FLOAT}
_with_scalar: dict = {}


def result_type_scalar(t: dtype, kind: type) -> dtype:
    """The dtype of `tensor op scalar` for a Python bool/int/float scalar (torch's rule: a scalar
    lifts only the category, int32 + 1 -> int32, int64 + 1.0 -> float32)."""
    r = _with_scalar.get((t, kind))
    if r is None:
        d = lib.vtrt_result_type_scalar(t._vt(), _SCALAR_TAGS[kind])
        r = _with_scalar[(t, kind)] = from_key(d.code, d.bits)
    return r


# The device types, as the runtime's table (runtime/src/device.hpp) has them: name -> (code,
# whether the name takes an index like "cuda:1").
DEVICE_TYPES = {"cpu": (CPU, False), "cuda": (CUDA, True), "meta": (META, False)}
_BY_CODE = {code: name for name, (code, _) in DEVICE_TYPES.items()}


class device:
    """`vt.device("cpu")`, `vt.device("cuda:0")`, `vt.device("cuda", 1)`, `vt.device("meta")`."""

    __slots__ = ("type", "index")

    def __init__(self, spec="cpu", index=None):
        if isinstance(spec, device):
            self.type, self.index = spec.type, spec.index
            return
        kind, _, idx = str(spec).partition(":")
        if kind not in DEVICE_TYPES:
            raise ValueError(f"unknown device {spec!r}; expected one of "
                             f"{', '.join(DEVICE_TYPES)} (with ':N' for cuda)")
        indexed = DEVICE_TYPES[kind][1]
        try:
            self.index = int(idx) if idx else (int(index) if index is not None else 0)
        except ValueError:
            raise ValueError(f"bad device index in {spec!r}") from None
        if self.index < 0 or (not indexed and self.index != 0):
            raise ValueError(f"bad device {spec!r}: {kind} takes "
                             f"{'an index >= 0' if indexed else 'no index'}")
        self.type = kind

    @property
    def code(self) -> int:
        return DEVICE_TYPES[self.type][0]

    def __eq__(self, other):
        try:
            other = device(other)
        except (ValueError, TypeError):
            return NotImplemented
        return self.type == other.type and self.index == other.index

    def __hash__(self):
        return hash((self.type, self.index))

    def __str__(self):
        return f"{self.type}:{self.index}" if DEVICE_TYPES[self.type][1] else self.type

    def __repr__(self):
        return f"device('{self}')"

    def _vt(self):
        c = _device_structs.get((self.type, self.index))
        if c is None:
            v = ffi.new("vt_device*")
            v.type, v.index = self.code, self.index
            c = _device_structs[(self.type, self.index)] = v[0]
        return c


_device_structs: dict = {}  # (type, index) -> vt_device struct, made once
_CPU = device("cpu")


_known: dict = {}


def from_vt_device(d) -> device:
    key = (d.type, d.index)
    r = _known.get(key)
    if r is None:
        r = _known[key] = device(_BY_CODE[d.type], d.index)
    return r
