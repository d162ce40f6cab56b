"""vt.optim: SGD/Adam/AdamW step by step against a numpy float64 reference (always) and against
torch.optim (when torch imports) for 20 steps; param groups, state_dict round trips, schedulers."""
from __future__ import annotations

import math

import numpy as np
import pytest

import vibetensor as vt
from vibetensor import nn, optim
from vibetensor.optim import lr_scheduler

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch is not importable")

SHAPES = [(4, 3), (5,), (2, 3, 2)]
STEPS = 20


def init_values():
    rng = np.random.default_rng(0)
    return [rng.standard_normal(s).astype(np.float32) for s in SHAPES]


def grads(step):
    rng = np.random.default_rng(100 + step)
    return [rng.standard_normal(s).astype(np.float32) for s in SHAPES]


def rel_diff(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-12)


def run_vt(cls, kwargs, groups=None, steps=STEPS):
    ps = [nn.Parameter(vt.tensor(v)) for v in init_values()]
    params = ps if groups is None else [dict(g, params=[ps[i] for i in idx])
                                         for idx, g in groups]
    opt = cls(params, **kwargs)
    history = []
    for s in range(steps):
        for p, g in zip(ps, grads(s)):
            p.grad = vt.tensor(g)
        opt.step()
        history.append([p.numpy().copy() for p in ps])
    return history, opt, ps


# -- numpy references (float64) -------------------------------------------------------------------

def np_sgd(lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False):
    ps = [v.astype(np.float64) for v in init_values()]
    bufs = [None] * len(ps)
    hist = []
    for s in range(STEPS):
        for i, g in enumerate(grads(s)):
            d = (-g if maximize else g) + weight_decay * ps[i]
            if momentum:
                bufs[i] = d.copy() if bufs[i] is None else momentum * bufs[i] + (1 - dampening) * d
                d = d + momentum * bufs[i] if nesterov else bufs[i]
            ps[i] = ps[i] - lr * d
        hist.append([p.copy() for p in ps])
    return hist


def np_adam(lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False):
    ps = [v.astype(np.float64) for v in init_values()]
    m = [np.zeros_like(p) for p in ps]
    v = [np.zeros_like(p) for p in ps]
    b1, b2 = betas
    hist = []
    for s in range(STEPS):
        t = s + 1
        for i, g in enumerate(grads(s)):
            g = g.astype(np.float64)
            if decoupled:
                ps[i] = ps[i] * (1 - lr * weight_decay)
            else:
                g = g + weight_decay * ps[i]
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            mhat, vhat = m[i] / (1 - b1 ** t), v[i] / (1 - b2 ** t)
            ps[i] = ps[i] - lr * mhat / (np.sqrt(vhat) + eps)
        hist.append([p.copy() for p in ps])
    return hist


CASES = [
    ("sgd", optim.SGD, dict(lr=0.1), lambda: np_sgd(0.1)),
    ("sgd_momentum", optim.SGD, dict(lr=0.05, momentum=0.9), lambda: np_sgd(0.05, 0.9)),
    ("sgd_damp_wd", optim.SGD, dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.01),
     lambda: np_sgd(0.05, 0.8, 0.3, 0.01)),
    ("sgd_nesterov", optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
     lambda: np_sgd(0.05, 0.9, 0.0, 1e-3, True)),
    ("sgd_maximize", optim.SGD, dict(lr=0.01, momentum=0.5, maximize=True),
     lambda: np_sgd(0.01, 0.5, maximize=True)),
    ("adam", optim.Adam, dict(lr=1e-2), lambda: np_adam(1e-2)),
    ("adam_wd", optim.Adam, dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1),
     lambda: np_adam(1e-2, (0.8, 0.99), 1e-6, 0.1)),
    ("adamw", optim.AdamW, dict(lr=1e-2), lambda: np_adam(1e-2, weight_decay=1e-2,
                                                          decoupled=True)),
    ("adamw_wd", optim.AdamW, dict(lr=3e-3, weight_decay=0.5),
     lambda: np_adam(3e-3, weight_decay=0.5, decoupled=True)),
]


