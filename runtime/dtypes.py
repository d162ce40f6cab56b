"""dtypes and devices: the runtime's codes (DLPack's) with torch's names."""
from __future__ import annotations

from . import CPU, CUDA, ffi


class dtype:
    """A tensor element type: `vt.float32`, `vt.int64`, ... (DLPack code, bits)."""

    __slots__ = ("name", "code", "bits", "itemsize", "is_floating_point", "numpy_name")
    _by_key: dict = {}
    _by_name: dict = {}

    def __init__(self, name, code, bits, numpy_name):
        self.name, self.code, self.bits, self.numpy_name = name, code, bits, numpy_name
        self.itemsize = max(1, bits // 8)
        self.is_floating_point = code in (2, 4)
        dtype._by_key[(code, bits)] = self
        dtype._by_name[name] = self

    def __repr__(self):
        return f"vibetensor.{self.name}"

    def __reduce__(self):
        return (get_dtype, (self.name,))

    def _vt(self):
        v = ffi.new("vt_dtype*")
        v.code, v.bits, v.lanes = self.code, self.bits, 1
        return v[0]


bool_ = dtype("bool", 6, 8, "bool")
uint8 = dtype("uint8", 1, 8, "uint8")
int8 = dtype("int8", 0, 8, "int8")
int16 = dtype("int16", 0, 16, "int16")
int32 = dtype("int32", 0, 32, "int32")
int64 = dtype("int64", 0, 64, "int64")
float16 = dtype("float16", 2, 16, "float16")
bfloat16 = dtype("bfloat16", 4, 16, None)  # numpy has no bfloat16
float32 = dtype("float32", 2, 32, "float32")
float64 = dtype("float64", 2, 64, "float64")

_ALIASES = {"float": float32, "double": float64, "half": float16, "long": int64, "int": int32,
            "bool": bool_}

# promotion order for mixed-dtype arithmetic (torch's lattice, flattened)
_RANK = {bool_: 0, uint8: 1, int8: 2, int16: 3, int32: 4, int64: 5, float16: 6, bfloat16: 7,
         float32: 8, float64: 9}


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


def promote(a: dtype, b: dtype) -> dtype:
    if {a, b} == {float16, bfloat16}:
        return float32
    if {a, b} == {uint8, int8}:
        return int16
    return a if _RANK[a] >= _RANK[b] else b


class device:
    """`vt.device("cpu")`, `vt.device("cuda:0")`, `vt.device("cuda", 1)`."""

    __slots__ = ("type", "index")

    def __init__(self, spec="cpu", index=None):
        if isinstance(spec, device):
            self.type, self.index = spec.type, spec.index
            return
        kind, _, idx = str(spec).partition(":")
        if kind not in ("cpu", "cuda"):
            raise ValueError(f"unknown device {spec!r}; expected 'cpu', 'cuda' or 'cuda:N'")
        self.type = kind
        self.index = int(idx) if idx else (index if index is not None else 0)
        if kind == "cpu":
            self.index = 0

    @property
    def code(self) -> int:
        return CPU if self.type == "cpu" else CUDA

    def __eq__(self, other):
        try:
            other = device(other)
        except (ValueError, TypeError):
            return NotImplemented
        return self.type == other.type and self.index == other.index

    def __hash__(self):
        return hash((self.type, self.index))

    def __str__(self):
        return "cpu" if self.type == "cpu" else f"cuda:{self.index}"

    def __repr__(self):
        return f"device('{self}')"

    def _vt(self):
        v = ffi.new("vt_device*")
        v.type, v.index = self.code, self.index
        return v[0]


_CPU = device("cpu")


def from_vt_device(d) -> device:
    if d.type == CPU:
        return _CPU
    return device("cuda", d.index)
