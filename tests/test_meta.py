"""The meta device: every op's meta step against its CPU result, the same errors on cpu and meta,
a miniGPT forward + backward on meta, and meta tensors refusing to give up values they do not have.

What it is:
- EXAMPLES: one representative call (or a few) per defined op, in one table. `test_op_on_meta`
  runs each on cpu and, with the same arguments moved to meta, on meta, and requires every output
  to have the CPU output's shape and dtype (and to be on meta). Every op the loaded packs define
  is a test case: an op with no EXAMPLES entry fails, so a new op must add one here.
- DATA_DEPENDENT: calls whose output shape depends on tensor values (nonzero, one_hot with an
  inferred class count). They cannot run on meta and must raise NotImplementedError there.
- BAD: a sample of bad inputs (shape and dtype mismatches, bad dims, bad option values) that must
  raise the same exception class with the same message on cpu and on meta.

What it is not: a check of values (meta tensors have none; the per-family tests check values).
"""
from __future__ import annotations

import re

import numpy as np
import pytest

import vibetensor as vt
from vibetensor.registry import samples as _samples, samples_attention, samples_core

META = "meta"


# -- building example arguments ------------------------------------------------------------------

# The example calls are the packs' own samples tables (registry/samples_core.py,
# samples_attention.py), the ones `vt-ops test` runs: one table per pack, used by both.
DEV = _samples.DEV
Call = _samples.Call
_maker = _samples.Maker(2026)
f, pos, i, b, call = _maker.f, _maker.pos, _maker.i, _maker.b, _maker.call


def _place(v, device):
    """The same argument on `device`: tensors moved (a strided cpu view becomes a view of the
    same strides on device, so meta steps see the layout cpu saw), DEV replaced by the device."""
    if v is DEV:
        return device
    if isinstance(v, vt.Tensor):
        if device == "cpu":
            return v
        if v.is_contiguous() or v.numel() == 0:
            return v.to(device)
        span = v.storage_offset() + 1 + sum((n - 1) * s for n, s in zip(v.shape, v.stride()))
        base = vt.empty(span, dtype=v.dtype, device=device)
        return base.as_strided(v.shape, v.stride(), v.storage_offset())
    if isinstance(v, list):
        return [_place(x, device) for x in v]
    if isinstance(v, tuple):
        return tuple(_place(x, device) for x in v)
    return v


def _run(name, c: Call, device):
    args = [_place(a, device) for a in c.args]
    kwargs = {k: _place(v, device) for k, v in c.kwargs.items()}
    return vt.ops.Op(name)(*args, **kwargs)


def _outputs(r):
    return list(r) if isinstance(r, tuple) else [r]



# One entry per op: a function returning one Call or a list of Calls (built fresh per test).
EXAMPLES = {**samples_core.samples(_maker), **samples_attention.samples(_maker)}

# (op, example, why its output shape depends on tensor values). These raise NotImplementedError
# on meta, with the op's name in the message.
DATA_DEPENDENT = [
    ("core::nonzero", lambda: call(b(2, 3)), "one row per nonzero element"),
    ("core::one_hot", lambda: call(i(2, 3, high=4)), "num_classes=-1 is the largest index + 1"),
]
# ops whose every call is data dependent: their EXAMPLES entry must raise NotImplementedError on meta
DATA_DEPENDENT_OPS = {"core::nonzero"}

_OPS = sorted(vt.ops.op_names())


def _calls(name):
    made = EXAMPLES[name]()
    return made if isinstance(made, list) else [made]


@pytest.mark.parametrize("name", _OPS)
def test_op_on_meta(name):
    assert name in EXAMPLES, (f"{name} has no entry in test_meta.EXAMPLES: add a representative "
                              f"call (or DATA_DEPENDENT with the reason, if it cannot run on meta)")
    for c in _calls(name):
        if name in DATA_DEPENDENT_OPS:
            _expect_refused(name, c)
            continue
        want = _outputs(_run(name, c, "cpu"))
        got = _outputs(_run(name, c, META))
        assert len(got) == len(want), f"{name} {c}: {len(got)} outputs on meta, {len(want)} on cpu"
        for k, (g, w) in enumerate(zip(got, want)):
            where = f"{name} {c} output {k}"
            if isinstance(w, vt.Tensor):
                assert isinstance(g, vt.Tensor), f"{where}: {type(g).__name__} on meta"
                assert g.device.type == META, f"{where}: on {g.device}, not meta"
                assert g.shape == w.shape, f"{where}: shape {g.shape} on meta, {w.shape} on cpu"
                assert g.dtype is w.dtype, f"{where}: dtype {g.dtype} on meta, {w.dtype} on cpu"
            else:  # int/float outputs: the meta step still produces one, of the same type
                assert type(g) is type(w), f"{where}: {g!r} on meta, {w!r} on cpu"


def test_every_example_names_a_defined_op():
    """No stale entries: a renamed or removed op must leave the table too."""
    stale = sorted(set(EXAMPLES) - set(_OPS))
    assert not stale, f"EXAMPLES has entries for ops no pack defines: {stale}"


