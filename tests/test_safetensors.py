"""vt.safetensors: round trips of every dtype, interop with the `safetensors` package both ways,
memory-mapped zero-copy loading, and a ValueError (never a crash) for every kind of malformed
file."""
from __future__ import annotations

import json
import mmap
import struct

import numpy as np
import pytest

import vibetensor as vt
from vibetensor import safetensors as st

try:
    import safetensors.numpy as stnp
except ImportError:  # pragma: no cover
    stnp = None
try:
    import torch
except ImportError:  # pragma: no cover
    torch = None

needs_pkg = pytest.mark.skipif(stnp is None, reason="the safetensors package is not importable")

NP_DTYPES = ["bool", "uint8", "int8", "int32", "int64", "float16", "float32", "float64"]


def sample(name, shape, seed=0):
    rng = np.random.default_rng(seed)
    if name == "bool":
        return rng.random(shape) > 0.5
    if name.startswith(("int", "uint")):
        info = np.iinfo(name)
        return rng.integers(max(info.min, -1000), min(info.max, 1000), shape).astype(name)
    return rng.standard_normal(shape).astype(name)


def all_tensors():
    """One tensor per dtype (incl. bf16, 0-d, 0-size and a non-contiguous view) + expectations."""
    out, want = {}, {}
    for i, d in enumerate(NP_DTYPES):
        a = sample(d, (3, 5), i)
        out[d] = vt.tensor(a)
        want[d] = a
    f = sample("float32", (4, 6), 20)
    out["bf16"] = vt.tensor(f).to(vt.bfloat16)
    want["bf16"] = out["bf16"].float().numpy().copy()  # exact: bf16 -> f32 is lossless
    out["scalar"] = vt.tensor(np.array(2.5))
    want["scalar"] = np.array(2.5)
    out["empty"] = vt.zeros(0, 3, dtype=vt.int32)
    want["empty"] = np.zeros((0, 3), np.int32)
    t = vt.tensor(f)
    out["transposed"] = t.T
    want["transposed"] = f.T
    return out, want


def check(loaded, want):
    assert sorted(loaded) == sorted(want)
    for k, a in want.items():
        t = loaded[k]
        got = t.float().numpy() if t.dtype is vt.bfloat16 else t.numpy()
        assert got.shape == a.shape and got.dtype == a.dtype, k
        np.testing.assert_array_equal(got, a, err_msg=k)


def test_round_trip_all_dtypes_file_and_bytes(tmp_path):
    tensors, want = all_tensors()
    path = tmp_path / "all.safetensors"
    st.save_file(tensors, path, metadata={"format": "pt", "step": "7"})
    loaded = st.load_file(path)
    check(loaded, want)
    assert loaded["bf16"].dtype is vt.bfloat16
    assert st.load_metadata(path) == {"format": "pt", "step": "7"}
    check(st.load(st.save(tensors)), want)
    # the header is padded to 8 bytes and tensors are aligned to their element size
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    assert n % 8 == 0
    header = json.loads(raw[8:8 + n])
    for k, info in header.items():
        if k != "__metadata__":
            isz = np.dtype({"BF16": "uint16", "BOOL": "bool"}.get(
                info["dtype"], info["dtype"].replace("F", "float").replace("I", "int")
                .replace("U", "uint"))).itemsize
            assert info["data_offsets"][0] % isz == 0, k


def test_zero_copy_load_is_memory_mapped_and_copy_on_write(tmp_path):
    a = np.arange(1024, dtype=np.float32).reshape(32, 32)
    path = tmp_path / "m.safetensors"
    st.save_file({"a": vt.tensor(a)}, path)
    before = path.read_bytes()
    t = st.load_file(path, zero_copy=True)["a"]
    # zero-copy: the tensor's memory is the numpy view lent to it, whose base is the mapping
    from vibetensor.creation import _lent

    lent = [a for a in _lent.values() if a.ctypes.data == t.data_ptr()]
    assert len(lent) == 1
    obj = lent[0]
    while isinstance(obj, (np.ndarray, memoryview)):
        obj = obj.base if isinstance(obj, np.ndarray) else obj.obj
    assert isinstance(obj, mmap.mmap)
    t.fill_(0.0)  # writable; the file is not changed
    assert np.all(t.numpy() == 0)
    assert path.read_bytes() == before
    np.testing.assert_array_equal(st.load_file(path)["a"].numpy(), a)


