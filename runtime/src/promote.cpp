// promote.cpp — torch's type promotion, in the one place every caller uses (Python through the
// binding, packs and backward rules through the host table).
//
// Categories order bool < integer < floating. Two tensors: the higher category wins; within a
// category the wider type (float16 with bfloat16 gives float32; uint8 with int8 would be int16,
// a dtype the runtime refuses because no kernel has it).
// A Python scalar only lifts the category:
// int32 + 1 -> int32, float16 + 1.0 -> float16, int64 + 1.0 -> float32 (the default float),
// bool + 1 -> int64.
#include "internal.hpp"

namespace vt {

namespace {

enum Category { kBoolCat = 0, kIntCat = 1, kFloatCat = 2 };

int category(vt_dtype d) {
  if (d.code == VT_DL_BOOL) return kBoolCat;
  if (d.code == VT_DL_INT || d.code == VT_DL_UINT) return kIntCat;
  return kFloatCat;
}

// rank within the lattice: a higher rank is the result (bf16/f16 handled separately)
int rank(vt_dtype d) {
  switch (d.code) {
    case VT_DL_BOOL: return 0;
    case VT_DL_UINT: return 1;
    case VT_DL_INT: return d.bits == 8 ? 2 : d.bits == 32 ? 4 : 5;
    case VT_DL_FLOAT: return d.bits == 16 ? 6 : d.bits == 32 ? 8 : 9;
    case VT_DL_BFLOAT: return 7;
  }
  return -1;
}

constexpr vt_dtype kF32{VT_DL_FLOAT, 32, 1};
constexpr vt_dtype kI64{VT_DL_INT, 64, 1};
constexpr vt_dtype kInvalid{0, 0, 0};  // lanes 0: no result

}  // namespace

// {0, 0, 0} (lanes 0) when the pair has no supported result; the message is set.
vt_dtype promote_types(vt_dtype a, vt_dtype b) {
  if (!dtype_valid(a) || !dtype_valid(b)) {
    set_error(VT_ERR_TYPE, "promote_types: unsupported dtype %s",
              dtype_name(dtype_valid(a) ? b : a).c_str());
    return kInvalid;
  }
  if (a.code == b.code && a.bits == b.bits) return a;
  const bool halves = (a.code == VT_DL_BFLOAT && b.code == VT_DL_FLOAT && b.bits == 16) ||
                      (b.code == VT_DL_BFLOAT && a.code == VT_DL_FLOAT && a.bits == 16);
  if (halves) return kF32;
  const bool bytes = (a.code == VT_DL_UINT && b.code == VT_DL_INT && b.bits == 8) ||
                     (b.code == VT_DL_UINT && a.code == VT_DL_INT && a.bits == 8);
  if (bytes) {
    set_error(VT_ERR_TYPE, "uint8 and int8 promote to int16, which vibetensor does not have; "
              "convert one of them first (e.g. .to(vt.int32))");
    return kInvalid;
  }
  return rank(a) >= rank(b) ? a : b;
}

vt_dtype result_type_scalar(vt_dtype t, int32_t scalar_tag) {
  const int sc = scalar_tag == VT_FLOAT ? kFloatCat : scalar_tag == VT_INT ? kIntCat : kBoolCat;
  if (sc <= category(t)) return t;
  return sc == kFloatCat ? kF32 : kI64;
}

}  // namespace vt

extern "C" {
vt_dtype vtrt_promote_types(vt_dtype a, vt_dtype b) { return vt::promote_types(a, b); }
vt_dtype vtrt_result_type_scalar(vt_dtype t, int32_t scalar_tag) {
  return vt::result_type_scalar(t, scalar_tag);
}
}
