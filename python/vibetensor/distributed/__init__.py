"""vibetensor.distributed — process groups and collectives with torch.distributed's names.

Each process is one rank. `init_process_group` meets the other ranks through a TCP store at
MASTER_ADDR:MASTER_PORT (what `python -m vibetensor.distributed.run` and torchrun set), loads the
`allreduce` op pack (ops/allreduce; loaded here, on first use, not by `import vibetensor`) and
opens a group on a provider: `shm` for CPU tensors (processes of one machine over shared memory);
for CUDA tensors `p2p` (GPUs of one node through CUDA IPC buffers; its all_reduce is the default
on cuda) with an `nccl` communicator as its fallback (the other collectives, other dtypes and ops),
or `nccl` alone (backend="nccl"; many nodes). Both CUDA providers are tested on 2 H200s.
The collectives are that pack's ops, in place, so `vt.ops.providers("allreduce::all_reduce_")`
lists who serves them.

    # python -m vibetensor.distributed.run --nproc-per-node 2 this_script.py
    import vibetensor as vt
    import vibetensor.distributed as dist
    dist.init_process_group()                       # backend None: shm for cpu (device="cuda": p2p)
    x = vt.full([4], float(dist.get_rank()))
    dist.all_reduce(x)                              # x = 0 + 1 on both ranks
    dist.destroy_process_group()

Collectives must be called in the same order on every rank. A rank that dies, or one that never
makes the call, makes the others raise RuntimeError (within the timeout; at once when its process
is gone), and the group is unusable afterwards. Ranks that disagree on op, dtype or size raise
ValueError and the group stays usable. `async_op=True` returns a Work whose `wait()` finishes the
call (run in order on one background thread per group; `wait()` raises what the call raised).
"""
from __future__ import annotations

import atexit
import datetime
import os
import queue
import secrets
import threading
from pathlib import Path

import vibetensor as vt
from vibetensor import _ops

from ._store import TCPStore

__all__ = ["ReduceOp", "init_process_group", "destroy_process_group", "is_initialized", "is_available",
           "get_rank", "get_world_size", "get_backend", "all_reduce", "broadcast", "all_gather",
           "all_gather_into_tensor", "reduce_scatter", "reduce_scatter_tensor", "barrier", "Work",
           "TCPStore", "ProcessGroup"]

DEFAULT_TIMEOUT = datetime.timedelta(minutes=5)
# bytes of each of a rank's two shm buffers: messages go through in pieces of this size
# (the segment holds 2 per rank: 32 MiB of /dev/shm for 4 ranks)
SHM_BUFFER_BYTES = int(os.environ.get("VT_SHM_BUFFER_BYTES", 4 << 20))
# bytes of each of a rank's four p2p regions on the GPU (acc and out, two of each by call
# parity): larger all-reduces go in pieces of this size
P2P_BUFFER_BYTES = int(os.environ.get("VT_P2P_BUFFER_BYTES", 32 << 20))


class ReduceOp:
    """torch.distributed.ReduceOp's names; AVG divides the sum by the world size (floating only)."""
    SUM = "sum"
    AVG = "avg"
    MAX = "max"
    MIN = "min"
    PRODUCT = "product"


def is_available() -> bool:
    return True


def _pack_folder() -> Path:
    from vibetensor.registry import search

    return search.BUILTIN_DIR / "on_demand" / "allreduce"


def _load_pack():
    from vibetensor import registry

    if registry.get("allreduce") is None:
        folder = _pack_folder()
        if not (folder / "manifest.json").is_file():
            raise RuntimeError(f"vibetensor.distributed: the allreduce op pack is not installed (no {folder}); "
                               f"rebuild vibetensor (ops/allreduce)")
        registry.load(folder)


def _op(name):
    return _ops.op(name)  # cached by name


class Work:
    """The handle of an async collective: wait() blocks until it is done and raises its error."""

    def __init__(self):
        self._done = threading.Event()
        self._exc = None

    def is_completed(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout=None) -> bool:
        self._done.wait(timeout)
        if self._exc is not None:
            raise self._exc
        return True


