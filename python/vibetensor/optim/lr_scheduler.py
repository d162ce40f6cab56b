"""Learning-rate schedulers with torch's protocol: construction sets the step-0 rate, each
`scheduler.step()` (after `optimizer.step()`) advances one epoch/step and writes every group's
'lr'; `get_last_lr()`, `state_dict()`, `load_state_dict()`.

- LambdaLR(opt, lr_lambda): lr = base_lr * lr_lambda(step) (one function or one per group)
- StepLR(opt, step_size, gamma): lr *= gamma every step_size steps
- CosineWithWarmup / get_cosine_schedule_with_warmup(opt, num_warmup_steps, num_training_steps):
  linear warmup from 0 to base_lr, then half a cosine down to min_lr_ratio * base_lr
  (transformers' formula, min_lr_ratio = 0 by default)

>>> import vibetensor as vt
>>> p = vt.nn.Parameter(vt.zeros(1))
>>> opt = vt.optim.SGD([p], lr=1.0)
>>> s = vt.optim.lr_scheduler.get_cosine_schedule_with_warmup(opt, 2, 10)
>>> [round(s.get_last_lr()[0], 3)] + [(opt.step(), s.step(), round(s.get_last_lr()[0], 3))[2]
...                                   for _ in range(3)]
[0.0, 0.5, 1.0, 0.962]
"""
from __future__ import annotations

import math
import types

from .optimizer import Optimizer

__all__ = ["LRScheduler", "LambdaLR", "StepLR", "CosineWithWarmup",
           "get_cosine_schedule_with_warmup"]


class LRScheduler:
    def __init__(self, optimizer: Optimizer, last_epoch: int = -1):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")
        self.optimizer = optimizer
        if last_epoch == -1:
            for g in optimizer.param_groups:
                g.setdefault("initial_lr", g["lr"])
        else:
            for i, g in enumerate(optimizer.param_groups):
                if "initial_lr" not in g:
                    raise KeyError(f"param 'initial_lr' is not specified in param_groups[{i}] "
                                   f"when resuming an optimizer")
        self.base_lrs = [g["initial_lr"] for g in optimizer.param_groups]
        self.last_epoch = last_epoch
        self.step()

    def get_lr(self) -> list:
        raise NotImplementedError

    def get_last_lr(self) -> list:
        return list(self._last_lr)

    def step(self) -> None:
        self.last_epoch += 1
        lrs = self.get_lr()
        for g, lr in zip(self.optimizer.param_groups, lrs):
            g["lr"] = lr
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]

    def _state_keys(self):
        return [k for k in self.__dict__ if k != "optimizer"]

    def state_dict(self) -> dict:
        return {k: self.__dict__[k] for k in self._state_keys()}

    def load_state_dict(self, state_dict: dict) -> None:
        self.__dict__.update(state_dict)


class LambdaLR(LRScheduler):
    def __init__(self, optimizer, lr_lambda, last_epoch: int = -1):
        n = len(optimizer.param_groups)
        if isinstance(lr_lambda, (list, tuple)):
            if len(lr_lambda) != n:
                raise ValueError(f"Expected {n} lr_lambdas, but got {len(lr_lambda)}")
            self.lr_lambdas = list(lr_lambda)
        else:
            self.lr_lambdas = [lr_lambda] * n
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        return [base * fn(self.last_epoch) for fn, base in zip(self.lr_lambdas, self.base_lrs)]

    def state_dict(self):
        # plain functions are not state; callable objects contribute their __dict__ (as torch)
        sd = {k: v for k, v in super().state_dict().items() if k != "lr_lambdas"}
        sd["lr_lambdas"] = [None if isinstance(fn, types.FunctionType) or
                            not hasattr(fn, "__dict__") else dict(fn.__dict__)
                            for fn in self.lr_lambdas]
        return sd

    def load_state_dict(self, state_dict):
        state_dict = dict(state_dict)
        lambdas = state_dict.pop("lr_lambdas", [None] * len(self.lr_lambdas))
        super().load_state_dict(state_dict)
        for fn, st in zip(self.lr_lambdas, lambdas):
            if st is not None:
                fn.__dict__.update(st)


class StepLR(LRScheduler):
    def __init__(self, optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1):
        if int(step_size) <= 0:
            raise ValueError(f"StepLR: step_size must be a positive integer, got {step_size}")
        self.step_size, self.gamma = int(step_size), float(gamma)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        # torch's chainable form: multiply the current rate at every step_size boundary
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return [g["lr"] for g in self.optimizer.param_groups]
        return [g["lr"] * self.gamma for g in self.optimizer.param_groups]


class _CosineWarmupLambda:
    """lr factor at `step`: step/warmup while warming up, then a cosine from 1 down to
    min_lr_ratio over the remaining steps (0.5 cycles by default); constant after the end."""

    def __init__(self, num_warmup_steps, num_training_steps, num_cycles=0.5, min_lr_ratio=0.0):
        if num_warmup_steps < 0 or num_training_steps < 0:
            raise ValueError(f"cosine schedule: steps must be >= 0, got warmup "
                             f"{num_warmup_steps}, training {num_training_steps}")
        self.num_warmup_steps, self.num_training_steps = int(num_warmup_steps), \
            int(num_training_steps)
        self.num_cycles, self.min_lr_ratio = float(num_cycles), float(min_lr_ratio)

    def __call__(self, step):
        w, n = self.num_warmup_steps, self.num_training_steps
        if step < w:
            return float(step) / float(max(1, w))
        progress = min(1.0, float(step - w) / float(max(1, n - w)))
        cos = max(0.0, 0.5 * (1.0 + math.cos(math.pi * self.num_cycles * 2.0 * progress)))
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cos


class CosineWithWarmup(LambdaLR):
    def __init__(self, optimizer, num_warmup_steps: int, num_training_steps: int,
                 num_cycles: float = 0.5, min_lr_ratio: float = 0.0, last_epoch: int = -1):
        fn = _CosineWarmupLambda(num_warmup_steps, num_training_steps, num_cycles, min_lr_ratio)
        super().__init__(optimizer, fn, last_epoch)


def get_cosine_schedule_with_warmup(optimizer, num_warmup_steps, num_training_steps,
                                    num_cycles=0.5, last_epoch=-1, min_lr_ratio=0.0):
    """transformers' function of the same name (plus min_lr_ratio)."""
    return CosineWithWarmup(optimizer, num_warmup_steps, num_training_steps, num_cycles,
                            min_lr_ratio, last_epoch)
