"""SGD with momentum, dampening, nesterov and weight decay: torch.optim.SGD's update, one fused
core::sgd_ call per parameter.

torch starts the momentum buffer as a copy of the first (decayed) gradient; core::sgd_ gives the
same result from a zero buffer with dampening 0 on that first step (0 * m + 1 * d == d).

>>> import vibetensor as vt
>>> p = vt.nn.Parameter(vt.tensor([1.0])); p.grad = vt.tensor([0.5])
>>> vt.optim.SGD([p], lr=0.1).step(); round(p.item(), 6)
0.95
"""
from __future__ import annotations

from ..creation import zeros_like
from .optimizer import Optimizer, _grad, _required
from .optimizer import sgd_kernel as _sgd


class SGD(Optimizer):
    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False, *, maximize=False):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov, maximize=maximize)
        super().__init__(params, defaults)

    def _check_group(self, g):
        if g["lr"] is _required or g["lr"] < 0.0:
            raise ValueError(f"Invalid learning rate: {g['lr']}")
        if g["momentum"] < 0.0:
            raise ValueError(f"Invalid momentum value: {g['momentum']}")
        if g["weight_decay"] < 0.0:
            raise ValueError(f"Invalid weight_decay value: {g['weight_decay']}")
        if g["nesterov"] and (g["momentum"] <= 0 or g["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    def _step_group(self, g):
        lr, m, damp = float(g["lr"]), float(g["momentum"]), float(g["dampening"])
        wd, nest = float(g["weight_decay"]), bool(g["nesterov"])
        for p in g["params"]:
            grad = _grad(p, g["maximize"])
            if grad is None:
                continue
            if m == 0.0:
                _sgd(p, grad, None, lr, 0.0, 0.0, wd, False)
                continue
            st = self.state[p]
            buf = st.get("momentum_buffer")
            if buf is None:  # first step: buffer = d (zero buffer, no dampening)
                buf = st["momentum_buffer"] = zeros_like(p)
                _sgd(p, grad, buf, lr, m, 0.0, wd, nest)
            else:
                _sgd(p, grad, buf, lr, m, damp, wd, nest)
