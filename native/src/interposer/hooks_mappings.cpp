// Mapping wrappers: bookkeeping of what is mapped where (region/mappings.h), for the
// communication libraries' memory that kiln does not place itself. Each wrapper forwards to
// the driver first and records only what succeeded, with the library that called it (its
// return address; region/owner.h). The driver's answer is returned unchanged.
#include "common/driver.h"
#include "interposer/hook_table.h"
#include "interposer/state.h"
#include "region/mappings.h"

namespace kiln {
namespace {

MappingRegistry& registry() { return MappingRegistry::instance(); }

bool recording(CUresult r) { return r == CUDA_SUCCESS && interposer_enabled(); }

}  // namespace

CUresult hook_cuMemCreate_v10020_(CUmemGenericAllocationHandle* handle, size_t size, const CUmemAllocationProp* prop,
                                  unsigned long long flags) {
  CUresult r = KILN_REAL(cuMemCreate_v10020_)(handle, size, prop, flags);
  if (recording(r) && handle) registry().on_create(*handle, prop);
  return r;
}

CUresult hook_cuMemRelease_v10020_(CUmemGenericAllocationHandle handle) {
  CUresult r = KILN_REAL(cuMemRelease_v10020_)(handle);
  if (recording(r)) registry().on_release(handle);
  return r;
}

CUresult hook_cuMemMap_v10020_(CUdeviceptr ptr, size_t size, size_t offset, CUmemGenericAllocationHandle handle,
                               unsigned long long flags) {
  const void* caller = __builtin_return_address(0);
  CUresult r = KILN_REAL(cuMemMap_v10020_)(ptr, size, offset, handle, flags);
  if (recording(r)) registry().on_map(ptr, size, handle, owner_of_address(caller));
  return r;
}

CUresult hook_cuMemUnmap_v10020_(CUdeviceptr ptr, size_t size) {
  CUresult r = KILN_REAL(cuMemUnmap_v10020_)(ptr, size);
  if (recording(r)) registry().on_unmap(ptr);
  return r;
}

CUresult hook_cuMemExportToShareableHandle_v10020_(void* shareable, CUmemGenericAllocationHandle handle,
                                                   CUmemAllocationHandleType type, unsigned long long flags) {
  CUresult r = KILN_REAL(cuMemExportToShareableHandle_v10020_)(shareable, handle, type, flags);
  if (recording(r)) registry().on_export(handle);
  return r;
}

CUresult hook_cuMemImportFromShareableHandle_v10020_(CUmemGenericAllocationHandle* handle, void* os_handle,
                                                     CUmemAllocationHandleType type) {
  CUresult r = KILN_REAL(cuMemImportFromShareableHandle_v10020_)(handle, os_handle, type);
  if (recording(r) && handle) registry().on_import(*handle);
  return r;
}

CUresult hook_cuMulticastCreate_v12010_(CUmemGenericAllocationHandle* handle, const CUmulticastObjectProp* prop) {
  CUresult r = KILN_REAL(cuMulticastCreate_v12010_)(handle, prop);
  if (recording(r) && handle) registry().on_multicast(*handle);
  return r;
}

CUresult hook_cuMulticastBindMem_v12010_(CUmemGenericAllocationHandle mc, size_t mc_offset,
                                         CUmemGenericAllocationHandle memory, size_t memory_offset, size_t size,
                                         unsigned long long flags) {
  CUresult r = KILN_REAL(cuMulticastBindMem_v12010_)(mc, mc_offset, memory, memory_offset, size, flags);
  if (recording(r)) registry().on_multicast_bind_mem(memory);
  return r;
}

CUresult hook_cuMulticastBindAddr_v12010_(CUmemGenericAllocationHandle mc, size_t mc_offset, CUdeviceptr address,
                                          size_t size, unsigned long long flags) {
  const void* caller = __builtin_return_address(0);
  CUresult r = KILN_REAL(cuMulticastBindAddr_v12010_)(mc, mc_offset, address, size, flags);
  if (recording(r)) registry().on_multicast_bind_addr(address, size, owner_of_address(caller));
  return r;
}

CUresult hook_cuIpcOpenMemHandle_v11000_(CUdeviceptr* ptr, CUipcMemHandle handle, unsigned int flags) {
  const void* caller = __builtin_return_address(0);
  CUresult r = KILN_REAL(cuIpcOpenMemHandle_v11000_)(ptr, handle, flags);
  if (recording(r) && ptr) {
    // The driver chose the address; the extent of the opened allocation comes from it too.
    CUdeviceptr base = *ptr;
    size_t size = 0;
    try {
      const DriverTable& drv = driver();
      if (drv.cuMemGetAddressRange && drv.cuMemGetAddressRange(&base, &size, *ptr) != CUDA_SUCCESS) base = *ptr;
    } catch (const std::exception&) {
      base = *ptr;
    }
    registry().on_ipc_open(*ptr, size > (*ptr - base) ? size - (*ptr - base) : 0, owner_of_address(caller));
  }
  return r;
}

CUresult hook_cuIpcCloseMemHandle_v4010_(CUdeviceptr ptr) {
  CUresult r = KILN_REAL(cuIpcCloseMemHandle_v4010_)(ptr);
  if (recording(r)) registry().on_unmap(ptr);
  return r;
}

}  // namespace kiln
