"""vt.nn: Module semantics, state_dict errors, repr, init statistics, and every layer's forward and
backward against a numpy reference (always) and against torch with copied weights (when torch
imports)."""
from __future__ import annotations

import math

import numpy as np
import pytest

import vibetensor as vt
import vibetensor.nn.functional as F
from vibetensor import nn

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch is not importable")


def npy(t):
    return t.detach().float().numpy().astype(np.float64)


def copy_to_torch(vt_module, torch_module):
    """Load vt's weights into the torch module (names must agree)."""
    sd = {k: torch.tensor(v.numpy()) for k, v in vt_module.state_dict().items()}
    torch_module.load_state_dict(sd, strict=True)


def assert_close(a, b, rtol=2e-5, atol=2e-5):
    a = npy(a) if isinstance(a, vt.Tensor) else np.asarray(a, dtype=np.float64)
    b = b.detach().double().numpy() if torch is not None and isinstance(b, torch.Tensor) else \
        np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.act = nn.GELU()
        self.blocks = nn.ModuleList([nn.Linear(8, 8), nn.Linear(8, 8)])
        self.heads = nn.ModuleDict({"a": nn.Linear(8, 2), "b": nn.Identity()})
        self.scale = nn.Parameter(vt.ones(1))
        self.register_buffer("running", vt.zeros(3))
        self.register_buffer("scratch", vt.zeros(2), persistent=False)

    def forward(self, x):
        x = self.act(self.fc1(x))
        for b in self.blocks:
            x = x + b(x)
        return self.heads["a"](x) * self.scale


# -- module semantics ---------------------------------------------------------------------------

def test_registration_and_traversal():
    m = Net()
    names = [k for k, _ in m.named_parameters()]
    assert names == ["scale", "fc1.weight", "fc1.bias", "blocks.0.weight", "blocks.0.bias",
                     "blocks.1.weight", "blocks.1.bias", "heads.a.weight", "heads.a.bias"]
    assert [k for k, _ in m.named_buffers()] == ["running", "scratch"]
    assert [k for k, _ in m.named_children()] == ["fc1", "act", "blocks", "heads"]
    assert [k for k, _ in m.named_modules()] == ["", "fc1", "act", "blocks", "blocks.0",
                                                 "blocks.1", "heads", "heads.a", "heads.b"]
    assert len(list(m.modules())) == 9
    assert sum(p.numel() for p in m.parameters()) == 1 + 40 + 72 * 2 + 18
    assert m.num_parameters() == 203
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in m.parameters())
    assert list(m.state_dict()) == names[:1] + ["running"] + names[1:]  # scratch not persistent
    assert m.get_submodule("blocks.1") is m.blocks[1]
    assert m.get_parameter("heads.a.bias") is m.heads["a"].bias
    assert m(vt.randn(5, 4)).shape == (5, 2)


def test_shared_parameter_counted_once_and_reassignment():
    a = nn.Linear(3, 3)
    m = nn.Sequential(a, nn.ReLU(), a)
    assert len(list(m.parameters())) == 2
    assert len(list(m.named_parameters(remove_duplicate=False))) == 4
    # assigning a plain module/param/None moves it between stores
    m2 = nn.Module()
    m2.w = nn.Parameter(vt.zeros(2))
    with pytest.raises(TypeError, match="cannot assign Tensor as parameter 'w'"):
        m2.w = vt.zeros(2)
    m2.w = None
    assert m2.w is None and list(m2.parameters()) == []
    m2.sub = nn.Linear(1, 1)
    del m2.sub
    assert not hasattr(m2, "sub")
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        m2.nope


