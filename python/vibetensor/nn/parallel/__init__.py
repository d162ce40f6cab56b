"""vt.nn.parallel — data parallelism across processes: DistributedDataParallel (torch's name).
Imported on first use, so `import vibetensor` does not pay for vibetensor.distributed."""

__all__ = ["DistributedDataParallel"]


def __getattr__(name):
    if name == "DistributedDataParallel":
        from .distributed import DistributedDataParallel

        return DistributedDataParallel
    raise AttributeError(f"module 'vibetensor.nn.parallel' has no attribute '{name}'")
