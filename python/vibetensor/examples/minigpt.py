"""miniGPT: a character-level GPT trained on CPU (or CUDA) with vibetensor.

    python -m vibetensor.examples.minigpt                      # default: ~3 min on 2 CPU cores
    python -m vibetensor.examples.minigpt --data input.txt --preset shakespeare_char
    python -m vibetensor.examples.minigpt --sample --out runs/minigpt --prompt "def "
    python -m vibetensor.distributed.run --nproc-per-node 2 -m vibetensor.examples.minigpt  # data parallel

Under a launcher each rank trains on its slice of the same global batch (--batch-size is the
global batch; the data order is the one-process run's) through DistributedDataParallel, so the
losses match the one-process run; only rank 0 logs, evaluates and writes files.

Default data: the text that ships with every CPython (pydoc_data.topics, ~465k characters), with
the last 10% held out for validation; any UTF-8 text file with --data. The architecture is
nanoGPT's (pre-norm blocks, causal self-attention through attention::sdpa, GELU MLP), without
weight tying. Shapes: B = batch, T = time (block size), C = channels, V = vocabulary.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

import vibetensor as vt
import vibetensor.nn as nn
import vibetensor.nn.functional as F

from . import _harness as H
from ._step import TrainStep


@dataclass
class GPTConfig:
    vocab_size: int = 128
    block_size: int = 64
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = True          # biases in the linear layers and layer norms
    tie_weights: bool = False  # lm_head shares the token embedding's weight (GPT-2, nanoGPT)


PRESETS = {
    "default": dict(block_size=64, n_layer=4, n_head=4, n_embd=128, dropout=0.0),
    # nanoGPT's config/train_shakespeare_char.py with its model defaults (no biases, tied embedding)
    "shakespeare_char": dict(block_size=256, n_layer=6, n_head=6, n_embd=384, dropout=0.2, bias=False,
                             tie_weights=True),
}
TRAIN = {
    "default": dict(batch_size=32, lr=2e-3, steps=1000, warmup=100, eval_every=250, eval_iters=20),
    "shakespeare_char": dict(batch_size=64, lr=1e-3, steps=5000, warmup=100, eval_every=250, eval_iters=200),
}


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        if cfg.n_embd % cfg.n_head:
            raise ValueError(f"n_embd {cfg.n_embd} must be divisible by n_head {cfg.n_head}")
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.resid_dropout = nn.Dropout(cfg.dropout)
        self.n_head, self.n_embd, self.dropout = cfg.n_head, cfg.n_embd, cfg.dropout

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)                   # each (B, T, C)
        hs = C // self.n_head
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)           # (B, H, T, hs)
        k = k.view(B, T, self.n_head, hs).transpose(1, 2)
        v = v.view(B, T, self.n_head, hs).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x, branch=None):
        """x + attn(ln_1(x)), then + mlp(ln_2(.)), with each residual add done by the next layer
        norm (one fused op, forward and backward: nn.LayerNorm's residual argument). `branch` is
        the previous block's MLP output, not yet added to x; returns (x, this block's MLP output),
        so the caller's next norm (the next block's ln_1, or ln_f) adds it."""
        x, h = (x, self.ln_1(x)) if branch is None else self.ln_1(x, residual=branch)
        x, h = self.ln_2(x, residual=self.attn(h))
        return x, self.mlp(h)


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.h = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)])
        self.ln_f = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_weights:  # one parameter, two uses: its gradient is the sum of both
            self.lm_head.weight = self.wte.weight
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2's scaled init of residual projections
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(m):
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)

    def forward(self, idx, targets=None):
        B, T = idx.shape
        if T > self.cfg.block_size:
            raise ValueError(f"GPT: sequence length {T} exceeds block_size {self.cfg.block_size}")
        pos = vt.arange(T, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))                # (B, T, C)
        branch = None                                               # added by the next norm
        for block in self.h:
            x, branch = block(x, branch)
        x = self.ln_f(x) if branch is None else self.ln_f(x, residual=branch)[1]
        logits = self.lm_head(x)                                    # (B, T, V)
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.view(B * T, -1), targets.view(B * T))
        return logits, loss

    @vt.no_grad()
    def generate(self, idx, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 rng: np.random.Generator | None = None):
        rng = rng or np.random.default_rng(0)
        out = idx.cpu().numpy().copy()
        for _ in range(max_new_tokens):
            cond = vt.from_numpy(out[:, -self.cfg.block_size:].copy()).to(idx.device)
            logits, _ = self(cond)
            last = logits[:, -1, :].float().cpu().numpy().astype(np.float64) / temperature
            if top_k is not None:
                kth = np.sort(last, axis=-1)[:, -min(top_k, last.shape[-1])][:, None]
                last = np.where(last < kth, -np.inf, last)
            p = np.exp(last - last.max(-1, keepdims=True))
            p /= p.sum(-1, keepdims=True)
            nxt = np.array([[rng.choice(p.shape[-1], p=row)] for row in p], dtype=np.int64)
            out = np.concatenate([out, nxt], axis=1)
        return out


# -- data -----------------------------------------------------------------------------------------

def load_text(path: str | None) -> tuple[str, str]:
    if path is None:
        import pydoc_data.topics

        return "".join(pydoc_data.topics.topics[k] for k in sorted(pydoc_data.topics.topics)), \
            "pydoc_data.topics"
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise SystemExit(f"--data {path}: cannot read it: {e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SystemExit(f"--data {path}: not a UTF-8 text file ({e.reason} at byte {e.start})") \
            from None
    if "\x00" in text[:4096] or len(text) < 1000:
        raise SystemExit(f"--data {path}: expected a text file of at least 1000 characters")
    return text, str(p)


class CharData:
    def __init__(self, text: str, block_size: int, seed: int):
        chars = sorted(set(text))
        self.itos = chars
        self.stoi = {c: i for i, c in enumerate(chars)}
        ids = np.array([self.stoi[c] for c in text], dtype=np.int64)
        n = int(0.9 * len(ids))
        self.train, self.val = ids[:n], ids[n:]
        self.block = block_size
        self.rng = np.random.default_rng(seed)
        # evaluation draws from its own stream, so the training batches do not depend on whether
        # (or on which ranks) evaluation ran
        self.eval_rng = np.random.default_rng(seed + 1)

    def batch(self, split: str, batch_size: int, device, rank: int = 0, world: int = 1, rng=None):
        """(x, y) of shape (batch_size // world, block): rank's slice of one global batch."""
        data = self.train if split == "train" else self.val
        ix = (rng or self.rng).integers(0, len(data) - self.block - 1, size=batch_size)
        per = batch_size // world
        ix = ix[rank * per:(rank + 1) * per]
        x = np.stack([data[i:i + self.block] for i in ix])
        y = np.stack([data[i + 1:i + 1 + self.block] for i in ix])
        return vt.from_numpy(x).to(device), vt.from_numpy(y).to(device)

    def decode(self, ids) -> str:
        return "".join(self.itos[int(i)] for i in ids)


@vt.no_grad()
def estimate_loss(model, data, batch_size, device, iters=20):
    model.eval()
    out = {}
    for split in ("train", "val"):
        losses = [model(*data.batch(split, batch_size, device, rng=data.eval_rng))[1].item()
                  for _ in range(iters)]
        out[split] = float(np.mean(losses))
    model.train()
    return out


def save_checkpoint(model, cfg, data, path: Path, step: int, val_loss: float):
    meta = {"config": json.dumps(asdict(cfg)), "vocab": json.dumps(data.itos), "step": str(step),
            "val_loss": f"{val_loss:.4f}", "model": "vibetensor.examples.minigpt"}
    vt.safetensors.save_file({k: v for k, v in model.state_dict().items()}, str(path), metadata=meta)


def load_checkpoint(path: Path, device):
    try:
        meta = vt.safetensors.load_metadata(str(path)) or {}
        tensors = vt.safetensors.load_file(str(path))
    except FileNotFoundError:
        raise SystemExit(f"no checkpoint at {path}: train first (same --out)") from None
    if meta.get("model") != "vibetensor.examples.minigpt":
        raise SystemExit(f"{path}: not a miniGPT checkpoint (model={meta.get('model')!r})")
    cfg = GPTConfig(**json.loads(meta["config"]))
    model = GPT(cfg)
    model.load_state_dict(tensors)
    return model.to(device), cfg, json.loads(meta["vocab"])


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m vibetensor.examples.minigpt", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    H.common_flags(ap, steps=0, out="runs/minigpt")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="default")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--block-size", type=int, default=None)
    ap.add_argument("--n-layer", type=int, default=None)
    ap.add_argument("--n-head", type=int, default=None)
    ap.add_argument("--n-embd", type=int, default=None)
    ap.add_argument("--dropout", type=float, default=None)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--eval-iters", type=int, default=None, help="batches per loss estimate (preset's default)")
    ap.add_argument("--sample", action="store_true", help="generate from the checkpoint in --out")
    ap.add_argument("--prompt", default="\n")
    ap.add_argument("--tokens", type=int, default=400)
    args = ap.parse_args(argv)
    H.setup(args)
    out = Path(args.out)
    ckpt = out / "minigpt.safetensors"

    if args.sample:
        model, cfg, itos = load_checkpoint(ckpt, args.device)
        stoi = {c: i for i, c in enumerate(itos)}
        missing = sorted({c for c in args.prompt if c not in stoi})
        if missing:
            raise SystemExit(f"--prompt has characters outside the vocabulary: {missing!r}")
        idx = vt.from_numpy(np.array([[stoi[c] for c in args.prompt]], dtype=np.int64))
        ids = model.eval().generate(idx.to(args.device), args.tokens, temperature=0.8, top_k=20,
                                    rng=np.random.default_rng(args.seed))
        print("".join(itos[i] for i in ids[0]))
        return

    rank, world = H.distributed(args)
    text, source = load_text(args.data)
    mcfg = dict(PRESETS[args.preset])
    tcfg = dict(TRAIN[args.preset])
    for k in ("block_size", "n_layer", "n_head", "n_embd", "dropout"):
        if getattr(args, k) is not None:
            mcfg[k] = getattr(args, k)
    for k in ("batch_size", "lr", "eval_iters"):
        if getattr(args, k) is not None:
            tcfg[k] = getattr(args, k)
    if tcfg["batch_size"] % world:
        raise SystemExit(f"--batch-size {tcfg['batch_size']} must be divisible by the number of processes "
                         f"({world}): it is the global batch")
    steps = args.steps or tcfg["steps"]
    eval_every = args.eval_every or tcfg["eval_every"]
    data = CharData(text, mcfg["block_size"], args.seed)
    cfg = GPTConfig(vocab_size=len(data.itos), **mcfg)
    model = GPT(cfg).to(args.device)
    n_params = sum(p.numel() for p in model.parameters())
    if world > 1:
        import vibetensor.distributed as dist

        ddp = nn.parallel.DistributedDataParallel(model)
        forward = ddp
    else:
        forward = model
    log_here = rank == 0
    if log_here:
        print(f"miniGPT: {n_params / 1e6:.2f}M parameters, {cfg.n_layer} layers x {cfg.n_head} heads x "
          f"{cfg.n_embd}, block {cfg.block_size}, vocab {cfg.vocab_size}; data {source} "
          f"({len(text):,} chars, {len(data.val):,} held out); {args.device}, {H.threads_note()}"
          + (f"; {world} processes, global batch {tcfg['batch_size']}" if world > 1 else ""))
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = H.make_optimizer(vt.optim.AdamW, [{"params": decay, "weight_decay": 0.1},
                                            {"params": no_decay, "weight_decay": 0.0}],
                           args, lr=tcfg["lr"], betas=(0.9, 0.99))
    train_step = TrainStep(lambda x, y: forward(x, y)[1], opt, model.parameters(),
                           device=args.device, amp=args.amp, clip=1.0, cuda_graph=args.cuda_graph)
    log = H.Log(out, "minigpt") if log_here else None
    bar = H.Progress(steps, "tok", args.quiet or not log_here)
    tokens_per_step = tcfg["batch_size"] * cfg.block_size
    best = float("inf")
    t_start = time.perf_counter()
    for step in range(1, steps + 1):
        lr = H.cosine_lr(step - 1, steps, tcfg["lr"], tcfg["warmup"])
        for g in opt.param_groups:
            g["lr"] = lr
        loss = train_step(*data.batch("train", tcfg["batch_size"], args.device, rank, world))
        if world > 1:  # the global batch's loss: the mean of the ranks' equal slices
            loss = loss.detach().clone()
            dist.all_reduce(loss, dist.ReduceOp.AVG)
        lv = loss.item()
        if not math.isfinite(lv):
            raise SystemExit(f"step {step}: loss is {lv}; try a lower --lr")
        if log_here:
            log.add(step, "train", lv, lr=lr)
        bar.update(step, lv, tokens_per_step)
        if log_here and (step % eval_every == 0 or step == steps):
            ev = estimate_loss(model, data, tcfg["batch_size"], args.device, tcfg["eval_iters"])
            log.add(step, "eval", ev["val"], metric=ev["train"], lr=lr)
            if not args.quiet:
                print(f"\nstep {step}: train loss {ev['train']:.4f}, val loss {ev['val']:.4f}")
            if ev["val"] < best:
                best = ev["val"]
                save_checkpoint(model, cfg, data, ckpt, step, best)
    bar.close()
    if not log_here:
        dist.destroy_process_group()
        return None
    png = log.close()
    el = time.perf_counter() - t_start
    print(f"done: {steps} steps in {el:.0f} s ({steps * tokens_per_step / el:,.0f} tok/s); best val "
          f"loss {best:.4f}; log {log.path}" + (f", plot {png}" if png else "") + f", checkpoint {ckpt}")
    sample = model.eval().generate(vt.from_numpy(np.array([[data.stoi.get("\n", 0)]])).to(args.device),
                                   200, temperature=0.8, top_k=20)
    print("sample:\n" + data.decode(sample[0]))
    if world > 1:
        dist.destroy_process_group()
    return best


if __name__ == "__main__":
    main()
