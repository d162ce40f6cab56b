// schema.hpp — parsed op schemas: "ns::name(Tensor self, int[] dim=[], *, bool keepdim=False)
// -> (Tensor, Tensor)". The runtime uses them to check and complete boxed calls; Python reads
// them (through vtrt_op_arg) to build keyword-aware wrappers.
#pragma once

#include <string>
#include <vector>

#include "vt/runtime.h"

namespace vt {

struct ArgSpec {
  std::string name;
  int32_t type = VT_NONE;  // vt_tag
  bool optional = false;
  bool kwonly = false;
  bool has_default = false;
  std::string default_text;
  vt_value default_value{};           // ready to copy into a call
  std::vector<int64_t> default_ints;  // storage behind default_value.v.ints
  std::string default_str;            // storage behind default_value.v.s
};

struct Schema {
  std::string name;  // "ns::op"
  std::string text;
  std::vector<ArgSpec> args;
  std::vector<int32_t> returns;  // vt_tag per output
};

// Parses `text` into `out`; on failure sets the thread-local error and returns false.
bool parse_schema(const std::string& text, Schema* out);
const char* tag_name(int32_t tag);

}  // namespace vt
