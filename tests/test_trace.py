"""vt.ops.trace: per-call provenance (op, pack, version, sha256, provider, why, device, dtypes,
shapes, depth, time), its summary and its JSON / Chrome exports, VT_TRACE for a whole process,
and the dispatcher's fallback when a provider declines a call (the reason "fallback")."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import vibetensor as vt
from vibetensor.runtime import lib

sys.path.insert(0, str(Path(__file__).resolve().parent / "packs"))
import packtools as pt  # noqa: E402


def top(records, op=None):
    return [r for r in records if r.depth == 0 and (op is None or r.op == op)]


def test_record_fields_priority():
    a, b = vt.ones(3, dtype=vt.float64), vt.ones(2, 3, dtype=vt.float64)
    core = vt.ops.get("core")
    with vt.ops.trace() as t:
        c = a + b
    assert c.shape == (2, 3)
    (r,) = t.records
    assert (r.op, r.provider, r.pack, r.reason, r.declined) == ("core::add", "core", "core",
                                                                "priority", None)
    assert r.pack_version == core.version and r.pack_sha256 == core.manifest_info.sha256
    assert len(r.pack_sha256) == 64
    assert r.device == "cpu" and r.dtypes == ["float64", "float64"] and r.shapes == [(3,), (2, 3)]
    assert r.depth == 0 and r.status == 0 and r.ok
    assert r.options == {"alpha": 1.0}  # the non-tensor arguments, defaults filled in
    assert 0 < r.end_ns - r.start_ns < 10**9 and r.duration_us > 0
    assert "core::add -> core" in repr(r)


def test_record_keeps_the_non_tensor_arguments():
    """As the dispatcher holds them (an int widened to a float argument, defaults filled in);
    a string or int list longer than a record keeps is left out rather than shown cut."""
    x = vt.randn(4)
    with vt.ops.trace() as t:
        vt.ops.core.add(x, x, alpha=2)
        vt.ops.core.gelu(x, approximate="tanh")
        vt.ones(2, 3, dtype=vt.float64)
        vt.zeros(1, 1, 1, 1, 1)
        with pytest.raises(Exception):
            vt.ops.core.gelu(x, approximate="a-name-longer-than-twenty-three-bytes")
    got = [(r.op, r.options) for r in top(t.records)]
    assert got[0] == ("core::add", {"alpha": 2.0})
    assert got[1] == ("core::gelu", {"approximate": "tanh"})
    assert got[2][1] == {"size": [2, 3], "dtype": "float64", "device": "cpu"}
    assert "size" not in got[3][1] and got[3][1]["device"] == "cpu"  # 5 sizes: kept in part
    assert got[4] == ("core::gelu", {})  # recorded although the call failed
    assert type(got[0][1]["alpha"]) is float


def test_off_outside_trace():
    a = vt.ones(2)
    with vt.ops.trace() as t:
        a + a
    assert lib.vtrt_trace_enabled() == 0
    a * a
    a - a
    assert lib.vtrt_trace_pending() == 0  # nothing recorded while no trace is open
    assert [r.op for r in t.records] == ["core::add"]


def test_pin_and_nested_depth():
    q = vt.randn(1, 2, 8, 4)
    with vt.ops.use("attention::sdpa", "composed"):
        with vt.ops.trace() as t:
            out = vt.ops.attention.sdpa(q, q, q)
    assert out[0].shape == (1, 2, 8, 4)
    (parent,) = top(t.records)
    assert (parent.op, parent.provider, parent.pack, parent.reason) == (
        "attention::sdpa", "composed", "attention", "pin")
    assert parent.shapes == [(1, 2, 8, 4)] * 3
    kids = [r for r in t.records if r.depth == 1]
    # the composed provider calls core ops through the host: recorded one level down, inside it
    assert "core::matmul" in {r.op for r in kids}
    for r in kids:
        assert parent.start_ns <= r.start_ns <= r.end_ns <= parent.end_ns
        assert r.pack == "core" and r.thread == parent.thread
    # a view op is its meta step only: no provider ran
    assert any(r.reason == "meta" and r.provider == "meta" for r in kids)
    g = {(x["op"], x["provider"], x["reason"]): x for x in t.groups()}
    assert g[("attention::sdpa", "composed", "pin")]["calls"] == 1
    assert g[("core::matmul", "core", "priority")]["min_depth"] == 1


def test_priority_provider_of_attention_unpinned():
    q = vt.randn(1, 1, 4, 4)
    with vt.ops.trace() as t:
        vt.ops.attention.sdpa(q, q, q)
    (r,) = top(t.records)
    best = vt.ops.providers("attention::sdpa")[0].name
    assert (r.provider, r.reason) == (best, "priority")


def test_failed_call_is_recorded():
    a, b = vt.ones(2), vt.ones(3)
    with vt.ops.trace() as t:
        with pytest.raises(ValueError):
            a + b
    (r,) = t.records
    assert r.op == "core::add" and r.status != 0 and not r.ok
    assert "[1 failed]" in t.summary()


def test_summary_groups_and_counts():
    a = vt.ones(4)
    with vt.ops.trace() as t:
        for _ in range(3):
            a + a
        a * a
    groups = {(g["op"], g["provider"], g["reason"]): g for g in t.groups()}
    assert groups[("core::add", "core", "priority")]["calls"] == 3
    assert groups[("core::mul", "core", "priority")]["calls"] == 1
    text = t.summary()
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["op", "provider", "pack", "reason"]
    assert any(ln.split()[0] == "core::add" and ln.split()[5] == "3" for ln in lines[1:-1])
    assert lines[-1] == "4 calls"


def test_groups_only_trace():
    a = vt.ones(4)
    with vt.ops.trace(keep_records=False) as t:
        for _ in range(5):
            a + a
        assert t.calls == 5  # read while open: drained on demand
    assert t.calls == 5 and t.groups()[0]["op"] == "core::add"
    with pytest.raises(ValueError, match="keeps groups only"):
        t.records


def test_nested_traces_and_reopen():
    a = vt.ones(2)
    with vt.ops.trace() as outer:
        a + a
        with vt.ops.trace() as inner:
            a * a
        a - a
    assert [r.op for r in outer.records] == ["core::add", "core::mul", "core::sub"]
    assert [r.op for r in inner.records] == ["core::mul"]
    with pytest.raises(RuntimeError, match="already open"):
        with outer:
            with outer:
                pass


def test_capacity_drops_and_counts():
    a = vt.ones(2)
    with vt.ops.trace(capacity=2) as t:
        for _ in range(5):
            a + a
    assert len(t.records) == 2 and t.dropped == 3
    assert "3 dropped" in t.summary()
    with pytest.raises(ValueError, match="capacity"):
        vt.ops.trace(capacity=0)


def test_json_and_chrome_exports(tmp_path):
    q = vt.randn(1, 1, 4, 4)
    with vt.ops.use("attention::sdpa", "composed"):
        with vt.ops.trace() as t:
            vt.ops.attention.sdpa(q, q, q)
    t.to_json(tmp_path / "t.json")
    doc = json.loads((tmp_path / "t.json").read_text())
    assert len(doc["records"]) == len(t.records) and doc["dropped"] == 0
    rec = next(r for r in doc["records"] if r["depth"] == 0)
    assert rec["op"] == "attention::sdpa" and rec["reason"] == "pin"
    assert rec["shapes"] == [[1, 1, 4, 4]] * 3 and rec["pack_sha256"]
    assert rec["options"] == {"mask": None, "causal": False, "scale": None, "dropout_p": 0.0, "enable_gqa": False}
    assert {g["op"] for g in doc["summary"]} >= {"attention::sdpa", "core::matmul"}

    t.to_chrome_trace(tmp_path / "t.trace")
    chrome = json.loads((tmp_path / "t.trace").read_text())
    ev = chrome["traceEvents"]
    assert len(ev) == len(t.records)
    assert all(e["ph"] == "X" and e["dur"] >= 0 and isinstance(e["ts"], float) for e in ev)
    parent = next(e for e in ev if e["name"] == "attention::sdpa")
    assert parent["cat"] == "composed" and parent["args"]["reason"] == "pin"
    assert parent["args"]["options"]["causal"] is False
    inside = [e for e in ev if e["args"]["depth"] == 1]
    assert inside and all(parent["ts"] <= e["ts"] and e["ts"] + e["dur"] <= parent["ts"] +
                          parent["dur"] + 1e-3 for e in inside)


def test_vt_trace_env_whole_process(tmp_path):
    code = "a = vt.ones(3)\nfor _ in range(4): a + a\n"
    proc = pt.run_py(code, env=pt.clean_env(VT_TRACE="1"))
    assert "vibetensor trace (VT_TRACE)" in proc.stderr
    assert any(ln.split()[:2] == ["core::add", "core"] and ln.split()[5] == "4"
               for ln in proc.stderr.splitlines()), proc.stderr

    out = tmp_path / "p.trace"
    pt.run_py(code, env=pt.clean_env(VT_TRACE="chrome", VT_TRACE_FILE=out))
    ev = json.loads(out.read_text())["traceEvents"]
    assert [e["name"] for e in ev].count("core::add") == 4

    out = tmp_path / "p.json"
    pt.run_py(code, env=pt.clean_env(VT_TRACE="json", VT_TRACE_FILE=out))
    assert len(json.loads(out.read_text())["records"]) >= 4

    bad = pt.run_py("", env=pt.clean_env(VT_TRACE="verbose"), check=False)
    assert bad.returncode != 0 and "VT_TRACE='verbose'" in bad.stderr


def test_fallback_when_the_preferred_provider_declines(tmp_path_factory):
    """mypack's 'mine' provider of core::add (priority 10) declines tensors of different shapes
    (VT_ERR_NOT_IMPL): the dispatcher hands such a call to the next provider (core) and the trace
    says why. A pin means that provider only: no fallback, the refusal reaches the caller."""
    mypack = pt.user_pack(tmp_path_factory)
    r = pt.result(f"""
        from vibetensor.registry import tune
        vt.ops.load({str(mypack)!r})
        a, b = vt.ones(3), vt.ones(2, 3)
        out = {{}}
        with vt.ops.trace() as t:
            same = (a + a).numpy().tolist()
            bcast = (a + b).numpy().tolist()
            with vt.ops.use('core::add', 'mine'):
                out['pinned'] = raises(lambda: a + b)
        out['sums'] = [same, bcast]
        out['calls'] = vt.ops.mypack.calls()
        out['recs'] = [[r.provider, r.pack, r.reason, r.declined, r.status == 0] for r in t.records]
        out['summary'] = t.summary()
        # a tuned choice of core for the broadcast bucket: core serves it without asking mine
        tune._set_runtime(vt.ops.Op('core::add'), 1, tune.bucket(['float32'] * 2, [(3,), (2, 3)]),
                          tune.options('core::add'), 'core')
        with vt.ops.trace() as t2:
            a + b
            a + a
        out['tuned'] = [[r.provider, r.reason, r.declined] for r in t2.records]
        print(json.dumps(out))
    """)
    assert r["sums"] == [[2.0] * 3, [[2.0] * 3] * 2]
    assert r["calls"] == 1  # mine ran the same-shape add only
    assert r["recs"] == [["mine", "mypack", "priority", None, True],
                         ["core", "core", "fallback", "mine", True],
                         ["mine", "mypack", "pin", None, False]]
    assert r["pinned"][0] == "NotImplementedError" and "only adds tensors of the same shape" in r["pinned"][1]
    assert "fallback (declined: mine)" in r["summary"]
    assert r["tuned"] == [["core", "tuned", None], ["mine", "priority", None]]


def test_every_provider_declining_reports_the_preferred_ones_reason(tmp_path_factory):
    """bool tensors of two shapes: mine declines the shapes, core declines bool. The caller reads
    the preferred provider's reason; the trace shows both were asked."""
    mypack = pt.user_pack(tmp_path_factory)
    r = pt.result(f"""
        vt.ops.load({str(mypack)!r})
        x, y = vt.ones(3, dtype=vt.bool), vt.ones(2, 3, dtype=vt.bool)
        with vt.ops.trace() as t:
            e = raises(vt.ops.core.add, x, y)
        print(json.dumps([e, [[r.provider, r.reason, r.declined, r.status] for r in t.records]]))
    """)
    err, recs = r
    assert err[0] == "NotImplementedError"
    assert "the 'mine' provider only adds tensors of the same shape" in err[1]
    assert recs == [["core", "fallback", "mine", 5]]  # 5: VT_ERR_NOT_IMPL (vt/oppack.h)