@pytest.mark.parametrize("name,example,why", DATA_DEPENDENT, ids=[d[0] for d in DATA_DEPENDENT])
def test_data_dependent_ops_refuse_meta(name, example, why):
    _expect_refused(name, example())


def _expect_refused(name, c):
    _run(name, c, "cpu")  # fine on cpu
    with pytest.raises(NotImplementedError, match=re.escape(name)):
        _run(name, c, META)


def test_meta_tensors_and_views():
    """x.to('meta') keeps shape and dtype; views on meta have the strides they would on cpu."""
    x = f(3, 4).T
    m = x.to(META)
    assert m.device.type == META and m.shape == (4, 3) and m.dtype is vt.float32
    assert m.T.stride() == (1, 3) and m[1:, ::2].shape == (3, 2)
    assert _place(x, META).stride() == x.stride()
    assert vt.empty(2, 3, device=META).device.type == META
    assert vt.zeros(2, 3, dtype=vt.int64, device=META).dtype is vt.int64


# -- the same errors on cpu and on meta ------------------------------------------------------------

BAD = [  # (id, op, example with bad arguments)
    ("add_shapes", "core::add", lambda: call(f(2, 3), f(4))),
    ("add__broadcast_self", "core::add_", lambda: call(f(3), f(2, 3))),
    ("add_alpha_int", "core::add", lambda: call(i(3), i(3), 2.5)),
    ("maximum_dtypes", "core::maximum", lambda: call(f(3), f(3, dtype="float64"))),
    ("lt_shapes", "core::lt", lambda: call(f(2, 3), f(4))),
    ("where_cond_dtype", "core::where", lambda: call(f(3), f(3), f(3))),
    ("neg_bool", "core::neg", lambda: call(b(3))),
    ("gelu_approximate", "core::gelu", lambda: call(f(3), "fast")),
    ("clamp_no_bounds", "core::clamp", lambda: call(f(3))),
    ("pow_scalar_int_neg", "core::pow_scalar", lambda: call(i(3), -1.0)),
    ("sum_to_size", "core::sum_to_size", lambda: call(f(2, 3), [4])),
    ("matmul_shapes", "core::matmul", lambda: call(f(2, 3), f(4, 5))),
    ("matmul_dtypes", "core::matmul", lambda: call(f(2, 3), f(3, 2, dtype="float64"))),
    ("matmul_0d", "core::matmul", lambda: call(f(), f(3))),
    ("bmm_2d", "core::bmm", lambda: call(f(2, 3), f(3, 2))),
    ("linear_features", "core::linear", lambda: call(f(2, 3), f(4, 5))),
    ("var_dim", "core::var", lambda: call(f(2, 3), [5])),
    ("std_dim_twice", "core::std", lambda: call(f(2, 3), [1, -1])),
    ("var_int", "core::var", lambda: call(i(3))),
    ("cumsum_dim", "core::cumsum", lambda: call(f(2, 3), -3)),
    ("argmax_dim", "core::argmax", lambda: call(f(2, 3), 2)),
    ("max_empty", "core::max", lambda: call(f(0, 2))),
    ("mean_int", "core::mean", lambda: call(i(2))),
    ("view_size", "core::view", lambda: call(f(2, 3, 4), [5, 5])),
    ("view_stride", "core::view", lambda: call(f(2, 3, 4).T, [24])),
    ("permute_dims", "core::permute", lambda: call(f(2, 3, 4), [0, 0, 1])),
    ("transpose_dim", "core::transpose", lambda: call(f(2, 3, 4), 0, 3)),
    ("expand_size", "core::expand", lambda: call(f(2, 3, 4), [2, 5, 4])),
    ("select_index", "core::select", lambda: call(f(2, 3, 4), 1, 3)),
    ("slice_step", "core::slice", lambda: call(f(2, 3), 0, 0, 1, 0)),
    ("cat_sizes", "core::cat", lambda: call([f(2, 3), f(2, 4)])),
    ("cat_ndim", "core::cat", lambda: call([f(2, 3), f(3)])),
    ("tril_1d", "core::tril", lambda: call(f(3))),
    ("index_select_float_index", "core::index_select", lambda: call(f(3, 4), 0, f(1))),
    ("gather_ndim", "core::gather", lambda: call(f(3, 4), 0, i(1))),
    ("scatter_add_dim", "core::scatter_add", lambda: call(f(3, 4), 2, i(1, 1), f(3, 4))),
    ("index_add_source", "core::index_add", lambda: call(f(3, 4), 0, i(1), f(2, 4))),
    ("masked_fill_mask_dtype", "core::masked_fill", lambda: call(f(3, 4), i(4), 0.0)),
    ("embedding_1d_weight", "core::embedding", lambda: call(f(3), i(1))),
    ("softmax_dim", "core::softmax", lambda: call(f(3, 4), 2)),
    ("log_softmax_int", "core::log_softmax", lambda: call(i(3), 0)),
    ("layer_norm_shape", "core::layer_norm", lambda: call(f(3, 4), [5])),
    ("rms_norm_dtypes", "core::rms_norm", lambda: call(f(3, 4), [4], f(4, dtype="float64"))),
    ("dropout_p", "core::dropout", lambda: call(f(3, 4), 1.5, True)),
    ("cross_entropy_target_dtype", "core::cross_entropy", lambda: call(f(3, 4), f(3))),
    ("cross_entropy_target_shape", "core::cross_entropy", lambda: call(f(3, 4), i(4))),
    ("mse_loss_reduction", "core::mse_loss", lambda: call(f(3), f(3), "avg")),
    ("adamw_grad_shape", "core::adamw_", lambda: call(f(3, 4), f(4), f(3, 4), f(3, 4), 0.1, 0.9,
                                                      0.99, 1e-8, 0.0, 1)),
    ("sgd_needs_buffer", "core::sgd_", lambda: call(f(3), f(3), None, 0.1, 0.9)),
    ("adamw_multi_lengths", "core::adamw_multi", lambda: call([f(3)], [], [f(3)], [f(3)], 0.1, 0.9, 0.99,
                                                              1e-8, 0.0, 1)),
    ("normal_int", "core::normal_", lambda: call(i(3))),
    ("sdpa_q_ndim", "attention::sdpa", lambda: call(f(2, 3, 4), f(2, 3, 5, 4), f(2, 3, 5, 4))),
    ("sdpa_head_dim", "attention::sdpa", lambda: call(f(1, 2, 3, 4), f(1, 2, 5, 7), f(1, 2, 5, 7))),
    ("sdpa_gqa_off", "attention::sdpa", lambda: call(f(1, 4, 3, 4), f(1, 2, 5, 4), f(1, 2, 5, 4))),
    ("sdpa_gqa_heads", "attention::sdpa", lambda: call(f(1, 3, 3, 4), f(1, 2, 5, 4), f(1, 2, 5, 4), None, False,
                                                        None, 0.0, True)),
    ("sdpa_mask_dtype", "attention::sdpa", lambda: call(f(1, 1, 3, 4), f(1, 1, 5, 4),
                                                         f(1, 1, 5, 4), i(3, 5))),
    ("randint_range", "core::randint", lambda: call(3, 3, [2], device=DEV)),
    ("randperm_negative", "core::randperm", lambda: call(-1, device=DEV)),
    ("linspace_steps", "core::linspace", lambda: call(0.0, 1.0, -1, device=DEV)),
]


