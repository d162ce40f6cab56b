"""vt.autocast and vt.amp.GradScaler: torch's policy (which ops run in low precision, which in
float32), gradients reaching float32 weights, the weight-cast cache, nesting, threads, and loss
scaling that skips overflowing steps. Runs on every device: autocast("cpu") on cpu, ("cuda") on
cuda."""
import threading

import numpy as np
import pytest

import vibetensor as vt
from vibetensor.registry import ops as registry_ops

from conftest import HAS_TORCH, on

LOW = (vt.bfloat16, vt.float16)


def _rand(shape, device, seed=0, dtype=vt.float32):
    x = vt.tensor(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))
    return on(device, x).to(dtype)


@pytest.mark.parametrize("low", LOW, ids=["bf16", "fp16"])
def test_policy_classes(device, low):
    x, w, b = _rand((4, 8), device, 0), _rand((16, 8), device, 1), _rand((16,), device, 2)
    with vt.autocast(device, dtype=low):
        y = vt.nn.functional.linear(x, w, b)
        assert y.dtype is low                                   # low-precision class
        assert (x @ w.T).dtype is low
        s = vt.softmax(y, -1)
        assert s.dtype is vt.float32                            # float32 class
        assert vt.nn.functional.layer_norm(y, (16,)).dtype is vt.float32
        assert y.sum().dtype is vt.float32
        assert vt.cat([y, s], 0).dtype is vt.float32            # widest class
        assert (y * 2.0).dtype is low                           # others: as given
        d = x.double()
        assert (d @ d.T).dtype is vt.float64                    # float64 is never lowered
    # the values are the low-precision computation's
    ref = (x.to(low) @ w.to(low).T + b.to(low)).float()
    np.testing.assert_allclose(y.float().cpu().numpy(), ref.cpu().numpy(), rtol=2e-2, atol=2e-2)
    assert vt.nn.functional.linear(x, w, b).dtype is vt.float32  # off again after the region


def test_gradients_reach_float32_weights(device):
    lin = vt.nn.Linear(8, 4)
    lin.to(device)
    x = _rand((3, 8), device)
    with vt.autocast(device, dtype=vt.bfloat16):
        loss = vt.nn.functional.cross_entropy(lin(x), on(device, vt.tensor([0, 1, 3])))
    assert loss.dtype is vt.float32
    loss.backward()
    assert lin.weight.grad.dtype is vt.float32 and lin.bias.grad.dtype is vt.float32
    # the same step in float32 gives nearly the same gradient
    g_amp = lin.weight.grad.cpu().numpy()
    lin.weight.grad = None
    vt.nn.functional.cross_entropy(lin(x), on(device, vt.tensor([0, 1, 3]))).backward()
    np.testing.assert_allclose(g_amp, lin.weight.grad.cpu().numpy(), rtol=5e-2, atol=5e-2)


def test_weight_cast_cached_within_region(device):
    w = _rand((8, 8), device).requires_grad_()
    x = _rand((2, 8), device)
    casts = []
    real = vt.Tensor.to

    def counting_to(self, *a, **k):
        casts.append(self is w)
        return real(self, *a, **k)

    vt.Tensor.to = counting_to
    try:
        with vt.autocast(device, dtype=vt.bfloat16):
            for _ in range(3):
                x @ w
        with vt.autocast(device, dtype=vt.bfloat16, cache_enabled=False):
            for _ in range(3):
                x @ w
    finally:
        vt.Tensor.to = real
    assert sum(casts) == 1 + 3   # once in the cached region, every use in the uncached one


