"""Attention layers and a pre-norm transformer block, all calling
vt.nn.functional.scaled_dot_product_attention (the attention pack when loaded).

Shapes: B = batch, T = time (Tq queries, Tk keys), C = E = embedding dim, H = heads, D = C / H.
- MultiheadAttention: torch's layer and parameter names (in_proj_weight (3E, E), in_proj_bias,
  out_proj), so torch checkpoints load; batch_first=False by default as in torch.
- CausalSelfAttention: nanoGPT's (c_attn (C -> 3C), c_proj), x (B, T, C) -> (B, T, C).
- MLP and TransformerBlock: nanoGPT's Block: x + attn(ln_1(x)), then x + mlp(ln_2(x)), with
  mlp = c_fc (C -> 4C), GELU, c_proj (4C -> C), dropout.
"""
from __future__ import annotations

import math

from ... import _nn
from ...creation import empty, zeros
from ...runtime import dtypes as T
from ...tensor import Tensor
from .. import functional as F
from .. import init
from ..module import Module
from ..parameter import Parameter
from .activation import GELU
from .dropout import Dropout
from .linear import Linear
from .norm import LayerNorm


def _check_btc(layer, x, c, name="input"):
    if not isinstance(x, Tensor):
        raise TypeError(f"{layer._describe()}: expected a Tensor {name}, got "
                        f"{type(x).__name__}")
    if x.ndim != 3 or x.shape[-1] != c:
        raise ValueError(f"{layer._describe()}: expected {name} of shape (B, T, {c}), got shape "
                         f"{tuple(x.shape)}")


def _heads(x, h):
    """(B, T, C) -> (B, H, T, C/H)."""
    b, t, c = x.shape
    return x.reshape(b, t, h, c // h).transpose(1, 2)


def _merge(y):
    """(B, H, T, D) -> (B, T, H*D)."""
    b, h, t, d = y.shape
    return y.transpose(1, 2).reshape(b, t, h * d)


class MultiheadAttention(Module):
    """torch.nn.MultiheadAttention (no kdim/vdim, add_bias_kv or add_zero_attn).

    forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
    average_attn_weights=True, is_causal=False) -> (output, weights or None). As in torch, a
    boolean attn_mask / key_padding_mask marks positions that may NOT be attended.

    >>> import vibetensor as vt
    >>> m = vt.nn.MultiheadAttention(8, 2, batch_first=True)
    >>> x = vt.randn(3, 5, 8)
    >>> m(x, x, x, need_weights=False)[0].shape
    (3, 5, 8)
    """

    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, batch_first=False,
                 device=None, dtype=None):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"MultiheadAttention: embed_dim {embed_dim} must be divisible by "
                             f"num_heads {num_heads}")
        self.embed_dim, self.num_heads = int(embed_dim), int(num_heads)
        self.head_dim = embed_dim // num_heads
        self.dropout, self.batch_first = float(dropout), batch_first
        self.in_proj_weight = Parameter(empty(3 * embed_dim, embed_dim, dtype=dtype,
                                              device=device))
        if bias:
            self.in_proj_bias = Parameter(zeros(3 * embed_dim, dtype=dtype, device=device))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, device=device, dtype=dtype)
        self._reset_parameters()

    def _reset_parameters(self):
        init.xavier_uniform_(self.in_proj_weight)
        if self.in_proj_bias is not None:
            init.zeros_(self.in_proj_bias)
            init.zeros_(self.out_proj.bias)

    def _mask(self, attn_mask, key_padding_mask, b, tq, tk, like):
        """Both masks as one additive float mask broadcastable to (B, H, Tq, Tk), or None."""
        out = None
        if attn_mask is not None:
            m = attn_mask
            if m.ndim == 2:
                if tuple(m.shape) != (tq, tk):
                    raise ValueError(f"{self._describe()}: attn_mask should have shape "
                                     f"{(tq, tk)}, got {tuple(m.shape)}")
            elif m.ndim == 3:
                if tuple(m.shape) != (b * self.num_heads, tq, tk):
                    raise ValueError(f"{self._describe()}: attn_mask should have shape "
                                     f"{(b * self.num_heads, tq, tk)}, got {tuple(m.shape)}")
                m = m.reshape(b, self.num_heads, tq, tk)
            else:
                raise ValueError(f"{self._describe()}: attn_mask must be 2-D or 3-D, got shape "
                                 f"{tuple(m.shape)}")
            out = _additive(m, like)
        if key_padding_mask is not None:
            if tuple(key_padding_mask.shape) != (b, tk):
                raise ValueError(f"{self._describe()}: key_padding_mask should have shape "
                                 f"{(b, tk)}, got {tuple(key_padding_mask.shape)}")
            kp = _additive(key_padding_mask, like).reshape(b, 1, 1, tk)
            out = kp if out is None else out + kp
        return out

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True,
                attn_mask=None, average_attn_weights=True, is_causal=False):
        e = self.embed_dim
        for name, t in (("query", query), ("key", key), ("value", value)):
            if not isinstance(t, Tensor):
                raise TypeError(f"{self._describe()}: expected a Tensor {name}, got "
                                f"{type(t).__name__}")
            if t.ndim != 3 or t.shape[-1] != e:
                lay = "(B, T, E)" if self.batch_first else "(T, B, E)"
                raise ValueError(f"{self._describe()}: expected {name} of shape {lay} with "
                                 f"E = {e}, got shape {tuple(t.shape)}")
        if tuple(key.shape) != tuple(value.shape):
            raise ValueError(f"{self._describe()}: key and value must have the same shape, got "
                             f"{tuple(key.shape)} and {tuple(value.shape)}")
        if not self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        b, tq, _ = query.shape
        tk = key.shape[1]
        if key.shape[0] != b:
            raise ValueError(f"{self._describe()}: query and key have different batch sizes "
                             f"({b} and {key.shape[0]})")
        w, bias = self.in_proj_weight, self.in_proj_bias
        if query is key and key is value:
            q, k, v = _nn.linear(query, w, bias).split(e, dim=-1)
        else:
            bs = (None, None, None) if bias is None else (bias[:e], bias[e:2 * e], bias[2 * e:])
            q = _nn.linear(query, w[:e], bs[0])
            k = _nn.linear(key, w[e:2 * e], bs[1])
            v = _nn.linear(value, w[2 * e:], bs[2])
        h = self.num_heads
        q, k, v = _heads(q, h), _heads(k, h), _heads(v, h)
        mask = self._mask(attn_mask, key_padding_mask, b, tq, tk, q)
        p = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            s = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.head_dim))
            if is_causal and mask is None:
                mask = _additive(_causal_block(tq, tk, q.device), q)
            if mask is not None:
                s = s + mask
            a = _nn.softmax(s, -1)
            weights = a.mean(1) if average_attn_weights else a
            y = F.dropout(a, p, self.training) @ v
        else:
            causal = is_causal and mask is None
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p,
                                               is_causal=causal)
        out = self.out_proj(_merge(y))
        if not self.batch_first:
            out = out.transpose(0, 1)
        return out, weights

    def _describe(self):
        return (f"MultiheadAttention(embed_dim={self.embed_dim}, num_heads={self.num_heads}, "
                f"batch_first={self.batch_first})")


