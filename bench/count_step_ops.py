"""Op calls per training step of the examples' models (forward + backward, no optimizer step), by
op: the residual adds fused into the layer norms (core::add_layer_norm, what the models do) against
the same models with each add and norm as separate ops (what they did before).

    python bench/count_step_ops.py [--model minigpt|vit] [--no-autocast]

Runs on cpu under vt.autocast("cpu", bfloat16) (the casts the cuda step makes under autocast) with
tiny shapes: the counts depend on the layer count, not on the sizes. Every traced call is counted,
the ones ops make through the host included; views (the meta step is the whole op) are left out,
as they launch nothing.
"""
from __future__ import annotations

import argparse
import collections
import contextlib

import numpy as np

import vibetensor as vt
import vibetensor.nn.functional as F


@contextlib.contextmanager
def unfused():
    """nn.LayerNorm's residual form as the plain ops: x + r, then layer_norm."""
    ln = vt.nn.LayerNorm
    fused = ln.forward

    def forward(self, x, residual=None):
        if residual is None:
            return fused(self, x)
        s = x + residual
        return s, F.layer_norm(s, self.normalized_shape, self.weight, self.bias, self.eps)

    ln.forward = forward
    try:
        yield
    finally:
        ln.forward = fused


def model_and_step(name):
    rng = np.random.default_rng(0)
    if name == "minigpt":
        from vibetensor.examples.minigpt import GPT, GPTConfig
        cfg = GPTConfig(vocab_size=32, block_size=8, n_layer=6, n_head=2, n_embd=16)
        model = GPT(cfg)
        x = vt.tensor(rng.integers(0, 32, (2, 8)))
        return model, lambda: model(x, x)[1]
    from vibetensor.examples.vit import ViT
    model = ViT(image=8, channels=1, patch=4, classes=10, dim=16, depth=3, heads=2)
    x = vt.tensor(rng.standard_normal((2, 1, 8, 8)).astype(np.float32))
    y = vt.tensor(rng.integers(0, 10, (2,)))
    return model, lambda: F.cross_entropy(model(x), y)


def count(model, step, autocast):
    for p in model.parameters():  # a fresh step: no gradients to accumulate into
        p.grad = None
    region = vt.autocast("cpu", dtype=vt.bfloat16) if autocast else contextlib.nullcontext()
    with vt.ops.trace() as t:
        with region:
            loss = step()
        loss.backward()
    return collections.Counter(r.op for r in t.records if r.reason != "meta")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=["minigpt", "vit"], default="minigpt")
    ap.add_argument("--no-autocast", action="store_true")
    a = ap.parse_args()
    model, step = model_and_step(a.model)
    after = count(model, step, not a.no_autocast)
    with unfused():
        before = count(model, step, not a.no_autocast)
    print(f"{a.model}, {'float32' if a.no_autocast else 'autocast bfloat16'}: op calls per step "
          f"(forward + backward), separate add + layer_norm -> fused add_layer_norm")
    for op in sorted(set(before) | set(after), key=lambda o: -(before[o] + after[o])):
        if before[op] != after[op]:
            print(f"  {op:40s} {before[op]:5d} -> {after[op]:5d}")
    print(f"  {'(unchanged ops)':40s} {sum(v for o, v in before.items() if before[o] == after[o]):5d}")
    print(f"  {'total':40s} {sum(before.values()):5d} -> {sum(after.values()):5d}")


if __name__ == "__main__":
    main()