def test_nesting_decorator_and_threads(device):
    x = _rand((2, 2), device)
    with vt.autocast(device, dtype=vt.bfloat16):
        with vt.autocast(device, enabled=False):
            assert (x @ x).dtype is vt.float32
        assert (x @ x).dtype is vt.bfloat16
        seen = []
        t = threading.Thread(target=lambda: seen.append((x @ x).dtype))
        t.start()
        t.join()
        assert seen == [vt.float32]  # autocast is per thread

    @vt.autocast(device, dtype=vt.float16)
    def f(a):
        return a @ a

    assert f(x).dtype is vt.float16
    assert registry_ops.call_hook is None  # nothing left installed
    other = "cpu" if device != "cpu" else "cuda"
    with vt.autocast(other, dtype=vt.bfloat16):
        assert (x @ x).dtype is vt.float32  # a region for another device type does not apply


def test_bad_arguments():
    with pytest.raises(ValueError, match="device_type"):
        vt.autocast("tpu")
    with pytest.raises(ValueError, match="float16 or bfloat16"):
        vt.autocast("cuda", dtype=vt.float32)
    with pytest.raises(ValueError, match="growth_factor"):
        vt.amp.GradScaler(growth_factor=0.5)


def _sgd_problem(device):
    p = vt.nn.Parameter(on(device, vt.tensor([1.0, -2.0, 3.0])))
    return p, vt.optim.SGD([p], lr=0.1)


def test_grad_scaler_scales_unscales_and_steps(device):
    p, opt = _sgd_problem(device)
    scaler = vt.amp.GradScaler(init_scale=1024.0, growth_interval=2)
    loss = (p * p).sum()
    scaled = scaler.scale(loss)
    assert scaled.item() == pytest.approx(1024.0 * 14.0)
    scaled.backward()
    scaler.step(opt)
    scaler.update()
    # the step used the true gradient 2p, not 1024 * 2p
    np.testing.assert_allclose(p.detach().cpu().numpy(), [0.8, -1.6, 2.4], rtol=1e-6)
    assert scaler.get_scale() == 1024.0
    opt.zero_grad()
    scaler.scale((p * p).sum()).backward()
    scaler.step(opt)
    scaler.update()
    assert scaler.get_scale() == 2048.0  # grew after growth_interval clean steps


def test_grad_scaler_skips_overflow_and_backs_off(device):
    p, opt = _sgd_problem(device)
    scaler = vt.amp.GradScaler(init_scale=8.0)
    before = p.detach().cpu().numpy().copy()
    (scaler.scale((p * p).sum()) * float("inf")).backward()
    scaler.unscale_(opt)
    with pytest.raises(RuntimeError, match="already been called"):
        scaler.unscale_(opt)
    assert scaler.step(opt) is None
    scaler.update()
    np.testing.assert_array_equal(p.detach().cpu().numpy(), before)  # skipped
    assert scaler.get_scale() == 4.0
    state = scaler.state_dict()
    other = vt.amp.GradScaler()
    other.load_state_dict(state)
    assert other.get_scale() == 4.0


def test_disabled_scaler_is_transparent(device):
    p, opt = _sgd_problem(device)
    scaler = vt.amp.GradScaler(enabled=False)
    loss = (p * p).sum()
    assert scaler.scale(loss) is loss
    loss.backward()
    scaler.step(opt)
    scaler.update()
    assert scaler.get_scale() == 1.0


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not importable")
def test_policy_matches_torch_on_cpu():
    """The ops whose class torch's cpu and cuda policies agree on (the cuda policy, which vt uses
    on both, also runs softmax/norms/sum/exp in float32)."""
    import torch
    x = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
    tgt = np.array([0, 1, 2, 3])

    def probe(lib, autocast, x, t, low):
        with autocast("cpu", dtype=low):
            xl = x.to(low)
            return [str((x @ x.T).dtype), str(lib.nn.functional.cross_entropy(xl, t).dtype),
                    str(lib.nn.functional.mse_loss(xl, xl).dtype), str(lib.cat([xl, x]).dtype)]

    want = probe(torch, torch.autocast, torch.from_numpy(x), torch.from_numpy(tgt), torch.bfloat16)
    got = probe(vt, vt.autocast, vt.tensor(x), vt.tensor(tgt), vt.bfloat16)
    assert [w.split(".")[-1] for w in want] == [g.split(".")[-1] for g in got]
