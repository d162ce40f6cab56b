"""vt.nn.parallel — data parallelism across processes: DistributedDataParallel (torch's name)."""
from .distributed import DistributedDataParallel

__all__ = ["DistributedDataParallel"]