def test_setattr_before_init_is_a_clear_error():
    class Bad(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(2, 2)

    with pytest.raises(AttributeError, match="super\\(\\).__init__\\(\\)"):
        Bad()


def test_parameter_is_a_leaf_tensor():
    t = vt.arange(4.0)
    p = nn.Parameter(t)
    assert isinstance(p, nn.Parameter) and isinstance(p, vt.Tensor)
    assert p.requires_grad and p.is_leaf and p.grad_fn is None
    assert not isinstance(p * 2, nn.Parameter)
    (p * p).sum().backward()
    assert p.grad.tolist() == [0.0, 2.0, 4.0, 6.0]
    assert p.tolist() == [0.0, 1.0, 2.0, 3.0]
    q = nn.Parameter(t, requires_grad=False)
    assert not q.requires_grad
    with pytest.raises(TypeError, match="floating-point"):
        nn.Parameter(vt.arange(3))
    assert repr(p).startswith("Parameter containing:\ntensor(")
    # .data swaps the storage behind the same object
    p.data = vt.ones(2)
    assert p.shape == (2,) and p.requires_grad and p.tolist() == [1.0, 1.0]


def test_train_eval_zero_grad_apply():
    m = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.Sequential(nn.Dropout(0.1)))
    assert m.training and all(x.training for x in m.modules())
    m.eval()
    assert not any(x.training for x in m.modules())
    x = vt.randn(3, 4)
    np.testing.assert_array_equal(m(x).numpy(), m(x).numpy())  # no dropout in eval
    m.train()
    assert all(x.training for x in m.modules())
    m(x).sum().backward()
    w = m[0].weight
    assert w.grad is not None
    m.zero_grad(set_to_none=False)
    assert w.grad is not None and np.all(w.grad.numpy() == 0)
    m.zero_grad()
    assert w.grad is None
    seen = []
    m.apply(lambda mod: seen.append(type(mod).__name__))
    assert seen == ["Linear", "Dropout", "Dropout", "Sequential", "Sequential"]
    m.requires_grad_(False)
    assert not any(p.requires_grad for p in m.parameters())


def test_to_dtype_keeps_parameter_objects():
    m = Net()
    w = m.fc1.weight
    before = w.numpy().copy()
    m.to(vt.float64)
    assert m.fc1.weight is w and w.dtype is vt.float64 and w.requires_grad and w.is_leaf
    assert m.running.dtype is vt.float64
    np.testing.assert_array_equal(w.numpy(), before.astype(np.float64))
    out = m(vt.randn(2, 4, dtype=vt.float64))
    assert out.dtype is vt.float64
    out.sum().backward()
    assert w.grad.dtype is vt.float64
    m.float()
    assert w.dtype is vt.float32 and w.grad.dtype is vt.float32
    m.to("cpu")
    with pytest.raises(TypeError, match="floating point"):
        m.to(vt.int64)


def test_deepcopy_makes_independent_parameters_and_buffers():
    import copy

    m = Net()
    c = copy.deepcopy(m)
    assert isinstance(c, Net) and isinstance(c.fc1.weight, nn.Parameter)
    assert c.fc1.weight.requires_grad and c.fc1.weight.data_ptr() != m.fc1.weight.data_ptr()
    assert c.running.data_ptr() != m.running.data_ptr()
    x = vt.randn(2, 4)
    np.testing.assert_array_equal(c(x).numpy(), m(x).numpy())
    nn.init.zeros_(c.fc1.weight)
    assert np.abs(m.fc1.weight.numpy()).sum() > 0
    shared = nn.Sequential(m.fc1, m.fc1)
    c2 = copy.deepcopy(shared)
    assert c2[0] is c2[1]  # sharing is preserved


# -- state dict ---------------------------------------------------------------------------------

def test_state_dict_round_trip_and_numpy_values():
    a, b = Net(), Net()
    out = b.load_state_dict(a.state_dict())
    assert out.missing_keys == [] and out.unexpected_keys == []
    x = vt.randn(3, 4)
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())
    # state_dict shares memory, load copies
    sd = a.state_dict()
    assert sd["fc1.weight"].data_ptr() == a.fc1.weight.data_ptr()
    assert b.fc1.weight.data_ptr() != a.fc1.weight.data_ptr()
    b.load_state_dict({k: v.numpy() * 2 for k, v in a.state_dict().items()})
    np.testing.assert_array_equal(b.fc1.bias.numpy(), a.fc1.bias.numpy() * 2)