@pytest.mark.parametrize("name,cls,kwargs,ref", CASES, ids=[c[0] for c in CASES])
def test_vs_numpy(name, cls, kwargs, ref):
    got, _, _ = run_vt(cls, kwargs)
    want = ref()
    for s in range(STEPS):
        for a, b in zip(got[s], want[s]):
            assert rel_diff(a, b) < 2e-5, (name, s)
    # the update moved the parameters
    assert rel_diff(got[-1][0], init_values()[0]) > 1e-3


def run_torch(cls_name, kwargs, groups=None):
    ps = [torch.nn.Parameter(torch.tensor(v)) for v in init_values()]
    params = ps if groups is None else [dict(g, params=[ps[i] for i in idx])
                                         for idx, g in groups]
    opt = getattr(torch.optim, cls_name)(params, **kwargs)
    hist = []
    for s in range(STEPS):
        for p, g in zip(ps, grads(s)):
            p.grad = torch.tensor(g)
        opt.step()
        hist.append([p.detach().numpy().copy() for p in ps])
    return hist


@needs_torch
@pytest.mark.parametrize("name,cls,kwargs,ref", CASES, ids=[c[0] for c in CASES])
def test_vs_torch(name, cls, kwargs, ref):
    got, _, _ = run_vt(cls, kwargs)
    want = run_torch(cls.__name__, kwargs)
    for s in range(STEPS):
        for a, b in zip(got[s], want[s]):
            assert rel_diff(a, b) < 1e-5, (name, s, rel_diff(a, b))


GROUPS = [([0, 2], dict(lr=0.05)), ([1], dict(lr=0.2, weight_decay=0.3))]


@needs_torch
@pytest.mark.parametrize("cls,kwargs", [(optim.SGD, dict(lr=0.1, momentum=0.9)),
                                        (optim.AdamW, dict(lr=1e-2, betas=(0.85, 0.995)))])
def test_param_groups_vs_torch(cls, kwargs):
    got, opt, _ = run_vt(cls, kwargs, GROUPS)
    want = run_torch(cls.__name__, kwargs, GROUPS)
    for s in range(STEPS):
        for a, b in zip(got[s], want[s]):
            assert rel_diff(a, b) < 1e-5
    assert [g["lr"] for g in opt.param_groups] == [0.05, 0.2]
    assert opt.param_groups[0]["weight_decay"] == kwargs.get("weight_decay",
                                                             opt.defaults["weight_decay"])


def test_param_groups_options_and_add_param_group():
    p1, p2, p3 = (nn.Parameter(vt.ones(2)) for _ in range(3))
    opt = optim.SGD([{"params": [p1]}, {"params": p2, "lr": 0.5}], lr=0.1, momentum=0.0)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]
    opt.add_param_group({"params": [p3], "lr": 1.0})
    for p in (p1, p2, p3):
        p.grad = vt.ones(2)
    opt.step()
    assert [p.tolist()[0] for p in (p1, p2, p3)] == pytest.approx([0.9, 0.5, 0.0])
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [p1]})
    # a parameter without grad is skipped; zero_grad clears
    p1.grad = None
    opt.step()
    assert p1.tolist()[0] == pytest.approx(0.9)
    opt.zero_grad()
    assert p2.grad is None and p3.grad is None


def test_optimizer_bad_input():
    p = nn.Parameter(vt.ones(2))
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match="iterable of Tensors"):
        optim.SGD(p, lr=0.1)
    with pytest.raises(ValueError, match="Invalid learning rate: -1"):
        optim.AdamW([p], lr=-1)
    with pytest.raises(ValueError, match="Invalid beta parameter at index 1: 1.0"):
        optim.Adam([p], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="Nesterov momentum requires"):
        optim.SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="non-leaf"):
        optim.SGD([p * 2], lr=0.1)
    with pytest.raises(NotImplementedError, match="amsgrad"):
        optim.Adam([p], amsgrad=True)


@pytest.mark.parametrize("cls,kwargs", [(optim.SGD, dict(lr=0.05, momentum=0.9)),
                                        (optim.Adam, dict(lr=1e-2, weight_decay=0.1)),
                                        (optim.AdamW, dict(lr=1e-2))])
