"""vt.ops.shadow(op, provider) (registry/shadow.py): a second provider runs beside the active one
on every call and its result is compared; the caller gets the active provider's result.

attention::sdpa's two cpu providers (flash active at priority 10, composed beside it) agree within
float32 rounding, not bit for bit, which gives both an agreeing and a diverging comparison.
"""
from __future__ import annotations

import numpy as np
import pytest

import vibetensor as vt
from vibetensor.registry import ops as registry_ops

rng = np.random.default_rng(7)


def qkv(t=16, d=8):
    return [vt.tensor(rng.standard_normal((1, 2, t, d)).astype(np.float32)) for _ in range(3)]


def test_records_every_call_and_returns_the_active_result():
    q, k, v = qkv()
    with vt.ops.use("attention::sdpa", "flash"):
        want = vt.ops.attention.sdpa(q, k, v, None, True)[0].numpy().copy()
    with vt.ops.shadow("attention::sdpa", "composed") as sh:
        out = vt.ops.attention.sdpa(q, k, v, None, True)[0]
        vt.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)  # the frontend too
    np.testing.assert_array_equal(out.numpy(), want)  # flash's result, untouched by the shadow
    assert sh.calls == 2 and len(sh.records) == 2 and sh.diverged == 0 and not sh.divergences
    r = sh.records[0]
    assert (r.op, r.active, r.shadow, r.device) == ("attention::sdpa", "flash", "composed", "cpu")
    assert r.ok and 0 < r.max_abs < 1e-5 and r.active_s > 0 and r.shadow_s > 0
    assert r.inputs == "[(1, 2, 16, 8):float32, (1, 2, 16, 8):float32, (1, 2, 16, 8):float32]"
    assert "2 calls, 0 diverged" in sh.summary()


def test_divergence_is_recorded_and_strict_raises():
    q, k, v = qkv(32, 16)
    with vt.ops.shadow("attention::sdpa", "composed", rtol=0.0, atol=0.0) as sh:
        vt.ops.attention.sdpa(q, k, v)
    assert sh.diverged == 1 and len(sh.divergences) == 1
    assert "DIVERGED" in str(sh.divergences[0]) and "beyond rtol 0 / atol 0" in sh.divergences[0].why
    with pytest.raises(vt.ops.ShadowDivergence, match="flash vs composed: DIVERGED"):
        with vt.ops.shadow("attention::sdpa", "composed", rtol=0.0, atol=0.0, strict=True):
            vt.ops.attention.sdpa(q, k, v)


def test_in_place_op_runs_once_on_the_callers_tensor():
    """The shadow works on copies taken before the active call: a += b happens once."""
    a = vt.tensor(np.ones((2, 3), np.float32))
    b = vt.tensor(np.full((2, 3), 2.0, np.float32))
    with vt.ops.shadow("core::add_", "core") as sh:
        vt.ops.core.add_(a, b)
    np.testing.assert_array_equal(a.numpy(), np.full((2, 3), 3.0, np.float32))
    assert sh.calls == 1 and sh.records[0].ok and sh.records[0].max_abs == 0.0


def test_gradients_flow_through_the_active_provider():
    q, k, v = (t.requires_grad_(True) for t in qkv())
    with vt.ops.shadow("attention::sdpa", "composed") as sh:
        out = vt.nn.functional.scaled_dot_product_attention(q, k, v)
    out.sum().backward()
    assert q.grad is not None and q.grad.shape == q.shape and sh.calls == 1


def test_decorator_nesting_and_restore():
    original = registry_ops.Op.__call__
    outer = vt.ops.shadow("core::exp", "core")
    inner = vt.ops.shadow("core::exp", "core")
    x = vt.tensor(np.zeros(3, np.float32))

    @outer
    def run():
        with inner:
            vt.ops.core.exp(x)
        vt.ops.core.exp(x)
        assert registry_ops.Op.__call__ is not original  # installed while a shadow is active

    run()
    assert outer.calls == 2 and inner.calls == 1
    assert registry_ops.Op.__call__ is original  # and gone after the last one exits
    vt.ops.core.exp(x)
    assert outer.calls == 2


def test_other_ops_and_devices_are_left_alone():
    x = vt.tensor(np.ones(3, np.float32))
    with vt.ops.shadow("core::exp", "core", device="cuda") as sh:
        vt.ops.core.exp(x)  # a cpu call: not the shadowed device
        vt.ops.core.log(x)  # another op
    assert sh.calls == 0 and sh.records == []


def test_unknown_provider_or_op():
    with pytest.raises(ValueError, match="has no provider 'fast'.*flash, composed"):
        vt.ops.shadow("attention::sdpa", "fast")
    with pytest.raises(AttributeError, match="unknown op 'core::nosuch'"):
        vt.ops.shadow("core::nosuch", "core")


def test_a_wrong_provider_is_caught(tmp_path_factory):
    """In a child process (the pack serves every core::neg call while loaded): with tests/
    sloppy_pack.py's core::neg active (off by 1e-3), shadowing it with core records divergence on
    every call; the caller still gets sloppy's result."""
    import subprocess
    import sys
    import textwrap

    import sloppy_pack

    folder = sloppy_pack.build(tmp_path_factory)
    script = textwrap.dedent(f"""
        import numpy as np, vibetensor as vt
        vt.ops.load({str(folder)!r})
        x = vt.tensor(np.ones((2, 3), np.float32))
        with vt.ops.shadow("core::neg", "core") as sh:
            y = vt.ops.core.neg(x)
            vt.ops.core.neg(x)
        r = sh.divergences[0]
        print(sh.calls, sh.diverged, r.active, r.shadow, round(r.max_abs, 6), float(y.numpy()[0, 0]))
        try:
            with vt.ops.shadow("core::neg", "core", strict=True):
                vt.ops.core.neg(x)
        except vt.ops.ShadowDivergence as e:
            print("strict:", e)
        """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    first, strict = out.stdout.splitlines()
    calls, diverged, active, shadow, err, y = first.split()
    assert (calls, diverged, active, shadow) == ("2", "2", "sloppy", "core")
    assert float(err) == pytest.approx(1e-3, rel=1e-3)
    assert float(y) == pytest.approx(-1.0 + 1e-3)  # the active (sloppy) result
    assert strict.startswith("strict: vt.ops.shadow: core::neg") and "sloppy vs core: DIVERGED" in strict