def test_load_state_dict_errors_list_every_problem():
    m = Net()
    sd = dict(m.state_dict())
    del sd["fc1.bias"]
    del sd["running"]
    sd["extra.weight"] = vt.zeros(1)
    sd["blocks.0.weight"] = vt.zeros(8, 9)
    with pytest.raises(RuntimeError) as e:
        m.load_state_dict(sd)
    msg = str(e.value)
    assert "Error(s) in loading state_dict for Net" in msg
    assert 'Missing key(s) in state_dict: "running", "fc1.bias".' in msg
    assert 'Unexpected key(s) in state_dict: "extra.weight".' in msg
    assert ("size mismatch for blocks.0.weight: copying a param with shape (8, 9) from "
            "checkpoint, the shape in current model is (8, 8)") in msg
    # strict=False still refuses shape mismatches but reports missing/unexpected
    with pytest.raises(RuntimeError, match="size mismatch for blocks.0.weight"):
        m.load_state_dict(sd, strict=False)
    sd["blocks.0.weight"] = vt.zeros(8, 8)
    res = m.load_state_dict(sd, strict=False)
    assert res.missing_keys == ["running", "fc1.bias"] and res.unexpected_keys == ["extra.weight"]
    assert np.all(m.blocks[0].weight.numpy() == 0)
    with pytest.raises(RuntimeError, match="scale: expected a Tensor, got str"):
        m.load_state_dict({**m.state_dict(), "scale": "x"})
    with pytest.raises(TypeError, match="expected a dict"):
        m.load_state_dict([1, 2])


def test_checkpoint_of_another_model_names_what_was_expected():
    small, big = nn.Linear(4, 2), nn.Sequential(nn.Linear(4, 2))
    with pytest.raises(RuntimeError) as e:
        big.load_state_dict(small.state_dict())
    assert '"0.weight", "0.bias"' in str(e.value) and '"weight", "bias"' in str(e.value)


# -- repr ---------------------------------------------------------------------------------------

MODEL_REPR = """Sequential(
  (0): Embedding(10, 8, padding_idx=0)
  (1): Linear(in_features=8, out_features=16, bias=False)
  (2): GELU(approximate='tanh')
  (3): Dropout(p=0.1, inplace=False)
  (4): LayerNorm((16,), eps=1e-05, elementwise_affine=True, bias=True)
  (5): ReLU()
  (6): Sequential(
    (0): SiLU()
    (1): Tanh()
  )
)"""


def _repr_model(lib):
    n = lib.nn
    return n.Sequential(n.Embedding(10, 8, padding_idx=0), n.Linear(8, 16, bias=False),
                        n.GELU(approximate="tanh"), n.Dropout(0.1), n.LayerNorm(16), n.ReLU(),
                        n.Sequential(n.SiLU(), n.Tanh()))


def test_repr():
    assert repr(_repr_model(vt)) == MODEL_REPR
    mha = nn.MultiheadAttention(8, 2)
    assert repr(mha) == ("MultiheadAttention(\n  (out_proj): Linear(in_features=8, "
                         "out_features=8, bias=True)\n)")


@needs_torch
def test_repr_matches_torch():
    # torch releases differ on whether LayerNorm names bias=True (its default): compare without it
    def norm(r):
        return r.replace(", bias=True)", ")")

    assert norm(repr(_repr_model(vt))) == norm(repr(_repr_model(torch)))
    for mod in ("ReLU", "SiLU", "Tanh", "Sigmoid", "Identity"):
        assert repr(getattr(nn, mod)()) == repr(getattr(torch.nn, mod)())
    assert repr(nn.RMSNorm(4)) == repr(torch.nn.RMSNorm(4))


# -- bad input ----------------------------------------------------------------------------------

def test_wrong_input_shapes_name_the_layer_and_expectation():
    with pytest.raises(ValueError) as e:
        nn.Linear(8, 4)(vt.randn(2, 3))
    assert str(e.value) == ("Linear(in_features=8, out_features=4, bias=True): expected input "
                            "with last dimension 8, got shape (2, 3)")
    with pytest.raises(ValueError, match=r"LayerNorm\(\(16,\).*trailing shape \(16,\), got "
                                         r"shape \(2, 15\)"):
        nn.LayerNorm(16)(vt.randn(2, 15))
    with pytest.raises(ValueError, match=r"RMSNorm.*trailing shape \(4,\)"):
        nn.RMSNorm(4)(vt.randn(3))
    with pytest.raises(TypeError, match=r"Embedding\(10, 3\): expected integer indices"):
        nn.Embedding(10, 3)(vt.randn(2))
    with pytest.raises(IndexError, match="index 10 is out of bounds"):
        nn.Embedding(10, 3)(vt.tensor([10]))
    with pytest.raises(ValueError, match=r"CausalSelfAttention\(n_embd=16.*expected input of "
                                         r"shape \(B, T, 16\), got shape \(2, 5, 8\)"):
        nn.CausalSelfAttention(16, 4)(vt.randn(2, 5, 8))
    with pytest.raises(ValueError, match=r"TransformerBlock.*\(B, T, 16\), got shape \(5, 16\)"):
        nn.TransformerBlock(16, 4)(vt.randn(5, 16))
    with pytest.raises(ValueError, match=r"MultiheadAttention\(embed_dim=8.*query of shape "
                                         r"\(T, B, E\) with E = 8"):
        nn.MultiheadAttention(8, 2)(vt.randn(3, 2, 6), vt.randn(3, 2, 8), vt.randn(3, 2, 8))
    with pytest.raises(ValueError, match="divisible"):
        nn.CausalSelfAttention(10, 3)
    with pytest.raises(TypeError, match="expected a Tensor input, got list"):
        nn.Linear(2, 2)([1.0, 2.0])
    with pytest.raises(NotImplementedError, match="missing the required \"forward\""):
        nn.Module()(1)


