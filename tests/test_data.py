"""vt.data: TensorDataset, DataLoader batching/shuffling under a seed/drop_last, collation."""
from __future__ import annotations

from collections import namedtuple

import numpy as np
import pytest

import vibetensor as vt
from vibetensor import data


def make_ds(n=10):
    x = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    y = np.arange(n, dtype=np.int64) * 10
    return data.TensorDataset(vt.tensor(x), vt.tensor(y)), x, y


def test_tensor_dataset():
    ds, x, y = make_ds()
    assert len(ds) == 10
    a, b = ds[4]
    assert a.tolist() == x[4].tolist() and b.item() == 40
    with pytest.raises(ValueError, match=r"share their first dimension, got shapes \[\(3,\), "
                                         r"\(4,\)\]"):
        data.TensorDataset(vt.zeros(3), vt.zeros(4))
    with pytest.raises(ValueError, match="at least one tensor"):
        data.TensorDataset()
    # numpy arrays are accepted
    assert len(data.TensorDataset(np.zeros((5, 2)))) == 5


def test_loader_in_order_with_and_without_drop_last():
    ds, x, y = make_ds()
    dl = data.DataLoader(ds, batch_size=4)
    assert len(dl) == 3
    batches = list(dl)
    assert [b[0].shape for b in batches] == [(4, 3), (4, 3), (2, 3)]
    assert batches[0][0].dtype is vt.float32 and batches[0][1].dtype is vt.int64
    np.testing.assert_array_equal(np.concatenate([b[0].numpy() for b in batches]), x)
    np.testing.assert_array_equal(np.concatenate([b[1].numpy() for b in batches]), y)
    dl = data.DataLoader(ds, batch_size=4, drop_last=True)
    assert len(dl) == 2 and [b[1].tolist() for b in dl] == [[0, 10, 20, 30], [40, 50, 60, 70]]


def test_shuffle_is_seeded_and_covers_everything():
    ds, x, y = make_ds(23)

    def epochs(seed, n=3):
        dl = data.DataLoader(ds, batch_size=5, shuffle=True, seed=seed)
        return [np.concatenate([b[1].numpy() for b in dl]) for _ in range(n)]

    a, b, c = epochs(1), epochs(1), epochs(2)
    for e1, e2 in zip(a, b):
        np.testing.assert_array_equal(e1, e2)  # same seed: same epochs, run to run
    assert not np.array_equal(a[0], a[1])  # a new order every epoch
    assert not np.array_equal(a[0], c[0])  # another seed: another order
    for e in a + c:
        assert sorted(e.tolist()) == y.tolist()  # a permutation: nothing lost or repeated
    # the order is numpy's Generator permutation for that seed (documented behaviour)
    want = np.random.default_rng(1).permutation(23) * 10
    np.testing.assert_array_equal(a[0], want)
    # features stay paired with their labels
    dl = data.DataLoader(ds, batch_size=4, shuffle=True, seed=3)
    for xb, yb in dl:
        np.testing.assert_array_equal(xb.numpy(), x[yb.numpy() // 10])


class Squares(data.Dataset):
    def __len__(self):
        return 7

    def __getitem__(self, i):
        return {"x": np.full((2,), i, np.float32), "y": i * i, "w": float(i) / 2,
                "name": f"s{i}", "t": vt.tensor([i, -i])}


def test_collate_dicts_numbers_strings_tensors():
    dl = data.DataLoader(Squares(), batch_size=3)
    b = next(iter(dl))
    assert b["x"].dtype is vt.float32 and b["x"].tolist() == [[0, 0], [1, 1], [2, 2]]
    assert b["y"].dtype is vt.int64 and b["y"].tolist() == [0, 1, 4]
    assert b["w"].dtype is vt.float32 and b["w"].tolist() == [0.0, 0.5, 1.0]
    assert b["name"] == ["s0", "s1", "s2"]
    assert b["t"].tolist() == [[0, 0], [1, -1], [2, -2]]
    assert [len(b["name"]) for b in dl] == [3, 3, 1]
    P = namedtuple("P", "a b")
    out = data.default_collate([P(1, True), P(2, False)])
    assert isinstance(out, P) and out.a.tolist() == [1, 2] and out.b.tolist() == [True, False]
    out = data.default_collate([(vt.ones(2), 1), (vt.zeros(2), 0)])
    assert isinstance(out, tuple) and out[0].tolist() == [[1, 1], [0, 0]]
    # a plain list dataset and a custom collate_fn
    dl = data.DataLoader(list(range(5)), batch_size=2, collate_fn=lambda s: sum(s))
    assert list(dl) == [1, 5, 4]


def test_collate_and_loader_bad_input():
    with pytest.raises(ValueError, match=r"different shapes \[\(2,\), \(3,\)\]"):
        data.default_collate([vt.ones(2), vt.ones(3)])
    with pytest.raises(TypeError, match="don't know how to batch object"):
        data.default_collate([object()])
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        data.DataLoader([1, 2], batch_size=0)
    with pytest.raises(TypeError, match="must define __len__ and __getitem__"):
        data.DataLoader(iter([1, 2]))


def test_random_split():
    ds, _, y = make_ds(10)
    a, b = data.random_split(ds, [7, 3], seed=0)
    assert len(a) == 7 and len(b) == 3
    got = sorted([a[i][1].item() for i in range(7)] + [b[i][1].item() for i in range(3)])
    assert got == y.tolist()
    c, d = data.random_split(ds, [0.8, 0.2])
    assert (len(c), len(d)) == (8, 2)
    with pytest.raises(ValueError, match="do not sum to the dataset size 10"):
        data.random_split(ds, [5, 4])


def test_training_loop_over_loader():
    vt.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, 2)).astype(np.float32)
    y = (x[:, 0] > x[:, 1]).astype(np.int64)
    dl = data.DataLoader(data.TensorDataset(vt.tensor(x), vt.tensor(y)), batch_size=16,
                         shuffle=True, seed=0)
    model = vt.nn.Sequential(vt.nn.Linear(2, 16), vt.nn.ReLU(), vt.nn.Linear(16, 2))
    opt = vt.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    for _ in range(10):
        for xb, yb in dl:
            loss = vt.nn.functional.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    pred = model(vt.tensor(x)).numpy().argmax(1)
    assert (pred == y).mean() > 0.95
