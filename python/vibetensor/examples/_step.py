"""One training step for the examples: forward under autocast (--amp), backward, gradient
clipping, optimiser step — eager, or captured once into a CUDA graph and replayed (--cuda-graph).

The whole-step graph is vibetensor's recipe for CUDA-graph training (torch's "whole network
capture" recipe, same rules):
- static inputs: every batch is copied into the same device tensors the graph was captured on;
- warm-up: a few eager steps on a side stream first, so lazily made state (optimizer moments,
  cuBLAS workspaces, allocator blocks) exists before capture;
- gradients are set to None once before the capture, so backward allocates them from the graph's
  private pool and every replay rewrites them in place (do not zero or replace them afterwards);
- the optimizer must be capturable (its learning rate and step count live in device memory:
  `capturable=True`), since a replay repeats the captured kernel arguments verbatim; a changed
  lr reaches the graph through `opt.update_lr()` before each replay;
- the loss is a static output: read it after replay (reading it syncs; the examples read it only
  every `log_every` steps when the graph is on).
Nothing in forward or backward may sync with the host (capture refuses it with a clear error).
"""
from __future__ import annotations

import vibetensor as vt


def amp_dtype(name: str | None):
    """--amp value -> dtype (None: float32 throughout)."""
    table = {None: None, "none": None, "bf16": vt.bfloat16, "fp16": vt.float16}
    if name not in table:
        raise ValueError(f"amp must be one of none, bf16, fp16; got {name!r}")
    return table[name]


class TrainStep:
    """step(*batch) -> the loss (a device tensor; not synchronised)."""

    def __init__(self, loss_fn, optimizer, params, *, device="cpu", amp=None, clip=None,
                 cuda_graph=False, warmup=3):
        self.loss_fn, self.opt, self.params = loss_fn, optimizer, list(params)
        self.device_type = vt.device(device).type
        self.amp = amp_dtype(amp) if isinstance(amp, (str, type(None))) else amp
        self.clip = clip
        self.scaler = vt.amp.GradScaler(self.device_type) if self.amp is vt.float16 else None
        self.use_graph = bool(cuda_graph)
        if self.use_graph:
            if self.device_type != "cuda":
                raise ValueError("--cuda-graph needs --device cuda")
            if self.scaler is not None:
                raise ValueError("--cuda-graph with --amp fp16 is not supported: the loss scaler "
                                 "decides on the host whether to step; use --amp bf16")
            if not all(g.get("capturable") for g in optimizer.param_groups):
                raise ValueError(f"--cuda-graph needs a capturable optimizer "
                                 f"({type(optimizer).__name__}(..., capturable=True))")
        self.warmup = warmup
        self.graph = None
        self.static_in = None
        self.static_loss = None
        self.calls = 0

    def _forward_backward_step(self, batch):
        if self.amp is not None:
            with vt.autocast(self.device_type, dtype=self.amp):
                loss = self.loss_fn(*batch)
        else:
            loss = self.loss_fn(*batch)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.opt)
        else:
            loss.backward()
        if self.clip:
            vt.nn.utils.clip_grad_norm_(self.params, self.clip)
        if self.scaler is not None:
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            self.opt.step()
        return loss

    def __call__(self, *batch):
        self.calls += 1
        if not self.use_graph:
            self.opt.zero_grad(set_to_none=True)
            return self._forward_backward_step(batch)
        if self.graph is None and self.calls <= self.warmup:
            side = vt.cuda.Stream()
            side.wait_stream(vt.cuda.current_stream())
            with vt.cuda.stream(side):
                self.opt.zero_grad(set_to_none=True)
                loss = self._forward_backward_step(batch)
            vt.cuda.current_stream().wait_stream(side)
            return loss
        if self.graph is None:
            self._capture(batch)
        else:
            for s, b in zip(self.static_in, batch):
                s.copy_(b)
        self.opt.update_lr()  # a schedule's new lr into the device tensor the graph reads
        self.graph.replay()
        return self.static_loss

    def _capture(self, batch):
        self.static_in = [b.clone() for b in batch]
        vt.cuda.synchronize()
        self.opt.zero_grad(set_to_none=True)
        self.graph = vt.cuda.CUDAGraph()
        with vt.cuda.graph(self.graph):
            self.static_loss = self._forward_backward_step(self.static_in)
