"""How far one provider's results are from another's: `diff(got, want)` over all outputs.

Shared by `vt-ops test` (providers and devices agree), `vt-ops bench` (max abs/rel error against
the reference provider) and `vt.ops.shadow` (divergence per call). Floating outputs pass within
the dtype's tolerance (TOL, numpy.allclose's rule, NaN equal to NaN); integer and bool outputs
must be equal. Non-tensor outputs (ints, floats, bools) compare with ==.
"""
from __future__ import annotations

from dataclasses import dataclass

# (rtol, atol): the rounding of a few operations in the dtype, with room for another summation
# order (a blocked GEMM, a fused softmax) but not for a wrong result
TOL = {"float64": (1e-9, 1e-9), "float32": (1e-4, 1e-5), "float16": (1e-2, 1e-2),
       "bfloat16": (2e-2, 2e-2)}


@dataclass
class Diff:
    ok: bool
    max_abs: float = 0.0
    max_rel: float = 0.0
    why: str = ""  # what differs, when not ok

    def __str__(self):
        state = "equal" if self.ok else f"DIFFERENT ({self.why})"
        return f"{state}: max abs {self.max_abs:.3g}, max rel {self.max_rel:.3g}"


def is_tensor(v) -> bool:
    return hasattr(v, "_h") and hasattr(v, "shape")


def to_numpy(t):
    """A cpu numpy copy of a tensor (16-bit floats widened to float32: numpy has no bfloat16)."""
    import vibetensor as vt

    if t.device.type != "cpu":
        t = t.to("cpu")
    if t.dtype.name in ("bfloat16", "float16"):
        t = t.to(vt.float32)
    return t.numpy().copy()


def outputs(r) -> list:
    return list(r) if isinstance(r, (tuple, list)) else [r]


def diff(got, want, tol: dict | None = None) -> Diff:
    """Compare two calls' results (a value or a tuple of values) output by output."""
    import numpy as np

    tol = tol or TOL
    g, w = outputs(got), outputs(want)
    if len(g) != len(w):
        return Diff(False, why=f"{len(g)} outputs against {len(w)}")
    worst_abs = worst_rel = 0.0
    for k, (a, b) in enumerate(zip(g, w)):
        if is_tensor(a) != is_tensor(b):
            return Diff(False, why=f"output {k}: {type(a).__name__} against {type(b).__name__}")
        if not is_tensor(b):
            same = a == b or (isinstance(a, float) and isinstance(b, float) and a != a and b != b)
            if not same:
                return Diff(False, worst_abs, worst_rel, f"output {k}: {a!r} against {b!r}")
            continue
        if tuple(a.shape) != tuple(b.shape) or a.dtype.name != b.dtype.name:
            return Diff(False, worst_abs, worst_rel,
                        f"output {k}: {tuple(a.shape)} {a.dtype.name} against "
                        f"{tuple(b.shape)} {b.dtype.name}")
        x, y = to_numpy(a), to_numpy(b)
        if not x.size:
            continue
        if a.dtype.name in tol:
            x64, y64 = x.astype(np.float64), y.astype(np.float64)
            both_nan = np.isnan(x64) & np.isnan(y64)
            err = np.where(both_nan, 0.0, np.abs(x64 - y64))
            err = np.where(np.isnan(err), np.inf, err)
            scale = np.abs(y64)
            rel = np.where(scale > 0, err / np.where(scale > 0, scale, 1.0), np.where(err > 0, np.inf, 0.0))
            worst_abs = max(worst_abs, float(err.max()))
            worst_rel = max(worst_rel, float(rel.max()))
            rtol, atol = tol[a.dtype.name]
            if not np.allclose(x64, y64, rtol=rtol, atol=atol, equal_nan=True):
                return Diff(False, worst_abs, worst_rel,
                            f"output {k}: beyond rtol {rtol:g} / atol {atol:g} for {a.dtype.name}")
        else:
            differ = int((x != y).sum())
            if differ:
                return Diff(False, worst_abs, worst_rel,
                            f"output {k}: {differ} of {x.size} {a.dtype.name} values differ")
    return Diff(True, worst_abs, worst_rel)


__all__ = ["TOL", "Diff", "diff", "to_numpy", "outputs", "is_tensor"]