# -- init ---------------------------------------------------------------------------------------

def test_default_inits_match_torch_distributions():
    vt.manual_seed(0)
    fan_in = 256
    lin = nn.Linear(fan_in, 512)
    w, b = lin.weight.numpy(), lin.bias.numpy()
    bound = 1 / math.sqrt(fan_in)  # kaiming_uniform(a=sqrt(5)) == U(-1/sqrt(fan_in), ..)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    assert abs(w.mean()) < 0.01 * bound * 10
    np.testing.assert_allclose(w.var(), bound ** 2 / 3, rtol=0.02)
    assert np.abs(b).max() <= bound and np.abs(b).max() > 0.9 * bound
    emb = nn.Embedding(1000, 64, padding_idx=3).weight.numpy()
    np.testing.assert_allclose(emb.std(), 1.0, rtol=0.02)
    assert np.all(emb[3] == 0)
    ln = nn.LayerNorm(5)
    assert ln.weight.tolist() == [1.0] * 5 and ln.bias.tolist() == [0.0] * 5
    mha = nn.MultiheadAttention(64, 4)
    a = math.sqrt(6 / (64 + 192))  # xavier_uniform on (3E, E)
    assert np.abs(mha.in_proj_weight.numpy()).max() <= a
    assert np.all(mha.in_proj_bias.numpy() == 0) and np.all(mha.out_proj.bias.numpy() == 0)


def test_init_functions():
    init = nn.init
    vt.manual_seed(1)
    t = vt.empty(400, 300)
    assert init.calculate_gain("relu") == math.sqrt(2) and init.calculate_gain("tanh") == 5 / 3
    assert init.calculate_gain("leaky_relu", 0.2) == math.sqrt(2 / 1.04)
    init.kaiming_normal_(t, mode="fan_in", nonlinearity="relu")
    np.testing.assert_allclose(t.numpy().std(), math.sqrt(2 / 300), rtol=0.02)
    init.kaiming_uniform_(t, mode="fan_out", nonlinearity="relu")
    assert np.abs(t.numpy()).max() <= math.sqrt(6 / 400)
    np.testing.assert_allclose(t.numpy().std(), math.sqrt(2 / 400), rtol=0.02)
    init.xavier_uniform_(t, gain=2.0)
    bound = 2.0 * math.sqrt(6 / 700)
    assert np.abs(t.numpy()).max() <= bound and np.abs(t.numpy()).max() > 0.99 * bound
    init.xavier_normal_(t)
    np.testing.assert_allclose(t.numpy().std(), math.sqrt(2 / 700), rtol=0.02)
    init.normal_(t, 3.0, 0.5)
    np.testing.assert_allclose([t.numpy().mean(), t.numpy().std()], [3.0, 0.5], rtol=0.02)
    init.uniform_(t, -2, -1)
    assert t.numpy().min() >= -2 and t.numpy().max() < -1
    init.trunc_normal_(t, std=1.0, a=-2.0, b=2.0)
    x = t.numpy()
    assert x.min() >= -2 and x.max() <= 2
    np.testing.assert_allclose(x.std(), 0.8796, rtol=0.02)  # std of N(0,1) cut at +-2
    init.constant_(t, 0.25)
    assert np.all(t.numpy() == 0.25)
    init.zeros_(t)
    assert np.all(t.numpy() == 0)
    init.ones_(t)
    assert np.all(t.numpy() == 1)
    # a leaf that requires grad can be initialised (no_grad inside)
    p = nn.Parameter(vt.empty(3, 3))
    init.ones_(p)
    assert p.requires_grad and np.all(p.numpy() == 1)
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init.xavier_uniform_(vt.empty(3))
    with pytest.raises(ValueError, match="Unsupported nonlinearity"):
        init.calculate_gain("swish")


