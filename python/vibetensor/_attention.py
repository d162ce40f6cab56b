"""Scaled dot-product attention's frontend: torch's `scaled_dot_product_attention` on top of the
`attention` pack's op `attention::sdpa` (ops/attention).

What it is: a thin wrapper that checks Python-side arguments, lifts 3-d inputs (N, L, E) to 4-d and
returns only the attention output (the op also returns the log-sum-exp and the dropout's Philox
seed/offset, which its backward rule uses). Which kernel runs is the op's provider: "flash" (fused,
tiled, the default) or "composed" (core ops), pinned with `vt.ops.use("attention::sdpa", "composed")`.
What it is not: a module (MultiheadAttention builds on this).

>>> import vibetensor as vt
>>> from vibetensor._attention import scaled_dot_product_attention
>>> q = vt.ones((1, 1, 2, 4))
>>> scaled_dot_product_attention(q, q, q, is_causal=True).shape
(1, 1, 2, 4)
"""
from __future__ import annotations

from . import _ops

__all__ = ["scaled_dot_product_attention"]


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                                 scale=None, enable_gqa=False):
    """softmax(query @ key^T * scale + mask) @ value over (B, H, T, D) inputs, like torch's.

    attn_mask: bool (True = take part) or additive float, broadcastable to (B, H, Tq, Tk);
    is_causal: query i sees keys j <= i (top-left aligned); scale: default 1/sqrt(D);
    dropout_p: dropout on the attention weights (Philox, reproducible under vt.manual_seed).
    enable_gqa: grouped-query attention, key/value (B, Hkv, Tk, D) with Hkv dividing query's H (MQA
    at Hkv = 1): query head h attends to kv head h // (H // Hkv), as torch's repeat_interleave of
    key and value would give, without the copy; without it the head counts must match.
    Rows whose keys are all masked give 0 (torch's safe softmax).

    >>> import vibetensor as vt
    >>> q, kv = vt.ones((1, 4, 3, 8)), vt.ones((1, 2, 5, 8))
    >>> scaled_dot_product_attention(q, kv, kv, enable_gqa=True).shape
    (1, 4, 3, 8)
    """
    if not 0.0 <= dropout_p <= 1.0:
        raise ValueError(f"scaled_dot_product_attention: dropout_p must be in [0, 1], got {dropout_p}")
    squeeze = query.ndim == 3 and key.ndim == 3 and value.ndim == 3
    if squeeze:  # (N, L, E): one head
        query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
        if attn_mask is not None and attn_mask.ndim == 3:
            attn_mask = attn_mask.unsqueeze(1)
    out = _ops.op("attention::sdpa")(query, key, value, attn_mask, bool(is_causal),
                                     None if scale is None else float(scale), float(dropout_p),
                                     bool(enable_gqa))[0]
    return out.squeeze(1) if squeeze else out
