"""Every op with a CPU kernel has a CUDA kernel, or is listed here with the reason it has none.

Runs wherever the packs were built with CUDA (nvcc present at build time: here and in CI), GPU or
not: it reads the registry, it does not launch anything. Views and composed ops (VT_META_COMPLETE)
need no kernel on any device and are not listed by providers()."""
import pytest

import vibetensor as vt

# op -> why it has no CUDA kernel (keep this empty unless there is a real reason)
NO_CUDA = {
    "core::set_cuda_matmul_flags": "a setting, not a kernel: it stores the flag (TF32) that the "
                                   "cuda matmul reads, and is called without tensors (on cpu)",
}

BUILT_WITH_CUDA = bool(vt.ops.providers("core::add", "cuda"))


@pytest.mark.skipif(not BUILT_WITH_CUDA, reason="the core pack was built without CUDA (no nvcc)")
def test_every_cpu_op_has_a_cuda_kernel():
    missing = []
    for name in vt.ops.op_names():
        if not vt.ops.providers(name, "cpu") or name in NO_CUDA:
            continue
        if not vt.ops.providers(name, "cuda"):
            missing.append(name)
    assert not missing, f"ops with a CPU kernel but no CUDA kernel (add one, or list the reason): {missing}"


def test_exemptions_are_real():
    for name, why in NO_CUDA.items():
        assert why and vt.ops.providers(name, "cpu"), f"{name}: stale or unexplained exemption"