# -- layers vs numpy (always) ---------------------------------------------------------------------

def _np_layer_norm(x, w, b, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def _np_sdpa(q, k, v, mask=None, causal=False, scale=None):
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = q @ np.swapaxes(k, -1, -2) * scale
    if causal:
        s = np.where(np.tril(np.ones(s.shape[-2:], bool)), s, -np.inf)
    if mask is not None:
        s = np.where(mask, s, -np.inf) if mask.dtype == bool else s + mask
    s = s - s.max(-1, keepdims=True)
    p = np.exp(s)
    p /= p.sum(-1, keepdims=True)
    return p @ v


def test_layers_vs_numpy():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 8)).astype(np.float32)
    lin = nn.Linear(8, 6)
    assert_close(lin(vt.tensor(x)), x @ npy(lin.weight).T + npy(lin.bias))
    ln = nn.LayerNorm(8)
    vt.nn.init.normal_(ln.weight)
    vt.nn.init.normal_(ln.bias)
    assert_close(ln(vt.tensor(x)), _np_layer_norm(x.astype(np.float64), npy(ln.weight),
                                                  npy(ln.bias)), 1e-4, 1e-4)
    rms = nn.RMSNorm(8, eps=1e-6)
    ref = x / np.sqrt((x.astype(np.float64) ** 2).mean(-1, keepdims=True) + 1e-6)
    assert_close(rms(vt.tensor(x)), ref, 1e-4, 1e-4)
    emb = nn.Embedding(7, 4)
    idx = np.array([[0, 6], [3, 3]])
    assert_close(emb(vt.tensor(idx)), npy(emb.weight)[idx])
    xs = vt.tensor(x)
    assert_close(nn.ReLU()(xs), np.maximum(x, 0))
    assert_close(nn.Tanh()(xs), np.tanh(x))
    assert_close(nn.Sigmoid()(xs), 1 / (1 + np.exp(-x.astype(np.float64))))
    assert_close(nn.SiLU()(xs), x / (1 + np.exp(-x.astype(np.float64))))
    erf = np.vectorize(math.erf)
    assert_close(nn.GELU()(xs), 0.5 * x * (1 + erf(x / math.sqrt(2))), 1e-5, 1e-5)
    e = np.exp(x.astype(np.float64))
    assert_close(nn.Softmax(-1)(xs), e / e.sum(-1, keepdims=True))
    assert_close(nn.LogSoftmax(-1)(xs), np.log(e / e.sum(-1, keepdims=True)))
    # backward of Linear: dL/dW = g^T x for L = sum(y * g)
    g = rng.standard_normal((3, 5, 6)).astype(np.float32)
    (lin(vt.tensor(x)) * vt.tensor(g)).sum().backward()
    assert_close(lin.weight.grad, g.reshape(-1, 6).T @ x.reshape(-1, 8), 1e-4, 1e-4)
    assert_close(lin.bias.grad, g.reshape(-1, 6).sum(0), 1e-4, 1e-4)


@pytest.fixture(params=["pack", "composed"])
def sdpa_path(request, monkeypatch):
    """Run a test through the attention pack (when loaded) and through the core-op composition."""
    if request.param == "composed":
        monkeypatch.setattr(F, "_fused_sdpa", lambda: None)
    return request.param


@pytest.mark.parametrize("case", ["plain", "causal", "causal_tq_lt_tk", "bool_mask",
                                  "float_mask", "scale"])
def test_sdpa_vs_numpy(case, sdpa_path):
    rng = np.random.default_rng(1)
    tq = 3 if case == "causal_tq_lt_tk" else 5
    q = rng.standard_normal((2, 3, tq, 4)).astype(np.float32)
    k = rng.standard_normal((2, 3, 5, 4)).astype(np.float32)
    v = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
    mask, causal, scale = None, case.startswith("causal"), None
    if case == "bool_mask":
        mask = rng.random((tq, 5)) > 0.3
        mask[:, 0] = True
    elif case == "float_mask":
        mask = rng.standard_normal((2, 1, tq, 5)).astype(np.float32)
    elif case == "scale":
        scale = 0.3
    out = F.scaled_dot_product_attention(
        vt.tensor(q), vt.tensor(k), vt.tensor(v),
        attn_mask=None if mask is None else vt.tensor(mask), is_causal=causal, scale=scale)
    ref = _np_sdpa(q.astype(np.float64), k.astype(np.float64), v.astype(np.float64), mask,
                   causal, scale)
    assert_close(out, ref, 1e-4, 1e-5)


