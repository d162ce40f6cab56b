"""The 16-bit row plans on CUDA, with more rows than the GPU holds blocks: the wide plan (the
default: softmax, log_softmax, layer_norm, rms_norm forward of 16-byte rows that one chunk of 4
slots per thread covers, norm_rows_wide / softmax_rows_wide; 8 slots under VT_ROWS_PLAN=wide8), the classic kernels
(VT_ROWS_PLAN=classic), their row pipeline (rowwise::RowPipe, VT_ROWS_PLAN=piped: each block works
through several rows with the next one in flight), and loss_rows::ce_fwd_rows_piped (the fused
cross-entropy of 16-bit rows whose two copies fit shared memory, unless VT_ROWS_PLAN=plain).
Against float64 numpy references, the same bits on a second run, every VT_ROWS_PLAN value in a
process of its own, and the fused cross-entropy's gradient against the two-pass path's. The host
emulations (tests/test_rowwise_emulate.py, tests/test_loss_emulate.py) check the same index math on
any machine (and that the wide kernels give the generic kernels' bits at the same plan); these
need a GPU."""
from __future__ import annotations

import numpy as np
import pytest

import vibetensor as vt
from conftest import DEVICES, assert_close, make, on, to_numpy

pytestmark = pytest.mark.skipif("cuda" not in DEVICES, reason="needs a CUDA GPU")

HALVES = ["bfloat16", "float16"]
# (rows, row length): many rows of 4096 (wide and classic: 128 threads a row; wide8: 64), of 2048
# (wide: 64 threads; wide8: a warp a row, 8 rows a block), of 768 (wide: a warp a row; wide8: 16
# lanes), of 4104 (a partial last slot group: 160 threads, some without a slot; wide8: 96), of a
# vocabulary (32000: softmax on the wide plan at 8 slots, 4 leaving it over one chunk; the norms on
# the classic kernels, two chunks), few rows spread wider, and a single row
ROWS = [(2500, 4096), (5000, 2048), (3001, 768), (700, 4104), (600, 32000), (300, 4096), (1, 4096)]


def np_softmax(x, log):
    x = x.astype(np.float64)
    m = x.max(-1, keepdims=True)
    s = np.exp(x - m).sum(-1, keepdims=True)
    return x - m - np.log(s) if log else np.exp(x - m) / s


def np_norm(x, w, b, eps, rms):
    x = x.astype(np.float64)
    mu = 0.0 if rms else x.mean(-1, keepdims=True)
    var = (x * x).mean(-1, keepdims=True) if rms else ((x - mu) ** 2).mean(-1, keepdims=True)
    y = (x - mu) / np.sqrt(var + eps) * w.astype(np.float64)
    return y if b is None else y + b.astype(np.float64)


def same_bits(a, b):
    return np.ascontiguousarray(to_numpy(a)).tobytes() == np.ascontiguousarray(to_numpy(b)).tobytes()


@pytest.mark.parametrize("dtype", HALVES)
@pytest.mark.parametrize("rows", ROWS, ids=str)
def test_softmax_and_norms_over_many_rows(rng, dtype, rows):
    x, xn = make(rng, rows, dtype, device="cuda")
    n = rows[1]
    w, wn = make(rng, (n,), dtype, device="cuda")
    b, bn = make(rng, (n,), dtype, device="cuda")
    for log in (False, True):
        fn = vt.log_softmax if log else vt.softmax
        y = fn(x, -1)
        assert_close(y, np_softmax(xn, log), dtype, scale=4, msg=f"{rows} log={log}")
        assert same_bits(y, fn(x, -1))
    y = vt.layer_norm(x, [n], w, b)
    assert_close(y, np_norm(xn, wn, bn, 1e-5, False), dtype, scale=8, msg=f"{rows} layer_norm")
    assert same_bits(y, vt.layer_norm(x, [n], w, b))
    y = vt.rms_norm(x, [n], w, eps=1e-6)
    assert_close(y, np_norm(xn, wn, None, 1e-6, True), dtype, scale=8, msg=f"{rows} rms_norm")
    assert same_bits(y, vt.rms_norm(x, [n], w, eps=1e-6))


def _two_pass_grad(x, t, ignore, eps, red):
    loss, lse = vt.ops.core.cross_entropy(x.detach(), t, ignore, eps, red)
    one = vt.full((), 1.0, dtype=x.dtype).to("cuda")
    return loss, vt.ops.core.cross_entropy_backward(one, x.detach(), t, lse, ignore, eps, red)


def np_cross_entropy_mean(x, t, ignore, eps):
    x = x.astype(np.float64)
    m = x.max(-1, keepdims=True)
    lse = (m + np.log(np.exp(x - m).sum(-1, keepdims=True)))[:, 0]
    keep = t != ignore
    rows = np.arange(len(t))
    xt = x[rows, np.where(keep, t, 0)]
    per = (1 - eps) * (lse - xt) + eps * (lse - x.mean(-1))
    return (per * keep).sum() / keep.sum()


