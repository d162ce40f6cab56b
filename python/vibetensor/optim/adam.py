"""Adam and AdamW: torch.optim's single-tensor updates (amsgrad=False), one fused core::adamw_
call per parameter. AdamW decays the weights (decoupled, inside the kernel); Adam's weight_decay
is L2 — added to the gradient before the kernel, as torch does.

>>> import vibetensor as vt
>>> p = vt.nn.Parameter(vt.tensor([1.0])); p.grad = vt.tensor([2.0])
>>> vt.optim.AdamW([p], lr=0.1, weight_decay=0.0).step(); round(p.item(), 5)
0.9
"""
from __future__ import annotations

from ..creation import zeros_like
from .optimizer import Optimizer, _grad
from .optimizer import adamw_kernel as _adamw


class Adam(Optimizer):
    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False, *, maximize=False):
        if amsgrad:
            raise NotImplementedError(f"{type(self).__name__}: amsgrad is not supported")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        amsgrad=False, maximize=maximize)
        super().__init__(params, defaults)

    def _check_group(self, g):
        if not 0.0 <= g["lr"]:
            raise ValueError(f"Invalid learning rate: {g['lr']}")
        if not 0.0 <= g["eps"]:
            raise ValueError(f"Invalid epsilon value: {g['eps']}")
        b1, b2 = g["betas"]
        if not 0.0 <= b1 < 1.0:
            raise ValueError(f"Invalid beta parameter at index 0: {b1}")
        if not 0.0 <= b2 < 1.0:
            raise ValueError(f"Invalid beta parameter at index 1: {b2}")
        if not 0.0 <= g["weight_decay"]:
            raise ValueError(f"Invalid weight_decay value: {g['weight_decay']}")
        if g.get("amsgrad"):
            raise NotImplementedError(f"{type(self).__name__}: amsgrad is not supported")

    def _step_group(self, g):
        lr, eps, wd = float(g["lr"]), float(g["eps"]), float(g["weight_decay"])
        b1, b2 = (float(b) for b in g["betas"])
        for p in g["params"]:
            grad = _grad(p, g["maximize"])
            if grad is None:
                continue
            st = self.state[p]
            if not st:
                st["step"] = 0
                st["exp_avg"] = zeros_like(p)
                st["exp_avg_sq"] = zeros_like(p)
            st["step"] += 1
            if self._decoupled:
                _adamw(p, grad, st["exp_avg"], st["exp_avg_sq"], lr, b1, b2, eps, wd, st["step"])
            else:
                if wd != 0.0:
                    grad = grad + p * wd
                _adamw(p, grad, st["exp_avg"], st["exp_avg_sq"], lr, b1, b2, eps, 0.0,
                       st["step"])


class AdamW(Adam):
    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize)
