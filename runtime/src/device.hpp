// device.hpp — the one table of device types. Everything indexed by device type (dispatch
// snapshots, provider lists, pins, allocators, RNG state) is indexed by a slot from here, so a new
// device is one row, not a hunt for `== 2` checks.
#pragma once

#include <cstdint>

#include "vt/oppack.h"

namespace vt {

struct DeviceType {
  int32_t type;     // VT_CPU, VT_CUDA, VT_META (the value in vt_device.type)
  const char* name; // "cpu", "cuda", "meta": what Python and messages say
  bool has_memory;  // false for meta: tensors have shape and dtype only
  bool indexed;     // messages say "cuda:1"; cpu and meta have one device
};

constexpr DeviceType kDevices[] = {
    {VT_CPU, "cpu", true, false},
    {VT_CUDA, "cuda", true, true},
    {VT_META, "meta", false, false},
};
constexpr int kDeviceSlots = sizeof(kDevices) / sizeof(kDevices[0]);
constexpr int kCpuSlot = 0, kCudaSlot = 1, kMetaSlot = 2;

// The slot of a device type, or -1 when the runtime does not know it.
constexpr int device_slot(int32_t type) {
  for (int i = 0; i < kDeviceSlots; ++i)
    if (kDevices[i].type == type) return i;
  return -1;
}
constexpr bool valid_device_type(int32_t type) { return device_slot(type) >= 0; }

}  // namespace vt