@pytest.mark.parametrize("dtype", HALVES)
@pytest.mark.parametrize("shape", [(400, 50304), (300, 36000), (3, 50304)], ids=str)
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_fused_cross_entropy_rows_prefetched(rng, dtype, shape, eps):
    """The training call's fused forward (rows of 16-bit logits, two row buffers in shared memory,
    a block per SM taking rows b, b + grid, ...): the loss against float64 and the plain forward,
    the gradient against the two-pass path's, and the same bits on a second run."""
    x, xn = make(rng, shape, dtype, device="cuda")
    tn = np.asarray(rng.integers(0, shape[1], shape[0]), np.int64)
    tn[::7] = -100
    t = on("cuda", vt.tensor(tn))
    grads = []
    for _ in range(2):
        xg = x.detach().clone().requires_grad_()
        loss = vt.cross_entropy(xg, t, label_smoothing=eps)
        loss.backward()
        grads.append(xg.grad)
    assert_close(loss, np.asarray(np_cross_entropy_mean(xn, tn, -100, eps)), dtype, scale=8)
    plain, want = _two_pass_grad(x, t, -100, eps, "mean")
    assert_close(loss, to_numpy(plain), dtype, scale=4)
    assert_close(grads[0], to_numpy(want), dtype, scale=4)
    assert same_bits(grads[0], grads[1])
    ignored = to_numpy(grads[0])[tn == -100]
    assert not ignored.any()  # ignored rows: a zero gradient


_PLAN_RUN = """
import sys
import numpy as np
import vibetensor as vt
x = vt.tensor(np.load(sys.argv[1])).to(vt.bfloat16).to("cuda")
w = vt.tensor(np.load(sys.argv[2])).to(vt.bfloat16).to("cuda")
t = vt.tensor(np.load(sys.argv[3])).to("cuda")
n = x.shape[-1]
outs = [vt.softmax(x, -1), vt.log_softmax(x, -1), vt.layer_norm(x, [n], w, w), vt.rms_norm(x, [n], w)]
np.save(sys.argv[4], np.stack([o.cpu().to(vt.float32).numpy() for o in outs]))
xc = vt.tensor(np.load(sys.argv[5])).to(vt.bfloat16).to("cuda").requires_grad_()
vt.cross_entropy(xc, t, label_smoothing=0.1).backward()
np.save(sys.argv[6], xc.grad.cpu().to(vt.float32).numpy())
"""

PLANS = ["default", "classic", "piped", "plain", "wide4", "wide8"]


def test_rows_plans_agree(rng, tmp_path):
    """Every VT_ROWS_PLAN value (read once per process, so each runs in a process of its own):
    the classic norm/softmax rows give the same bits pipelined or not ("classic", "piped",
    "plain"); the wide plan (the default and "wide4": 4 slots per thread, "wide8": 8) agrees with
    them within the dtype's tolerance and with float64; the one-buffer cross-entropy kernel ("plain") splits a row
    over lanes otherwise (the same gradient up to rounding)."""
    import os
    import subprocess
    import sys

    xn = rng.uniform(-4, 4, (2500, 4096)).astype(np.float32)
    wn = rng.uniform(-2, 2, 4096).astype(np.float32)
    cn = rng.uniform(-4, 4, (400, 50304)).astype(np.float32)
    tn = np.asarray(rng.integers(0, 50304, 400), np.int64)
    inputs = [str(tmp_path / f) for f in ("x.npy", "w.npy", "t.npy", "c.npy")]
    for path, a in zip(inputs, (xn, wn, tn, cn)):
        np.save(path, a)
    rows, grads = {}, {}
    for plan in PLANS:
        outs = [str(tmp_path / f"{plan}_rows.npy"), str(tmp_path / f"{plan}_grad.npy")]
        env = dict(os.environ)
        env.pop("VT_ROWS_PLAN", None)
        if plan != "default":
            env["VT_ROWS_PLAN"] = plan
        run = subprocess.run([sys.executable, "-c", _PLAN_RUN, *inputs[:3], outs[0], inputs[3], outs[1]], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
        assert run.returncode == 0, f"VT_ROWS_PLAN={plan}: {run.stdout}"
        rows[plan], grads[plan] = np.load(outs[0]), np.load(outs[1])
    for plan in ("piped", "plain"):
        assert rows[plan].tobytes() == rows["classic"].tobytes(), plan
    # the wide rows within bfloat16's tolerance of the classic kernels' and of float64 (from the
    # bfloat16 inputs; rms_norm's eps is bfloat16's machine epsilon, 2^-7, as on cpu)
    xb = vt.tensor(xn).to(vt.bfloat16).to(vt.float32).numpy()
    wb = vt.tensor(wn).to(vt.bfloat16).to(vt.float32).numpy()
    want = [np_softmax(xb, False), np_softmax(xb, True), np_norm(xb, wb, wb, 1e-5, False),
            np_norm(xb, wb, None, 2.0 ** -7, True)]
    names = ["softmax", "log_softmax", "layer_norm", "rms_norm"]
    for plan in ("default", "wide4", "wide8"):  # the wide kernels at 4 (the default) and at 8 slots per thread
        for i, name in enumerate(names):
            got = vt.tensor(rows[plan][i]).to(vt.bfloat16)
            assert_close(got, rows["classic"][i].astype(np.float64), "bfloat16", scale=4, msg=f"{plan} vs classic {name}")
            assert_close(got, want[i], "bfloat16", scale=8, msg=f"{plan} vs float64 {name}")
    for plan in PLANS:
        assert_close(vt.tensor(grads[plan]).to(vt.bfloat16), grads["default"].astype(np.float64), "bfloat16", scale=4,
                     msg=f"cross-entropy gradient, {plan}")
