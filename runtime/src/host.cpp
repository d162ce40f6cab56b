// host.cpp — the function table handed to every pack's vt_oppack_init and every kernel's ctx.
#include "dispatcher.hpp"

namespace vt {

vt_status host_define_op(vt_pack* pack, const char* schema);
vt_status host_register_kernel(vt_pack* pack, const char* op, int32_t device_type,
                               const char* provider, int32_t priority, vt_kernel_fn fn,
                               void* user);
vt_status host_register_backward(vt_pack* pack, const char* op, vt_backward_fn fn,
                                 uint64_t save_args, uint64_t save_outs);
vt_status host_register_meta(vt_pack* pack, const char* op, vt_kernel_fn fn, uint32_t flags);
vt_status host_register_compute(vt_pack* pack, const char* op, int32_t device_type,
                                const char* provider, int32_t priority, vt_kernel_fn fn,
                                void* user);

namespace {

vt_status host_call(vt_op* op, const vt_value* args, int32_t nargs, vt_value* outs,
                    int32_t nouts) {
  if (!op) return set_error(VT_ERR_VALUE, "host->call: null op handle");
  return call(op_of(op), args, nargs, outs, nouts);
}

void* host_current_stream(vt_device device) {
  return device.type == VT_CUDA ? cuda_current_stream(device) : nullptr;
}

vt_status host_copy_bytes(vt_tensor* dst, const vt_tensor* src, int32_t non_blocking) {
  if (!dst || !src) return set_error(VT_ERR_VALUE, "copy_bytes: null tensor");
  return copy_bytes(dst, src, non_blocking != 0);
}

vt_status host_record_stream(vt_tensor* t, void* stream) {
  if (!t) return set_error(VT_ERR_VALUE, "record_stream: null tensor");
  if (t->device.type != VT_CUDA) return VT_OK;  // only device memory is stream-ordered
  return cuda_record_stream(t, stream);
}

const vt_host kHost = {
    sizeof(vt_host),
    VT_ABI_MAJOR,
    VT_ABI_MINOR,
    set_error,
    host_define_op,
    host_register_kernel,
    host_register_backward,
    vtrt_find_op,
    host_call,
    vtrt_empty,
    vtrt_as_strided,
    vtrt_retain,
    vtrt_release,
    parallel_for,
    num_threads,
    philox_reserve,
    host_current_stream,
    // ABI 1.1
    host_register_meta,
    host_register_compute,
    promote_types,
    result_type_scalar,
    philox_args,
    cuda_exchange_device,
    host_record_stream,
    host_copy_bytes,
};

}  // namespace

const vt_host* host() { return &kHost; }

}  // namespace vt

extern "C" const vt_host* vtrt_host(void) { return vt::host(); }
