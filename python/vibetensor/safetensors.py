"""vt.safetensors — read and write the safetensors checkpoint format (own code, no dependency).

    vt.safetensors.save_file({"w": w, "b": b}, "model.safetensors", metadata={"step": "100"})
    tensors = vt.safetensors.load_file("model.safetensors")      # tensors own their memory
    blob = vt.safetensors.save(tensors); vt.safetensors.load(blob)

The format: 8 bytes little-endian u64 N, N bytes of JSON header
`{"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, "__metadata__": {..}}`
(padded with spaces to a multiple of 8), then the data buffer; offsets are relative to it.

What it is: a writer that orders tensors by descending element size, so every tensor starts
aligned to its element size, and writes through a fresh temporary file renamed into place (never a
mixed or half-written file, whoever else writes the same path); a reader that maps the file and
copies each tensor out of the mapping, so the tensors own their memory and whatever later happens
to the file cannot reach them. `zero_copy=True` makes tensors views of a private copy-on-write
mapping instead (no copy, pages read on first touch) — at a risk: if the file is truncated while
they live, touching them kills the process with SIGBUS. Every header field is checked against the
file before any tensor is made, and the data section must be exactly the tensors' bytes: a
truncated or malformed file raises `ValueError("safetensors: ...")` naming the problem, never
reads out of bounds. Files interoperate with the `safetensors` package both ways (bf16 included).
What it is not: a lazy `safe_open`; GPU tensors are copied to the host to be written.
"""
from __future__ import annotations

import json
import math
import mmap
import os
import secrets
import struct

import numpy as np

from vibetensor.runtime import dtypes as T
from vibetensor.runtime import checked, ffi, lib

from .creation import _lent, from_numpy
from .tensor import Tensor, _ArrayHolder, _wrap

__all__ = ["save_file", "load_file", "save", "load", "load_metadata"]

# safetensors dtype code -> (vt dtype, numpy dtype of the raw bytes)
_DTYPES = {
    "BOOL": (T.bool_, np.dtype("bool")),
    "U8": (T.uint8, np.dtype("<u1")),
    "I8": (T.int8, np.dtype("<i1")),
    "I32": (T.int32, np.dtype("<i4")),
    "I64": (T.int64, np.dtype("<i8")),
    "F16": (T.float16, np.dtype("<f2")),
    "BF16": (T.bfloat16, np.dtype("<u2")),
    "F32": (T.float32, np.dtype("<f4")),
    "F64": (T.float64, np.dtype("<f8")),
}
_CODES = {vt: code for code, (vt, _) in _DTYPES.items()}
_MAX_HEADER = 100_000_000  # the safetensors package's own limit
_MAX_DIMS = 16  # the runtime's VT_MAX_DIMS
_MAX_ELEMS = 2 ** 60  # the runtime's bound on a shape's (non-zero) sizes' product


# -- writing ------------------------------------------------------------------------------------

def _host_bytes(name, t):
    """A contiguous little-endian numpy array holding t's bytes (bf16 as uint16)."""
    if isinstance(t, np.ndarray):
        t = from_numpy(t)
    if not isinstance(t, Tensor):
        raise TypeError(f"safetensors: value of '{name}' must be a vt.Tensor or numpy array, "
                        f"got {type(t).__name__}")
    if t.dtype not in _CODES:
        raise TypeError(f"safetensors: '{name}' has dtype {t.dtype}, which the format does not "
                        f"hold")
    t = t.detach().cpu().contiguous()
    npname = _DTYPES[_CODES[t.dtype]][1]
    if t.numel() == 0:
        return np.empty(t.shape, npname)
    isz = t.dtype.itemsize
    return np.asarray(_ArrayHolder(t, t.shape, tuple(s * isz for s in t.stride()), npname.str))


def _serialize(tensors, metadata):
    if not hasattr(tensors, "items"):
        raise TypeError(f"safetensors: expected a dict name -> tensor, got "
                        f"{type(tensors).__name__}")
    if metadata is not None:
        if not isinstance(metadata, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise TypeError("safetensors: metadata must be a dict of str -> str")
    items = []
    for name, t in tensors.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"safetensors: tensor names must be non-empty strings, got {name!r}")
        if name == "__metadata__":
            raise ValueError("safetensors: '__metadata__' is reserved and cannot name a tensor")
        arr = _host_bytes(name, t)
        code = _CODES[t.dtype] if isinstance(t, Tensor) else _CODES[T.get_dtype(t.dtype)]
        items.append((name, code, list(arr.shape), arr))
    # descending element size keeps every tensor aligned to its element size
    items.sort(key=lambda it: (-it[3].itemsize, it[0]))
    header, off = {}, 0
    if metadata:
        header["__metadata__"] = dict(metadata)
    for name, code, shape, arr in items:
        header[name] = {"dtype": code, "shape": shape, "data_offsets": [off, off + arr.nbytes]}
        off += arr.nbytes
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h, [arr for *_, arr in items]