class ProcessGroup:
    """An open group: its rank, size, backend and the pack's handle for it."""

    def __init__(self, handle: int, rank: int, world_size: int, backend: str, store, timeout: float):
        self.handle, self._rank, self._size, self.backend = handle, rank, world_size, backend
        self.store, self.timeout = store, timeout
        self.device = vt.device("cpu")  # where its collectives' tensors live
        self.fallback = None    # p2p: the nccl ProcessGroup serving what p2p does not take
        self._q = None          # async calls, run in order by one thread
        self._last = None       # the latest async Work not yet known to be done
        self._all_reduce = {}   # op name -> allreduce::all_reduce_ with this group and op bound

    def rank(self) -> int:
        return self._rank

    def size(self) -> int:
        return self._size

    def run(self, fn, async_op: bool):
        """fn() now (after any async calls still running: order is the contract), or on the group's
        thread with async_op."""
        if not async_op:
            if self._last is not None:
                self._last._done.wait()
                self._last = None
            fn()
            return None
        if self._q is None:
            self._q = queue.SimpleQueue()
            threading.Thread(target=self._worker, name=f"vt-dist-{self.handle}", daemon=True).start()
        w = Work()
        self._last = w
        self._q.put((fn, w))
        return w

    def _worker(self):
        while True:
            item = self._q.get()
            if item is None:
                return
            fn, w = item
            try:
                fn()
            except BaseException as e:  # noqa: BLE001 - handed to wait()
                w._exc = e
            w._done.set()

    def close(self):
        if self._last is not None:
            self._last._done.wait()
        if self._q is not None:
            self._q.put(None)
        try:
            if self.backend == "p2p":
                # peers' kernels read this rank's buffer: free it only once every rank's work is done
                vt.cuda.synchronize(self.device)
                _store_barrier(self.store, self._close_key, self._rank, self._size, self.timeout)
        finally:  # a peer that never comes (it died) must not leak this rank's group
            _op("allreduce::destroy_group")(self.handle)
            if self.fallback is not None:
                self.fallback.close()


_world: ProcessGroup | None = None
_inits = [0]  # init_process_group calls in this process: store keys are per init, the same on every rank


def _finish_at_exit() -> None:
    """At interpreter exit with a p2p group still open (no destroy_process_group): the peers'
    kernels may still be reading this rank's buffers (a call ends without a closing barrier: the
    regions alternate by call parity), and exiting frees them with the CUDA context. Wait, as
    close() does, until every rank's work is done; a dead peer or a broken store ends the wait
    (the store's timeout), it never holds the exit forever."""
    g = _world
    if g is None or g.backend != "p2p":
        return
    try:
        vt.cuda.synchronize(g.device)
        _store_barrier(g.store, g._close_key, g._rank, g._size, g.timeout)
    except Exception:  # noqa: BLE001 - nothing more to wait for at exit
        pass


atexit.register(_finish_at_exit)


def _seconds(timeout) -> float:
    if timeout is None:
        timeout = DEFAULT_TIMEOUT
    return timeout.total_seconds() if isinstance(timeout, datetime.timedelta) else float(timeout)


def _env_int(name: str, given) -> int:
    if given is not None and given != -1:
        return int(given)
    v = os.environ.get(name)
    if v is None:
        raise ValueError(f"init_process_group: {name.lower()} not given and ${name} not set (start the "
                         f"script with `python -m vibetensor.distributed.run --nproc-per-node N`)")
    return int(v)