def test_state_dict_round_trip(cls, kwargs):
    full, _, _ = run_vt(cls, kwargs)
    # 10 steps, save, rebuild the parameters and a fresh optimizer from the saved state, 10 more
    half, opt, ps = run_vt(cls, kwargs, steps=10)
    sd = opt.state_dict()
    assert sorted(sd["state"]) == [0, 1, 2]
    assert sd["param_groups"][0]["params"] == [0, 1, 2]
    assert sd["param_groups"][0]["lr"] == kwargs["lr"]
    ps2 = [nn.Parameter(vt.tensor(p.numpy().copy())) for p in ps]
    opt2 = cls(ps2, lr=123.0)
    opt2.load_state_dict(sd)
    assert opt2.param_groups[0]["lr"] == kwargs["lr"]
    if cls is not optim.SGD:
        assert opt2.state[ps2[0]]["step"] == 10
        # state was copied, not shared
        assert opt2.state[ps2[0]]["exp_avg"].data_ptr() != opt.state[ps[0]]["exp_avg"].data_ptr()
    for s in range(10, STEPS):
        for p, g in zip(ps2, grads(s)):
            p.grad = vt.tensor(g)
        opt2.step()
    for a, b in zip([p.numpy() for p in ps2], full[-1]):
        np.testing.assert_array_equal(a, b)


def test_load_state_dict_mismatch():
    a = optim.AdamW([nn.Parameter(vt.ones(2)), nn.Parameter(vt.ones(3))])
    b = optim.AdamW([nn.Parameter(vt.ones(2))])
    with pytest.raises(ValueError, match="doesn't match the size of optimizer's group"):
        b.load_state_dict(a.state_dict())
    with pytest.raises(ValueError, match="'state' and 'param_groups'"):
        b.load_state_dict({})
    p = nn.Parameter(vt.ones(2))
    p.grad = vt.ones(2)
    c = optim.AdamW([p])
    c.step()
    d = optim.AdamW([nn.Parameter(vt.ones(4))])
    with pytest.raises(ValueError, match=r"state 'exp_avg' of parameter 0 has shape \(2,\)"):
        d.load_state_dict(c.state_dict())


# -- schedulers ---------------------------------------------------------------------------------

def lrs_of(make_sched, steps=30, lr=0.1, torch_mod=None):
    lib = torch_mod if torch_mod is not None else None
    if lib is None:
        p = nn.Parameter(vt.zeros(1))
        opt = optim.SGD([p, ], lr=lr)
    else:
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([p], lr=lr)
    s = make_sched(opt)
    out = [opt.param_groups[0]["lr"]]
    for _ in range(steps):
        opt.step()
        s.step()
        out.append(opt.param_groups[0]["lr"])
        assert s.get_last_lr() == [out[-1]]
    return out


def test_cosine_with_warmup_formula():
    got = lrs_of(lambda o: lr_scheduler.get_cosine_schedule_with_warmup(o, 5, 25))
    want = [0.1 * (i / 5 if i < 5 else
                   0.5 * (1 + math.cos(math.pi * min(1.0, (i - 5) / 20)))) for i in range(31)]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    assert got[0] == 0.0 and got[5] == pytest.approx(0.1) and got[25] == pytest.approx(0.0)
    got = lrs_of(lambda o: lr_scheduler.CosineWithWarmup(o, 0, 10, min_lr_ratio=0.1), steps=12)
    assert got[0] == pytest.approx(0.1) and got[10] == pytest.approx(0.01)
    assert got[12] == pytest.approx(0.01)


