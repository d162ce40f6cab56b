"""`vt-ops test PACK` (registry/opcheck.py): the core and attention packs pass it, and the checker
reports what it must: a failing check, a kernel that crashes its process, a check that hangs, an
op with no sample, and a pack that does not exist.

The crash, hang and failure cases use samples files (the format of docs/OPCHECK.md) whose
builders misbehave on purpose, checked with --device cpu so they stay quick.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import vibetensor as vt
from vibetensor.registry import opcheck, samples

sys.path.insert(0, str(Path(__file__).resolve().parent / "packs"))
import packtools as pt  # noqa: E402


def vt_ops(*args, timeout=300):
    proc = subprocess.run([sys.executable, "-m", "vibetensor.cli", *map(str, args)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)
    return proc


def _json_report(pack, *extra):
    proc = vt_ops("test", pack, "--json", *extra)
    rep = json.loads(proc.stdout)
    return proc, rep


@pytest.mark.parametrize("pack", ["core", "attention"])
def test_builtin_pack_passes(pack):
    proc, rep = _json_report(pack)
    bad = [r for r in rep["results"] if r["status"] in ("fail", "crash", "timeout")]
    assert not bad, "\n".join(f"{r['op']} {r['provider']}@{r['device']} {r['check']}: {r['detail']}"
                              for r in bad)
    assert proc.returncode == 0 and rep["ok"]
    # every op has a sample: nothing is left uncovered, and nothing needs a justification
    assert rep["uncovered"] == [] and rep["not_covered"] == {}
    # every op the pack defines was looked at, and the checks really ran
    defined = set(vt.ops.get(pack).ops)
    by_check = {}
    for r in rep["results"]:
        by_check.setdefault(r["check"], []).append(r)
    assert {r["op"] for r in by_check["schema"] if r["status"] == "pass"} >= defined
    ran = {c: sum(r["status"] == "pass" for r in rs) for c, rs in by_check.items()}
    for check in ("meta", "gradcheck", "bad_input"):
        assert ran.get(check, 0) > 0, f"no {check} check passed: {ran}"
    # a skip always says why
    assert all(r["detail"] for r in rep["results"] if r["status"] == "skip")
    if pack == "core":
        assert ran["gradcheck"] >= 90 and ran["autocast"] >= 25 and ran["meta"] >= 130
        # views and compositions with no kernel of their own are checked too
        assert any(r["op"] == "core::view" and r["provider"] is None and r["check"] == "gradcheck"
                   and r["status"] == "pass" for r in rep["results"])
    else:
        # two cpu providers of sdpa: each is compared with the other (on a GPU machine the cuda
        # providers are compared too, as records of their own device)
        prov = [r for r in by_check["providers"] if r["op"] == "attention::sdpa" and r["device"] == "cpu"]
        assert sorted(r["provider"] for r in prov if r["status"] == "pass") == ["composed", "flash"]


def test_text_report_is_readable():
    proc = vt_ops("test", "attention")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "attention::sdpa" in out and "flash@cpu" in out and "composed@cpu" in out
    header = out.splitlines()[0].split()
    assert header[:2] == ["op", "provider"] and "gradcheck" in header and "bad_input" in header
    assert "skipped (why):" in out
    assert out.rstrip().splitlines()[-1].startswith("vt-ops test attention: OK:")


def _samples_file(tmp_path, body):
    path = tmp_path / "samples.py"
    path.write_text(textwrap.dedent(body))
    path.chmod(0o644)
    return path


def test_failures_crashes_and_hangs_are_reported(tmp_path):
    """relu sampled at its kink (gradcheck's finite difference sees 0.5, the rule 0 or 1); neg's
    builder crashes the process (SIGSEGV) and exp's hangs: each is reported against its unit, and
    the checker carries on with the next ops in a fresh child."""
    path = _samples_file(tmp_path, f"""
        import ctypes, os, time

        MARK = {str(tmp_path)!r}

        def once(what):  # misbehave the first time only: one crash, one hang
            mark = os.path.join(MARK, what)
            if os.path.exists(mark):
                return False
            open(mark, "w").close()
            return True

        def samples(s):
            def crash():
                if once("crashed"):
                    ctypes.string_at(0)  # a segfault, as a crashing kernel would
                return s.call(s.f(2, 3))
            def hang():
                if once("hung"):
                    time.sleep(60)
                return s.call(s.f(2, 3))
            return {{
                "core::relu": lambda: s.call(s.vt.zeros(2, 3)),
                "core::neg": crash,
                "core::exp": hang,
            }}
        """)
    rep = opcheck.run("core", samples_file=path, devices=["cpu"], unit_timeout=3)
    assert rep.failed
    status = {(r.op, r.check): r for r in rep.results}
    relu = status[("core::relu", "gradcheck")]
    assert relu.status == "fail" and "Jacobian mismatch" in relu.detail
    neg = [r for r in rep.results if r.op == "core::neg" and r.status == "crash"]
    assert neg and "SIGSEGV" in neg[0].detail
    exp = [r for r in rep.results if r.op == "core::exp" and r.status == "timeout"]
    assert exp and "no progress for 3 s" in exp[0].detail
    assert rep.restarts == 2
    # the next checks of the same ops ran in the fresh child
    assert status[("core::neg", "bad_input")].status == "pass"
    assert status[("core::exp", "bad_input")].status == "pass"
    # the ops after them were still checked
    assert status[("core::log", "meta")].status == "pass"
    assert status[("core::index_put_", "bad_input")].status == "pass"
    text = rep.text()
    assert "failures:" in text and "CRASH" in text and "TIME" in text
    assert text.splitlines()[-1].startswith("vt-ops test core: FAILED:")


def test_exit_status_and_justified_not_covered(tmp_path):
    """An op a samples file declares NOT_COVERED (with the reason) is listed, not passed; the run
    still succeeds. A failing check makes the exit status 1."""
    path = _samples_file(tmp_path, """
        NOT_COVERED = {"attention::dropout_mask": "checked by test_attention's mask tests"}

        def samples(s):
            return {}
        """)
    proc, rep = _json_report("attention", "--samples", path)
    assert proc.returncode == 0 and rep["ok"]
    assert rep["not_covered"] == {"attention::dropout_mask": "checked by test_attention's mask tests"}
    mask = [r for r in rep["results"] if r["op"] == "attention::dropout_mask" and r["check"] == "meta"]
    assert mask and all(r["status"] == "skip" for r in mask)
    proc = vt_ops("test", "attention", "--samples", path)
    assert "justified: checked by test_attention's mask tests" in proc.stdout

    bad = _samples_file(tmp_path, """
        def samples(s):  # shapes that do not broadcast: the compute refuses, the check fails
            return {"attention::sdpa": lambda: s.call(s.f(1, 1, 2, 4), s.f(1, 1, 3, 5), s.f(1, 1, 3, 4))}
        """)
    proc, rep = _json_report("attention", "--samples", bad, "--device", "cpu")
    assert proc.returncode == 1 and not rep["ok"]
    assert any(r["status"] == "fail" and r["op"] == "attention::sdpa" for r in rep["results"])


def test_unknown_pack_is_a_clear_error():
    proc = vt_ops("test", "no_such_pack_here")
    assert proc.returncode == 1
    assert "no op pack named or at 'no_such_pack_here'" in proc.stderr


def test_samples_from_schema_and_coverage():
    """Ops whose arguments can all be made up get a generated call; others need a table entry."""
    s = samples.Maker()
    exp = samples.from_schema(vt.ops.Op("core::exp"), s)
    assert exp is not None and exp.generated and tuple(exp.args[0].shape) == (2, 3)
    gelu = samples.from_schema(vt.ops.Op("core::gelu"), s)  # defaulted str argument
    assert gelu is not None and gelu.args[1] == "none"
    assert samples.from_schema(vt.ops.Op("core::sum_to_size"), s) is None  # int[] size, no default
    empty = samples.Source([], {}, [], [], {}, {})
    assert not empty.has("core::sum_to_size") and empty.calls("core::sum_to_size", s) is None
    assert empty.has("core::exp")
    rep = opcheck.Report("x", uncovered=["x::op"])
    assert rep.failed and "x::op: no sample" in rep.text()


def test_schema_parser():
    p = opcheck.parse_schema("core::addmm(Tensor self, Tensor mat1, Tensor mat2, *, float beta=1.0, "
                             "float alpha=1.0) -> Tensor")
    assert p["name"] == "core::addmm" and [a["name"] for a in p["args"]][-2:] == ["beta", "alpha"]
    assert p["args"][3]["kwonly"] and p["args"][3]["default"] == 1.0 and p["returns"] == ["Tensor"]
    p = opcheck.parse_schema("core::sum(Tensor self, int[] dim=[], bool keepdim=False, "
                             "ScalarType? dtype=None) -> Tensor")
    assert p["args"][1]["default"] == [] and p["args"][3]["optional"]
    with pytest.raises(ValueError, match="unknown type"):
        opcheck.parse_schema("x::y(Tensr a) -> Tensor")
    with pytest.raises(ValueError, match="no '->'"):
        opcheck.parse_schema("x::y(Tensor a)")


def test_user_pack_folder_with_its_own_samples(tmp_path_factory, tmp_path):
    """The user pack of test_packs ('mine', a core::add for same-shape tensors only, priority 10):
    with core's samples it declines every call (broadcasting), which is reported as skipped with
    its reason, not as a failure; with a samples.py beside its manifest it is checked against
    core's provider, forward and backward."""
    built = pt.user_pack(tmp_path_factory)
    proc, rep = _json_report(built)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    add = {r["check"]: r for r in rep["results"] if r["op"] == "core::add"}
    assert add["providers"]["status"] == "skip"
    assert "declined every sample call" in add["providers"]["detail"]
    assert "only adds tensors of the same shape" in add["providers"]["detail"]

    folder = pt.copy_pack(built, tmp_path / "mypack")
    _samples_file(folder, """
        def samples(s):
            return {"core::add": lambda: [s.call(s.f(2, 3), s.f(2, 3), 0.5),
                                          s.call(s.f(4, dtype="float64"), s.f(4, dtype="float64"))]}
        """)
    proc, rep = _json_report(folder)
    assert proc.returncode == 0 and rep["ok"], proc.stdout
    assert rep["samples_from"][0].endswith("samples.py")
    add = {r["check"]: r for r in rep["results"] if r["op"] == "core::add"}
    for check in ("meta", "gradcheck", "providers", "bad_input"):
        assert add[check]["status"] == "pass", add[check]
    assert add["providers"]["detail"].startswith("vs core: 2 calls")
    # its cpu records are its own (on a GPU machine its cuda records say it has no cuda kernel)
    assert {r["provider"] for r in rep["results"]
            if r["check"] != "schema" and r["device"] == "cpu"} == {"mine"}


def test_a_wrong_provider_fails(tmp_path_factory):
    """tests/sloppy_pack.py's core::neg is off by 1e-3: the providers check finds it against core,
    and gradcheck finds it too (neg's backward rule calls core::neg, which sloppy then serves)."""
    import sloppy_pack

    proc, rep = _json_report(sloppy_pack.build(tmp_path_factory))
    assert proc.returncode == 1 and not rep["ok"]
    neg = {r["check"]: r for r in rep["results"] if r["op"] == "core::neg"}
    assert neg["providers"]["status"] == "fail"
    assert "vs core" in neg["providers"]["detail"] and "max abs 0.001" in neg["providers"]["detail"]
    assert neg["gradcheck"]["status"] == "fail" and "Jacobian mismatch" in neg["gradcheck"]["detail"]
    assert neg["meta"]["status"] == "pass" and neg["bad_input"]["status"] == "pass"


def test_progress_goes_to_stderr():
    proc = vt_ops("test", "attention", "--progress", "--device", "cpu")
    assert proc.returncode == 0
    lines = proc.stderr.splitlines()
    assert lines[0].startswith("[1/") and "attention::sdpa" in lines[0] and ": pass" in lines[0]
    assert lines[-1].startswith(f"[{len(lines)}/{len(lines)}]")


def test_device_comparison_runs_here():
    """The devices check runs only where a GPU is; its comparison (a provider on one device
    against the cpu reference, or a composite op's meta step) is exercised here cpu against cpu."""
    from vibetensor.registry import loader, opcheck_checks as oc

    ctx = oc._Ctx(loader.get("attention"))
    for unit, want in [(oc.Unit("attention::sdpa", "flash", "cpu", "devices"), "vs cpu composed: 4 calls"),
                       (oc.Unit("core::view", None, "cpu", "devices"), "vs cpu (composite): 1 calls"),
                       (oc.Unit("core::normal", "core", "cpu", "devices"), "shapes and dtypes only")]:
        r = oc.run_unit(ctx, unit)
        assert r.status == "pass" and want in r.detail, r
