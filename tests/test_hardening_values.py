"""Issue 8, "wrong results": values torch refuses are refused, not silently wrapped or converted.

- amax/amin: an out-of-range dim or a repeated dim (not wrapped modulo ndim, not reduced twice);
- index_select/gather/index_add/scatter_add/embedding: negative indices (only advanced indexing
  counts from the end);
- fill_/full/masked_fill into an integer dtype: nan, +-inf and out-of-range values (the C++ cast
  is undefined; it gave INT_MIN), refused by the meta step so the meta device refuses them too;
- vt.ops.unload of a stale handle.
"""
import math
import sys
from pathlib import Path

import pytest

import vibetensor as vt
import vibetensor.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent / "packs"))
import packtools as pt  # noqa: E402


# ---- amax / amin dims -------------------------------------------------------------------------------
@pytest.mark.parametrize("op", ["amax", "amin"])
@pytest.mark.parametrize("dim", [2, -3, (0, 2)])
def test_amax_amin_out_of_range_dim(op, dim):
    x = vt.arange(6.0).reshape(2, 3)
    with pytest.raises(IndexError, match=rf"\[{op}\] dim -?\d is out of range for a tensor of ndim 2"):
        getattr(vt, op)(x, dim)
    with pytest.raises(IndexError, match=rf"\[{op}\]"):
        getattr(x, op)(dim)


@pytest.mark.parametrize("op", ["amax", "amin"])
@pytest.mark.parametrize("dim", [(0, 0), (1, -1), (0, -2, 1)])
def test_amax_amin_repeated_dim(op, dim):
    x = vt.arange(6.0).reshape(2, 3)
    with pytest.raises(ValueError, match=rf"\[{op}\] dim \d appears multiple times"):
        getattr(vt, op)(x, dim)


def test_amax_amin_valid_dims_still_work():
    x = vt.tensor([[1.0, 5.0, 2.0], [7.0, 0.0, 3.0]])
    assert vt.amax(x, -1).tolist() == [5.0, 7.0]
    assert vt.amin(x, (0, -1)).item() == 0.0
    assert vt.amax(x, (1, 0), keepdim=True).tolist() == [[7.0]]
    assert vt.amax(x).item() == 7.0
    s = vt.tensor(4.0)  # a 0-d tensor takes dims -1 and 0, as in torch
    assert vt.amax(s, 0).item() == 4.0 and vt.amin(s, -1).item() == 4.0
    with pytest.raises(IndexError, match=r"\[amax\] dim 1 is out of range for a tensor of ndim 0"):
        vt.amax(s, 1)


# ---- negative indices -------------------------------------------------------------------------------
_X = lambda: vt.arange(6.0).reshape(2, 3)  # noqa: E731
NEG_CASES = {
    "index_select": lambda: vt.index_select(_X(), 1, vt.tensor([-1, 0])),
    "gather": lambda: vt.gather(_X(), 1, vt.tensor([[-1], [0]])),
    "index_add": lambda: _X().index_add(1, vt.tensor([0, -1]), vt.ones(2, 2)),
    "scatter_add": lambda: _X().scatter_add(1, vt.tensor([[0], [-2]]), vt.ones(2, 1)),
    "embedding": lambda: F.embedding(vt.tensor([2, -1]), _X().T.contiguous()),
}


@pytest.mark.parametrize("op", sorted(NEG_CASES))
def test_negative_index_refused(op):
    with pytest.raises(IndexError, match=rf"\[core::{op}\] (index|indices): index -\d is out of range for dim \d"):
        NEG_CASES[op]()


def test_negative_index_int32_refused():
    with pytest.raises(IndexError, match=r"index -3 is out of range"):
        vt.index_select(_X(), 1, vt.tensor([-3], dtype=vt.int32))


def test_advanced_indexing_keeps_negative_indices():
    x = _X()
    assert x[vt.tensor([-1, 0])].tolist() == [[3.0, 4.0, 5.0], [0.0, 1.0, 2.0]]
    assert x[:, vt.tensor([-1])].tolist() == [[2.0], [5.0]]
    y = _X()
    y[vt.tensor([-1])] = 9.0
    assert y.tolist() == [[0.0, 1.0, 2.0], [9.0, 9.0, 9.0]]
    with pytest.raises(IndexError, match="out of bounds"):
        x[vt.tensor([-3])]


def test_nonnegative_indices_still_work():
    x = _X()
    assert vt.index_select(x, 1, vt.tensor([2, 0])).tolist() == [[2.0, 0.0], [5.0, 3.0]]
    assert vt.gather(x, 1, vt.tensor([[2], [0]])).tolist() == [[2.0], [3.0]]
    assert F.embedding(vt.tensor([1]), x).tolist() == [[3.0, 4.0, 5.0]]


# ---- integer fills ----------------------------------------------------------------------------------
BAD = [math.nan, math.inf, -math.inf, 1e30, -1e30]
FILLS = {
    "full": lambda v, dt, dev="cpu": vt.full((3,), v, dtype=dt, device=dev),
    "fill_": lambda v, dt, dev="cpu": vt.zeros(3, dtype=dt, device=dev).fill_(v),
    "masked_fill": lambda v, dt, dev="cpu": vt.zeros(3, dtype=dt, device=dev).masked_fill(
        vt.ones(3, dtype=vt.bool, device=dev), v),
}


@pytest.mark.parametrize("op", sorted(FILLS))
@pytest.mark.parametrize("value", BAD)
@pytest.mark.parametrize("dtype", ["int64", "int32", "int8", "uint8"])
def test_integer_fill_refuses_unrepresentable(op, value, dtype):
    with pytest.raises(ValueError, match=rf"\[core::{op}\] \w+ -?(nan|inf|1e\+30) cannot be converted to {dtype}"):
        FILLS[op](value, getattr(vt, dtype))


