"""Op.partial: an op with its trailing arguments boxed once (the hot synchronous all_reduce uses it)."""
import threading

import numpy as np
import pytest

import vibetensor as vt
from vibetensor import amp


def test_partial_equals_the_full_call():
    add = vt.ops.Op("core::add")
    a, b = vt.tensor([1.0, 2.0]), vt.tensor([10.0, 20.0])
    p = add.partial(3.0)
    assert p(a, b).tolist() == add(a, b, 3.0).tolist() == [31.0, 62.0]
    assert p(b, a).tolist() == [13.0, 26.0]  # the slots are set anew each call
    s = vt.ops.Op("core::sum").partial([0], False, None)
    assert s(vt.tensor([[1.0, 2.0], [3.0, 4.0]])).tolist() == [4.0, 6.0]


def test_partial_refuses_bad_bindings_and_arguments_like_the_op():
    add = vt.ops.Op("core::add")
    with pytest.raises(TypeError, match=r"\[core::add\] argument 'alpha'"):
        add.partial("three")
    assert add.partial(vt.tensor([1.0, 1.0]), 2.0)(vt.ones(2)).tolist() == [3.0, 3.0]  # self left
    with pytest.raises(TypeError, match="dim, keepdim are not"):  # non-Tensors left unbound
        vt.ops.Op("core::sum").partial(None)
    with pytest.raises(TypeError, match="takes 3 arguments"):
        add.partial(1, 2, 3, 4)
    p = add.partial(1.0)
    with pytest.raises(TypeError, match="takes 2 tensor"):
        p(vt.ones(2))
    with pytest.raises(TypeError, match="must be Tensors"):
        p(vt.ones(2), 5)
    with pytest.raises(ValueError, match=r"\[core::add\]"):  # the kernel's own error
        p(vt.ones(2), vt.ones(3))


def test_partial_runs_from_many_threads():
    add = vt.ops.Op("core::add").partial(1.0)
    bad = []

    def work(k):
        x, y = vt.full((64,), float(k)), vt.full((64,), 1.0)
        for _ in range(200):
            if add(x, y).tolist() != [k + 1.0] * 64:
                bad.append(k)
                return

    ts = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not bad


def test_partial_takes_the_hooked_path_under_autocast():
    mm = vt.ops.Op("core::linear").partial(None)
    x, w = vt.ones(2, 4), vt.ones(3, 4)
    with amp.autocast("cpu", dtype=vt.bfloat16):
        out = mm(x, w)
    assert out.dtype is vt.bfloat16  # the autocast hook cast the inputs, as for the plain call
    assert mm(x, w).dtype is vt.float32
    np.testing.assert_allclose(out.to(vt.float32).numpy(), np.full((2, 3), 4.0))
