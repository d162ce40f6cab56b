// reduce_util.hpp — the shape side of a reduction, shared by its meta step (reduce.cpp) and its
// compute functions on every device (the CPU ones in reduce.cpp; CUDA ones use the same calls).
//
// A reduction call names the dims it reduces in one of three ways: a dim list (int[]; [] = every
// dim), one dim (int), or none (everything). The meta step checks them (red::check_dims /
// red::check_dim: the messages every device gives), works out the result shape with
// red::out_shape and the result dtype with one of the rules below, and makes the output. A compute
// function reads the same arguments back without checking them (red::dims_of / red::dim_of) and
// takes the result's dtype and shape from the output the meta step made.
#pragma once

#include "shape_util.hpp"

namespace red {

// ---- which dims: a mask over self's dims ----------------------------------------------------------
// Meta step: a dim list, wrapped and checked (out of range, repeated). [] means every dim.
inline void check_dims(const vt::Call& c, const vt_tensor* self, vt_int_list dims, bool* reduced) {
  shp::parse_dims(c, dims, self->ndim, reduced);
}

// Meta step: one dim, wrapped and checked; the dim of a 0-d tensor reduces nothing. With
// nonempty, a dim of size 0 is an error (max/argmax over it would have no value).
inline void check_dim(const vt::Call& c, const vt_tensor* self, int64_t dim, bool nonempty, bool* reduced) {
  for (int32_t d = 0; d < vt::kMaxDims; ++d) reduced[d] = false;
  const int32_t d = vt::wrap_dim(c.op, dim, self->ndim);
  if (self->ndim == 0) return;
  reduced[d] = true;
  if (nonempty && self->sizes[d] == 0)
    c.fail(VT_ERR_INDEX, "cannot reduce over dim %d of size 0 (self %s)", d, vt::shape_str(self).c_str());
}

// Every dim of self.
inline void all_dims(const vt_tensor* self, bool* reduced) {
  for (int32_t d = 0; d < vt::kMaxDims; ++d) reduced[d] = d < self->ndim;
}

// Compute functions and backward rules: the same masks from arguments the meta step validated.
inline void dims_of(const vt_tensor* self, vt_int_list dims, bool* reduced) {
  shp::parse_dims_nocheck(dims, self->ndim, reduced);
}
inline int32_t dim_of(const vt_tensor* self, int64_t dim) {  // wrapped; 0 for a 0-d self
  return self->ndim == 0 ? 0 : (int32_t)(dim < 0 ? dim + self->ndim : dim);
}
inline void dim_mask(const vt_tensor* self, int64_t dim, bool* reduced) {
  for (int32_t d = 0; d < vt::kMaxDims; ++d) reduced[d] = false;
  if (self->ndim > 0) reduced[dim_of(self, dim)] = true;
}

// ---- the result's shape ---------------------------------------------------------------------------
// self's shape with the reduced dims dropped (keepdim: kept with size 1); returns its ndim.
inline int32_t out_shape(const vt_tensor* self, const bool* reduced, bool keepdim, int64_t* shape) {
  int32_t n = 0;
  for (int32_t d = 0; d < self->ndim; ++d) {
    if (!reduced[d]) shape[n++] = self->sizes[d];
    else if (keepdim) shape[n++] = 1;
  }
  return n;
}

// Number of elements reduced into each output (1 when nothing is reduced).
inline int64_t reduced_count(const vt_tensor* self, const bool* reduced) {
  int64_t R = 1;
  for (int32_t d = 0; d < self->ndim; ++d)
    if (reduced[d]) R *= self->sizes[d];
  return R;
}

// ---- the result's dtype ---------------------------------------------------------------------------
// sum/cumsum: `dtype` when given, else self's dtype for floating self and int64 for integer/bool.
inline vt_dtype sum_dtype(vt_dtype self, const vt::Arg& dtype) {
  if (!dtype.is_none()) return dtype.dtype();
  return vt::is_floating(self) ? self : vt::kInt64;
}
// logsumexp: self's dtype for floating self, else float32.
inline vt_dtype float_dtype(vt_dtype self) { return vt::is_floating(self) ? self : vt::kFloat32; }
// var/std/norm: self must be floating; the result has its dtype.
inline vt_dtype check_floating(const vt::Call& c, const vt_tensor* self) {
  if (!vt::is_floating(self->dtype))
    c.fail(VT_ERR_TYPE, "self must be a floating tensor, got %s", vt::dtype_name(self->dtype));
  return self->dtype;
}

// The meta step's last move: an output of self's reduced shape and `dtype`, as output i.
inline void make_out(vt::Call& c, int32_t i, const vt_tensor* self, const bool* reduced, bool keepdim, vt_dtype dtype) {
  int64_t shape[vt::kMaxDims];
  const int32_t n = out_shape(self, reduced, keepdim, shape);
  c.set_out(i, c.empty(shape, n, dtype));
}

}  // namespace red