def _error(name, c, device):
    try:
        _run(name, c, device)
    except Exception as e:  # noqa: BLE001 - the class is what is compared
        return e
    return None


@pytest.mark.parametrize("name,example", [(n, e) for _, n, e in BAD], ids=[b_[0] for b_ in BAD])
def test_same_errors_on_cpu_and_meta(name, example):
    c = example()
    on_cpu, on_meta = _error(name, c, "cpu"), _error(name, c, META)
    assert on_cpu is not None, f"{name} {c}: no error on cpu (the bad input is not bad)"
    assert on_meta is not None, f"{name} {c}: cpu raises {on_cpu!r}, meta raises nothing"
    assert (type(on_meta), str(on_meta)) == (type(on_cpu), str(on_cpu))


# -- a whole model on meta -------------------------------------------------------------------------

def test_minigpt_forward_backward_on_meta():
    from vibetensor.examples.minigpt import GPT, GPTConfig

    cfg = GPTConfig(vocab_size=40, block_size=16, n_layer=2, n_head=2, n_embd=32, dropout=0.1)
    model = GPT(cfg)
    want = {n: p.shape for n, p in model.named_parameters()}
    model.to(META)
    model.train()
    for n, p in model.named_parameters():
        assert p.device.type == META and p.shape == want[n], n
    B, T = 3, 16
    idx = vt.zeros(B, T, dtype=vt.int64, device=META)
    targets = vt.zeros(B, T, dtype=vt.int64, device=META)
    before = vt.memory_stats("cpu")["allocated"]
    logits, loss = model(idx, targets)
    assert logits.device.type == META and logits.shape == (B, T, cfg.vocab_size)
    assert loss.device.type == META and loss.shape == () and loss.dtype is vt.float32
    loss.backward()
    assert vt.memory_stats("cpu")["allocated"] == before, "a meta forward/backward used cpu memory"
    for n, p in model.named_parameters():
        assert p.grad is not None, f"{n} got no gradient"
        assert p.grad.device.type == META, f"{n}.grad is on {p.grad.device}"
        assert p.grad.shape == p.shape and p.grad.dtype is p.dtype, n


# -- no values on meta ------------------------------------------------------------------------------

@pytest.mark.parametrize("what", ["numpy", "item", "tolist", "cpu"])
def test_meta_tensors_have_no_values(what):
    x = vt.zeros(2, 3, device=META)
    one = vt.zeros((), device=META)
    with pytest.raises(NotImplementedError, match="meta"):
        getattr(x if what != "item" else one, what)()
