"""Optimizer: the base of vt.optim — param groups with per-group options, per-parameter state,
zero_grad and state_dict/load_state_dict, with torch's layout.

What it is: bookkeeping. A subclass writes `_step_group(group)`; the public `step(closure)` runs
the closure under grad mode, then every group under vt.no_grad(). What it is not: math — the
updates are the fused kernels core::sgd_ and core::adamw_ (one call per parameter) and
core::adamw_multi (all of a group's parameters in one call).
"""
from __future__ import annotations

import copy
from collections import defaultdict

from .._ops import op as _op
from ..autograd import enable_grad, no_grad
from ..tensor import Tensor

_required = object()


class Optimizer:
    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        self.state: dict = defaultdict(dict)
        self.param_groups: list = []
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of "
                            "Tensors or dicts, but got a Tensor")
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for g in groups:
            self.add_param_group(g)

    def add_param_group(self, param_group: dict) -> None:
        if not isinstance(param_group, dict):
            raise TypeError(f"param group must be a dict, got {type(param_group).__name__}")
        group = dict(param_group)
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, got "
                                f"{type(p).__name__}")
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor")
            if not p.dtype.is_floating_point:
                raise TypeError(f"optimizer can only optimize floating-point Tensors, got "
                                f"{p.dtype}")
        group["params"] = params
        for k, v in self.defaults.items():
            if v is _required and k not in group:
                raise ValueError(f"parameter group didn't specify a value of required "
                                 f"optimization parameter {k}")
            group.setdefault(k, v)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in params) or len({id(p) for p in params}) != len(params):
            raise ValueError("some parameters appear in more than one parameter group")
        self._check_group(group)
        self.param_groups.append(group)

    def _check_group(self, group) -> None:
        """Validate a group's options (subclasses: raise ValueError naming the bad value)."""

    def zero_grad(self, set_to_none: bool = True) -> None:
        for g in self.param_groups:
            for p in g["params"]:
                gr = p.grad
                if gr is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    with no_grad():
                        gr.zero_()

    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns closure()'s loss."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        with no_grad():
            for group in self.param_groups:
                self._step_group(group)
        return loss

    def _step_group(self, group) -> None:
        raise NotImplementedError

    # -- state dict ------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """{'state': {index: {name: value}}, 'param_groups': [{options, 'params': [index]}]},
        parameters numbered in group order as torch does. Tensors are shared, not copied."""
        index, groups, i = {}, [], 0
        for g in self.param_groups:
            ids = []
            for p in g["params"]:
                if id(p) not in index:
                    index[id(p)] = i
                    i += 1
                ids.append(index[id(p)])
            opts = {k: v for k, v in g.items() if k != "params"}
            opts["params"] = ids
            groups.append(opts)
        state = {index[id(p)]: dict(s) for p, s in self.state.items() if id(p) in index}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        groups = state_dict.get("param_groups")
        if groups is None or "state" not in state_dict:
            raise ValueError("optimizer state_dict must have 'state' and 'param_groups' keys")
        if len(groups) != len(self.param_groups):
            raise ValueError(f"loaded state dict has {len(groups)} parameter groups, this "
                             f"optimizer has {len(self.param_groups)}")
        for i, (mine, theirs) in enumerate(zip(self.param_groups, groups)):
            if len(mine["params"]) != len(theirs["params"]):
                raise ValueError(f"loaded state dict contains a parameter group {i} of size "
                                 f"{len(theirs['params'])} that doesn't match the size of "
                                 f"optimizer's group ({len(mine['params'])})")
        by_index = {}
        for mine, theirs in zip(self.param_groups, groups):
            for idx, p in zip(theirs["params"], mine["params"]):
                by_index[idx] = p
        new_state = defaultdict(dict)
        for idx, s in state_dict["state"].items():
            idx = int(idx)
            if idx not in by_index:
                raise ValueError(f"state for parameter {idx} has no parameter in the groups")
            p = by_index[idx]
            out = {}
            for k, v in s.items():
                if isinstance(v, Tensor):
                    if v.ndim and tuple(v.shape) != tuple(p.shape):
                        raise ValueError(f"state '{k}' of parameter {idx} has shape "
                                         f"{tuple(v.shape)}, the parameter has "
                                         f"{tuple(p.shape)}")
                    # a capturable optimizer's step count stays float32
                    keep = k == "step" or not v.dtype.is_floating_point
                    v = v.to(device=p.device, dtype=None if keep else p.dtype).clone()
                else:
                    v = copy.deepcopy(v)
                out[k] = v
            new_state[p] = out
        self.state = new_state
        for mine, theirs in zip(self.param_groups, groups):
            for k, v in theirs.items():
                if k != "params":
                    mine[k] = copy.deepcopy(v)

    def __repr__(self):
        s = type(self).__name__ + " ("
        for i, g in enumerate(self.param_groups):
            s += f"\nParameter Group {i}"
            for k in sorted(g):
                if k != "params":
                    s += f"\n    {k}: {g[k]}"
        return s + "\n)"


def _grad(p, maximize):
    g = p.grad
    if g is None:
        return None
    return -g if maximize else g


sgd_kernel = _op("core::sgd_")
adamw_kernel = _op("core::adamw_")
