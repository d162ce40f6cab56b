"""DistributedDataParallel: one model replica per process, gradients averaged across the group, so
that N processes with batch B each take the same step as one process with batch N * B.

What it does (torch's DDP design, notes/allocator-graphs-allreduce.md §4):
- at construction, every parameter and buffer is broadcast from rank 0 (replicas start equal);
- parameters that require grad are grouped into buckets of about `bucket_cap_mb` (the first one
  1 MB, so communication starts early), in reverse `parameters()` order (roughly the order backward
  produces their gradients), one dtype per bucket, each a flat tensor;
- a hook on every parameter copies its gradient into its bucket; a full bucket's all-reduce (avg)
  starts at once, in bucket order on every rank, and overlaps the rest of backward: on cuda it is
  launched on a side stream that first waits for the bucket's copies (an event; the host never
  waits, so a whole step still captures in a CUDA graph); on cpu it runs on the group's background
  thread. When backward has finished (`vt.autograd.queue_callback`) the current stream waits for
  the side stream and every parameter's .grad is the average over ranks;
- `no_sync()`: backward passes of forwards run inside it only accumulate .grad locally; the next
  synced backward averages the accumulated sum (gradient accumulation);
- `broadcast_buffers`: buffers are broadcast from rank 0 before every forward (BatchNorm stats);
- `module` is the wrapped model; `state_dict()` / `load_state_dict()` are the module's own (no
  "module." prefix, unlike torch), so checkpoints load with or without the wrapper.
Parameters that got no gradient in a backward contribute zeros (torch asks for
find_unused_parameters=True there; here it is always on). Accepted for torch's signature and
without effect: device_ids / output_device / dim (one device per process, taken from the module),
static_graph (a hint), gradient_as_bucket_view (.grad is always its own tensor, a copy of the
bucket's averaged slice: the same values, one gradient's worth more memory).

>>> # under python -m vibetensor.distributed.run --nproc-per-node 2 ...
>>> # dist.init_process_group(); model = DistributedDataParallel(Net())
>>> # loss = model(x_local).loss(...); loss.backward(); opt.step()   # like one process, global batch
"""
from __future__ import annotations

import contextlib

import vibetensor as vt
from vibetensor import distributed as dist

from ..module import Module

_FIRST_BUCKET_BYTES = 1 << 20


class _Bucket:
    __slots__ = ("params", "flat", "views", "pending", "ready", "work")

    def __init__(self, params):
        self.params = params
        n = sum(p.numel() for p in params)
        self.flat = vt.zeros(n, dtype=params[0].dtype, device=params[0].device)
        self.views, off = [], 0
        for p in params:
            self.views.append(self.flat[off:off + p.numel()].view(p.shape))
            off += p.numel()
        self.pending = len(params)
        self.ready = [False] * len(params)
        self.work = None


