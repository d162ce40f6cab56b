"""vt.nn.functional — torch's functional names over the core ops (`import ... as F`).

What it is: thin wrappers that forward to the vt.* op frontends (core::linear, core::softmax,
core::layer_norm, core::cross_entropy, ...), plus scaled_dot_product_attention, which uses the
attention pack (vibetensor._attention / attention::sdpa) when it is loaded and a composition of
core ops (matmul, softmax, matmul) otherwise. What it is not: a second implementation of any op.

>>> import vibetensor as vt
>>> import vibetensor.nn.functional as F
>>> F.relu(vt.tensor([-1.0, 2.0])).tolist()
[0.0, 2.0]
"""
from __future__ import annotations

import math

from vibetensor.runtime import dtypes as T

from .. import _elementwise, _nn, _reduce, _shape
from ..tensor import Tensor

__all__ = ["linear", "relu", "gelu", "silu", "sigmoid", "tanh", "softplus", "softmax",
           "log_softmax", "layer_norm", "add_layer_norm", "rms_norm", "dropout", "embedding",
           "cross_entropy", "mse_loss", "scaled_dot_product_attention", "one_hot", "normalize"]

linear = _nn.linear
softmax = _nn.softmax
log_softmax = _nn.log_softmax
layer_norm = _nn.layer_norm
add_layer_norm = _nn.add_layer_norm
rms_norm = _nn.rms_norm
cross_entropy = _nn.cross_entropy
mse_loss = _nn.mse_loss
sigmoid = _elementwise.sigmoid
tanh = _elementwise.tanh
softplus = _elementwise.softplus
one_hot = _shape.one_hot


def relu(input, inplace=False):
    return _elementwise.relu(input)


def gelu(input, approximate="none"):
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return _elementwise.gelu(input, approximate=approximate)


def silu(input, inplace=False):
    return _elementwise.silu(input)


