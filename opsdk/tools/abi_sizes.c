/* abi_sizes.c — compile-time checks of the op-pack ABI's layout, compiled as C (C99 or later).
 *
 *   cc -std=c99 -Wall -Wpedantic -I opsdk/include opsdk/tools/abi_sizes.c -o abi_sizes && ./abi_sizes
 *
 * Every struct that crosses the boundary has its size and field offsets pinned here for LP64
 * targets (64-bit Linux/macOS). If one of these fails, the ABI changed: that is a major version
 * bump, or (for vt_host) a field appended at the end plus a minor bump — then add its offset here.
 * Running the program prints the layout (handy when a binding is written in another language). */
#include <stddef.h>
#include <stdio.h>

#include "vt/oppack.h"

#if defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
#define VT_CHECK(cond, msg) _Static_assert(cond, msg)
#else /* C99: a negative array size fails the compile */
#define VT_CHECK_CAT2(a, b) a##b
#define VT_CHECK_CAT(a, b) VT_CHECK_CAT2(a, b)
#define VT_CHECK(cond, msg) typedef char VT_CHECK_CAT(vt_abi_check_, __LINE__)[(cond) ? 1 : -1]
#endif

#define SIZE(T, n) VT_CHECK(sizeof(T) == (n), "sizeof(" #T ") != " #n)
#define AT(T, f, n) VT_CHECK(offsetof(T, f) == (n), "offsetof(" #T ", " #f ") != " #n)

VT_CHECK(sizeof(void*) == 8 && sizeof(int64_t) == 8, "these checks are for LP64 targets");
VT_CHECK(VT_ABI_MAJOR == 1, "layout below is ABI major 1");

SIZE(vt_status, 4);

SIZE(vt_dtype, 4);
AT(vt_dtype, code, 0);
AT(vt_dtype, bits, 1);
AT(vt_dtype, lanes, 2);

SIZE(vt_device, 8);
AT(vt_device, type, 0);
AT(vt_device, index, 4);

/* the public prefix of the runtime's tensor object */
SIZE(vt_tensor, 48);
AT(vt_tensor, data, 0);
AT(vt_tensor, sizes, 8);
AT(vt_tensor, strides, 16);
AT(vt_tensor, numel, 24);
AT(vt_tensor, ndim, 32);
AT(vt_tensor, dtype, 36);
AT(vt_tensor, device, 40);

SIZE(vt_int_list, 16);
AT(vt_int_list, data, 0);
AT(vt_int_list, len, 8);

SIZE(vt_value, 24);
AT(vt_value, tag, 0);
AT(vt_value, pad_, 4);
AT(vt_value, v, 8);
AT(vt_value, v.t, 8);
AT(vt_value, v.i, 8);
AT(vt_value, v.f, 8);
AT(vt_value, v.b, 8);
AT(vt_value, v.ints, 8);
AT(vt_value, v.s, 8);
AT(vt_value, v.dtype, 8);
AT(vt_value, v.device, 8);

SIZE(vt_kernel_ctx, 32);
AT(vt_kernel_ctx, host, 0);
AT(vt_kernel_ctx, device, 8);
AT(vt_kernel_ctx, stream, 16);
AT(vt_kernel_ctx, user, 24);

/* the host table: append-only, so existing offsets never move */
AT(vt_host, size, 0);
AT(vt_host, abi_major, 4);
AT(vt_host, abi_minor, 6);
AT(vt_host, set_error, 8);
AT(vt_host, define_op, 16);
AT(vt_host, register_kernel, 24);
AT(vt_host, register_backward, 32);
AT(vt_host, find_op, 40);
AT(vt_host, call, 48);
AT(vt_host, empty, 56);
AT(vt_host, as_strided, 64);
AT(vt_host, retain, 72);
AT(vt_host, release, 80);
AT(vt_host, parallel_for, 88);
AT(vt_host, num_threads, 96);
AT(vt_host, philox_reserve, 104);
AT(vt_host, current_stream, 112); /* the last field of ABI 1.0 (120 bytes) */
AT(vt_host, register_meta, 120);   /* ABI 1.1 */
AT(vt_host, register_compute, 128);
AT(vt_host, promote_types, 136);
AT(vt_host, result_type_scalar, 144);
AT(vt_host, philox_args, 152);
AT(vt_host, cuda_exchange_device, 160);
AT(vt_host, record_stream, 168);
AT(vt_host, copy_bytes, 176);
SIZE(vt_host, 184); /* ABI 1.1; grows with each minor */

SIZE(vt_philox_args, 40);
AT(vt_philox_args, seed_ptr, 16);
AT(vt_philox_args, offset_intragraph, 32);

/* the tag and status values are part of the ABI too */
VT_CHECK(VT_NONE == 0 && VT_TENSOR == 1 && VT_INT == 2 && VT_FLOAT == 3 && VT_BOOL == 4 && VT_INTS == 5 &&
             VT_STR == 6 && VT_DTYPE == 7 && VT_DEVICE == 8 && VT_TENSORS == 9 && VT_SCALAR == 10,
         "vt_tag values");
VT_CHECK(VT_OK == 0 && VT_ERR_RUNTIME == 1 && VT_ERR_VALUE == 2 && VT_ERR_TYPE == 3 && VT_ERR_INDEX == 4 &&
             VT_ERR_NOT_IMPL == 5 && VT_ERR_MEMORY == 6 && VT_ERR_ABI == 7,
         "status values");
VT_CHECK(VT_CPU == 1 && VT_CUDA == 2, "DLPack device codes");
VT_CHECK(VT_META == 64 && VT_META_COMPLETE == 1, "vibetensor's own device and meta codes");
VT_CHECK(VT_DL_INT == 0 && VT_DL_UINT == 1 && VT_DL_FLOAT == 2 && VT_DL_BFLOAT == 4 && VT_DL_BOOL == 6,
         "DLPack dtype codes");

int main(void) {
  printf("vt op-pack ABI %d.%d: vt_dtype %u, vt_device %u, vt_tensor (prefix) %u, vt_int_list %u, "
         "vt_value %u, vt_kernel_ctx %u, vt_host %u bytes\n",
         VT_ABI_MAJOR, VT_ABI_MINOR, (unsigned)sizeof(vt_dtype), (unsigned)sizeof(vt_device),
         (unsigned)sizeof(vt_tensor), (unsigned)sizeof(vt_int_list), (unsigned)sizeof(vt_value),
         (unsigned)sizeof(vt_kernel_ctx), (unsigned)sizeof(vt_host));
  return 0;
}
