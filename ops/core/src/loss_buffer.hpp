// loss_buffer.hpp — the one-shot hand-out of cross_entropy_fused's gradient buffer.
//
// core::cross_entropy_fused writes the input's gradient (for grad_output 1) in its forward pass;
// the first backward through that node scales the buffer by grad_output in place and hands it
// out as the gradient, so it must not do so twice: a second backward (retain_graph=True, or
// autograd.grad through the same node) would scale a tensor that a caller may already hold. The
// forward marks its buffer fresh; the backward rule claims it, and a buffer already claimed is
// left alone (the rule recomputes with core::cross_entropy_backward instead). Keyed by the
// buffer's device and address: a buffer is claimed at most once while it lives, and an address
// that a later forward reuses is marked fresh again by that forward. Host-side only (no device
// reads), so graph capture records the same kernels as an eager step.
#pragma once

#include "vt/oppack.h"

namespace core {

// the forward made `buf` (its contents are an unscaled gradient nobody holds yet)
void ce_buffer_fresh(const vt_tensor* buf);
// true the first time it is called for a fresh `buf`, false afterwards
bool ce_buffer_claim(const vt_tensor* buf);

}  // namespace core
