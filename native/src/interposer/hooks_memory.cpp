// Memory wrappers: while a region is active on the calling thread's device, device
// allocations come from the region's bump cursor instead of the driver's allocator, so
// every process that makes the same requests gets the same addresses.
#include <string>

#include "common/error.h"
#include "common/log.h"
#include "interposer/hook_table.h"
#include "interposer/state.h"
#include "region/mappings.h"
#include "region/owner.h"
#include "region/registry.h"

namespace kiln {
namespace {

int current_device() {
  CUdevice dev = -1;
  try {
    const DriverTable& drv = driver();
    if (!drv.cuCtxGetDevice || drv.cuCtxGetDevice(&dev) != CUDA_SUCCESS) return -1;
  } catch (const Error&) {
    return -1;
  }
  return dev;
}

// Runs fn(Region&) when kiln is enabled and the current device has an active region;
// otherwise returns std::nullopt so the caller forwards to the driver.
template <typename Fn>
std::optional<CUresult> in_active_region(Fn&& fn) {
  if (!interposer_enabled() || !RegionRegistry::instance().any()) return std::nullopt;
  int dev = current_device();
  if (dev < 0) return std::nullopt;
  return RegionRegistry::instance().with_device(dev, [&](Region* r) -> std::optional<CUresult> {
    if (!r || !r->active()) return std::nullopt;
    try {
      return fn(*r);
    } catch (const Error& e) {
      // The caller only sees a CUresult; keep the message for kiln's Python side.
      KILN_WARN("%s", e.what());
      set_last_hook_error(e.what());
      return static_cast<CUresult>(e.driver_code() ? e.driver_code() : CUDA_ERROR_OUT_OF_MEMORY);
    }
  });
}

CUresult refuse_stream_ordered(const char* call) {
  std::string msg = std::string(call) +
                    " (stream-ordered allocation) cannot be made deterministic and was refused while a kiln region "
                    "is active: use PyTorch's default caching allocator (unset PYTORCH_CUDA_ALLOC_CONF="
                    "backend:cudaMallocAsync) or suspend the region around this allocation";
  KILN_ERROR("%s", msg.c_str());
  set_last_hook_error(msg);
  return CUDA_ERROR_NOT_SUPPORTED;
}

// The library that called a wrapper (region/owner.h), noted when a capture is in progress:
// its request goes to its own slot of the region.
Owner library_request(const void* caller, const char* call, uint64_t bytes) {
  Owner owner = owner_of_address(caller);
  if (owner != Owner::engine) MappingRegistry::instance().on_library_request(owner, call, bytes);
  return owner;
}

}  // namespace

CUresult hook_cuMemAlloc_v3020_(CUdeviceptr* dptr, size_t bytes) {
  const void* caller = __builtin_return_address(0);
  auto handled = in_active_region([&](Region& r) -> CUresult {
    if (!dptr || bytes == 0) return CUDA_ERROR_INVALID_VALUE;
    *dptr = r.allocate(bytes, AllocKind::alloc, library_request(caller, "cuMemAlloc", bytes));
    return CUDA_SUCCESS;
  });
  return handled ? *handled : KILN_REAL(cuMemAlloc_v3020_)(dptr, bytes);
}

CUresult hook_cuMemAllocPitch_v3020_(CUdeviceptr* dptr, size_t* pitch, size_t width, size_t height,
                                      unsigned int element_size) {
  const void* caller = __builtin_return_address(0);
  auto handled = in_active_region([&](Region& r) -> CUresult {
    if (!dptr || !pitch || width == 0 || height == 0 || (element_size != 4 && element_size != 8 && element_size != 16))
      return CUDA_ERROR_INVALID_VALUE;
    // Any pitch >= width that keeps rows aligned is valid; 512 bytes satisfies every
    // texture-pitch alignment the driver reports.
    size_t p = (width + 511) / 512 * 512;
    uint64_t bytes = static_cast<uint64_t>(p) * height;
    *dptr = r.allocate(bytes, AllocKind::pitch, library_request(caller, "cuMemAllocPitch", bytes));
    *pitch = p;
    return CUDA_SUCCESS;
  });
  return handled ? *handled : KILN_REAL(cuMemAllocPitch_v3020_)(dptr, pitch, width, height, element_size);
}

CUresult hook_cuMemFree_v3020_(CUdeviceptr ptr) {
  // Frees are routed by address, whatever the region's state: a block allocated while the
  // region was active may be freed after it was suspended.
  if (interposer_enabled() && ptr && RegionRegistry::instance().any()) {
    auto handled = RegionRegistry::instance().with_address(ptr, [&](Region* r) -> std::optional<CUresult> {
      if (!r) return std::nullopt;
      return r->release(ptr) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
    });
    if (handled) return *handled;
  }
  return KILN_REAL(cuMemFree_v3020_)(ptr);
}

CUresult hook_cuMemAddressReserve_v10020_(CUdeviceptr* ptr, size_t size, size_t alignment, CUdeviceptr addr,
                                           unsigned long long flags) {
  // Only anonymous reservations are placed in the region; a caller asking for a specific
  // address gets the driver's answer. Alignment 0 means the default (the granularity). A
  // communication library's reservation goes to its own slot.
  const void* caller = __builtin_return_address(0);
  if (addr == 0) {
    auto handled = in_active_region([&](Region& r) -> CUresult {
      if (!ptr || size == 0) return CUDA_ERROR_INVALID_VALUE;
      *ptr = r.reserve(size, alignment, library_request(caller, "cuMemAddressReserve", size));
      return CUDA_SUCCESS;
    });
    if (handled) return *handled;
  }
  return KILN_REAL(cuMemAddressReserve_v10020_)(ptr, size, alignment, addr, flags);
}

CUresult hook_cuMemAddressFree_v10020_(CUdeviceptr ptr, size_t size) {
  if (interposer_enabled() && RegionRegistry::instance().any()) {
    auto handled = RegionRegistry::instance().with_address(ptr, [&](Region* r) -> std::optional<CUresult> {
      if (!r) return std::nullopt;
      return r->release_reservation(ptr) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
    });
    if (handled) return *handled;
  }
  return KILN_REAL(cuMemAddressFree_v10020_)(ptr, size);
}

CUresult hook_cuMemAllocAsync_v11020_(CUdeviceptr* dptr, size_t bytes, CUstream stream) {
  auto handled = in_active_region([&](Region&) { return refuse_stream_ordered("cuMemAllocAsync"); });
  return handled ? *handled : KILN_REAL(cuMemAllocAsync_v11020_)(dptr, bytes, stream);
}

CUresult hook_cuMemAllocAsync_v11020_ptsz(CUdeviceptr* dptr, size_t bytes, CUstream stream) {
  auto handled = in_active_region([&](Region&) { return refuse_stream_ordered("cuMemAllocAsync"); });
  return handled ? *handled : KILN_REAL(cuMemAllocAsync_v11020_ptsz)(dptr, bytes, stream);
}

CUresult hook_cuMemAllocFromPoolAsync_v11020_(CUdeviceptr* dptr, size_t bytes, CUmemoryPool pool, CUstream stream) {
  auto handled = in_active_region([&](Region&) { return refuse_stream_ordered("cuMemAllocFromPoolAsync"); });
  return handled ? *handled : KILN_REAL(cuMemAllocFromPoolAsync_v11020_)(dptr, bytes, pool, stream);
}

CUresult hook_cuMemAllocFromPoolAsync_v11020_ptsz(CUdeviceptr* dptr, size_t bytes, CUmemoryPool pool,
                                                  CUstream stream) {
  auto handled = in_active_region([&](Region&) { return refuse_stream_ordered("cuMemAllocFromPoolAsync"); });
  return handled ? *handled : KILN_REAL(cuMemAllocFromPoolAsync_v11020_ptsz)(dptr, bytes, pool, stream);
}

}  // namespace kiln
