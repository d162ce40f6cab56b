"""Crash classes in memory and files (issue 8): overflowing view arithmetic, read-only memory,
safetensors files changed or raced under us. Crashers run in a child interpreter
(packtools.result), so a crash fails the test instead of killing pytest."""
import sys
from pathlib import Path

import numpy as np
import pytest

import vibetensor as vt

sys.path.insert(0, str(Path(__file__).resolve().parent / "packs"))
import packtools as pt  # noqa: E402


# -- 1. view arithmetic: every size/stride/offset sum or product is overflow-checked ---------------

# (code run on x = vt.zeros(16), the element range it asks for); each must be a ValueError
BAD_VIEWS = [
    "vt.zeros(4).as_strided((9,), (2**61,)).sum()",                       # span wraps to 0
    "x.as_strided((2**20,), (1,), 2**63 - 2**19).fill_(1e30)",            # offset + span wraps
    "x.as_strided((3, 3), (2**62, -2**62), 5).sum()",                     # both ends wrap
    "x.as_strided((4,), (1,), -2).sum()",                                 # reads before the buffer
    "x[4:].as_strided((4,), (-1,), 2).sum()",                             # negative stride, before
    "x.as_strided((2,), (1,), 15).sum()",                                 # one past the end
    "x.as_strided((0,), (1,), 2**62).sum()",                              # empty, bytes wrap
    "x.as_strided((0,), (1,), -1).sum()",                                 # empty, start before
    "x.as_strided((2**40, 2**40), (0, 0)).sum()",                         # 2^80 elements
    "vt.empty(2**59, 16)",                                                # 2^63 elements
    "vt.empty(2**60, dtype=vt.float64)",                                  # 2^63 bytes
    "vt.empty(0, 2**62, 2**62)",                                          # strides would wrap
]


def test_overflowing_views_raise_value_error():
    got = pt.result(f"""
        x = vt.zeros(16)
        out = [raises(eval, code) for code in {BAD_VIEWS!r}]
        print(json.dumps(out + [still_computes()]))
    """)
    *errs, ok = got
    for code, (cls, msg) in zip(BAD_VIEWS, errs):
        assert cls == "ValueError", (code, cls, msg)
        assert "as_strided" in msg or "empty" in msg, (code, msg)
    assert ok


def test_views_at_the_edges_still_work():
    x = vt.arange(16.0)
    assert x.as_strided((4,), (1,), 12).tolist() == [12.0, 13.0, 14.0, 15.0]
    assert x[4:].as_strided((4,), (-1,), 7).tolist() == [7.0, 6.0, 5.0, 4.0]
    assert x.as_strided((0,), (1,), 16).tolist() == []
    assert x.as_strided((0,), (1,), 99).tolist() == []  # an empty view may start anywhere >= 0
    assert x.as_strided((3, 2), (0, 15)).tolist() == [[0.0, 15.0]] * 3
    assert vt.empty(0, 2**30, 2**30).shape == (0, 2**30, 2**30)


def test_overflow_messages_name_the_view():
    with pytest.raises(ValueError, match=r"as_strided: view \(9,\) .*overflows int64"):
        vt.zeros(4).as_strided((9,), (2**61,))
    with pytest.raises(ValueError, match=r"reaches elements \[-2, 1\] but the storage holds 16"):
        vt.zeros(16).as_strided((4,), (1,), -2)


# -- 2. read-only memory: the import copies, so in-place ops never touch it -------------------------

def test_read_only_numpy_is_copied_not_written(tmp_path):
    p = tmp_path / "a.npy"
    np.save(p, np.arange(4.0))
    got = pt.result(f"""
        import numpy as np
        m = np.load({str(p)!r}, mmap_mode="r")
        t = vt.from_numpy(m).mul_(2.0)
        b = bytes(8)
        u = vt.from_numpy(np.frombuffer(b, np.uint8)); u.fill_(7)
        d = vt.from_dlpack(np.frombuffer(b, np.uint8)); d.fill_(9)
        o = np.arange(3.0); o.flags.writeable = False  # the owner itself says read-only
        r = vt.from_numpy(o[1:]).add_(1)
        print(json.dumps([t.tolist(), m.tolist(), list(b), u.tolist(), d.tolist(), o.tolist(),
                          r.tolist()]))
    """)
    t, m, b, u, d, o, r = got
    assert t == [0.0, 2.0, 4.0, 6.0] and m == [0.0, 1.0, 2.0, 3.0]
    assert b == [0] * 8 and u == [7] * 8 and d == [9] * 8
    assert o == [0.0, 1.0, 2.0] and r == [2.0, 3.0]
    assert np.load(p).tolist() == [0.0, 1.0, 2.0, 3.0]


def test_writeable_numpy_is_still_shared(tmp_path):
    a = np.arange(3.0)
    vt.from_numpy(a).mul_(2.0)
    assert a.tolist() == [0.0, 2.0, 4.0]
    b = np.arange(3.0)
    vt.from_dlpack(b).add_(1.0)
    assert b.tolist() == [1.0, 2.0, 3.0]
    p = tmp_path / "c.npy"
    np.save(p, np.arange(3.0))
    c = np.load(p, mmap_mode="c")  # copy-on-write: writable, shared, the file untouched
    vt.from_numpy(c).fill_(5.0)
    assert c.tolist() == [5.0] * 3 and np.load(p).tolist() == [0.0, 1.0, 2.0]
    base = np.arange(3.0)  # a read-only view of writable memory is shared, as in torch
    assert vt.from_numpy(np.broadcast_to(base, (2, 3))).data_ptr() == base.ctypes.data


