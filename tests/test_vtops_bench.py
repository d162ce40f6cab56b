"""`vt-ops bench OP` (cli/_bench.py): every provider of an op timed on the same inputs, each result
compared with the reference provider's; and the comparison rule it shares with `vt-ops test` and
vt.ops.shadow (registry/compare.py).

attention::sdpa has two cpu providers (flash, priority 10, and composed, the reference); core ops
have one, which is then its own reference.
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import vibetensor as vt
from vibetensor.cli import main
from vibetensor.cli._bench import bench, parse_shapes
from vibetensor.registry import compare

SDPA = ["1x2x16x8", "1x2x16x8", "1x2x16x8"]


def test_sdpa_providers_side_by_side():
    rows = bench("attention::sdpa", [parse_shapes(",".join(SDPA))], ["float32", "bfloat16"],
                 warmup=1, repeat=3)
    assert len(rows) == 4  # 2 dtypes x 2 providers
    for dt in ("float32", "bfloat16"):
        rs = [r for r in rows if r["call"].endswith(dt)]
        assert sorted(r["provider"] for r in rs) == ["composed", "flash"]
        ref = [r for r in rs if r["reference"]]
        assert [r["provider"] for r in ref] == ["composed"]  # named "composed": the reference
        assert ref[0]["max_abs"] == 0.0 and ref[0]["max_rel"] == 0.0
        assert min(r["ratio"] for r in rs) == pytest.approx(1.0)
        for r in rs:
            assert r["median_s"] > 0 and r["min_s"] <= r["median_s"]
            assert r["ok"], r
        flash = next(r for r in rs if r["provider"] == "flash")
        assert flash["max_abs"] < (1e-5 if dt == "float32" else 3e-2)


def test_causal_argument_and_sample_calls():
    rows = bench("attention::sdpa", [parse_shapes(",".join(SDPA))], None, warmup=0, repeat=2,
                 extra={"causal": True})
    assert all(r["ok"] for r in rows)
    # no shapes: the op's sample calls (registry/samples_core.py) are benched
    rows = bench("core::matmul", None, None, warmup=0, repeat=2)
    assert len(rows) == 4 and all(r["call"].startswith("sample (") for r in rows)
    assert all(r["provider"] == "core" and r["reference"] and r["ok"] for r in rows)


def test_cli_table_and_json():
    runner = CliRunner()
    res = runner.invoke(main, ["bench", "attention::sdpa", "--shapes", ",".join(SDPA),
                               "--dtypes", "float32", "--warmup", "1", "--repeat", "3"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].startswith("attention::sdpa on cpu: 1x2x16x8, 1x2x16x8, 1x2x16x8 float32")
    assert "vs fastest" in lines[1] and "max abs err" in lines[1] and "max rel err" in lines[1]
    assert any(l.strip().startswith("composed (ref)") for l in lines[2:])
    assert any(l.strip().startswith("flash") and l.rstrip().endswith("yes") for l in lines[2:])
    res = runner.invoke(main, ["bench", "core::add", "--shapes", "4x4,4", "--repeat", "2", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert rows[0]["provider"] == "core" and rows[0]["call"] == "4x4, 4 float32"


@pytest.mark.parametrize("args, message", [
    (["core::softmax", "--shapes", "2x3"], "argument 'dim' needs a value"),
    (["core::view", "--shapes", "2x3", "--arg", "size=[6]"], "has no kernel provider on cpu"),
    (["core::add", "--shapes", "2x3,3,4"], "1 more shapes than tensor arguments"),
    (["core::add", "--shapes", "2xq"], "expected sizes joined by 'x'"),
    (["core::add", "--shapes", "2,2", "--arg", "beta=2"], "has no argument beta"),
    (["core::add", "--shapes", "2,2", "--dtypes", "float33"], "unknown dtype 'float33'"),
    (["core::nosuch", "--shapes", "2"], "unknown op 'core::nosuch'"),
])
def test_bad_usage_says_what_is_wrong(args, message):
    res = CliRunner().invoke(main, ["bench", *args])
    assert res.exit_code != 0
    assert message in res.output


def test_compare_rule():
    a = vt.tensor(np.array([1.0, 2.0, np.nan], np.float32))
    same = compare.diff(a, vt.tensor(np.array([1.0, 2.0, np.nan], np.float32)))
    assert same.ok and same.max_abs == 0.0  # NaN where both are NaN is agreement
    near = compare.diff(a, vt.tensor(np.array([1.0, 2.0 + 1e-6, np.nan], np.float32)))
    assert near.ok and 0 < near.max_abs < 1e-5
    off = compare.diff(a, vt.tensor(np.array([1.0, 2.5, np.nan], np.float32)))
    assert not off.ok and off.max_abs == pytest.approx(0.5) and off.max_rel == pytest.approx(0.2)
    assert "beyond rtol" in off.why
    ints = compare.diff(vt.tensor(np.array([1, 2])), vt.tensor(np.array([1, 3])))
    assert not ints.ok and "1 of 2 int64 values differ" in ints.why
    shape = compare.diff((a, 1), (a[:2], 1))
    assert not shape.ok and "(3,)" in shape.why and "(2,)" in shape.why
    assert not compare.diff((a, 1), (a, 2)).ok


def test_console_script_runs_bench():
    out = subprocess.run([sys.executable, "-m", "vibetensor.cli", "bench", "core::exp", "--shapes",
                          "8x8", "--repeat", "2"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "core (ref)" in out.stdout


def test_a_wrong_provider_disagrees(tmp_path_factory):
    """--load brings in tests/sloppy_pack.py's core::neg (off by 1e-3, priority 5: the reference by
    priority); core's provider disagrees with it, the table says so and the exit status is 1."""
    import sloppy_pack

    folder = sloppy_pack.build(tmp_path_factory)
    out = subprocess.run([sys.executable, "-m", "vibetensor.cli", "bench", "core::neg", "--shapes",
                          "4x4", "--repeat", "3", "--load", str(folder), "--json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stderr
    rows = {r["provider"]: r for r in json.loads(out.stdout)}
    assert rows["sloppy"]["reference"] and rows["sloppy"]["ok"]
    assert not rows["core"]["ok"] and rows["core"]["max_abs"] == pytest.approx(1e-3, rel=1e-3)
    bad = subprocess.run([sys.executable, "-m", "vibetensor.cli", "bench", "core::neg", "--shapes",
                          "4", "--load", str(folder / "nope")], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 1 and "--load" in bad.stderr and "nope" in bad.stderr
