// trace.hpp — the runtime side of call provenance and tuned providers (vt/runtime_trace.h).
#pragma once

#include <atomic>
#include <cstdint>

#include "vt/runtime_trace.h"

namespace vt {

extern std::atomic<bool> g_trace_on;
// The one check a call makes when tracing is off.
inline bool tracing() { return __builtin_expect(g_trace_on.load(std::memory_order_relaxed), 0); }

int64_t now_ns();
int& trace_depth();  // this thread's nesting of traced calls
uint64_t trace_thread_id();
void trace_push(const vtrt_trace_record& r);
void trace_copy_name(char (&dst)[VTRT_TRACE_NAME], const char* src);
// Describes the call's tensor arguments (dtype, ndim, first sizes) in the record.
void trace_tensors(vtrt_trace_record* r, const vt_value* args, int32_t n);
// Keeps the call's first non-tensor arguments (as the dispatcher holds them) in the record.
void trace_options(vtrt_trace_record* r, const vt_value* args, int32_t n);

// The tuned-table key of a call: its tensors' shape bucket (sizes rounded up to powers of two)
// and its other arguments (vtrt_tune_key says how each kind counts).
uint64_t tune_key(const vt_value* args, int32_t n);

}  // namespace vt