def save(tensors: dict, metadata: dict | None = None) -> bytes:
    """The safetensors bytes of `tensors` (name -> vt.Tensor or numpy array)."""
    head, arrays = _serialize(tensors, metadata)
    return head + b"".join(a.tobytes() for a in arrays)


def _umask() -> int:
    """The process umask, read without setting it (os.umask would change it for every thread)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def _temp_name(filename):
    return os.path.join(os.path.dirname(filename),
                        f".{os.path.basename(filename)}.{secrets.token_hex(8)}.tmp")


def _create_temp(filename):
    """(fd, path) of a new file next to `filename`, made by us alone: O_EXCL fails on anything
    already there, a planted symlink included (O_NOFOLLOW), and we try another name."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = _temp_name(filename)
        try:
            return os.open(tmp, flags, 0o600), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"safetensors: could not create a temporary file next to {filename}")


def _fsync_dir(folder):
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_file(tensors: dict, filename, metadata: dict | None = None) -> None:
    """Write `tensors` to `filename` atomically: into a new temporary file in the same folder
    (private until complete, then given the umask's usual mode), fsynced, renamed over `filename`,
    and the folder fsynced. Readers and concurrent writers of the same path see one whole file,
    old or new; a crash never leaves a half-written checkpoint under the final name."""
    head, arrays = _serialize(tensors, metadata)
    filename = os.path.abspath(os.fspath(filename))
    fd, tmp = _create_temp(filename)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(head)
            for a in arrays:
                f.write(memoryview(a.reshape(-1)).cast("B") if a.size else b"")
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~_umask())
            os.fsync(f.fileno())
        os.replace(tmp, filename)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(os.path.dirname(filename))


# -- reading ------------------------------------------------------------------------------------

def _bad(where, msg):
    return ValueError(f"safetensors: {where}: {msg}")