def test_device_argument_and_numpy_inputs(tmp_path):
    path = tmp_path / "n.safetensors"
    st.save_file({"x": np.arange(6, dtype=np.int32).reshape(2, 3)}, path)
    t = st.load_file(path, device="cpu")["x"]
    assert t.dtype is vt.int32 and t.tolist() == [[0, 1, 2], [3, 4, 5]]


def test_int16_is_refused_clearly(tmp_path):
    # vibetensor has no int16 kernels, so it refuses the dtype where tensors are made
    with pytest.raises(TypeError, match="int16"):
        vt.from_numpy(np.arange(3, dtype=np.int16))
    with pytest.raises(TypeError, match="int16"):
        vt.zeros(2, dtype="int16")


def test_save_bad_input(tmp_path):
    with pytest.raises(TypeError, match="dict name -> tensor"):
        st.save([vt.ones(2)])
    with pytest.raises(TypeError, match="must be a vt.Tensor or numpy array, got list"):
        st.save({"a": [1, 2]})
    with pytest.raises(ValueError, match="reserved"):
        st.save({"__metadata__": vt.ones(1)})
    with pytest.raises(TypeError, match="metadata must be a dict of str -> str"):
        st.save({"a": vt.ones(1)}, metadata={"step": 3})
    with pytest.raises(TypeError, match="non-empty strings"):
        st.save({1: vt.ones(1)})


def test_model_checkpoint_round_trip(tmp_path):
    m = vt.nn.Sequential(vt.nn.Embedding(10, 4), vt.nn.LayerNorm(4), vt.nn.Linear(4, 3))
    st.save_file(m.state_dict(), tmp_path / "m.safetensors")
    m2 = vt.nn.Sequential(vt.nn.Embedding(10, 4), vt.nn.LayerNorm(4), vt.nn.Linear(4, 3))
    m2.load_state_dict(st.load_file(tmp_path / "m.safetensors"))
    x = vt.tensor([[1, 2, 3]])
    np.testing.assert_array_equal(m(x).numpy(), m2(x).numpy())
    other = vt.nn.Sequential(vt.nn.Embedding(10, 4), vt.nn.Linear(4, 3))
    with pytest.raises(RuntimeError, match='Unexpected key.*"2.weight"'):
        other.load_state_dict(st.load_file(tmp_path / "m.safetensors"))


# -- interop with the safetensors package ---------------------------------------------------------

@needs_pkg
def test_vt_writes_package_reads(tmp_path):
    tensors, want = all_tensors()
    tensors.pop("bf16")
    want.pop("bf16")
    path = tmp_path / "vt.safetensors"
    st.save_file(tensors, path, metadata={"k": "v"})
    got = stnp.load_file(str(path))
    assert sorted(got) == sorted(want)
    for k, a in want.items():
        assert got[k].dtype == a.dtype and got[k].shape == a.shape, k
        np.testing.assert_array_equal(got[k], a)
    assert stnp.load(st.save(tensors))["int64"].tolist() == want["int64"].tolist()


@needs_pkg
def test_package_writes_vt_reads(tmp_path):
    want = {d: sample(d, (2, 7), i) for i, d in enumerate(NP_DTYPES)}
    want["zero"] = np.zeros((0,), np.float32)
    path = tmp_path / "pkg.safetensors"
    stnp.save_file(want, str(path), metadata={"a": "b"})
    check(st.load_file(path), want)
    assert st.load_metadata(path) == {"a": "b"}
    check(st.load(stnp.save(want)), want)


@needs_pkg
@pytest.mark.skipif(torch is None, reason="torch is not importable (bf16 interop)")
def test_bf16_interop_with_torch(tmp_path):
    import safetensors.torch as sttorch

    t = torch.randn(5, 3).to(torch.bfloat16)
    sttorch.save_file({"w": t}, str(tmp_path / "t.safetensors"))
    v = st.load_file(tmp_path / "t.safetensors")["w"]
    assert v.dtype is vt.bfloat16
    np.testing.assert_array_equal(v.float().numpy(), t.float().numpy())
    st.save_file({"w": v}, tmp_path / "v.safetensors")
    back = sttorch.load_file(str(tmp_path / "v.safetensors"))["w"]
    assert back.dtype == torch.bfloat16 and torch.equal(back, t)


