// error.cpp — the thread-local last error. Every failing C entry point sets it; the binding turns
// it into a Python exception whose class follows the status code.
#include <cstdio>

#include "internal.hpp"

namespace vt {

namespace {
thread_local std::string t_message;
thread_local vt_status t_status = VT_OK;
}  // namespace

vt_status set_error_v(vt_status status, const char* fmt, va_list ap) {
  char buf[2048];
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  t_message = buf;
  t_status = status == VT_OK ? VT_ERR_RUNTIME : status;
  return t_status;
}

vt_status set_error(vt_status status, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vt_status s = set_error_v(status, fmt, ap);
  va_end(ap);
  return s;
}

const char* last_error() { return t_message.c_str(); }

}  // namespace vt

extern "C" {
const char* vtrt_last_error(void) { return vt::t_message.c_str(); }
vt_status vtrt_last_status(void) { return vt::t_status; }
void vtrt_set_error_message(vt_status status, const char* message) {
  vt::set_error(status, "%s", message ? message : "");
}
void vtrt_clear_error(void) {
  vt::t_message.clear();
  vt::t_status = VT_OK;
}
}