def test_step_and_lambda_formulas():
    got = lrs_of(lambda o: lr_scheduler.StepLR(o, step_size=4, gamma=0.5), steps=12)
    np.testing.assert_allclose(got, [0.1 * 0.5 ** (i // 4) for i in range(13)], rtol=1e-12)
    got = lrs_of(lambda o: lr_scheduler.LambdaLR(o, lambda e: 1 / (1 + e)), steps=5)
    np.testing.assert_allclose(got, [0.1 / (1 + i) for i in range(6)], rtol=1e-12)
    with pytest.raises(ValueError, match="step_size"):
        lr_scheduler.StepLR(optim.SGD([nn.Parameter(vt.ones(1))], lr=0.1), step_size=0)


@needs_torch
def test_schedulers_vs_torch():
    for vt_make, t_make in [
        (lambda o: lr_scheduler.StepLR(o, 3, 0.7),
         lambda o: torch.optim.lr_scheduler.StepLR(o, 3, 0.7)),
        (lambda o: lr_scheduler.LambdaLR(o, lambda e: 0.95 ** e),
         lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda e: 0.95 ** e)),
    ]:
        np.testing.assert_allclose(lrs_of(vt_make), lrs_of(t_make, torch_mod=torch), rtol=1e-12)


def test_scheduler_state_dict_round_trip():
    p = nn.Parameter(vt.zeros(1))
    opt = optim.AdamW([p], lr=1.0)
    s = lr_scheduler.get_cosine_schedule_with_warmup(opt, 3, 20)
    for _ in range(7):
        s.step()
    sd = s.state_dict()
    assert sd["last_epoch"] == 7 and "optimizer" not in sd
    opt2 = optim.AdamW([nn.Parameter(vt.zeros(1))], lr=1.0)
    s2 = lr_scheduler.get_cosine_schedule_with_warmup(opt2, 1, 2)  # different config, restored
    s2.load_state_dict(sd)
    s.step()
    s2.step()
    assert s2.last_epoch == 8 and s2.get_last_lr() == s.get_last_lr()
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    st = lr_scheduler.StepLR(opt, 2)
    st.step()
    assert lr_scheduler.StepLR(opt2, 5).state_dict()["step_size"] == 5
    st2 = lr_scheduler.StepLR(opt2, 5)
    st2.load_state_dict(st.state_dict())
    assert st2.step_size == 2 and st2.last_epoch == 1


# -- every device: the fused kernels (core::adamw_, core::sgd_) and the multi-tensor AdamW ----------
# (core::adamw_multi, which vt.optim.AdamW uses on CUDA). On cuda they run against the cpu's
# numbers; on cpu the multi op runs against the per-tensor op.
from conftest import DEVICES, make, to_numpy  # noqa: E402

gpu = pytest.mark.skipif("cuda" not in DEVICES, reason="needs a CUDA GPU")
DTOL = {"float32": 2e-6, "float64": 1e-13, "float16": 2e-3, "bfloat16": 1.6e-2}
LIST_SHAPES = [(33, 17), (5,), (), (0, 3), (4099,), (3, 1, 40), (20000,)]


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


def adam_lists(device, dtype, seed=0, layouts=("contiguous",)):
    """params, grads, exp_avgs, exp_avg_sqs over LIST_SHAPES (layouts cycled), as vt tensors on
    `device`; the states start non-zero so every term of the update matters."""
    rng = np.random.default_rng(seed)
    out = [[], [], [], []]
    for i, s in enumerate(LIST_SHAPES):
        lay = layouts[i % len(layouts)]
        p, _ = make(rng, s, dtype, lay, device)
        g, _ = make(rng, s, dtype, "contiguous", device)
        m, _ = make(rng, s, dtype, lay, device, low=-0.1, high=0.1)
        v, _ = make(rng, s, dtype, "contiguous", device, low=0.0, high=0.01)
        for lst, t in zip(out, (p, g, m, v)):
            lst.append(t)
    return out


def clone_lists(lists):
    return [[t.clone() for t in lst] for lst in lists]


HP = dict(lr=1e-2, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1)


def per_tensor_steps(lists, steps, hp=HP):
    for step in range(1, steps + 1):
        for p, g, m, v in zip(*lists):
            vt.ops.core.adamw_(p, g, m, v, hp["lr"], hp["beta1"], hp["beta2"], hp["eps"],
                               hp["weight_decay"], step)


def multi_steps(lists, steps, hp=HP):
    for step in range(1, steps + 1):
        r = vt.ops.core.adamw_multi(*lists, hp["lr"], hp["beta1"], hp["beta2"], hp["eps"],
                                    hp["weight_decay"], step)
        assert r == ()


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16", "float64"])
def test_adamw_multi_equals_per_tensor(device, dtype):
    """The multi-tensor op gives the per-tensor op's bits, contiguous or strided entries."""
    a = adam_lists(device, dtype, layouts=("contiguous", "transposed", "contiguous", "sliced"))
    b = clone_lists(a)
    per_tensor_steps(a, 3)
    multi_steps(b, 3)
    for la, lb in zip(a, b):
        for x, y in zip(la, lb):
            np.testing.assert_array_equal(to_numpy(y), to_numpy(x))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16", "float64"])
def test_adamw_on_device_matches_cpu(device, dtype):
    a = adam_lists("cpu", dtype, seed=1, layouts=("contiguous", "sliced"))
    b = [[t.to(device) for t in lst] for lst in a]
    per_tensor_steps(a, 4)
    multi_steps(b, 4)
    tol = DTOL[dtype]
    for la, lb in zip(a, b):
        for x, y in zip(la, lb):
            np.testing.assert_allclose(to_numpy(y), to_numpy(x), rtol=tol, atol=tol)


def test_adamw_multi_device_scalars(device):
    """lr_t / step_t (1-element float32 tensors on the device) give the scalar arguments'
    results; step_t counts the steps."""
    a = adam_lists(device, "float32", seed=2)
    b = clone_lists(a)
    lr_t = vt.full((1,), HP["lr"], device=device)
    step_t = vt.zeros(1, device=device)
    multi_steps(a, 3)
    for _ in range(3):
        vt.ops.core.adamw_multi(*b, 123.0, HP["beta1"], HP["beta2"], HP["eps"], HP["weight_decay"], 0,
                                lr_t, step_t)
    assert step_t.cpu().tolist() == [3.0]
    for la, lb in zip(a, b):
        for x, y in zip(la, lb):
            np.testing.assert_allclose(to_numpy(y), to_numpy(x), rtol=1e-6, atol=1e-7)


def test_adamw_multi_bad_input(device):
    p = [vt.zeros(3, device=device), vt.zeros(2, device=device)]
    z = [vt.zeros(3, device=device), vt.zeros(2, device=device)]
    args = (0.1, 0.9, 0.99, 1e-8, 0.0, 1)
    with pytest.raises(ValueError, match=r"grads has 1 tensors, params has 2"):
        vt.ops.core.adamw_multi(p, z[:1], z, z, *args)
    with pytest.raises(ValueError, match=r"exp_avgs\[1\] must have param's shape \(2,\), got \(3,\)"):
        vt.ops.core.adamw_multi(p, z, [z[0], z[0]], z, *args)
    with pytest.raises(TypeError, match=r"exp_avg_sqs\[0\]"):
        vt.ops.core.adamw_multi(p, z, z, [z[0].to(vt.float64), z[1]], *args)
    with pytest.raises(ValueError, match="step must be >= 1"):
        vt.ops.core.adamw_multi(p, z, z, z, 0.1, 0.9, 0.99, 1e-8, 0.0, 0)
    with pytest.raises(ValueError, match="step_t must be a 1-element float32"):
        vt.ops.core.adamw_multi(p, z, z, z, *args, None, vt.zeros(2, device=device))
    assert vt.ops.core.adamw_multi([], [], [], [], *args) == ()


@pytest.mark.parametrize("momentum,dampening,nesterov,wd", [(0.0, 0.0, False, 0.0), (0.9, 0.0, False, 0.01),
                                                            (0.9, 0.1, False, 0.0), (0.9, 0.0, True, 0.05)])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float64"])
def test_sgd_on_device_matches_cpu(device, momentum, dampening, nesterov, wd, dtype):
    rng = np.random.default_rng(3)
    for shape, layout in (((64, 33), "contiguous"), ((17, 9), "transposed"), ((5000,), "sliced"), ((), "contiguous")):
        p, _ = make(rng, shape, dtype, layout, "cpu")
        buf = vt.zeros(*shape, dtype=getattr(vt, dtype)) if momentum else None
        pd = make(np.random.default_rng(0), shape, dtype, layout, device)[0]  # the same layout there
        pd.copy_(p.to(device))
        bd = buf.to(device).clone() if momentum else None  # (on cpu .to is the same tensor)
        for step in range(3):
            g, _ = make(rng, shape, dtype, "contiguous", "cpu")
            d = dampening if step else 0.0
            vt.ops.core.sgd_(p, g, buf, 0.1, momentum, d, wd, nesterov)
            vt.ops.core.sgd_(pd, g.to(device), bd, 0.1, momentum, d, wd, nesterov)
        tol = DTOL[dtype]
        np.testing.assert_allclose(to_numpy(pd), to_numpy(p), rtol=tol, atol=tol)
        if momentum:
            np.testing.assert_allclose(to_numpy(bd), to_numpy(buf), rtol=tol, atol=tol)


def run_vt_on(device, cls, kwargs, steps=STEPS):
    ps = [nn.Parameter(vt.tensor(v).to(device)) for v in init_values()]
    opt = cls(ps, **kwargs)
    history = []
    for s in range(steps):
        for p, g in zip(ps, grads(s)):
            p.grad = vt.tensor(g).to(device)
        opt.step()
        history.append([to_numpy(p) for p in ps])
    return history, opt, ps


@pytest.mark.parametrize("flags", [dict(), dict(fused=True), dict(fused=False), dict(foreach=True)],
                         ids=["auto", "fused", "per-tensor", "foreach"])
@pytest.mark.parametrize("name", ["adam_wd", "adamw", "adamw_wd"])
def test_adam_paths_vs_numpy(device, name, flags):
    """Every path (multi-tensor, per tensor) on every device meets the float64 reference."""
    _, cls, kwargs, ref = next(c for c in CASES if c[0] == name)
    got, opt, ps = run_vt_on(device, cls, dict(kwargs, **flags))
    want = ref()
    for s in range(STEPS):
        for a, b in zip(got[s], want[s]):
            assert rel_diff(a, b) < 2e-5, (name, s)
    multi = opt._multi(opt.param_groups[0], ps)
    assert multi == (flags.get("fused", flags.get("foreach")) if flags else device == "cuda")


def test_multi_path_steps_params_with_different_counts(device):
    """A parameter that had no gradient for a step keeps its own step count (torch's rule)."""
    ps = [nn.Parameter(vt.tensor(v).to(device)) for v in init_values()]
    qs = [nn.Parameter(vt.tensor(v).to(device)) for v in init_values()]
    a = optim.AdamW(ps, lr=1e-2, fused=True)
    b = optim.AdamW(qs, lr=1e-2, fused=False)
    for s in range(4):
        for i, (p, q, g) in enumerate(zip(ps, qs, grads(s))):
            gg = None if (i == 1 and s == 1) else vt.tensor(g).to(device)
            p.grad, q.grad = gg, (None if gg is None else gg.clone())
        v0 = ps[0]._version
        a.step()
        b.step()
        assert ps[0]._version > v0  # the multi op's writes bump the version counter
    assert a.state[ps[1]]["step"] == 3 and a.state[ps[0]]["step"] == 4
    for p, q in zip(ps, qs):
        np.testing.assert_array_equal(to_numpy(p), to_numpy(q))


@gpu
def test_capturable_adamw_matches_eager_and_replays_in_a_cuda_graph():
    import vibetensor.cuda as vcuda

    ps = [nn.Parameter(vt.tensor(v).to("cuda")) for v in init_values()]
    qs = [nn.Parameter(vt.tensor(v).to("cuda")) for v in init_values()]
    opt = optim.AdamW(ps, lr=1e-2, weight_decay=0.1, capturable=True)
    ref = optim.AdamW(qs, lr=1e-2, weight_decay=0.1)

    def set_grads(s):
        for p, q, g in zip(ps, qs, grads(s)):
            gd = vt.tensor(g).to("cuda")
            if p.grad is None:
                p.grad = gd.clone()
            else:
                p.grad.copy_(gd)  # static gradient buffers: the graph reads these
            q.grad = gd

    set_grads(0)
    opt.step()  # eager warm-up: makes the state and the device scalars
    ref.step()
    g = vcuda.CUDAGraph()
    with vcuda.graph(g):
        opt.step()
    for s in range(1, 6):
        set_grads(s)
        if s == 4:  # a schedule: change lr between replays
            for o in (opt, ref):
                o.param_groups[0]["lr"] = 3e-3
            opt.update_lr()
        g.replay()
        ref.step()
        for p, q in zip(ps, qs):
            np.testing.assert_allclose(to_numpy(p), to_numpy(q), rtol=1e-6, atol=1e-7)
    assert opt.state[ps[0]]["step"].cpu().tolist() == [6.0]


# -- core::clip_grad_norm (vt.nn.utils.clip_grad_norm_'s fused step) -----------------------------


def clip_reference(arrays, max_norm, norm_type):
    """(total norm, scaled arrays) in float64, the factor rounded as torch rounds it: float32, then
    each gradient's dtype."""
    flat = np.concatenate([a.astype(np.float64).ravel() for a in arrays])
    total = np.abs(flat).max() if math.isinf(norm_type) else math.sqrt((flat * flat).sum())
    coef = min(np.float32(max_norm) / (np.float32(total) + np.float32(1e-6)), np.float32(1.0))
    return total, coef


@pytest.mark.parametrize("norm_type", [2.0, float("inf")])
@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_clip_grad_norm_op(device, norm_type, max_norm):
    """Mixed dtypes and layouts in one list, 0-size entries, clipping and not: the total against
    float64 numpy, every gradient scaled by the factor in its own dtype (untouched when it is 1)."""
    rng = np.random.default_rng(7)
    specs = [("float32", (300, 70), "contiguous"), ("bfloat16", (129,), "contiguous"),
             ("float32", (40, 33), "transposed"), ("float64", (17, 5), "contiguous"),
             ("float16", (8, 9), "sliced"), ("float32", (0, 4), "contiguous"),
             ("float32", (20000,), "contiguous")]
    grads, arrays = [], []
    for dtype, shape, layout in specs:
        t, a = make(rng, shape, dtype, layout, device=device)
        grads.append(t)
        arrays.append(a)
    total, coef = clip_reference(arrays, max_norm, norm_type)
    got = vt.ops.core.clip_grad_norm(grads, max_norm, norm_type)
    assert got.shape == () and got.dtype == vt.float32 and got.device == vt.device(device)
    np.testing.assert_allclose(got.item(), total, rtol=2e-6)
    for t, a, (dtype, _, _) in zip(grads, arrays, specs):
        k = float(vt.tensor(float(coef)).to(getattr(vt, dtype)).float().item())
        exp = a.astype(np.float64) * k
        if coef == 1.0:
            np.testing.assert_array_equal(to_numpy(t).astype(np.float64), a.astype(np.float64))
        else:
            np.testing.assert_allclose(to_numpy(t).astype(np.float64), exp, rtol=DTOL[dtype], atol=1e-30)


def test_clip_grad_norm_module_path(device):
    """vt.nn.utils.clip_grad_norm_ takes the fused op for 2 and inf and the op-by-op path for
    other orders; both give the same norms and gradients."""
    rng = np.random.default_rng(8)
    for norm_type in (2.0, float("inf"), 3.0):
        ps = [vt.nn.Parameter(vt.zeros(*s, device=device)) for s in [(6, 5), (7,)]]
        gs = [rng.standard_normal(p.shape).astype(np.float32) for p in ps]
        for p, g in zip(ps, gs):
            p.grad = vt.tensor(g, device=device)
        flat = np.concatenate([g.ravel().astype(np.float64) for g in gs])
        exp = np.linalg.norm(flat, norm_type)
        total = vt.nn.utils.clip_grad_norm_(ps, 0.25, norm_type)
        np.testing.assert_allclose(total.item(), exp, rtol=1e-5)
        for p, g in zip(ps, gs):
            np.testing.assert_allclose(to_numpy(p.grad), g * (0.25 / (exp + 1e-6)), rtol=1e-5)


def test_clip_grad_norm_bad_input(device):
    z = vt.zeros(3, device=device)
    with pytest.raises(ValueError, match=r"\[core::clip_grad_norm\] grads is empty"):
        vt.ops.core.clip_grad_norm([], 1.0)
    with pytest.raises(ValueError, match=r"\[core::clip_grad_norm\] norm_type must be 2 or inf, got 1"):
        vt.ops.core.clip_grad_norm([z], 1.0, 1.0)
    with pytest.raises(TypeError, match=r"\[core::clip_grad_norm\] grads\[1\] must have a floating dtype"):
        vt.ops.core.clip_grad_norm([z, vt.zeros(2, dtype=vt.int64, device=device)], 1.0)