# -- malformed files ------------------------------------------------------------------------------

def raw_file(header, data=b"", n=None):
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(h) if n is None else n) + h + data


GOOD = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "I64", "shape": [1], "data_offsets": [8, 16]}}


def entry(**kw):
    return {"a": {**GOOD["a"], **kw}}


MALFORMED = [
    ("empty", b"", "empty"),
    ("short", b"\x01\x02\x03", "too short"),
    ("huge_header_len", struct.pack("<Q", 2 ** 63) + b"{}", "larger than"),
    ("header_past_eof", raw_file(b'{"a":1}', n=500), "runs past the end of the file"),
    ("bad_json", raw_file(b'{"a": {"dtype": '), "not valid JSON"),
    ("not_utf8", raw_file(b'{"\xff\xfe": 1}'), "not valid JSON"),
    ("json_array", raw_file([1, 2]), "must be a JSON object"),
    ("entry_not_object", raw_file({"a": 3}), "entry must be an object"),
    ("missing_field", raw_file({"a": {"dtype": "F32", "shape": [2]}}, b"\0" * 8),
     "lacks ['data_offsets']"),
    ("bad_dtype", raw_file(entry(dtype="F128"), b"\0" * 8), "dtype 'F128' is not supported"),
    ("negative_shape", raw_file(entry(shape=[-2]), b"\0" * 8), "non-negative ints"),
    ("float_shape", raw_file(entry(shape=[2.0]), b"\0" * 8), "non-negative ints"),
    ("offsets_reversed", raw_file(entry(data_offsets=[8, 0]), b"\0" * 8), "begin <= end"),
    ("offsets_negative", raw_file(entry(data_offsets=[-8, 0]), b"\0" * 8), "begin <= end"),
    ("offsets_one_value", raw_file(entry(data_offsets=[8]), b"\0" * 8), "[begin, end] ints"),
    ("offsets_past_data", raw_file(entry(data_offsets=[0, 8]), b"\0" * 4), "truncated?"),
    ("huge_offset", raw_file(entry(data_offsets=[0, 2 ** 62]), b"\0" * 8), "run past the end"),
    ("bytes_mismatch", raw_file(entry(shape=[3]), b"\0" * 8), "needs 12 bytes"),
    ("overlap", raw_file({"a": GOOD["a"], "b": {**GOOD["b"], "data_offsets": [4, 12]}},
                         b"\0" * 16), "overlap"),
    ("duplicate_key", raw_file(b'{"a":' + json.dumps(GOOD["a"]).encode() + b',"a":' +
                               json.dumps(GOOD["a"]).encode() + b"}", b"\0" * 8),
     "duplicate key 'a'"),
    ("bad_metadata", raw_file({"__metadata__": {"x": 1}}), "__metadata__"),
]


@pytest.mark.parametrize("name,blob,msg", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_file_is_a_value_error(tmp_path, name, blob, msg):
    path = tmp_path / f"{name}.safetensors"
    path.write_bytes(blob)
    with pytest.raises(ValueError) as e:
        st.load_file(path)
    assert msg in str(e.value) and str(path) in str(e.value)
    if blob:
        with pytest.raises(ValueError, match="safetensors: <bytes>"):
            st.load(blob)


def test_good_reference_blob_loads():
    t = st.load(raw_file(GOOD, np.array([1.5, 2.5], np.float32).tobytes() +
                         np.array([7], np.int64).tobytes()))
    assert t["a"].tolist() == [1.5, 2.5] and t["b"].tolist() == [7]


def test_every_truncation_is_a_value_error(tmp_path):
    tensors, _ = all_tensors()
    blob = st.save(tensors)
    path = tmp_path / "t.safetensors"
    (n,) = struct.unpack("<Q", blob[:8])
    # every cut in the length field, a spread of cuts through the header and the data
    cuts = list(range(0, 16)) + list(range(16, 8 + n + 1, 5)) + [8 + n - 1, 8 + n] + \
        list(range(8 + n + 1, len(blob), 7))
    for cut in cuts:
        path.write_bytes(blob[:cut])
        with pytest.raises(ValueError):
            st.load_file(path)
    # cutting only the trailing bytes of the last tensor is caught too
    path.write_bytes(blob[:-1])
    with pytest.raises(ValueError, match="truncated"):
        st.load_file(path)
