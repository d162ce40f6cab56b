"""ViT image classification: scikit-learn's bundled digits by default, CIFAR-10 with --data.

    python -m vibetensor.examples.vit                          # digits (8x8), ~1 min on 2 cores
    python -m vibetensor.examples.vit --data cifar-10-batches-py --steps 5000

Digits need scikit-learn (`pip install "vibetensor[examples]"`); CIFAR-10 is read from the
standard python-pickle batches (data_batch_1..5, test_batch) in the folder given with --data.
Images are cut into P x P patches, linearly embedded, prefixed with a class token, run through
pre-norm transformer blocks (minigpt's, without the causal mask) and classified from the token.
"""
from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import numpy as np

import vibetensor as vt
import vibetensor.nn as nn
import vibetensor.nn.functional as F

from . import _harness as H
from ._step import TrainStep


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.heads = heads

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        hs = C // self.heads
        q, k, v = (t.view(B, T, self.heads, hs).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v)                  # (B, H, T, hs)
        return self.proj(y.transpose(1, 2).contiguous().view(B, T, C))


class EncoderBlock(nn.Module):
    def __init__(self, dim, heads, mlp_ratio=2):
        super().__init__()
        self.ln1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.ln2 = nn.LayerNorm(dim)
        self.fc1, self.fc2 = nn.Linear(dim, mlp_ratio * dim), nn.Linear(mlp_ratio * dim, dim)

    def forward(self, x, branch=None):
        """minigpt's Block: each residual add is done by the next layer norm (fused); `branch` is
        the previous block's MLP output, not yet added to x. Returns (x, this block's MLP output)."""
        x, h = (x, self.ln1(x)) if branch is None else self.ln1(x, residual=branch)
        x, h = self.ln2(x, residual=self.attn(h))
        return x, self.fc2(F.gelu(self.fc1(h)))