def init_process_group(backend: str | None = None, init_method: str | None = "env://", world_size: int = -1,
                       rank: int = -1, timeout=None, store=None, device=None):
    """Join the default process group (torch.distributed.init_process_group's arguments).

    backend: None picks per device ("shm" for cpu, "p2p" with an nccl fallback for cuda); "gloo" is accepted as "shm" for CPU scripts
    written for torch. init_method: "env://" (MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE) or
    "tcp://host:port". timeout: seconds or a timedelta (default 5 minutes), for the rendezvous and
    for every wait of every collective."""
    global _world
    if _world is not None:
        raise RuntimeError("init_process_group: the default process group is already initialised "
                           "(destroy_process_group() first)")
    b = (backend or "").lower()
    spec = device  # "cuda" (no index) means cuda:LOCAL_RANK, which vt.device("cuda") would lose
    device = vt.device(device or ("cuda" if b in ("p2p", "nccl") else "cpu"))
    b = b or {"cpu": "shm", "cuda": "p2p"}.get(device.type)
    if b == "gloo":
        b = "shm"
    if b not in ("shm", "nccl", "p2p"):
        raise ValueError(f"init_process_group: unknown backend {backend!r} (available: shm, p2p, nccl, or None)")
    if b in ("p2p", "nccl") and vt.cuda.device_count() == 0:
        raise RuntimeError(f"init_process_group: backend {b!r} serves cuda tensors, and no CUDA device is visible "
                           f"(backend='shm' serves cpu tensors)")
    rank, world_size = _env_int("RANK", rank), _env_int("WORLD_SIZE", world_size)
    if not 0 <= rank < world_size:
        raise ValueError(f"init_process_group: rank {rank} is not in 0..{world_size - 1} (world_size {world_size})")
    t = _seconds(timeout)
    if store is None:
        if init_method in (None, "env://"):
            host = os.environ.get("MASTER_ADDR", "127.0.0.1")
            port = os.environ.get("MASTER_PORT")
            if port is None:
                raise ValueError("init_process_group: $MASTER_PORT is not set (init_method env://)")
        elif init_method.startswith("tcp://"):
            host, _, port = init_method[len("tcp://"):].rpartition(":")
        else:
            raise ValueError(f"init_process_group: init_method must be 'env://' or 'tcp://host:port', got "
                             f"{init_method!r}")
        if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
            store = _TorchAgentStore(host, int(port), t)  # torchrun serves MASTER_PORT itself
        else:
            store = TCPStore(host, int(port), is_master=rank == 0, timeout=t)
    _load_pack()
    _inits[0] += 1
    if b in ("nccl", "p2p"):
        # the rank's GPU becomes the process's current device (as torch scripts do with set_device):
        # streams, CUDA graphs and `device="cuda"` then mean this GPU, not cuda:0
        index = _cuda_index(spec, rank)
        vt.cuda.set_device(index)
        _world = (_init_nccl if b == "nccl" else _init_p2p)(store, rank, world_size, index, t)
        return
    key = f"vt/shm/{_inits[0]}"
    if rank == 0:
        name = f"/vt-{os.getpid()}-{secrets.token_hex(6)}"
        store.set(key, name.encode())
    else:
        name = store.get(key).decode()
    handle = _op("allreduce::shm_new_group")(name, rank, world_size, SHM_BUFFER_BYTES, t)
    _world = ProcessGroup(handle, rank, world_size, "shm", store, t)


def _nccl_library() -> str:
    """The nvidia-nccl wheel's libnccl.so.2 where it is installed, else the loader's search path."""
    import importlib.util

    spec = importlib.util.find_spec("nvidia.nccl") if importlib.util.find_spec("nvidia") else None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        lib = Path(folder) / "lib" / "libnccl.so.2"
        if lib.is_file():
            return str(lib)
    return "libnccl.so.2"


def _store_barrier(store, key, rank, world_size, timeout):
    """Returns once every rank called it with this key (through the rendezvous store)."""
    if store.add(f"{key}/arrived", 1) == world_size:
        store.set(f"{key}/go", b"1")
    store.get(f"{key}/go", timeout=max(60.0, 2 * timeout))  # others may still be timing out themselves


def _cuda_index(spec, rank) -> int:
    """The rank's GPU: the index `spec` names ("cuda:1", 1, a vt.device), else LOCAL_RANK (else rank)."""
    if spec is None or (isinstance(spec, str) and ":" not in spec):
        return int(os.environ.get("LOCAL_RANK", rank))
    if isinstance(spec, int):
        return spec
    return vt.device(spec).index


