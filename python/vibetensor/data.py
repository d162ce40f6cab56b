"""vt.data — a small torch.utils.data: Dataset, TensorDataset and DataLoader batching with
shuffling under a seed.

What it is: single-process batching. DataLoader draws a permutation from a numpy Generator
(seeded once, so epoch k's order is the same every run), gathers samples and collates them:
vt tensors / numpy arrays / numbers are stacked into one vt tensor per field, tuples, lists and
dicts are collated field by field. TensorDataset batches are gathered with one index_select per
tensor instead of per-sample stacking. What it is not: multi-process workers or samplers.

>>> import vibetensor as vt
>>> ds = vt.data.TensorDataset(vt.arange(10.0), vt.arange(10))
>>> x, y = next(iter(vt.data.DataLoader(ds, batch_size=4)))
>>> x.tolist(), y.tolist()
([0.0, 1.0, 2.0, 3.0], [0, 1, 2, 3])
"""
from __future__ import annotations

import numbers

import numpy as np

from . import _shape
from .creation import from_numpy, tensor
from .tensor import Tensor

__all__ = ["Dataset", "TensorDataset", "DataLoader", "default_collate", "random_split",
           "Subset"]


class Dataset:
    """Subclass and define __getitem__(i) and __len__()."""

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __len__")


class TensorDataset(Dataset):
    """Samples are the i-th rows of tensors that share their first dimension."""

    def __init__(self, *tensors):
        if not tensors:
            raise ValueError("TensorDataset needs at least one tensor")
        ts = [t if isinstance(t, Tensor) else from_numpy(np.asarray(t)) for t in tensors]
        n = {t.shape[0] if t.ndim else None for t in ts}
        if len(n) != 1 or None in n:
            raise ValueError(f"TensorDataset: tensors must share their first dimension, got "
                             f"shapes {[tuple(t.shape) for t in ts]}")
        self.tensors = tuple(ts)

    def __getitem__(self, index):
        return tuple(t[index] for t in self.tensors)

    def __len__(self):
        return self.tensors[0].shape[0]

    def _batch(self, indices):
        idx = from_numpy(np.asarray(indices, dtype=np.int64))
        return tuple(_shape.index_select(t, 0, idx) for t in self.tensors)


class Subset(Dataset):
    def __init__(self, dataset, indices):
        self.dataset, self.indices = dataset, list(indices)

    def __getitem__(self, i):
        return self.dataset[self.indices[i]]

    def __len__(self):
        return len(self.indices)


def random_split(dataset, lengths, seed: int = 0):
    """Split into non-overlapping Subsets of the given lengths (or fractions summing to 1)."""
    n = len(dataset)
    if all(isinstance(x, float) for x in lengths) and abs(sum(lengths) - 1.0) < 1e-6:
        counts = [int(np.floor(n * f)) for f in lengths]
        for i in range(n - sum(counts)):
            counts[i % len(counts)] += 1
        lengths = counts
    if sum(lengths) != n:
        raise ValueError(f"random_split: lengths {list(lengths)} do not sum to the dataset "
                         f"size {n}")
    perm = np.random.default_rng(seed).permutation(n)
    out, off = [], 0
    for k in lengths:
        out.append(Subset(dataset, perm[off:off + k].tolist()))
        off += k
    return out


def default_collate(batch):
    """Stack a list of samples into a batch: tensors/arrays/numbers -> one vt tensor (numbers:
    int -> int64, float -> float32, bool -> bool), tuples/lists/dicts field by field, strings
    kept as a list."""
    if not batch:
        raise ValueError("default_collate: empty batch")
    first = batch[0]
    if isinstance(first, Tensor):
        shapes = {tuple(b.shape) for b in batch}
        if len(shapes) != 1:
            raise ValueError(f"default_collate: samples have different shapes {sorted(shapes)}; "
                             f"pad them or pass a collate_fn")
        return _shape.stack(list(batch), 0)
    if isinstance(first, np.ndarray):
        return from_numpy(np.stack(batch))
    if isinstance(first, (bool, np.bool_)):
        return tensor(np.asarray(batch, dtype=bool))
    if isinstance(first, numbers.Integral):
        return tensor(np.asarray(batch, dtype=np.int64))
    if isinstance(first, numbers.Real):
        return tensor(np.asarray(batch, dtype=np.float32))
    if isinstance(first, (str, bytes)):
        return list(batch)
    if isinstance(first, dict):
        return {k: default_collate([b[k] for b in batch]) for k in first}
    if isinstance(first, (tuple, list)):
        n = len(first)
        if any(len(b) != n for b in batch):
            raise ValueError("default_collate: samples have different numbers of fields")
        fields = [default_collate(list(f)) for f in zip(*batch)]
        if hasattr(first, "_fields"):  # a namedtuple
            return type(first)(*fields)
        return tuple(fields) if isinstance(first, tuple) else fields
    raise TypeError(f"default_collate: don't know how to batch {type(first).__name__}; pass a "
                    f"collate_fn")


class DataLoader:
    """Batches of a Dataset. shuffle=True draws a new order every epoch from
    numpy.random.default_rng(seed), so a given seed replays the same epochs.

    >>> import vibetensor as vt
    >>> dl = vt.data.DataLoader(list(range(10)), batch_size=4, shuffle=True, seed=0,
    ...                         drop_last=True)
    >>> len(dl), [b.shape for b in dl]
    (2, [(4,), (4,)])
    """

    def __init__(self, dataset, batch_size: int = 1, shuffle: bool = False, seed=None,
                 drop_last: bool = False, collate_fn=None, generator=None):
        if batch_size is None or int(batch_size) <= 0:
            raise ValueError(f"DataLoader: batch_size must be a positive integer, got "
                             f"{batch_size}")
        if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
            raise TypeError(f"DataLoader: dataset must define __len__ and __getitem__, got "
                            f"{type(dataset).__name__}")
        self.dataset, self.batch_size = dataset, int(batch_size)
        self.shuffle, self.drop_last = bool(shuffle), bool(drop_last)
        self.collate_fn = collate_fn
        self.seed = seed
        self.generator = generator if generator is not None else np.random.default_rng(seed)

    def __len__(self):
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _order(self):
        n = len(self.dataset)
        return self.generator.permutation(n) if self.shuffle else np.arange(n)

    def __iter__(self):
        order = self._order()
        n, bs = len(order), self.batch_size
        stop = n - n % bs if self.drop_last else n
        fast = self.collate_fn is None and isinstance(self.dataset, TensorDataset)
        for s in range(0, stop, bs):
            idx = order[s:s + bs]
            if fast:
                yield self.dataset._batch(idx)
                continue
            samples = [self.dataset[int(i)] for i in idx]
            yield (self.collate_fn or default_collate)(samples)