def _no_duplicates(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise ValueError(f"duplicate key {k!r}")
        d[k] = v
    return d


def _parse_header(buf, where):
    """(entries [(name, code, shape, begin, end)], metadata, data start) for a file image `buf`
    (bytes or mmap), every field checked against len(buf)."""
    size = len(buf)
    if size < 8:
        raise _bad(where, f"file is {size} bytes, too short for the 8-byte header length")
    (n,) = struct.unpack("<Q", bytes(buf[:8]))
    if n > _MAX_HEADER:
        raise _bad(where, f"header length {n} is larger than the {_MAX_HEADER}-byte limit "
                          f"(not a safetensors file?)")
    if 8 + n > size:
        raise _bad(where, f"header length {n} runs past the end of the file ({size} bytes; "
                          f"truncated?)")
    raw = bytes(buf[8:8 + n])
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError) as e:
        raise _bad(where, f"header is not valid JSON ({e})") from None
    except RecursionError:
        raise _bad(where, "header is not valid JSON (nested too deeply)") from None
    if not isinstance(header, dict):
        raise _bad(where, f"header must be a JSON object, got {type(header).__name__}")
    start = 8 + n
    buffer_len = size - start
    metadata = header.pop("__metadata__", None)
    if metadata is not None and (not isinstance(metadata, dict) or not all(
            isinstance(v, str) for v in metadata.values())):
        raise _bad(where, "__metadata__ must be an object of string values")
    entries = []
    for name, info in header.items():
        w = f"tensor '{name}'"
        if not isinstance(info, dict):
            raise _bad(where, f"{w}: entry must be an object, got {type(info).__name__}")
        missing = {"dtype", "shape", "data_offsets"} - set(info)
        if missing:
            raise _bad(where, f"{w}: entry lacks {sorted(missing)}")
        code, shape, offs = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(code, str) or code not in _DTYPES:
            raise _bad(where, f"{w}: dtype {code!r} is not supported (expected one of "
                              f"{sorted(_DTYPES)})")
        if not isinstance(shape, list) or not all(
                isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
            raise _bad(where, f"{w}: shape must be a list of non-negative ints, got {shape!r}")
        if len(shape) > _MAX_DIMS or math.prod(s for s in shape if s) > _MAX_ELEMS:
            raise _bad(where, f"{w}: shape {shape} has more than {_MAX_DIMS} dims or 2^60 "
                              f"elements")
        if not (isinstance(offs, list) and len(offs) == 2 and all(
                isinstance(o, int) and not isinstance(o, bool) for o in offs)):
            raise _bad(where, f"{w}: data_offsets must be [begin, end] ints, got {offs!r}")
        b, e = offs
        if not 0 <= b <= e:
            raise _bad(where, f"{w}: data_offsets {offs} are not 0 <= begin <= end")
        if e > buffer_len:
            raise _bad(where, f"{w}: data_offsets {offs} run past the end of the data "
                              f"({buffer_len} bytes; truncated?)")
        nbytes = math.prod(shape) * _DTYPES[code][1].itemsize
        if e - b != nbytes:
            raise _bad(where, f"{w}: {code} of shape {tuple(shape)} needs {nbytes} bytes, "
                              f"data_offsets {offs} hold {e - b}")
        entries.append((name, code, tuple(shape), b, e))
    # the tensors tile the data section exactly: no overlap, no hole, nothing after the last
    end, last = 0, None
    for b, e, name in sorted((b, e, name) for name, _, _, b, e in entries):
        if b < end:
            raise _bad(where, f"tensors '{last}' and '{name}' [{b}, {e}) overlap")
        if b > end:
            raise _bad(where, f"bytes [{end}, {b}) of the data belong to no tensor (a hole "
                              f"before '{name}')")
        end, last = e, name
    if end != buffer_len:
        raise _bad(where, f"{buffer_len - end} trailing bytes after the last tensor's data")
    return entries, metadata or {}, start


def _bf16_from_uint16(arr):
    """A bfloat16 tensor sharing the memory of a uint16 numpy array (kept alive by the loan)."""
    if not arr.flags.c_contiguous or not arr.flags.aligned:
        arr = np.ascontiguousarray(arr)
    key = id(arr)
    while key in _lent:
        key += 1
    _lent[key] = arr
    h = lib.vtrt_from_blob(ffi.cast("void*", arr.ctypes.data), list(arr.shape),
                           [s // 2 for s in arr.strides], arr.ndim, T.bfloat16._vt(),
                           T._CPU._vt(), lib.vt_py_release, ffi.cast("void*", key))
    if h == ffi.NULL:
        _lent.pop(key, None)
        checked(h)
    return _wrap(h)


def _tensors(buf, entries, start, device, where, copy):
    out = {}
    for name, code, shape, b, _ in entries:
        vt_dtype, npdt = _DTYPES[code]
        arr = np.frombuffer(buf, dtype=npdt, count=math.prod(shape), offset=start + b)
        if code == "BOOL" and arr.size and arr.view(np.uint8).max() > 1:
            raise _bad(where, f"tensor '{name}': BOOL data holds bytes other than 0 and 1")
        arr = arr.reshape(shape)
        if copy:
            arr = arr.copy()
        t = _bf16_from_uint16(arr) if vt_dtype is T.bfloat16 else from_numpy(arr)
        if device is not None and T.device(device) != t.device:
            t = t.to(device=device)
        out[name] = t
    return out


def load(data: bytes, device=None) -> dict:
    """name -> tensor from safetensors bytes (copied once: the result is writable)."""
    buf = bytearray(data)
    entries, _, start = _parse_header(buf, "<bytes>")
    return _tensors(buf, entries, start, device, "<bytes>", copy=False)


def _map(filename):
    filename = os.fspath(filename)
    with open(filename, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise _bad(filename, "file is empty")
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)


def load_file(filename, device=None, zero_copy=False) -> dict:
    """name -> tensor from a safetensors file. The tensors own their memory (copied out of a
    mapping of the file), so the file may change or go away while they live.

    zero_copy=True: tensors whose data is aligned are views of a private copy-on-write mapping
    (no copy, pages read on first touch; writes go to private pages, never to the file). Only for
    files nobody changes while the tensors live: if the file is truncated, touching a tensor kills
    the process with SIGBUS, which no check can catch."""
    mm = _map(filename)
    where = os.fspath(filename)
    entries, _, start = _parse_header(mm, where)
    return _tensors(mm, entries, start, device, where, copy=not zero_copy)


def load_metadata(filename) -> dict:
    """The file's __metadata__ (str -> str), {} when it has none."""
    mm = _map(filename)
    try:
        return _parse_header(mm, os.fspath(filename))[1]
    finally:
        mm.close()