def test_sdpa_bad_input():
    q = vt.randn(1, 2, 3, 4)
    with pytest.raises(ValueError, match="same last dim"):
        F.scaled_dot_product_attention(q, vt.randn(1, 2, 3, 5), vt.randn(1, 2, 3, 4))
    with pytest.raises(ValueError, match="same length"):
        F.scaled_dot_product_attention(q, q, vt.randn(1, 2, 4, 4))
    with pytest.raises(ValueError, match="not both"):
        F.scaled_dot_product_attention(q, q, q, attn_mask=vt.ones(3, 3), is_causal=True)


def test_dropout_module_statistics():
    vt.manual_seed(3)
    d = nn.Dropout(0.25)
    y = d(vt.ones(200, 200)).numpy()
    kept = y != 0
    np.testing.assert_allclose(kept.mean(), 0.75, atol=0.01)
    np.testing.assert_allclose(y[kept], 1 / 0.75, rtol=1e-6)
    assert np.all(F.dropout(vt.ones(4), 0.5, training=False).numpy() == 1)
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout(1.5)


def test_clip_grad_norm():
    p1, p2 = nn.Parameter(vt.zeros(3)), nn.Parameter(vt.zeros(2, 2))
    g1 = np.array([3.0, 0.0, 4.0], np.float32)
    g2 = np.array([[1.0, -2.0], [2.0, 0.0]], np.float32)
    p1.grad, p2.grad = vt.tensor(g1), vt.tensor(g2)
    total = nn.utils.clip_grad_norm_([p1, p2], max_norm=1.0)
    norm = math.sqrt(25 + 9)
    assert isinstance(total, vt.Tensor) and total.ndim == 0
    np.testing.assert_allclose(total.item(), norm, rtol=1e-6)
    coef = 1.0 / (norm + 1e-6)
    np.testing.assert_allclose(p1.grad.numpy(), g1 * coef, rtol=1e-6)
    np.testing.assert_allclose(p2.grad.numpy(), g2 * coef, rtol=1e-6)
    # under the limit: untouched; inf norm
    p1.grad = vt.tensor(g1)
    assert nn.utils.clip_grad_norm_(p1, 10.0).item() == 5.0
    assert p1.grad.tolist() == g1.tolist()
    assert nn.utils.clip_grad_norm_([p1, p2], 100.0, norm_type=float("inf")).item() == 4.0
    nn.utils.clip_grad_value_([p1], 3.5)
    assert p1.grad.tolist() == [3.0, 0.0, 3.5]


def test_small_model_trains():
    vt.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 4)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5, 3.0], np.float32))[:, None]
    model = nn.Sequential(nn.Linear(4, 32), nn.GELU(), nn.Linear(32, 1))
    opt = vt.optim.AdamW(model.parameters(), lr=1e-2)
    xs, ys = vt.tensor(x), vt.tensor(y)
    first = None
    for _ in range(150):
        loss = F.mse_loss(model(xs), ys)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.02 * first


# -- layers vs torch with copied weights -----------------------------------------------------------

def _fwd_bwd(vt_mod, t_mod, *inputs, rtol=2e-5, atol=2e-5, out_index=None):
    """Run both modules on the same float inputs, compare outputs, input grads, param grads."""
    vins = [vt.tensor(a).requires_grad_() if a.dtype.kind == "f" else vt.tensor(a)
            for a in inputs]
    tins = [torch.tensor(a).requires_grad_() if a.dtype.kind == "f" else torch.tensor(a)
            for a in inputs]
    vo, to = vt_mod(*vins), t_mod(*tins)
    if out_index is not None:
        vo, to = vo[out_index], to[out_index]
    assert_close(vo, to, rtol, atol)
    g = np.random.default_rng(7).standard_normal(to.shape).astype(np.float32)
    (vo * vt.tensor(g)).sum().backward()
    (to * torch.tensor(g)).sum().backward()
    for vi, ti in zip(vins, tins):
        if ti.grad is not None:
            assert_close(vi.grad, ti.grad, rtol, atol)
    tparams = dict(t_mod.named_parameters())
    for name, p in vt_mod.named_parameters():
        assert_close(p.grad, tparams[name].grad, rtol, atol)


