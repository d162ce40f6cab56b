"""Adam and AdamW: torch.optim's updates (amsgrad=False). AdamW decays the weights (decoupled,
inside the kernel); Adam's weight_decay is L2 — added to the gradient before the kernel, as torch
does.

Two paths with the same math (torch's `fused`/`foreach` flags pick between them):
- multi-tensor: one core::adamw_multi call updates every parameter of a group (on CUDA a few
  multi-tensor launches for all of them). The default (fused=None, foreach=None) when all of a
  group's parameters are on one CUDA device; fused=True (or foreach=True) asks for it anywhere.
- per tensor: one core::adamw_ call per parameter (the default on cpu, or fused=False).

capturable=True (CUDA, for whole-step CUDA graphs): each group keeps its step count and learning
rate in 1-element float32 device tensors that the kernel reads (and the step it increments), so a
captured `opt.step()` replays with fresh bias corrections. `step()` outside a capture writes the
group's lr into that tensor; between graph replays call `opt.update_lr()` after changing a
group's lr (a scheduler step). The parameters of a group share one step count in this mode.

>>> import vibetensor as vt
>>> p = vt.nn.Parameter(vt.tensor([1.0])); p.grad = vt.tensor([2.0])
>>> vt.optim.AdamW([p], lr=0.1, weight_decay=0.0).step(); round(p.item(), 5)
0.9
"""
from __future__ import annotations

from .._ops import op as _op
from ..creation import zeros_like
from ..runtime import lib
from .optimizer import Optimizer, _grad
from .optimizer import adamw_kernel as _adamw

_adamw_multi = _op("core::adamw_multi")


def _capturing() -> bool:
    from .. import cuda

    return cuda.is_available() and cuda.is_current_stream_capturing()


class Adam(Optimizer):
    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False, *, maximize=False, foreach=None, capturable=False, fused=None):
        if amsgrad:
            raise NotImplementedError(f"{type(self).__name__}: amsgrad is not supported")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        amsgrad=False, maximize=maximize, foreach=foreach,
                        capturable=capturable, fused=fused)
        self._captured: dict = {}  # id(group) -> (lr_t, step_t) of capturable groups
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
        if g.get("capturable") and not all(p.is_cuda for p in g["params"]):
            raise ValueError(f"{type(self).__name__}: capturable=True needs every parameter on "
                             f"a CUDA device")
        if g.get("fused") and g.get("foreach") is False:
            raise ValueError("fused=True and foreach=False contradict each other")

    def _multi(self, g, ps) -> bool:
        """Whether group g's step goes through core::adamw_multi."""
        if g.get("capturable"):
            return True
        flag = g.get("fused")
        if flag is None:
            flag = g.get("foreach")
        if flag is not None:
            return bool(flag)
        d = ps[0]._h.device
        return d.type == 2 and all(p._h.device.type == 2 and p._h.device.index == d.index
                                   for p in ps)  # 2: CUDA

    def _step_group(self, g):
        lr, eps, wd = float(g["lr"]), float(g["eps"]), float(g["weight_decay"])
        b1, b2 = (float(b) for b in g["betas"])
        kernel_wd = wd if self._decoupled else 0.0
        ps, grads, states = [], [], []
        for p in g["params"]:
            grad = _grad(p, g["maximize"])
            if grad is None:
                continue
            st = self.state[p]
            if not st:
                st["step"] = 0
                st["exp_avg"] = zeros_like(p)
                st["exp_avg_sq"] = zeros_like(p)
            if not self._decoupled and wd != 0.0:
                grad = grad + p * wd
            ps.append(p)
            grads.append(grad)
            states.append(st)
        if not ps:
            return
        if not self._multi(g, ps):
            for p, grad, st in zip(ps, grads, states):
                st["step"] += 1
                _adamw(p, grad, st["exp_avg"], st["exp_avg_sq"], lr, b1, b2, eps, kernel_wd,
                       st["step"])
            return
        if g.get("capturable"):
            lr_t, step_t = self._capture_tensors(g, ps[0], states)
            _adamw_multi(ps, grads, [s["exp_avg"] for s in states],
                         [s["exp_avg_sq"] for s in states], lr, b1, b2, eps, kernel_wd, 1,
                         lr_t, step_t)
        else:
            by_step: dict = {}  # parameters that missed steps (no grad) have their own count
            for i, st in enumerate(states):
                st["step"] += 1
                by_step.setdefault(st["step"], []).append(i)
            for step, idx in by_step.items():
                _adamw_multi([ps[i] for i in idx], [grads[i] for i in idx],
                             [states[i]["exp_avg"] for i in idx],
                             [states[i]["exp_avg_sq"] for i in idx], lr, b1, b2, eps, kernel_wd,
                             step)
        for p in ps:  # adamw_multi writes them in place (the runtime bumps only a `_` op's self)
            lib.vtrt_bump_version(p._h)

    def _capture_tensors(self, g, p0, states):
        """The group's (lr_t, step_t) device tensors; lr_t refreshed from g['lr'] outside capture."""
        from ..creation import full
        from ..runtime.dtypes import float32

        pair = self._captured.get(id(g))
        if pair is None:
            step0 = states[0]["step"]  # an int, or a tensor from a capturable state_dict
            step_t = full((1,), float(step0), device=p0.device) if not hasattr(step0, "_h") \
                else step0.to(device=p0.device, dtype=float32).reshape(1).clone()
            lr_t = full((1,), float(g["lr"]), device=p0.device)
            pair = self._captured[id(g)] = (lr_t, step_t)
        elif not _capturing():
            pair[0].fill_(float(g["lr"]))
        for st in states:
            st["step"] = pair[1]
        return pair

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self._captured.clear()  # capturable groups take their step from the loaded state

    def update_lr(self) -> None:
        """Writes each capturable group's lr into its device tensor (between graph replays)."""
        for g in self.param_groups:
            pair = self._captured.get(id(g))
            if pair is not None:
                pair[0].fill_(float(g["lr"]))


class AdamW(Adam):
    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False, foreach=None, capturable=False, fused=None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         foreach=foreach, capturable=capturable, fused=fused)