def _init_p2p(store, rank, world_size, index, timeout) -> ProcessGroup:
    """Every rank allocates its IPC buffer on cuda:LOCAL_RANK (unless the device
    names one), publishes its handle in the store and maps the others'. An nccl communicator opened
    first serves as the fallback when NCCL is installed (all ranks agree: rank 0 decides)."""
    import numpy as np

    key = f"vt/p2p/{_inits[0]}"
    if rank == 0:
        try:
            _op("allreduce::nccl_unique_id")(_nccl_library())
            store.set(f"{key}/nccl", b"1")
        except RuntimeError:  # NCCL absent: p2p alone (fp32/bf16/fp16 all_reduce with sum/avg/max)
            store.set(f"{key}/nccl", b"0")
    fallback = _init_nccl(store, rank, world_size, index, timeout) if store.get(f"{key}/nccl") == b"1" else None
    h = _op("allreduce::p2p_new_group")(rank, world_size, index, P2P_BUFFER_BYTES, timeout,
                                        fallback.handle if fallback else -1)
    g = ProcessGroup(h, rank, world_size, "p2p", store, timeout)
    g.device, g.fallback, g._close_key = vt.device(f"cuda:{index}"), fallback, f"{key}/close"
    try:
        store.set(f"{key}/{rank}", _op("allreduce::p2p_handle")(h).numpy().tobytes())
        handles = b"".join(store.get(f"{key}/{k}") for k in range(world_size))
        _op("allreduce::p2p_connect")(h, vt.from_numpy(np.frombuffer(handles, dtype=np.uint8).copy()))
    except BaseException:
        _op("allreduce::destroy_group")(h)
        if fallback is not None:
            fallback.close()
        raise
    return g


def _init_nccl(store, rank, world_size, index, timeout) -> ProcessGroup:
    """Rank 0's ncclUniqueId through the store, then every rank's communicator
    on its device (LOCAL_RANK unless the device names one)."""
    import numpy as np

    lib = _nccl_library()
    if rank == 0:
        uid = _op("allreduce::nccl_unique_id")(lib)
        store.set(f"vt/nccl/{_inits[0]}", uid.numpy().tobytes())
    else:
        uid = vt.from_numpy(np.frombuffer(store.get(f"vt/nccl/{_inits[0]}"), dtype=np.uint8).copy())
    handle = _op("allreduce::nccl_new_group")(uid, rank, world_size, index, lib)
    g = ProcessGroup(handle, rank, world_size, "nccl", store, timeout)
    g.device = vt.device(f"cuda:{index}")
    return g


class _TorchAgentStore:
    """Under torchrun (TORCHELASTIC_USE_AGENT_STORE=True) its agent already serves MASTER_PORT with
    torch's TCPStore: talk to that one (torch is installed where torchrun runs). Keys carry the
    restart count, since the agent's store outlives restarted workers."""

    def __init__(self, host, port, timeout):
        import datetime as _dt

        import torch.distributed as tdist

        self._s = tdist.TCPStore(host, port, is_master=False, timeout=_dt.timedelta(seconds=timeout))
        self._prefix = f"vt/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/"

    def set(self, key, value):
        self._s.set(self._prefix + key, value)

    def get(self, key, timeout=None):
        return bytes(self._s.get(self._prefix + key))

    def add(self, key, amount):
        return self._s.add(self._prefix + key, int(amount))

    def close(self):
        self._s = None


def destroy_process_group(group=None) -> None:
    global _world
    g = _group(group)
    g.close()
    if g is _world:
        _world = None
        g.store.close()


def is_initialized() -> bool:
    return _world is not None


def _group(group) -> ProcessGroup:
    g = group if group is not None else _world
    if g is None:
        raise RuntimeError("vibetensor.distributed: the default process group is not initialised; call "
                           "init_process_group() first")
    return g


def get_rank(group=None) -> int:
    return _group(group).rank()


def get_world_size(group=None) -> int:
    return _group(group).size()


def get_backend(group=None) -> str:
    return _group(group).backend


def _tensors(name: str, **ts):
    for arg, t in ts.items():
        if not isinstance(t, vt.Tensor):
            raise TypeError(f"{name}: {arg} must be a Tensor, got {type(t).__name__}")


def _in_place(t, call):
    """call(t) for a contiguous t; otherwise call on a contiguous copy, then copied back."""
    if t.is_contiguous():
        call(t)
        return
    tmp = t.contiguous()
    call(tmp)
    with vt.no_grad():
        t.copy_(tmp)


