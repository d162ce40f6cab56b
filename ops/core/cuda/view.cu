// ops/core/cuda/view.cu — the CUDA compute of as_strided_backward (the views themselves need no
// kernel: they are complete in their meta step).
//
// as_strided_backward(grad, input_sizes, size, stride, offset) scatters grad into a zeroed tensor
// of input_sizes through the view's geometry, summing where view positions share an element.
// Views that do not overlap themselves (every slice, select, transpose...) are a plain strided
// copy into the zeroed output; overlapping ones (rare: as_strided by hand) are summed by one
// thread in view order, so the result is deterministic and the same as on cpu.
#include <algorithm>

#include "vt/autograd.hpp"
#include "vt/cuda/elementwise.cuh"

namespace {

// True when no two positions of the view (sizes, strides >= 0) reach one element: sorted by
// stride, each dim's stride exceeds the furthest reach of the dims below it.
bool non_overlapping(const vt_tensor* grad, const vt_int_list& stride) {
  struct Dim { int64_t size, stride; };
  Dim d[vt::kMaxDims];
  int n = 0;
  for (int32_t i = 0; i < grad->ndim; ++i) {
    if (grad->sizes[i] == 1) continue;
    if (stride.data[i] <= 0) return false;  // negative or zero strides: take the safe path
    d[n++] = {grad->sizes[i], stride.data[i]};
  }
  std::sort(d, d + n, [](const Dim& a, const Dim& b) { return a.stride < b.stride; });
  int64_t reach = 0;  // furthest offset the dims so far can add
  for (int i = 0; i < n; ++i) {
    if (d[i].stride <= reach) return false;
    reach += (d[i].size - 1) * d[i].stride;
  }
  return true;
}

struct Geometry {
  int64_t sizes[vt::kMaxDims], src_strides[vt::kMaxDims], dst_strides[vt::kMaxDims];
  int32_t ndim;
  int64_t numel, offset;
};

// one thread: view positions in row-major order, summed in A (float for 16-bit types)
template <class T, class A>
__global__ void scatter_serial(const T* grad, A* acc, Geometry g) {
  int64_t idx[vt::kMaxDims] = {};
  for (int64_t i = 0; i < g.numel; ++i) {
    int64_t src = 0, dst = g.offset;
    for (int32_t d = 0; d < g.ndim; ++d) {
      src += idx[d] * g.src_strides[d];
      dst += idx[d] * g.dst_strides[d];
    }
    acc[dst] += (A)grad[src];
    for (int32_t d = g.ndim - 1; d >= 0; --d) {
      if (++idx[d] < g.sizes[d]) break;
      idx[d] = 0;
    }
  }
}

}  // namespace

VT_COMPUTE(as_strided_backward_cuda, "core::as_strided_backward") {
  vt_tensor* grad = c.arg(0, "grad").tensor();
  const vt_int_list size = c.arg(2, "size").ints();
  const vt_int_list stride = c.arg(3, "stride").ints();
  const int64_t offset = c.arg(4, "offset").int_();
  vt_tensor* out = c.out(0);
  vt::Tensor z = vt::call(c.host, "core::zero_", {out});
  if (grad->numel == 0) return;
  if (non_overlapping(grad, stride)) {
    vt::Tensor view = vt::call(c.host, "core::as_strided", {out, size, stride, offset});
    vt::Tensor r = vt::call(c.host, "core::copy_", {view, grad});
    return;
  }
  Geometry g{};
  g.ndim = grad->ndim;
  g.numel = grad->numel;
  g.offset = offset;
  for (int32_t d = 0; d < grad->ndim; ++d) {
    g.sizes[d] = grad->sizes[d];
    g.src_strides[d] = grad->strides[d];
    g.dst_strides[d] = stride.data[d];
  }
  vt::cuda::dispatch(vt::kFloatingTypes, grad->dtype, c.op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = vt::cuda::acc_t<T>;
    if constexpr (std::is_same<A, T>::value) {
      vt::cuda::launch(c, "as_strided_backward", scatter_serial<T, A>, 1, 1, 0,
                       static_cast<const T*>(grad->data), static_cast<A*>(out->data), g);
    } else {  // 16-bit floats sum in float32, then round once
      vt::Tensor acc = vt::call(c.host, "core::zeros", {vt::V::sizes(out), vt::kFloat32, c.ctx->device});
      vt::cuda::launch(c, "as_strided_backward", scatter_serial<T, A>, 1, 1, 0,
                       static_cast<const T*>(grad->data), static_cast<A*>(acc.get()->data), g);
      vt::Tensor r = vt::call(c.host, "core::copy_", {out, acc});
    }
  });
}

void register_view_cuda(vt::Registrar& r) {
  r.compute("core::as_strided_backward", VT_CUDA, as_strided_backward_cuda);
}