def _causal_block(tq, tk, device):
    """Boolean (Tq, Tk) mask, True where key j > query i (not attended)."""
    from ...creation import ones

    return ones(tq, tk, dtype=T.bool_, device=device).triu(1)


def _additive(m, like):
    """A torch-convention mask (bool: True = masked out; float: added) as a float tensor."""
    if m.dtype is T.bool_:
        return zeros(m.shape, dtype=like.dtype, device=like.device).masked_fill(
            m, float("-inf"))
    return m.to(like.dtype)


class CausalSelfAttention(Module):
    """nanoGPT's causal self-attention: x (B, T, C) -> (B, T, C).

    >>> import vibetensor as vt
    >>> vt.nn.CausalSelfAttention(16, 4)(vt.randn(2, 5, 16)).shape
    (2, 5, 16)
    """

    def __init__(self, n_embd, n_head, dropout=0.0, bias=True, causal=True, device=None,
                 dtype=None):
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"CausalSelfAttention: n_embd {n_embd} must be divisible by "
                             f"n_head {n_head}")
        self.n_embd, self.n_head, self.dropout = int(n_embd), int(n_head), float(dropout)
        self.causal = bool(causal)
        self.c_attn = Linear(n_embd, 3 * n_embd, bias=bias, device=device, dtype=dtype)
        self.c_proj = Linear(n_embd, n_embd, bias=bias, device=device, dtype=dtype)
        self.resid_dropout = Dropout(dropout)

    def forward(self, x, attn_mask=None):
        _check_btc(self, x, self.n_embd)
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        h = self.n_head
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(_heads(q, h), _heads(k, h), _heads(v, h),
                                           attn_mask=attn_mask, dropout_p=p,
                                           is_causal=self.causal and attn_mask is None)
        return self.resid_dropout(self.c_proj(_merge(y)))

    def extra_repr(self):
        return (f"n_embd={self.n_embd}, n_head={self.n_head}, dropout={self.dropout}, "
                f"causal={self.causal}")


class MLP(Module):
    """c_fc (C -> hidden), GELU, c_proj (hidden -> C), dropout."""

    def __init__(self, n_embd, hidden=None, dropout=0.0, bias=True, approximate="none",
                 device=None, dtype=None):
        super().__init__()
        hidden = 4 * n_embd if hidden is None else hidden
        self.c_fc = Linear(n_embd, hidden, bias=bias, device=device, dtype=dtype)
        self.gelu = GELU(approximate)
        self.c_proj = Linear(hidden, n_embd, bias=bias, device=device, dtype=dtype)
        self.dropout = Dropout(dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class TransformerBlock(Module):
    """Pre-norm block: x = x + attn(ln_1(x)); x = x + mlp(ln_2(x)). Causal by default
    (causal=False gives bidirectional attention, e.g. for a ViT).

    >>> import vibetensor as vt
    >>> vt.nn.TransformerBlock(16, 4)(vt.randn(2, 5, 16)).shape
    (2, 5, 16)
    """

    def __init__(self, n_embd, n_head, dropout=0.0, bias=True, mlp_ratio=4, causal=True,
                 device=None, dtype=None):
        super().__init__()
        self.n_embd, self.causal = int(n_embd), bool(causal)
        self.ln_1 = LayerNorm(n_embd, bias=bias, device=device, dtype=dtype)
        self.attn = CausalSelfAttention(n_embd, n_head, dropout, bias, causal, device, dtype)
        self.ln_2 = LayerNorm(n_embd, bias=bias, device=device, dtype=dtype)
        self.mlp = MLP(n_embd, mlp_ratio * n_embd, dropout, bias, device=device, dtype=dtype)

    def extra_repr(self):
        return f"n_embd={self.n_embd}, causal={self.causal}"

    def forward(self, x):
        _check_btc(self, x, self.n_embd)
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))