# -- 3. safetensors: tensors own their memory, saves are atomic, every bad file a ValueError --------

def test_loaded_tensors_survive_the_file_being_truncated(tmp_path):
    p = tmp_path / "a.safetensors"
    got = pt.result(f"""
        p = {str(p)!r}
        vt.safetensors.save_file({{"a": vt.arange(1024.0), "b": vt.ones(3, dtype=vt.bfloat16)}}, p)
        r = vt.safetensors.load_file(p)
        open(p, "wb").close()  # truncated to 0 bytes under the loaded tensors
        print(json.dumps([r["a"].sum().item(), r["b"].float().sum().item()]))
    """)
    assert got == [sum(range(1024)), 3.0]


def test_loaded_tensors_do_not_share_the_mapping(tmp_path):
    p = tmp_path / "a.safetensors"
    vt.safetensors.save_file({"a": vt.arange(8.0)}, p)
    t = vt.safetensors.load_file(p)["a"]
    from vibetensor.creation import _lent

    for arr in _lent.values():  # what t's memory is lent from owns it: no mmap underneath
        if arr.ctypes.data == t.data_ptr():
            assert arr.base is None


def test_concurrent_saves_to_one_path_never_mix(tmp_path):
    # in a child: with a shared temp name the old writer gave mixed files and SIGBUS
    got = pt.result(f"""
        import os, threading
        p = {str(tmp_path / "c.safetensors")!r}
        want = {{k: {{"x": vt.full((4096,), float(k)), f"only{{k}}": vt.full((7,), float(k))}}
                for k in (1, 2)}}
        errors, seen = [], set()

        def writer(k):
            try:
                for _ in range(30):
                    vt.safetensors.save_file(want[k], p)
            except BaseException as e:
                errors.append(repr(e))

        def reader():
            try:
                for _ in range(60):
                    if os.path.exists(p):
                        r = vt.safetensors.load_file(p)
                        k = int(r["x"][0].item())
                        seen.add(k)
                        assert sorted(r) == sorted(want[k]), sorted(r)
                        assert all(r[n].tolist() == want[k][n].tolist() for n in r)
            except BaseException as e:
                errors.append(repr(e))

        ts = [threading.Thread(target=writer, args=(1,)), threading.Thread(target=writer, args=(2,)),
              threading.Thread(target=reader)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        print(json.dumps([errors, sorted(os.listdir(os.path.dirname(p)))]))
    """)
    errors, files = got
    assert errors == []
    assert files == ["c.safetensors"]  # no temp file left behind


def test_save_never_follows_a_planted_symlink(tmp_path, monkeypatch):
    from vibetensor import safetensors as st

    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    p = tmp_path / "m.safetensors"
    names = iter([str(tmp_path / ".planted"), str(tmp_path / ".fresh")])
    monkeypatch.setattr(st, "_temp_name", lambda filename: next(names))
    (tmp_path / ".planted").symlink_to(victim)  # the attacker guessed the first temp name
    st.save_file({"a": vt.ones(2)}, p)
    assert victim.read_bytes() == b"precious"
    assert st.load_file(p)["a"].tolist() == [1.0, 1.0]
    assert oct(p.stat().st_mode & 0o777) == oct(0o666 & ~st._umask())


def _raw(header, data=b""):
    import json
    import struct

    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


BAD_FILES = [
    ("bool_byte_2", _raw({"a": {"dtype": "BOOL", "shape": [2], "data_offsets": [0, 2]}},
                         b"\x01\x02"), "BOOL data holds bytes other than 0 and 1"),
    ("hole", _raw({"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},
                   "b": {"dtype": "U8", "shape": [2], "data_offsets": [4, 6]}}, b"\0" * 6),
     "bytes [2, 4) of the data belong to no tensor"),
    ("hole_at_start", _raw({"a": {"dtype": "U8", "shape": [2], "data_offsets": [2, 4]}},
                           b"\0" * 4), "bytes [0, 2)"),
    ("trailing", _raw({"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}}, b"\0" * 5),
     "3 trailing bytes"),
    ("nested", _raw(b'{"a":' + b"[" * 100000 + b"]" * 100000 + b"}"), "nested too deeply"),
    ("list_dtype", _raw({"a": {"dtype": ["F32"], "shape": [2], "data_offsets": [0, 8]}},
                        b"\0" * 8), "is not supported"),
    ("huge_shape", _raw({"a": {"dtype": "F32", "shape": [0, 2 ** 70], "data_offsets": [0, 0]}}),
     "2^60 elements"),
    ("too_many_dims", _raw({"a": {"dtype": "F32", "shape": [1] * 17, "data_offsets": [0, 4]}},
                           b"\0" * 4), "more than 16 dims"),
]


@pytest.mark.parametrize("name,blob,msg", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_files_are_safetensors_value_errors(tmp_path, name, blob, msg):
    p = tmp_path / f"{name}.safetensors"
    p.write_bytes(blob)
    for load in (lambda: vt.safetensors.load_file(p), lambda: vt.safetensors.load(blob)):
        with pytest.raises(ValueError, match="^safetensors: ") as e:
            load()
        assert msg in str(e.value)


def test_zero_sized_tensors_tile_the_data_too():
    t = vt.safetensors.load(vt.safetensors.save({"e": vt.ones(0, 3), "a": vt.ones(2)}))
    assert t["e"].shape == (0, 3) and t["a"].tolist() == [1.0, 1.0]
