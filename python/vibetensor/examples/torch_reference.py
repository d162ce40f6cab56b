"""PyTorch twins of the example models (same parameter names), for the parity tests and the
step-time benchmark. Needs torch: `pip install "vibetensor[compare]"`."""
import torch

tnn = torch.nn
tF = torch.nn.functional


class TAttention(tnn.Module):
    def __init__(self, C, H, causal, bias=True):
        super().__init__()
        self.c_attn = tnn.Linear(C, 3 * C, bias=bias)
        self.c_proj = tnn.Linear(C, C, bias=bias)
        self.resid_dropout = tnn.Dropout(0.0)
        self.H, self.causal = H, causal

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.H, C // self.H).transpose(1, 2) for t in (q, k, v))
        y = tF.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C)))


class TMLP(tnn.Module):
    def __init__(self, C, bias=True):
        super().__init__()
        self.c_fc, self.c_proj = tnn.Linear(C, 4 * C, bias=bias), tnn.Linear(4 * C, C, bias=bias)
        self.dropout = tnn.Dropout(0.0)

    def forward(self, x):
        return self.dropout(self.c_proj(tF.gelu(self.c_fc(x))))


class TBlock(tnn.Module):
    def __init__(self, C, H, bias=True):
        super().__init__()
        self.ln_1, self.attn = tnn.LayerNorm(C, bias=bias), TAttention(C, H, True, bias)
        self.ln_2, self.mlp = tnn.LayerNorm(C, bias=bias), TMLP(C, bias)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class TGPT(tnn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.wte = tnn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = tnn.Embedding(cfg.block_size, cfg.n_embd)
        self.drop = tnn.Dropout(0.0)
        self.h = tnn.ModuleList([TBlock(cfg.n_embd, cfg.n_head, cfg.bias) for _ in range(cfg.n_layer)])
        self.ln_f = tnn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.lm_head = tnn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_weights:
            self.lm_head.weight = self.wte.weight

    def forward(self, idx, targets):
        B, T = idx.shape
        x = self.drop(self.wte(idx) + self.wpe(torch.arange(T, device=idx.device)))
        for b in self.h:
            x = b(x)
        logits = self.lm_head(self.ln_f(x))
        return tF.cross_entropy(logits.view(B * T, -1), targets.view(B * T))


class TViTAttention(tnn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.qkv, self.proj, self.heads = tnn.Linear(dim, 3 * dim), tnn.Linear(dim, dim), heads

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2) for t in (q, k, v))
        y = tF.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).contiguous().view(B, T, C))


class TEncoderBlock(tnn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.ln1, self.attn, self.ln2 = tnn.LayerNorm(dim), TViTAttention(dim, heads), tnn.LayerNorm(dim)
        self.fc1, self.fc2 = tnn.Linear(dim, 2 * dim), tnn.Linear(2 * dim, dim)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.fc2(tF.gelu(self.fc1(self.ln2(x))))


class TViT(tnn.Module):
    def __init__(self, image, channels, patch, classes, dim, depth, heads):
        super().__init__()
        self.image, self.channels, self.patch = image, channels, patch
        self.n = (image // patch) ** 2
        self.embed = tnn.Linear(channels * patch * patch, dim)
        self.cls = tnn.Parameter(torch.zeros(1, 1, dim))
        self.pos = tnn.Parameter(torch.zeros(1, self.n + 1, dim))
        self.blocks = tnn.ModuleList([TEncoderBlock(dim, heads) for _ in range(depth)])
        self.ln, self.head = tnn.LayerNorm(dim), tnn.Linear(dim, classes)

    def forward(self, x):
        B, C, Hh, W = x.shape
        P = self.patch
        x = x.reshape(B, C, Hh // P, P, W // P, P).permute(0, 2, 4, 1, 3, 5)
        t = self.embed(x.reshape(B, self.n, C * P * P))
        t = torch.cat([self.cls.expand(B, 1, t.shape[2]), t], dim=1) + self.pos
        for b in self.blocks:
            t = b(t)
        return self.head(self.ln(t)[:, 0])