@pytest.mark.parametrize("op", sorted(FILLS))
def test_integer_fill_refused_by_meta_step(op):
    with pytest.raises(ValueError, match=rf"\[core::{op}\] .* cannot be converted to int32"):
        FILLS[op](math.nan, vt.int32, "meta")


@pytest.mark.parametrize("op", sorted(FILLS))
def test_integer_fill_range_edges(op):
    assert FILLS[op](-128.0, vt.int8).tolist() == [-128] * 3
    assert FILLS[op](127.0, vt.int8).tolist() == [127] * 3
    assert FILLS[op](255.0, vt.uint8).tolist() == [255] * 3
    assert FILLS[op](-(2.0 ** 63), vt.int64).tolist() == [-(2 ** 63)] * 3
    for v, dt in [(128.0, vt.int8), (-1.0, vt.uint8), (256.0, vt.uint8), (2.0 ** 63, vt.int64), (2.0 ** 31, vt.int32)]:
        with pytest.raises(ValueError, match="cannot be converted"):
            FILLS[op](v, dt)


@pytest.mark.parametrize("op", sorted(FILLS))
def test_float_and_bool_fills_keep_nan_inf(op):
    assert math.isnan(FILLS[op](math.nan, vt.float32).tolist()[0])
    assert FILLS[op](-math.inf, vt.float64).tolist() == [-math.inf] * 3
    assert FILLS[op](math.nan, vt.bool).tolist() == [True] * 3


# ---- float fills beyond the dtype's range (torch: "value cannot be converted to type at::Half
# without overflow"); inf and nan are kept, values that round to the largest finite one are not
# beyond it -------------------------------------------------------------------------------------
FLOAT_EDGES = [  # dtype, largest accepted, smallest refused
    ("float16", 65504.0, 65505.0),
    ("bfloat16", 3.3895313892515355e38, 3.39e38),
    ("float32", 3.4028234663852886e38, 3.41e38),
]


@pytest.mark.parametrize("op", sorted(FILLS))
@pytest.mark.parametrize("dtype,ok,bad", FLOAT_EDGES)
@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_float_fill_refuses_overflow(op, dtype, ok, bad, device):
    dt = getattr(vt, dtype)
    for v in (bad, -bad, 1e300):
        with pytest.raises(ValueError, match=rf"\[core::{op}\] \w+ -?[0-9.e+]+ cannot be converted to {dtype} without overflow"):
            FILLS[op](v, dt, device)
    if device == "cpu":
        assert FILLS[op](ok, dt).float().tolist() == [ok] * 3
        assert FILLS[op](-math.inf, dt).float().tolist() == [-math.inf] * 3
        assert FILLS[op](1e6, vt.float64).tolist() == [1e6] * 3


def test_float_fill_matches_torch():
    torch = pytest.importorskip("torch", reason="compares the refusals with torch's")
    for dtype in ("float16", "bfloat16", "float32"):
        for v in (1e6, 70000.0, 65504.0, 65520.0, 1e39, -3.5e38, math.inf, math.nan):
            try:
                want = torch.full((2,), v, dtype=getattr(torch, dtype))[0].item()
            except RuntimeError:
                want = "refused"
            try:
                got = vt.full((2,), v, dtype=getattr(vt, dtype)).float().tolist()[0]
            except ValueError:
                got = "refused"
            assert (got == want or (got != got and want != want)), (dtype, v, got, want)


# ---- unload by handle identity ------------------------------------------------------------------
def test_unload_stale_handle_refused_and_keeps_the_reload(tmp_path_factory):
    P = str(pt.user_pack(tmp_path_factory))
    r = pt.result(f"""
        out = {{}}
        p1 = vt.ops.load({P!r})
        vt.ops.unload(p1)
        p2 = vt.ops.load({P!r})
        out['stale'] = raises(vt.ops.unload, p1)
        out['p2_still'] = [p2.loaded, vt.ops.get('mypack') is p2, vt.ops.mypack.calls()]
        out['stale_again'] = raises(vt.ops.unload, p1)
        vt.ops.unload(p2)
        out['p2_gone'] = [p2.loaded, vt.ops.get('mypack')]
        out['p2_twice'] = raises(vt.ops.unload, p2)
        out['by_name_gone'] = raises(vt.ops.unload, 'mypack')
        print(json.dumps(out))
    """)
    assert r["stale"][0] == "ValueError"
    assert "handle of pack 'mypack' is stale" in r["stale"][1] and "another load" in r["stale"][1]
    assert r["p2_still"] == [True, True, 0]
    assert r["stale_again"][0] == "ValueError" and "stale" in r["stale_again"][1]
    assert r["p2_gone"] == [False, None]
    assert r["p2_twice"][0] == "ValueError" and "stale" in r["p2_twice"][1] and "not loaded" in r["p2_twice"][1]
    assert r["by_name_gone"][0] == "ValueError" and "not loaded" in r["by_name_gone"][1]


# ---- found by the fuzz test under the sanitizers ----------------------------------------------------

def test_abs_of_the_most_negative_integer_wraps_like_torch():
    assert vt.tensor([-(2 ** 63), -5, 7]).abs().tolist() == [-(2 ** 63), 5, 7]
    assert vt.tensor([-128, 3], dtype=vt.int8).abs().tolist() == [-128, 3]


def test_as_strided_to_a_0d_view_has_a_gradient():
    x = vt.ones(3).requires_grad_()
    (x * 2.0).as_strided((), (), 1).backward()
    assert x.grad.tolist() == [0.0, 2.0, 0.0]