class ViT(nn.Module):
    def __init__(self, image: int, channels: int, patch: int, classes: int, dim=64, depth=3, heads=4):
        super().__init__()
        if image % patch:
            raise ValueError(f"ViT: image size {image} is not divisible by patch {patch}")
        self.image, self.channels, self.patch = image, channels, patch
        self.n = (image // patch) ** 2
        self.embed = nn.Linear(channels * patch * patch, dim)
        self.cls = nn.Parameter(vt.zeros(1, 1, dim))
        self.pos = nn.Parameter(vt.randn(1, self.n + 1, dim) * 0.02)
        self.blocks = nn.ModuleList([EncoderBlock(dim, heads) for _ in range(depth)])
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def patches(self, x):
        """(B, C, H, W) -> (B, N, C*P*P)"""
        B, C, Hh, W = x.shape
        if (C, Hh, W) != (self.channels, self.image, self.image):
            raise ValueError(f"ViT: expected images of shape (B, {self.channels}, {self.image}, "
                             f"{self.image}), got {tuple(x.shape)}")
        P = self.patch
        x = x.reshape(B, C, Hh // P, P, W // P, P).permute(0, 2, 4, 1, 3, 5)
        return x.reshape(B, self.n, C * P * P)

    def forward(self, x):
        B = x.shape[0]
        t = self.embed(self.patches(x))                                  # (B, N, D)
        t = vt.cat([self.cls.expand(B, 1, t.shape[2]), t], dim=1) + self.pos
        branch = None                                                    # added by the next norm
        for b in self.blocks:
            t, branch = b(t, branch)
        t = self.ln(t) if branch is None else self.ln(t, residual=branch)[1]
        return self.head(t[:, 0])                                        # (B, classes)


def load_digits(seed):
    try:
        from sklearn.datasets import load_digits as sk_digits
    except ImportError:
        raise SystemExit("the digits data set comes with scikit-learn: pip install scikit-learn "
                         "(or `pip install \"vibetensor[examples]\"`), or pass --data CIFAR_DIR") \
            from None
    d = sk_digits()
    x = (d.images.astype(np.float32) / 16.0 - 0.5)[:, None]             # (N, 1, 8, 8)
    y = d.target.astype(np.int64)
    idx = np.random.default_rng(seed).permutation(len(x))
    n_test = len(x) // 5
    te, tr = idx[:n_test], idx[n_test:]
    return (x[tr], y[tr]), (x[te], y[te]), dict(image=8, channels=1, patch=2, classes=10)


def load_cifar(folder):
    root = Path(folder)

    def read(name):
        p = root / name
        try:
            with open(p, "rb") as f:
                d = pickle.load(f, encoding="bytes")
            x = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            y = np.asarray(d[b"labels"], dtype=np.int64)
        except (OSError, pickle.UnpicklingError, KeyError, ValueError, EOFError) as e:
            raise SystemExit(f"--data {folder}: {name} is not a CIFAR-10 python batch ({e})") \
                from None
        return x, y

    parts = [read(f"data_batch_{i}") for i in range(1, 6)]
    xtr = np.concatenate([p[0] for p in parts])
    ytr = np.concatenate([p[1] for p in parts])
    xte, yte = read("test_batch")
    mean = np.array([0.4914, 0.4822, 0.4465], np.float32)[None, :, None, None]
    std = np.array([0.247, 0.243, 0.261], np.float32)[None, :, None, None]
    norm = lambda a: ((a.astype(np.float32) / 255.0 - mean) / std).astype(np.float32)  # noqa: E731
    return (norm(xtr), ytr), (norm(xte), yte), dict(image=32, channels=3, patch=4, classes=10)


@vt.no_grad()
def accuracy(model, x, y, device, batch=256):
    model.eval()
    right = 0
    for i in range(0, len(x), batch):
        logits = model(vt.from_numpy(x[i:i + batch]).to(device))
        right += int((logits.cpu().numpy().argmax(-1) == y[i:i + batch]).sum())
    model.train()
    return right / len(x)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m vibetensor.examples.vit", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    H.common_flags(ap, steps=800, out="runs/vit")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--lr", type=float, default=2e-3)
    args = ap.parse_args(argv)
    H.setup(args)
    (xtr, ytr), (xte, yte), shape = load_cifar(args.data) if args.data else load_digits(args.seed)
    model = ViT(dim=args.dim, depth=args.depth, heads=args.heads, **shape).to(args.device)
    print(f"ViT: {sum(p.numel() for p in model.parameters()) / 1e3:.0f}k parameters; "
          f"{len(xtr)} train / {len(xte)} test images of {shape['channels']}x{shape['image']}"
          f"x{shape['image']}; {args.device}, {H.threads_note()}")
    opt = H.make_optimizer(vt.optim.AdamW, model.parameters(), args, lr=args.lr, weight_decay=0.05)
    train_step = TrainStep(lambda x, y: F.cross_entropy(model(x), y), opt, model.parameters(),
                           device=args.device, amp=args.amp, cuda_graph=args.cuda_graph)
    rng = np.random.default_rng(args.seed)
    log = H.Log(Path(args.out), "vit")
    bar = H.Progress(args.steps, "img", args.quiet)
    eval_every = args.eval_every or max(1, args.steps // 4)
    acc = 0.0
    for step in range(1, args.steps + 1):
        lr = H.cosine_lr(step - 1, args.steps, args.lr, 50)
        for g in opt.param_groups:
            g["lr"] = lr
        ix = rng.integers(0, len(xtr), size=args.batch_size)
        loss = train_step(vt.from_numpy(xtr[ix]).to(args.device),
                          vt.from_numpy(ytr[ix]).to(args.device))
        lv = loss.item()
        log.add(step, "train", lv, lr=lr)
        bar.update(step, lv, args.batch_size)
        if step % eval_every == 0 or step == args.steps:
            acc = accuracy(model, xte, yte, args.device)
            log.add(step, "eval", lv, metric=acc, lr=lr)
            if not args.quiet:
                print(f"\nstep {step}: test accuracy {acc:.4f}")
    bar.close()
    png = log.close()
    vt.safetensors.save_file(model.state_dict(), str(Path(args.out) / "vit.safetensors"),
                             metadata={"model": "vibetensor.examples.vit", "accuracy": f"{acc:.4f}"})
    print(f"done: test accuracy {acc:.4f}; log {log.path}" + (f", plot {png}" if png else ""))
    return acc


if __name__ == "__main__":
    main()
