"""A seeded random program over vibetensor's public API: views, in-place ops on overlapping memory,
broadcasting, reductions, indexing, autograd, and invalid arguments of every kind. Every call
either returns or raises a clear Python exception; anything else (a crash, a hang, an exception of
an unexpected class) is a bug. Run by tests/test_fuzz.py in a child process, so a crash fails the
test instead of killing the suite:

    python tests/fuzz_ops.py SEED CALLS      -> prints one JSON line: calls made, errors by class

The last op is written to stderr before it runs, so a crash names it (and SEED replays it).
"""
from __future__ import annotations

import json
import random
import sys

import numpy as np

import vibetensor as vt

# what a bad call may raise: the documented error classes
CLEAR = (ValueError, TypeError, IndexError, RuntimeError, NotImplementedError, MemoryError,
         OverflowError)
DTYPES = [vt.float32, vt.float32, vt.float64, vt.int64, vt.int32, vt.bool, vt.float16,
          vt.bfloat16, vt.uint8]


class Fuzzer:
    def __init__(self, seed: int):
        self.r = random.Random(seed)
        self.np = np.random.default_rng(seed)
        self.pool: list = []
        for _ in range(6):
            self.pool.append(self.fresh())

    # ---- values ------------------------------------------------------------------------------
    def dim_size(self):
        return self.r.choice([0, 1, 1, 2, 3, 4, 5, 7])

    def shape(self):
        return tuple(self.dim_size() for _ in range(self.r.choice([0, 1, 1, 2, 2, 3, 4])))

    def fresh(self):
        shape, dt = self.shape(), self.r.choice(DTYPES)
        a = self.np.standard_normal(shape) * 3
        t = vt.tensor(a.astype(np.float32)).to(dt) if dt is not vt.bool else vt.tensor(a > 0)
        if dt in (vt.float32, vt.float64) and self.r.random() < 0.3:
            t = t.requires_grad_()
            t = t * 1.0  # a non-leaf with history, so in-place ops on it and its views are legal
        return t

    def tensor(self):
        return self.r.choice(self.pool)

    def number(self):
        return self.r.choice([0, 1, -1, 2, 0.5, -3.25, 1e30, -1e30, float("nan"), float("inf"),
                              True, 2 ** 40, 7])

    def int_arg(self, n=4):
        return self.r.choice([0, 1, -1, 2, n - 1, n, -n, -n - 1, 3, 2 ** 62, -(2 ** 63)])

    def dims(self, t):
        n = max(t.ndim, 1)
        k = self.r.choice([0, 1, 1, 2])
        return [self.int_arg(n) for _ in range(k)]

    def some_shape_like(self, t):
        s = list(t.shape)
        op = self.r.random()
        if op < 0.3 and s:
            s[self.r.randrange(len(s))] = self.r.choice([1, 0, 3, -1])
        elif op < 0.5:
            s = [-1]
        elif op < 0.6:
            s = s + [1]
        elif op < 0.7:
            s = [self.r.choice([2, 3, 5]) for _ in range(self.r.choice([1, 2]))]
        return s

    # ---- operations: each returns a tensor (kept in the pool) or None -------------------------
    def op_view(self, t):
        k = self.r.randrange(9)
        if k == 0:
            return t.view(*self.some_shape_like(t))
        if k == 1:
            return t.reshape(*self.some_shape_like(t))
        if k == 2:
            return t.transpose(self.int_arg(max(t.ndim, 1)), self.int_arg(max(t.ndim, 1)))
        if k == 3:
            return t[self.r.choice([slice(None, None, 2), slice(1, None), slice(None, -1),
                                    slice(-2, None), 0, -1, 5, Ellipsis, None])]
        if k == 4:
            return t.select(self.int_arg(max(t.ndim, 1)), self.int_arg(3))
        if k == 5:
            return t.expand(*([self.r.choice([1, 2, 3, -1])] + list(t.shape)))
        if k == 6:
            n = max(t.numel(), 1)
            size = [self.r.choice([1, 2, 3, n, 2 ** 20]) for _ in range(self.r.choice([1, 2]))]
            stride = [self.r.choice([0, 1, 2, -1, n, 2 ** 61]) for _ in size]
            return t.as_strided(size, stride, self.r.choice([0, 1, n - 1, n, -1, 2 ** 62]))
        if k == 7:
            return t.unsqueeze(self.int_arg(t.ndim + 1)).squeeze(self.int_arg(t.ndim + 1))
        return t.permute(*self.r.sample(range(t.ndim), t.ndim)) if t.ndim else t.T

    def op_inplace(self, t):
        other = self.r.choice([self.tensor(), t, t[1:] if t.ndim else t, self.number()])
        if t.ndim and t.shape[0] > 1 and self.r.random() < 0.3:
            other = t[:-1]  # partial overlap with t[1:]
            t = t[1:]
        k = self.r.randrange(8)
        if k == 0:
            return t.add_(other)
        if k == 1:
            return t.mul_(other)
        if k == 2:
            return t.sub_(other)
        if k == 3:
            return t.div_(other)
        if k == 4:
            return t.copy_(other if hasattr(other, "shape") else vt.tensor(other))
        if k == 5:
            return t.fill_(self.number())
        if k == 6:
            return t.zero_()
        t[self.r.choice([0, slice(None, 2), Ellipsis, -1, 9])] = other
        return t

    def op_binary(self, t):
        o = self.r.choice([self.tensor(), self.number(), t])
        fn = self.r.choice([lambda a, b: a + b, lambda a, b: a - b, lambda a, b: a * b,
                            lambda a, b: a / b, lambda a, b: a ** b, vt.maximum, vt.minimum,
                            lambda a, b: a < b, lambda a, b: a == b, vt.where_like])
        return fn(t, o)

    def op_unary(self, t):
        name = self.r.choice(["exp", "log", "sqrt", "tanh", "sigmoid", "relu", "gelu", "neg", "abs",
                              "sin", "rsqrt", "softplus", "silu", "clone", "contiguous", "float",
                              "double", "long", "bool", "half", "sign", "logical_not"])
        return getattr(t, name)()

    def op_reduce(self, t):
        name = self.r.choice(["sum", "mean", "amax", "amin", "var", "std", "logsumexp", "norm",
                              "argmax", "max", "min", "cumsum", "softmax", "log_softmax"])
        if name in ("sum", "mean", "amax", "amin", "var", "std"):
            return getattr(t, name)(self.dims(t), keepdim=self.r.random() < 0.5) \
                if self.r.random() < 0.7 else getattr(t, name)()
        if name in ("max", "min", "argmax"):
            out = getattr(t, name)(self.int_arg(max(t.ndim, 1))) if self.r.random() < 0.5 \
                else getattr(t, name)()
            return out[0] if isinstance(out, tuple) else getattr(out, "values", out)
        return getattr(t, name)(self.int_arg(max(t.ndim, 1)))

    def op_index(self, t):
        n = t.shape[0] if t.ndim else 1
        idx = vt.tensor([self.int_arg(n) for _ in range(self.r.choice([0, 1, 3]))], dtype=vt.int64)
        k = self.r.randrange(7)
        if k == 0:
            return t.index_select(self.int_arg(max(t.ndim, 1)), idx)
        if k == 1:
            return t[idx]
        if k == 2:
            return t.gather(0, idx.reshape(*([-1] + [1] * max(t.ndim - 1, 0))).expand(-1, *t.shape[1:]))
        if k == 3:
            return t.masked_fill(t > 0 if t.dtype is not vt.bool else t, self.number())
        if k == 4:
            return vt.embedding(idx, t)
        if k == 5:
            return vt.cat([t, self.tensor()], self.int_arg(max(t.ndim, 1)))
        return t[t > 0] if t.dtype is not vt.bool else t[t]

    def op_matmul(self, t):
        o = self.r.choice([self.tensor(), t, t.T if t.ndim == 2 else t])
        return self.r.choice([vt.matmul, lambda a, b: a @ b, vt.mm, vt.bmm])(t, o)

    def op_grad(self, t):
        if not t.requires_grad:
            t = self.r.choice([t, t.float()]).requires_grad_() if t.dtype.is_floating_point else t
        y = (t * t).sum() if self.r.random() < 0.8 else t
        y.backward()
        return None

    def step(self):
        t = self.tensor()
        op = self.r.choice([self.op_view, self.op_view, self.op_inplace, self.op_inplace,
                            self.op_binary, self.op_unary, self.op_reduce, self.op_index,
                            self.op_matmul, self.op_grad])
        sys.stderr.write(f"{op.__name__} on {tuple(t.shape)} {t.dtype}\n")
        out = op(t)
        if isinstance(out, vt.Tensor) and out.numel() < 4096:
            out.tolist()  # read every element: views must stay inside their memory
            if self.r.random() < 0.5:
                self.pool[self.r.randrange(len(self.pool))] = out
        if self.r.random() < 0.05:
            self.pool[self.r.randrange(len(self.pool))] = self.fresh()


def _where_like(a, b):
    cond = a if getattr(a, "dtype", None) is vt.bool else (a > 0)
    return vt.where(cond, a, b)


vt.where_like = _where_like


def run(seed: int, calls: int) -> dict:
    f = Fuzzer(seed)
    errors: dict = {}
    for i in range(calls):
        try:
            f.step()
        except CLEAR as e:
            errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
            if not str(e):
                raise AssertionError(f"call {i}: {type(e).__name__} without a message") from e
        if i % 500 == 0:  # the runtime still works after whatever happened
            assert (vt.ones(3) + 1).tolist() == [2.0, 2.0, 2.0]
    return {"calls": calls, "errors": errors}


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]), int(sys.argv[2]))))