@needs_torch
@pytest.mark.parametrize("layer", ["linear", "linear_nobias", "layernorm", "rmsnorm", "gelu",
                                   "gelu_tanh", "silu", "tanh", "sigmoid", "relu"])
def test_layers_vs_torch(layer):
    x = np.random.default_rng(2).standard_normal((4, 3, 16)).astype(np.float32)
    v, t = {
        "linear": (nn.Linear(16, 8), torch.nn.Linear(16, 8)),
        "linear_nobias": (nn.Linear(16, 8, bias=False), torch.nn.Linear(16, 8, bias=False)),
        "layernorm": (nn.LayerNorm(16), torch.nn.LayerNorm(16)),
        "rmsnorm": (nn.RMSNorm(16), torch.nn.RMSNorm(16)),
        "gelu": (nn.GELU(), torch.nn.GELU()),
        "gelu_tanh": (nn.GELU("tanh"), torch.nn.GELU("tanh")),
        "silu": (nn.SiLU(), torch.nn.SiLU()),
        "tanh": (nn.Tanh(), torch.nn.Tanh()),
        "sigmoid": (nn.Sigmoid(), torch.nn.Sigmoid()),
        "relu": (nn.ReLU(), torch.nn.ReLU()),
    }[layer]
    if layer in ("layernorm", "rmsnorm"):
        for p in v.parameters():
            nn.init.normal_(p)
    copy_to_torch(v, t)
    _fwd_bwd(v, t, x, rtol=1e-4, atol=1e-5)


@needs_torch
def test_embedding_and_cross_entropy_vs_torch():
    v, t = nn.Embedding(11, 6), torch.nn.Embedding(11, 6)
    copy_to_torch(v, t)
    idx = np.array([[1, 2, 10], [1, 0, 1]])
    vo, to = v(vt.tensor(idx)), t(torch.tensor(idx))
    assert_close(vo, to)
    g = np.random.default_rng(0).standard_normal((2, 3, 6)).astype(np.float32)
    (vo * vt.tensor(g)).sum().backward()
    (to * torch.tensor(g)).sum().backward()
    assert_close(v.weight.grad, t.weight.grad)
    logits = np.random.default_rng(1).standard_normal((5, 7)).astype(np.float32)
    tgt = np.array([0, 6, 3, -100, 2])
    vl = nn.CrossEntropyLoss(label_smoothing=0.1)(vt.tensor(logits), vt.tensor(tgt))
    tl = torch.nn.CrossEntropyLoss(label_smoothing=0.1)(torch.tensor(logits), torch.tensor(tgt))
    assert_close(vl, tl, 1e-5, 1e-6)


@needs_torch
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("mode", ["self", "cross_kpm", "causal_weights"])
def test_multihead_attention_vs_torch(batch_first, mode, sdpa_path):
    e, h = 16, 4
    v = nn.MultiheadAttention(e, h, batch_first=batch_first)
    t = torch.nn.MultiheadAttention(e, h, batch_first=batch_first)
    copy_to_torch(v, t)
    rng = np.random.default_rng(3)
    b, tq, tk = 2, 5, 6 if mode == "cross_kpm" else 5

    def shape(n):
        return (b, n, e) if batch_first else (n, b, e)

    q = rng.standard_normal(shape(tq)).astype(np.float32)
    if mode == "self":
        vq = vt.tensor(q).requires_grad_()
        tq_ = torch.tensor(q).requires_grad_()
        vo, vw = v(vq, vq, vq, need_weights=False)
        to, tw = t(tq_, tq_, tq_, need_weights=False)
        assert vw is None and tw is None
    elif mode == "cross_kpm":
        kv = rng.standard_normal(shape(tk)).astype(np.float32)
        kpm = np.zeros((b, tk), bool)
        kpm[0, -2:] = True
        vq, tq_ = vt.tensor(q).requires_grad_(), torch.tensor(q).requires_grad_()
        vo, vw = v(vq, vt.tensor(kv), vt.tensor(kv), key_padding_mask=vt.tensor(kpm))
        to, tw = t(tq_, torch.tensor(kv), torch.tensor(kv), key_padding_mask=torch.tensor(kpm))
        assert_close(vw, tw)
        # the same masks through scaled_dot_product_attention (need_weights=False)
        vo2, _ = v(vq, vt.tensor(kv), vt.tensor(kv), key_padding_mask=vt.tensor(kpm),
                   need_weights=False)
        assert_close(vo2, to, 1e-4, 1e-5)
    else:
        mask = np.triu(np.ones((tq, tq), bool), 1)
        vq, tq_ = vt.tensor(q).requires_grad_(), torch.tensor(q).requires_grad_()
        vo, vw = v(vq, vq, vq, attn_mask=vt.tensor(mask), average_attn_weights=False)
        to, tw = t(tq_, tq_, tq_, attn_mask=torch.tensor(mask), average_attn_weights=False)
        assert_close(vw, tw)
    assert_close(vo, to, 1e-4, 1e-5)
    g = rng.standard_normal(to.shape).astype(np.float32)
    (vo * vt.tensor(g)).sum().backward()
    (to * torch.tensor(g)).sum().backward()
    assert_close(vq.grad, tq_.grad, 1e-4, 1e-5)
    tp = dict(t.named_parameters())
    for name, p in v.named_parameters():
        assert_close(p.grad, tp[name].grad, 1e-4, 1e-5)


