"""vt.ops.tune and `vt-ops tune`: per-shape tuned providers, persisted in a per-user cache.

Shape buckets (powers of two per size), the options part of the key (a call's non-tensor
arguments: causal True and False tuned and dispatched apart, a float counting only as zero or
not), the cache written and read back (also by a fresh process), old-format caches ignored with
their reason, dispatch using the tuned choice (trace reason "tuned"), pins beating it, a changed
pack hash dropping only that pack's entries, a pack's shipped table, and bad input."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import vibetensor as vt
from vibetensor.registry import tune as T
from vibetensor.runtime import ffi, lib

sys.path.insert(0, str(Path(__file__).resolve().parent / "packs"))
import packtools as pt  # noqa: E402

SDPA = "attention::sdpa"
FAST = dict(min_time=0.005, warmup=1, max_calls=20)  # a ranking, not a benchmark
# sdpa(q, k, v, Tensor? mask=None, bool causal=False, float? scale=None, float dropout_p=0.0,
#      bool enable_gqa=False)
DEFAULTS = [["mask", "none", None], ["causal", "bool", False], ["scale", "none", None],
            ["dropout_p", "float", "zero"], ["enable_gqa", "bool", False]]


@pytest.fixture
def cache(tune_cache):  # conftest.py: a private cache file
    return tune_cache


def served(fn):
    with vt.ops.trace() as t:
        fn()
    (r,) = [r for r in t.records if r.depth == 0]
    return r.provider, r.reason


def sdpa(shape, **kwargs):
    q = vt.randn(*shape)
    return lambda: vt.ops.attention.sdpa(q, q, q, **kwargs)


def test_buckets_are_powers_of_two():
    assert [T.bucket_size(n) for n in (0, 1, 2, 3, 64, 65, 100, 128, 129)] == \
        [0, 1, 2, 4, 64, 128, 128, 128, 256]
    assert T.bucket(["float32", vt.float64], [(3, 100), (1,)]) == \
        [["float32", [4, 128]], ["float64", [1]]]

    def key(dtype, *shape):
        d = vt.runtime.dtypes.get_dtype(dtype)
        dts = ffi.new("vt_dtype[]", 1)
        dts[0].code, dts[0].bits, dts[0].lanes = d.code, d.bits, 1
        return lib.vtrt_tune_key(dts, ffi.new("int32_t[]", [len(shape)]),
                                 ffi.new("int64_t[]", list(shape) or [0]), 1, ffi.NULL, 0)
    # the runtime buckets the same way: one key per bucket, dtype and rank part of it
    assert key("float32", 100, 7) == key("float32", 128, 8) == key("float32", 65, 5)
    assert key("float32", 129, 8) != key("float32", 128, 8)
    assert key("float64", 128, 8) != key("float32", 128, 8)
    assert key("float32", 128) != key("float32", 128, 1)


def test_tune_writes_cache_and_dispatch_uses_it(cache):
    shapes = [[1, 2, 32, 8], [1, 2, 128, 32]]
    res = vt.ops.tune(SDPA, shapes=shapes, dtypes="float32", **FAST)
    assert [r.shapes for r in res] == [[tuple(s)] * 3 for s in shapes]
    names = {p.name for p in vt.ops.providers(SDPA)}
    for r in res:
        assert set(r.times_us) == names and all(t > 0 for t in r.times_us.values())
        assert r.winner == min(r.times_us, key=r.times_us.get)
        assert r.priority_choice == vt.ops.providers(SDPA)[0].name and r.speedup() >= 1.0
    doc = json.loads(cache.read_text())
    assert doc["format"] == T.FORMAT == 2 and len(doc["entries"]) == 2
    e = doc["entries"][0]
    assert e["op"] == SDPA and e["device"] == "cpu" and e["device_name"] == T.device_name("cpu")
    assert e["bucket"] == [["float32", [1, 2, 32, 8]]] * 3 and e["provider"] == res[0].winner
    assert e["options"] == res[0].options == DEFAULTS
    assert e["packs"] == {"attention": vt.ops.get("attention").manifest_info.sha256}
    # same bucket (30 -> 32, 7 -> 8), other shape: the tuned choice; another bucket: priority
    assert served(sdpa((1, 2, 30, 7))) == (res[0].winner, "tuned")
    assert served(sdpa((1, 2, 100, 32))) == (res[1].winner, "tuned")
    assert served(sdpa((1, 2, 512, 8)))[1] == "priority"
    # a fresh process reads the cache at import
    r = pt.result(f"""
        q = vt.randn(1, 2, 31, 8)
        with vt.ops.trace() as t:
            vt.ops.attention.sdpa(q, q, q)
        print(json.dumps([[x.provider, x.reason] for x in t.records if x.depth == 0]))
    """, env=pt.clean_env(VT_BUILTIN_PACKS="core,attention", VT_TUNE_CACHE=cache))
    assert r == [[res[0].winner, "tuned"]]


def test_tune_op_whose_argument_is_named_self(cache):
    """core::matmul(Tensor self, Tensor other): tune calls ops by argument name, so `self` must
    reach the op as a keyword (Op.__call__'s own self is positional-only)."""
    a, b = vt.randn(3, 5), vt.randn(5, 2)
    assert vt.ops.Op("core::matmul")(self=a, other=b).numpy().tolist() == (a @ b).numpy().tolist()
    (r,) = vt.ops.tune("core::matmul", shapes=[[(3, 5), (5, 2)]], **FAST)
    assert set(r.times_us) == {"core"} and r.winner == "core"
    assert served(lambda: a @ b) == ("core", "tuned")


def test_pin_beats_tuned_choice(cache):
    (r,) = vt.ops.tune(SDPA, shapes=[[1, 1, 16, 8]], **FAST)
    other = next(p.name for p in vt.ops.providers(SDPA) if p.name != r.winner)
    assert served(sdpa((1, 1, 16, 8))) == (r.winner, "tuned")
    with vt.ops.use(SDPA, other):
        assert served(sdpa((1, 1, 16, 8))) == (other, "pin")
    assert served(sdpa((1, 1, 16, 8))) == (r.winner, "tuned")  # unpinned: tuned again


def _entry(op, bucket, provider, packs, options=None):
    return {"op": op, "device": "cpu", "device_name": T.device_name("cpu"), "bucket": bucket,
            "options": T.options(op) if options is None else options, "provider": provider,
            "packs": packs}


def _table(entries, fmt=None):
    return json.dumps({"format": T.FORMAT if fmt is None else fmt, "entries": entries})


def test_changed_pack_hash_drops_only_its_entries(cache):
    att = vt.ops.get("attention").manifest_info.sha256
    core = vt.ops.get("core").manifest_info.sha256
    sdpa_bucket = [["float32", [1, 1, 8, 8]]] * 3
    mm_bucket = [["float32", [4, 4]]] * 2
    entries = [_entry(SDPA, sdpa_bucket, "composed", {"attention": att}),
               _entry("core::matmul", mm_bucket, "core", {"core": core})]
    cache.write_text(_table(entries))
    assert T.apply() == 2
    a = vt.randn(3, 4)
    b = vt.randn(4, 3)
    assert served(sdpa((1, 1, 8, 8))) == ("composed", "tuned")
    assert served(lambda: a @ b) == ("core", "tuned")
    # core was "rebuilt": its entry stops applying, attention's stays
    entries[1]["packs"] = {"core": "0" * 64}
    cache.write_text(_table(entries))
    assert T.apply() == 1
    assert served(lambda: a @ b) == ("core", "priority")
    assert served(sdpa((1, 1, 8, 8))) == ("composed", "tuned")
    # an entry for another machine's device does not apply either
    entries[0]["device_name"] = "some other cpu"
    cache.write_text(_table(entries))
    assert T.apply() == 0
    assert served(sdpa((1, 1, 8, 8)))[1] == "priority"


def test_key_includes_the_non_tensor_arguments():
    shapes = [(1, 2, 16, 8)] * 3

    def k(**kwargs):
        return T.key(SDPA, ["float32"] * 3, shapes, kwargs)
    assert k() == k(causal=False) != k(causal=True)
    # a float counts only as zero or not: dropout 0 vs 0.1 differ, 0.1 vs 0.2 do not
    assert k(dropout_p=0.0) == k(dropout_p=-0.0) == k(dropout_p=0) == k()
    assert k(dropout_p=0.1) == k(dropout_p=0.2) != k()
    assert k(scale=0.5) == k(scale=0.125) != k()  # a scale vs None: None is its own tag
    assert k(causal=True, dropout_p=0.1) not in (k(causal=True), k(dropout_p=0.1))
    assert T.options(SDPA, {"causal": True, "dropout_p": 0.3, "scale": 2}) == [
        ["mask", "none", None], ["causal", "bool", True], ["scale", "float", "nonzero"],
        ["dropout_p", "float", "nonzero"], ["enable_gqa", "bool", False]]
    # strings and ints exactly (core::cross_entropy's reduction and ignore_index)
    CE = "core::cross_entropy"

    def ce(**kwargs):
        return T.key(CE, ["float32", "int64"], [(4, 10), (4,)], kwargs)
    assert ce() == ce(reduction="mean") == ce(ignore_index=-100, label_smoothing=0.0)
    assert len({ce(), ce(reduction="none"), ce(reduction="sum"), ce(ignore_index=0),
                ce(label_smoothing=0.1)}) == 5
    assert ce(label_smoothing=0.1) == ce(label_smoothing=0.2)
    # the shapes still count: same options, another bucket
    assert T.key(SDPA, ["float32"] * 3, [(1, 2, 32, 8)] * 3) != k()


def test_causal_and_non_causal_calls_are_tuned_apart(cache):
    shape = [1, 2, 16, 8]
    (rc,) = vt.ops.tune(SDPA, shapes=[shape], kwargs={"causal": True}, **FAST)
    assert rc.options == [DEFAULTS[0], ["causal", "bool", True], DEFAULTS[2], DEFAULTS[3], DEFAULTS[4]]
    assert "causal=True" in repr(rc)
    # the entry is for causal calls only: a non-causal call of the same shape runs by priority
    assert served(sdpa(shape, causal=True)) == (rc.winner, "tuned")
    assert served(sdpa(shape))[1] == "priority"
    (rn,) = vt.ops.tune(SDPA, shapes=[shape], **FAST)
    assert rn.options == DEFAULTS
    entries = T.entries()
    assert len(entries) == 2  # one per options: tuning the second did not replace the first
    assert sorted(e["options"][1][2] for e in entries) == [False, True]
    assert {json.dumps(e["bucket"]) for e in entries} == {json.dumps(rc.bucket)}
    assert served(sdpa(shape)) == (rn.winner, "tuned")
    assert served(sdpa(shape, causal=True)) == (rc.winner, "tuned")
    # each entry steers its own calls only: give them different providers, then swap them
    for causal_one, plain_one in (("composed", "flash"), ("flash", "composed")):
        for e in entries:
            e["provider"] = causal_one if e["options"][1][2] else plain_one
        cache.write_text(_table(entries))
        assert T.apply() == 2
        assert served(sdpa((1, 2, 13, 5), causal=True)) == (causal_one, "tuned")
        assert served(sdpa((1, 2, 13, 5))) == (plain_one, "tuned")


def test_float_argument_counts_as_zero_or_not_in_dispatch(cache):
    shape = [1, 1, 8, 8]
    (r,) = vt.ops.tune(SDPA, shapes=[shape], kwargs={"dropout_p": 0.1}, **FAST)
    assert r.options[3] == ["dropout_p", "float", "nonzero"]
    assert served(sdpa(shape, dropout_p=0.2)) == (r.winner, "tuned")  # 0.1 ~ 0.2
    assert served(sdpa(shape, dropout_p=0.0))[1] == "priority"  # 0.1 !~ 0.0
    assert served(sdpa(shape))[1] == "priority"


def test_tune_from_trace_groups_by_options(cache, tmp_path):
    with vt.ops.trace() as t:
        sdpa((1, 1, 8, 4))()
        sdpa((1, 1, 8, 4), causal=True)()
        sdpa((1, 1, 7, 4), causal=True, scale=0.5)()  # a scale: other options
        sdpa((1, 1, 6, 4), causal=True, scale=0.3)()  # same bucket and options: tuned once
    top = [r for r in t.records if r.depth == 0 and r.op == SDPA]
    assert top[1].options == {"mask": None, "causal": True, "scale": None, "dropout_p": 0.0, "enable_gqa": False}
    assert top[2].options["scale"] == 0.5
    res = vt.ops.tune(SDPA, trace=t, **FAST)
    assert [(r.shapes[0], T.describe_options(r.options)) for r in res] == [
        ((1, 1, 8, 4), "mask=None causal=False scale=None dropout_p=0 enable_gqa=False"),
        ((1, 1, 8, 4), "mask=None causal=True scale=None dropout_p=0 enable_gqa=False"),
        ((1, 1, 7, 4), "mask=None causal=True scale=!=0 dropout_p=0 enable_gqa=False")]
    assert res[2].kwargs["scale"] == 0.5  # replayed with the first value seen
    assert len(T.entries()) == 3
    for r in res:
        kw = {k: v for k, v in r.kwargs.items() if k != "mask"}
        assert served(sdpa(r.shapes[0], **kw)) == (r.winner, "tuned")
    # kwargs override the calls' own: all causal=False now, two option sets left
    again = vt.ops.tune(SDPA, trace=t, kwargs={"causal": False}, save=False, **FAST)
    assert [r.options[1][2] for r in again] == [False, False] and len(again) == 2
    # a trace's JSON carries the options too
    t.to_json(tmp_path / "t.json")
    records = json.loads((tmp_path / "t.json").read_text())["records"]
    from_json = vt.ops.tune(SDPA, trace=records, save=False, **FAST)
    assert [r.options for r in from_json] == [r.options for r in res]


def test_old_format_cache_is_ignored_with_its_reason(cache):
    att = vt.ops.get("attention").manifest_info.sha256
    old = _entry(SDPA, [["float32", [1, 1, 8, 8]]] * 3, "composed", {"attention": att})
    del old["options"]  # format 1: keyed by the shapes only
    cache.write_text(_table([old], fmt=1))
    why = r"is format 1 \(keyed by shapes only.*: its 1 entries are ignored \(re-run `vt-ops tune`"
    with pytest.warns(RuntimeWarning, match=why):
        assert T.apply() == 0
    assert served(sdpa((1, 1, 8, 8)))[1] == "priority"  # not applied to calls of any options
    assert "\n" not in T.ignored_reason(cache) and "format 1" in T.ignored_reason(cache)
    with pytest.warns(RuntimeWarning, match=why):
        assert T.entries() == []
    env = pt.clean_env(VT_BUILTIN_PACKS="core,attention", VT_TUNE_CACHE=cache)
    listed = pt.vt_ops("tune", "--list", env=env).stdout
    assert "note: tuned table" in listed and "1 entries are ignored" in listed
    assert SDPA not in listed.replace(str(cache), "")
    # tuning again rewrites the file in the current format, without the old entry
    with pytest.warns(RuntimeWarning, match=why):
        vt.ops.tune(SDPA, shapes=[[1, 1, 8, 8]], **FAST)
    doc = json.loads(cache.read_text())
    assert doc["format"] == T.FORMAT and len(doc["entries"]) == 1
    assert doc["entries"][0]["options"] == DEFAULTS and T.ignored_reason(cache) is None


def test_tune_from_trace_merges_and_clear(cache):
    with vt.ops.trace() as t:
        sdpa((1, 1, 8, 4))()
        sdpa((1, 1, 7, 4))()    # same bucket as the first: tuned once
        sdpa((1, 1, 40, 4))()
    res = vt.ops.tune(SDPA, trace=t, **FAST)
    assert [r.shapes[0] for r in res] == [(1, 1, 8, 4), (1, 1, 40, 4)]
    vt.ops.tune(SDPA, shapes=[[1, 1, 8, 4]], **FAST)  # the same key again: replaced, not added
    assert len(T.entries()) == 2
    assert T.clear(op="core::add") == 0 and len(T.entries()) == 2
    assert T.clear() == 2 and T.entries() == []
    assert served(sdpa((1, 1, 8, 4)))[1] == "priority"


def test_pack_ships_its_own_table(tmp_path, cache):
    """A copy of the attention pack with tuned.json beside its manifest, loaded in a fresh
    process: its table applies; the user's cache wins for the same key."""
    src = Path(vt.ops.get("attention").path)
    folder = pt.copy_pack(src, tmp_path / "attention")
    sha = json.loads((folder / "manifest.json").read_text())["sha256"]
    small = [["float32", [1, 1, 8, 8]]] * 3
    big = [["float32", [1, 1, 64, 8]]] * 3
    (folder / T.PACK_TABLE).write_text(_table([
        _entry(SDPA, small, "composed", {"attention": sha}),
        _entry(SDPA, big, "composed", {"attention": sha})]))
    cache.write_text(_table([_entry(SDPA, big, "flash", {"attention": sha})]))
    r = pt.result(f"""
        vt.ops.load({str(folder)!r})
        out = []
        for s in [(1, 1, 8, 8), (1, 1, 64, 8), (1, 1, 256, 8)]:
            q = vt.randn(*s)
            with vt.ops.trace() as t:
                vt.ops.attention.sdpa(q, q, q)
            out += [[x.provider, x.reason] for x in t.records if x.depth == 0]
        print(json.dumps(out))
    """, env=pt.clean_env(VT_TUNE_CACHE=cache))
    assert r[0] == ["composed", "tuned"] and r[1] == ["flash", "tuned"] and r[2][1] == "priority"


def test_bad_input(cache):
    with pytest.raises(ValueError, match=r"tune\(attention::sdpa\): a case needs 3 shapes"):
        vt.ops.tune(SDPA, shapes=[[(1, 1, 4, 4), (1, 1, 4, 4)]], **FAST)
    with pytest.raises(TypeError, match=r"unknown argument\(s\) \['causel'\]"):
        vt.ops.tune(SDPA, shapes=[[1, 1, 4, 4]], kwargs={"causel": True}, **FAST)
    with pytest.raises(ValueError, match="give shapes"):
        vt.ops.tune(SDPA)
    with pytest.raises(ValueError, match="no providers to choose from"):
        vt.ops.tune(SDPA, shapes=[[1, 1, 4, 4]], device="meta")
    with pytest.raises(AttributeError, match="unknown op 'nope::x'"):
        vt.ops.tune("nope::x", shapes=[[1]])
    with vt.ops.trace() as t:
        vt.ones(2) + vt.ones(2)
    with pytest.raises(ValueError, match="the trace has no call of it"):
        vt.ops.tune(SDPA, trace=t)
    cache.write_text("{not json")
    with pytest.raises(ValueError, match="unreadable"):
        T.entries()
    h = vt.ops.Op("core::add").handle()
    args = ffi.new("vt_value[]", 3)  # core::add(self, other, float alpha=1.0)
    args[0].tag = args[1].tag = vt.runtime.TENSOR
    args[2].tag, args[2].v.f = vt.runtime.FLOAT, 1.0
    assert lib.vtrt_op_tune_set(h, 1, ffi.NULL, ffi.NULL, ffi.NULL, 0, args, 3, b"nobody") != 0
    assert "no provider 'nobody'" in ffi.string(lib.vtrt_last_error()).decode()
    # the options must cover the schema: one value per argument
    assert lib.vtrt_op_tune_set(h, 1, ffi.NULL, ffi.NULL, ffi.NULL, 0, args, 2, b"core") != 0
    assert "2 argument values given, the schema has 3" in ffi.string(lib.vtrt_last_error()).decode()
    with pytest.raises(TypeError, match=r"kwargs are the non-tensor arguments; \['mask'\]"):
        vt.ops.tune(SDPA, shapes=[[1, 1, 4, 4]], kwargs={"mask": vt.ones(4, 4)}, **FAST)
    with pytest.raises(TypeError, match=r"argument 'causal' .* must be bool"):
        T.options(SDPA, {"causal": "yes"})


def test_cli_tune(cache):
    env = pt.clean_env(VT_BUILTIN_PACKS="core,attention", VT_TUNE_CACHE=cache)
    out = pt.vt_ops("tune", SDPA, "--shapes", "1x1x8x8", "--shapes", "1x1x8x8,1x1x16x8,1x1x16x8",
                    "--min-time", "0.005", env=env).stdout
    assert out.count("<- tuned") == 2 and "(priority choice)" in out and f"stored in {cache}" in out
    listed = pt.vt_ops("tune", "--list", env=env).stdout
    assert listed.count(SDPA) == 2 and "float32[1, 1, 16, 8]" in listed
    assert "causal=False" in listed and "causal=True" not in listed
    causal = pt.vt_ops("tune", SDPA, "--shapes", "1x1x8x8", "--arg", "causal=True", "--min-time",
                       "0.005", env=env).stdout
    assert "causal=True" in causal.splitlines()[0] and causal.count("<- tuned") == 1
    listed = pt.vt_ops("tune", "--list", env=env).stdout
    assert listed.count(SDPA) == 3 and listed.count("causal=True") == 1
    dry = pt.vt_ops("tune", SDPA, "--shapes", "1x1x32x8", "--dry-run", "--min-time", "0.005",
                    env=env).stdout
    assert "not stored (--dry-run)" in dry and len(T.entries()) == 3
    bad = pt.vt_ops("tune", SDPA, "--shapes", "1xAx8", env=env, check=False)
    assert bad.returncode != 0 and "a shape is sizes joined by 'x'" in bad.stdout
    assert "removed 3 entries" in pt.vt_ops("tune", "--clear", env=env).stdout


def test_cuda_entries_apply_only_where_every_gpu_has_their_name(monkeypatch):
    """dispatch keeps one tuned table per device type: on a machine with two kinds of GPU no cuda
    entry applies (it would be right for one of them only)"""
    class FakeLib:
        def __init__(self, n):
            self.n = n

        def vtrt_cuda_device_count(self):
            return self.n

    names = {"cuda:0": "NVIDIA H200", "cuda:1": "NVIDIA H200"}
    monkeypatch.setattr(T, "device_name", lambda d="cpu": names[d])
    monkeypatch.setattr(T, "lib", FakeLib(2))
    assert T._current_name("cuda") == "NVIDIA H200"
    names["cuda:1"] = "NVIDIA H100 80GB HBM3"
    assert T._current_name("cuda") is None
    monkeypatch.setattr(T, "lib", FakeLib(0))
    assert T._current_name("cuda") is None