def all_reduce(tensor, op=ReduceOp.SUM, group=None, async_op=False):
    """tensor = op over every rank's tensor, in place."""
    g = _group(group)
    f = _op("allreduce::all_reduce_")
    # the common call (synchronous, nothing queued on the group's thread, a contiguous tensor) goes
    # straight to the op: small all-reduces are host-bound, and every microsecond is the caller's
    if not async_op and g._last is None and type(tensor) is vt.Tensor and tensor.is_contiguous():
        try:
            bound = g._all_reduce[op]
        except (KeyError, TypeError):  # the group and op arguments boxed once (Op.partial)
            bound = f.partial(g.handle, op)  # a bad op is refused here, as by the op itself
            if isinstance(op, str):
                g._all_reduce[op] = bound
        bound(tensor)
        return None
    _tensors("all_reduce", tensor=tensor)
    return g.run(lambda: _in_place(tensor, lambda t: f(t, g.handle, op)), async_op)


def broadcast(tensor, src: int = 0, group=None, async_op=False):
    """tensor = rank src's tensor, in place."""
    g = _group(group)
    _tensors("broadcast", tensor=tensor)
    f = _op("allreduce::broadcast_")
    return g.run(lambda: _in_place(tensor, lambda t: f(t, g.handle, int(src))), async_op)


def all_gather_into_tensor(output_tensor, input_tensor, group=None, async_op=False):
    """output_tensor (world_size * input.numel() elements) = the inputs of ranks 0..W-1, concatenated."""
    g = _group(group)
    _tensors("all_gather_into_tensor", output_tensor=output_tensor, input_tensor=input_tensor)
    f = _op("allreduce::all_gather_")
    return g.run(lambda: _in_place(output_tensor, lambda o: f(o, input_tensor.contiguous(), g.handle)), async_op)


def all_gather(tensor_list, tensor, group=None, async_op=False):
    """tensor_list[k] = rank k's tensor (world_size tensors of tensor's shape and dtype)."""
    g = _group(group)
    if len(tensor_list) != g.size():
        raise ValueError(f"all_gather: tensor_list must hold world_size = {g.size()} tensors, got {len(tensor_list)}")
    f = _op("allreduce::all_gather_")

    def run():
        flat = vt.empty(g.size() * tensor.numel(), dtype=tensor.dtype, device=tensor.device)
        f(flat, tensor.contiguous(), g.handle)
        with vt.no_grad():
            for k, t in enumerate(tensor_list):
                t.copy_(flat[k * tensor.numel():(k + 1) * tensor.numel()].view(t.shape))
    return g.run(run, async_op)


def reduce_scatter_tensor(output, input, op=ReduceOp.SUM, group=None, async_op=False):
    """output = rank r's 1/W slice of op over every rank's input (W * output.numel() elements)."""
    g = _group(group)
    _tensors("reduce_scatter_tensor", output=output, input=input)
    f = _op("allreduce::reduce_scatter_")
    return g.run(lambda: _in_place(output, lambda o: f(o, input.contiguous(), g.handle, op)), async_op)


def reduce_scatter(output, input_list, op=ReduceOp.SUM, group=None, async_op=False):
    """output = op over every rank's input_list[rank] (torch's list form)."""
    g = _group(group)
    if len(input_list) != g.size():
        raise ValueError(f"reduce_scatter: input_list must hold world_size = {g.size()} tensors, got "
                         f"{len(input_list)}")
    f = _op("allreduce::reduce_scatter_")

    def run():
        flat = vt.cat([t.contiguous().reshape(-1) for t in input_list])
        _in_place(output, lambda o: f(o, flat, g.handle, op))
    return g.run(run, async_op)


def barrier(group=None, async_op=False):
    """Returns once every rank of the group called barrier."""
    g = _group(group)
    if g.backend in ("nccl", "p2p"):  # no barrier op on cuda: a one-element all-reduce, waited for
        def run():
            _op("allreduce::all_reduce_")(vt.zeros(1, device=g.device), g.handle, ReduceOp.SUM)
            vt.cuda.synchronize(g.device)
            if g.backend == "p2p":  # a wait that timed out on the GPU raises here
                _op("allreduce::p2p_check")(g.handle)
        return g.run(run, async_op)
    f = _op("allreduce::barrier")
    return g.run(lambda: f(g.handle), async_op)