class _TorchBlock(torch.nn.Module if torch is not None else object):
    """nanoGPT's Block in torch, with vt.nn.TransformerBlock's parameter names."""

    def __init__(self, c, h):
        super().__init__()
        tn = torch.nn
        self.h = h
        self.ln_1, self.ln_2 = tn.LayerNorm(c), tn.LayerNorm(c)
        self.attn = tn.Module()
        self.attn.c_attn, self.attn.c_proj = tn.Linear(c, 3 * c), tn.Linear(c, c)
        self.mlp = tn.Module()
        self.mlp.c_fc, self.mlp.c_proj = tn.Linear(c, 4 * c), tn.Linear(4 * c, c)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.attn.c_attn(self.ln_1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.h, c // self.h).transpose(1, 2) for z in (q, k, v))
        y = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.attn.c_proj(y.transpose(1, 2).reshape(b, t, c))
        m = self.mlp
        return x + m.c_proj(torch.nn.functional.gelu(m.c_fc(self.ln_2(x))))


@needs_torch
def test_transformer_block_vs_torch(sdpa_path):
    v, t = nn.TransformerBlock(32, 4), _TorchBlock(32, 4)
    copy_to_torch(v, t)
    x = np.random.default_rng(4).standard_normal((2, 7, 32)).astype(np.float32)
    _fwd_bwd(v, t, x, rtol=1e-4, atol=2e-5)


@needs_torch
def test_sdpa_vs_torch_backward(sdpa_path):
    rng = np.random.default_rng(5)
    arrs = [rng.standard_normal((2, 2, 6, 8)).astype(np.float32) for _ in range(3)]
    vs = [vt.tensor(a).requires_grad_() for a in arrs]
    ts = [torch.tensor(a).requires_grad_() for a in arrs]
    vo = F.scaled_dot_product_attention(*vs, is_causal=True)
    to = torch.nn.functional.scaled_dot_product_attention(*ts, is_causal=True)
    assert_close(vo, to, 1e-4, 1e-5)
    vo.sum().backward()
    to.sum().backward()
    for a, b in zip(vs, ts):
        assert_close(a.grad, b.grad, 1e-4, 1e-5)


@needs_torch
def test_clip_grad_norm_vs_torch():
    rng = np.random.default_rng(6)
    gs = [rng.standard_normal(s).astype(np.float32) for s in [(3, 4), (5,), (2, 2, 2)]]
    vps = [nn.Parameter(vt.zeros(*g.shape)) for g in gs]
    tps = [torch.nn.Parameter(torch.zeros(g.shape)) for g in gs]
    for p, q, g in zip(vps, tps, gs):
        p.grad, q.grad = vt.tensor(g), torch.tensor(g)
    for norm_type in (2.0, 1.0, float("inf")):
        vn = nn.utils.clip_grad_norm_(vps, 0.5, norm_type)
        tn = torch.nn.utils.clip_grad_norm_(tps, 0.5, norm_type)
        assert_close(vn, tn, 1e-5, 1e-6)
        for p, q in zip(vps, tps):
            assert_close(p.grad, q.grad, 1e-5, 1e-6)
