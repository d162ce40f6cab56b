"""Sequence reversal: a 2-layer transformer learns `<BOS> a1..an <SEP> an..a1 <EOS>`.

    python -m vibetensor.examples.reverse            # default: ~1 min on 2 CPU cores

The loss counts only the tokens after <SEP>; evaluation decodes held-out sequences greedily
(no teacher forcing) and reports token accuracy and whole-sequence accuracy.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import vibetensor as vt
import vibetensor.nn as nn
import vibetensor.nn.functional as F

from . import _harness as H
from ._step import TrainStep
from .minigpt import Block, GPTConfig


class Reverser(nn.Module):
    """A decoder-only transformer (minigpt's blocks) over digits + <BOS>, <SEP>, <EOS>."""

    def __init__(self, n_digits: int, length: int, n_embd=64, n_head=4, n_layer=2):
        super().__init__()
        self.vocab = n_digits + 3
        self.bos, self.sep, self.eos = n_digits, n_digits + 1, n_digits + 2
        self.T = 2 * length + 3
        cfg = GPTConfig(vocab_size=self.vocab, block_size=self.T, n_layer=n_layer, n_head=n_head,
                        n_embd=n_embd)
        self.tok = nn.Embedding(self.vocab, n_embd)
        self.pos = nn.Embedding(self.T, n_embd)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(n_layer)])
        self.ln = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, self.vocab)

    def forward(self, idx):
        B, T = idx.shape
        x = self.tok(idx) + self.pos(vt.arange(T, device=idx.device))
        branch = None                                                # added by the next norm
        for b in self.blocks:
            x, branch = b(x, branch)
        x = self.ln(x) if branch is None else self.ln(x, residual=branch)[1]
        return self.head(x)                                          # (B, T, V)


def make_batch(rng, n_digits, length, batch, model):
    a = rng.integers(0, n_digits, size=(batch, length))
    seq = np.concatenate([np.full((batch, 1), model.bos), a, np.full((batch, 1), model.sep),
                          a[:, ::-1], np.full((batch, 1), model.eos)], axis=1)
    x, y = seq[:, :-1], seq[:, 1:].copy()
    y[:, :length] = -100  # predict only what follows <SEP> (positions length.. of y)
    return x.astype(np.int64), y.astype(np.int64), seq


@vt.no_grad()
def evaluate(model, rng, n_digits, length, n=512, device="cpu"):
    model.eval()
    _, _, seq = make_batch(rng, n_digits, length, n, model)
    prefix = seq[:, :length + 2]                      # <BOS> a <SEP>
    out = prefix
    for _ in range(length + 1):
        logits = model(vt.from_numpy(out.copy()).to(device))
        nxt = logits[:, -1, :].cpu().numpy().argmax(-1)[:, None]
        out = np.concatenate([out, nxt], axis=1)
    pred, want = out[:, length + 2:], seq[:, length + 2:]
    model.train()
    return float((pred == want).mean()), float((pred == want).all(1).mean())


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m vibetensor.examples.reverse", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    H.common_flags(ap, steps=600, out="runs/reverse")
    ap.add_argument("--digits", type=int, default=10, help="alphabet size")
    ap.add_argument("--length", type=int, default=8, help="sequence length n")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--n-embd", type=int, default=64)
    ap.add_argument("--n-layer", type=int, default=2)
    ap.add_argument("--lr", type=float, default=3e-3)
    args = ap.parse_args(argv)
    H.setup(args)
    rng = np.random.default_rng(args.seed)
    eval_rng = np.random.default_rng(args.seed + 1)
    model = Reverser(args.digits, args.length, n_embd=args.n_embd, n_layer=args.n_layer).to(args.device)
    opt = H.make_optimizer(vt.optim.AdamW, model.parameters(), args, lr=args.lr, weight_decay=0.01)
    train_step = TrainStep(
        lambda x, y: F.cross_entropy(model(x).reshape(-1, model.vocab), y, ignore_index=-100),
        opt, model.parameters(), device=args.device, amp=args.amp, cuda_graph=args.cuda_graph)
    log = H.Log(Path(args.out), "reverse")
    bar = H.Progress(args.steps, "seq", args.quiet)
    eval_every = args.eval_every or max(1, args.steps // 4)
    acc = seq_acc = 0.0
    for step in range(1, args.steps + 1):
        lr = H.cosine_lr(step - 1, args.steps, args.lr, 50)
        for g in opt.param_groups:
            g["lr"] = lr
        x, y, _ = make_batch(rng, args.digits, args.length, args.batch_size, model)
        loss = train_step(vt.from_numpy(x).to(args.device),
                          vt.from_numpy(y.reshape(-1)).to(args.device))
        lv = loss.item()
        log.add(step, "train", lv, lr=lr)
        bar.update(step, lv, args.batch_size)
        if step % eval_every == 0 or step == args.steps:
            acc, seq_acc = evaluate(model, eval_rng, args.digits, args.length, device=args.device)
            log.add(step, "eval", lv, metric=acc, lr=lr)
            if not args.quiet:
                print(f"\nstep {step}: held-out token accuracy {acc:.4f}, sequences {seq_acc:.4f}")
    bar.close()
    png = log.close()
    vt.safetensors.save_file(model.state_dict(), str(Path(args.out) / "reverse.safetensors"),
                             metadata={"model": "vibetensor.examples.reverse",
                                       "token_accuracy": f"{acc:.4f}"})
    print(f"done: held-out token accuracy {acc:.4f} (sequence accuracy {seq_acc:.4f}); log "
          f"{log.path}" + (f", plot {png}" if png else ""))
    return acc


if __name__ == "__main__":
    main()
