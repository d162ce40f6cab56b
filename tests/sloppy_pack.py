"""A provider that is slightly wrong on purpose, for the tests of `vt-ops test`, `vt-ops bench` and
vt.ops.shadow (tests/test_vtops_test.py, test_vtops_bench.py, test_shadow.py): the pack 'sloppy'
provides core::neg on the cpu as -x + 1e-3 (provider "sloppy", priority 5, so it serves once
loaded) and declines (VT_ERR_NOT_IMPL) strided tensors and dtypes other than float32/float64.

`build(tmp_path_factory)` scaffolds it with `vt-ops new`, writes the source below, builds it with
`vt-ops build` (about 2 s) once per test session, and returns the pack folder. Load it only in a
child process: while loaded it serves every core::neg call of the process.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "packs"))
import packtools as pt  # noqa: E402

SOURCE = r"""
#include <vt/oppack.hpp>

namespace {

VT_KERNEL(sloppy_neg, "core::neg") {
  const vt_tensor* x = c.arg(0, "self").tensor();
  if (!vt::is_contiguous(x)) c.fail(VT_ERR_NOT_IMPL, "the 'sloppy' provider takes contiguous tensors only");
  vt::Tensor out = c.empty_like(x);
  vt::dispatch(vt::types<float, double>{}, x->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* a = vt::data<T>(x);
    T* o = vt::data<T>(out.get());
    for (int64_t i = 0; i < x->numel; ++i) o[i] = -a[i] + T(1e-3);  // off by 1e-3: on purpose
  });
  c.set_out(0, std::move(out));
}

vt_status init(const vt_host* host, vt_pack* pack) {
  return vt::init_guard(host, "sloppy", [&] {
    vt::Registrar r(host, pack, /*provider=*/"sloppy", /*priority=*/5);
    r.impl("core::neg", VT_CPU, sloppy_neg);
  });
}

}  // namespace

VT_OPPACK_DEFINE(init)
"""


def build(tmp_path_factory) -> Path:
    def make():
        work = tmp_path_factory.mktemp("sloppy")
        pt.vt_ops("new", "sloppy", cwd=work)
        (work / "sloppy" / "src" / "sloppy.cpp").write_text(SOURCE)
        return pt.build(work / "sloppy", work / "build", "sloppy")
    return pt.once("sloppy_pack", make)
