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