class DistributedDataParallel(Module):
    """Wraps `module` for data-parallel training over `process_group` (default: the world)."""

    def __init__(self, module, device_ids=None, output_device=None, dim=0, broadcast_buffers=True,
                 process_group=None, bucket_cap_mb=25, find_unused_parameters=False,
                 gradient_as_bucket_view=False, static_graph=False, overlap=True):
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"DistributedDataParallel: module must be a vt.nn.Module, got {type(module).__name__}")
        if bucket_cap_mb <= 0:
            raise ValueError(f"DistributedDataParallel: bucket_cap_mb must be > 0, got {bucket_cap_mb}")
        self.module = module
        self.process_group = dist._group(process_group)
        self.broadcast_buffers = bool(broadcast_buffers)
        self.require_backward_grad_sync = True
        self.overlap = bool(overlap)
        self._sync_this_backward = True
        self._armed = False
        self._sync_from_rank0(list(module.parameters()) + list(module.buffers()))
        params = [p for p in module.parameters() if p.requires_grad]
        self._buckets, self._where = self._make_buckets(params, int(bucket_cap_mb * (1 << 20)))
        self._next = 0
        # cuda: bucket all-reduces go on their own stream (torch's DDP does the same)
        dev = params[0].device if params else None
        self._comm = vt.cuda.Stream(device=dev) if self.overlap and dev is not None and dev.type == "cuda" else None
        # the two orderings between the streams, made once (a wait takes the event's latest record)
        self._filled, self._reduced = (vt.cuda.Event(), vt.cuda.Event()) if self._comm is not None else (None, None)
        for p in params:
            p.register_hook(self._hook_for(p))

    # -- setup -------------------------------------------------------------------------------
    def _sync_from_rank0(self, tensors):
        """Every tensor = rank 0's, one broadcast per dtype and ~25 MB."""
        if self.process_group.size() == 1:
            return
        groups: dict = {}
        for t in tensors:
            groups.setdefault((t.dtype, str(t.device)), []).append(t)
        with vt.no_grad():
            for ts in groups.values():
                for chunk in _chunks(ts, 25 << 20):
                    flat = vt.cat([t.detach().reshape(-1) for t in chunk])
                    dist.broadcast(flat, 0, group=self.process_group)
                    off = 0
                    for t in chunk:
                        t.copy_(flat[off:off + t.numel()].view(t.shape))
                        off += t.numel()

    @staticmethod
    def _make_buckets(params, cap):
        buckets, where, cur, size = [], {}, [], 0
        limit = min(_FIRST_BUCKET_BYTES, cap)
        for p in reversed(params):
            nbytes = p.numel() * p.element_size()
            if cur and (size + nbytes > limit or p.dtype is not cur[0].dtype or str(p.device) != str(cur[0].device)):
                buckets.append(_Bucket(cur))
                cur, size, limit = [], 0, cap
            cur.append(p)
            size += nbytes
        if cur:
            buckets.append(_Bucket(cur))
        for bi, b in enumerate(buckets):
            for i, p in enumerate(b.params):
                where[id(p)] = (bi, i)
        return buckets, where

    # -- forward -----------------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        if self._armed:  # the last backward failed before it finished: let its reductions end
            self._abandon_backward()
        self._sync_this_backward = self.require_backward_grad_sync and vt.is_grad_enabled()
        if self.broadcast_buffers and self.process_group.size() > 1:
            bufs = list(self.module.buffers())
            if bufs:
                self._sync_from_rank0(bufs)
        return self.module(*args, **kwargs)

    @contextlib.contextmanager
    def no_sync(self):
        """Backward passes of forwards run in here only accumulate .grad locally."""
        old = self.require_backward_grad_sync
        self.require_backward_grad_sync = False
        try:
            yield
        finally:
            self.require_backward_grad_sync = old

    # -- backward ----------------------------------------------------------------------------
    def _hook_for(self, p):
        bi, i = self._where[id(p)]

        def hook(grad):
            if not self._sync_this_backward or self.process_group.size() == 1:
                return None
            if not self._armed and not self._start_backward():
                return None  # vt.autograd.grad, not backward(): gradients stay local, as in torch
            b = self._buckets[bi]
            with vt.no_grad():
                if b.ready[i]:  # a second gradient for p in this backward
                    if b.work is not None:
                        raise RuntimeError("DistributedDataParallel: a parameter got a gradient after its "
                                           "bucket was reduced (is it used twice in separate graphs?)")
                    b.views[i].add_(grad)
                    return None
                if p.grad is not None:  # accumulated under no_sync()
                    b.views[i].copy_(p.grad)
                    b.views[i].add_(grad)
                else:
                    b.views[i].copy_(grad)
            b.ready[i] = True
            b.pending -= 1
            if b.pending == 0:
                self._launch_ready()
            return None
        return hook

    def _start_backward(self) -> bool:
        try:
            vt.autograd.queue_callback(self._finish_backward)
        except RuntimeError:  # no backward() running
            return False
        self._armed = True
        self._next = 0
        for b in self._buckets:
            b.pending, b.ready, b.work = len(b.params), [False] * len(b.params), None
        return True

    def _abandon_backward(self):
        self._armed = False
        for b in self._buckets:
            if b.work is not None:
                try:
                    b.work.wait()
                except RuntimeError:
                    pass

    def _launch_ready(self):
        # buckets go out in index order on every rank, whatever order they filled in
        while self._next < len(self._buckets) and self._buckets[self._next].pending == 0:
            b = self._buckets[self._next]
            if self._comm is not None:  # on the side stream, after the copies into the bucket
                self._filled.record(vt.cuda.current_stream(self._comm.device))
                self._comm.wait_event(self._filled)
                with vt.cuda.stream(self._comm):
                    dist.all_reduce(b.flat, dist.ReduceOp.AVG, group=self.process_group)
                b.work = _DONE
            elif self.overlap:  # on the group's thread, while backward goes on
                b.work = dist.all_reduce(b.flat, dist.ReduceOp.AVG, group=self.process_group, async_op=True)
            else:
                dist.all_reduce(b.flat, dist.ReduceOp.AVG, group=self.process_group)
                b.work = _DONE
            self._next += 1

    def _finish_backward(self):
        self._armed = False
        with vt.no_grad():
            for b in self._buckets:  # parameters that got no gradient contribute their .grad or zeros
                for i, p in enumerate(b.params):
                    if not b.ready[i]:
                        if p.grad is not None:
                            b.views[i].copy_(p.grad)
                        else:
                            b.views[i].zero_()
                        b.ready[i] = True
                        b.pending -= 1
            self._launch_ready()
            if self._comm is not None:  # the averaged buckets are read on the current stream
                self._reduced.record(self._comm)
                vt.cuda.current_stream(self._comm.device).wait_event(self._reduced)
            for b in self._buckets:
                b.work.wait()
                for p, v in zip(b.params, b.views):
                    if p.grad is None:
                        p.grad = v.clone()
                    else:
                        p.grad.copy_(v)

    # -- state passes through ----------------------------------------------------------------
    def state_dict(self, *args, **kwargs):
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return self.module.load_state_dict(state_dict, strict=strict, assign=assign)


class _Done:
    def wait(self):
        return True


_DONE = _Done()


def _chunks(tensors, max_bytes):
    cur, size = [], 0
    for t in tensors:
        nb = t.numel() * t.element_size()
        if cur and size + nb > max_bytes:
            yield cur
            cur, size = [], 0
        cur.append(t)
        size += nb
    if cur:
        yield cur