def dropout(input, p=0.5, training=True, inplace=False):
    """Zeroes elements with probability p when training (p=0 or eval: the input itself)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return input
    return _nn.dropout(input, p, True)


def embedding(input, weight, padding_idx=None, max_norm=None):
    """Rows of `weight` (num_embeddings, dim) picked by integer `input` of any shape."""
    if max_norm is not None:
        raise NotImplementedError("embedding: max_norm is not supported")
    if not isinstance(input, Tensor) or input.dtype.is_floating_point or input.dtype is T.bool_:
        what = input.dtype if isinstance(input, Tensor) else type(input).__name__
        raise TypeError(f"embedding: expected integer indices (int64/int32), got {what}")
    return _shape.embedding(input, weight, padding_idx)


def normalize(input, p=2.0, dim=1, eps=1e-12):
    """input / max(||input||_p along dim, eps)."""
    n = _reduce.norm(input, p, dim=dim, keepdim=True)
    return input / _elementwise.clamp(n, min=eps)


# -- attention -----------------------------------------------------------------------------------

_fused_cache = [None, None]  # [registry generation, entry point or None]


def _fused_sdpa():
    """The attention pack's Python entry point, or None when the pack (op attention::sdpa) is
    not loaded; re-checked only after a pack was loaded or unloaded."""
    from vibetensor.registry import loader, op_names

    if _fused_cache[0] != loader.generation[0]:
        fn = None
        if "attention::sdpa" in op_names():
            try:
                from .. import _attention

                fn = getattr(_attention, "scaled_dot_product_attention", None)
            except ImportError:
                fn = None
        _fused_cache[:] = [loader.generation[0], fn]
    return _fused_cache[1]


def _check_qkv(q, k, v):
    for name, t in (("query", q), ("key", k), ("value", v)):
        if not isinstance(t, Tensor):
            raise TypeError(f"scaled_dot_product_attention: {name} must be a Tensor, "
                            f"got {type(t).__name__}")
        if t.ndim < 2:
            raise ValueError(f"scaled_dot_product_attention: {name} must have >= 2 dims "
                             f"(..., T, D), got shape {t.shape}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"scaled_dot_product_attention: query and key must have the same last "
                         f"dim, got {q.shape} and {k.shape}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"scaled_dot_product_attention: key and value must have the same "
                         f"length (dim -2), got {k.shape} and {v.shape}")


def _repeat_heads(t, group):
    """(..., Hkv, T, E) -> (..., Hkv * group, T, E), each head repeated `group` times in a row
    (torch's repeat_interleave(group, dim=-3))"""
    *lead, hkv, n, e = t.shape
    return t.unsqueeze(-3).expand(*lead, hkv, group, n, e).reshape(*lead, hkv * group, n, e)


def _check_heads(q, k, v, enable_gqa):
    """the head counts (dim -3): equal, or with enable_gqa key's and value's dividing query's;
    returns the group size (query heads per kv head)"""
    hq = q.shape[-3] if q.ndim >= 3 else 1
    hk = k.shape[-3] if k.ndim >= 3 else 1
    hv = v.shape[-3] if v.ndim >= 3 else 1
    if hk != hv:
        raise ValueError(f"scaled_dot_product_attention: key and value must have the same number of "
                         f"heads (dim -3), got {k.shape} and {v.shape}")
    if hq == hk:
        return 1
    if not enable_gqa:
        raise ValueError(f"scaled_dot_product_attention: query and key must have the same number of "
                         f"heads (dim -3), or pass enable_gqa=True for grouped-query attention; got "
                         f"{q.shape} and {k.shape}")
    if hk == 0 or hq % hk != 0:
        raise ValueError(f"scaled_dot_product_attention: with enable_gqa=True the key/value heads must "
                         f"divide the query heads (dim -3), got {q.shape} and {k.shape}")
    return hq // hk


def _sdpa_composed(q, k, v, attn_mask, dropout_p, is_causal, scale, group=1):
    """softmax(q k^T * scale + mask) v, materialising the (Tq, Tk) scores; group > 1: k and v
    repeated over the query heads of each group first (grouped-query attention)."""
    if group > 1:
        k, v = _repeat_heads(k, group), _repeat_heads(v, group)
    tq, tk = q.shape[-2], k.shape[-2]
    s = (q @ k.transpose(-2, -1)) * scale
    if is_causal:
        from ..creation import ones

        keep = ones(tq, tk, dtype=T.bool_, device=q.device).tril()  # top-left aligned (torch)
        s = s.masked_fill(keep.logical_not(), float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype is T.bool_:
            s = s.masked_fill(attn_mask.logical_not(), float("-inf"))
        else:
            s = s + attn_mask.to(s.dtype)
    p = _nn.softmax(s, -1)
    if dropout_p > 0.0:
        p = _nn.dropout(p, dropout_p, True)
    return p @ v


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0,
                                 is_causal=False, scale=None, enable_gqa=False):
    """torch's F.scaled_dot_product_attention: query (..., Tq, D), key (..., Tk, D), value
    (..., Tk, Dv) -> (..., Tq, Dv). `attn_mask` is boolean (True = attend) or additive; it
    broadcasts to (..., Tq, Tk). is_causal masks key j > query i (top-left aligned).
    enable_gqa: key and value may have fewer heads (dim -3) than query, a divisor of its count
    (grouped-query attention; MQA with one): query head h attends to kv head h // (Hq // Hkv)."""
    _check_qkv(query, key, value)
    group = _check_heads(query, key, value, enable_gqa)
    if is_causal and attn_mask is not None:
        raise ValueError("scaled_dot_product_attention: pass either attn_mask or is_causal, "
                         "not both")
    if scale is None:
        scale = 1.0 / math.sqrt(query.shape[-1])
    fused = _fused_sdpa() if query.ndim in (3, 4) and query.ndim == key.ndim == value.ndim \
        else None
    if fused is not None:
        return fused(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p,
                     is_causal=is_causal, scale=scale, enable_gqa=enable_gqa)
    return _sdpa_composed(query, key, value, attn_mask, float(dropout_p), is_causal, float(scale),
                          group)
