// A stand-in communication library for CPU tests: built twice, as libnccl-kiln-standin.so and
// libnvshmem-kiln-standin.so, so that kiln's wrappers see these calls come from a library
// named like NCCL's or NVSHMEM's (kiln identifies the caller by its return address). Like
// those libraries, it calls the driver's entry points through pointers it was handed (here
// by the test, there by cuGetProcAddress). Built without sibling-call optimisation: each
// call must return here, not to the test.
#include <cuda.h>
#include <cudaTypedefs.h>

#define STANDIN extern "C" __attribute__((visibility("default"), noinline))

STANDIN int standin_reserve(void* fn, CUdeviceptr* out, size_t size, size_t alignment) {
  int r = reinterpret_cast<PFN_cuMemAddressReserve_v10020>(fn)(out, size, alignment, 0, 0);
  return r;
}

STANDIN int standin_alloc(void* fn, CUdeviceptr* out, size_t size) {
  int r = reinterpret_cast<PFN_cuMemAlloc_v3020>(fn)(out, size);
  return r;
}

STANDIN int standin_create(void* fn, CUmemGenericAllocationHandle* out, size_t size, int host) {
  CUmemAllocationProp prop = {};
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.location.type = host ? CU_MEM_LOCATION_TYPE_HOST_NUMA : CU_MEM_LOCATION_TYPE_DEVICE;
  prop.location.id = 0;
  int r = reinterpret_cast<PFN_cuMemCreate_v10020>(fn)(out, size, &prop, 0);
  return r;
}

STANDIN int standin_map(void* fn, CUdeviceptr va, size_t size, CUmemGenericAllocationHandle handle) {
  int r = reinterpret_cast<PFN_cuMemMap_v10020>(fn)(va, size, 0, handle, 0);
  return r;
}

STANDIN int standin_unmap(void* fn, CUdeviceptr va, size_t size) {
  int r = reinterpret_cast<PFN_cuMemUnmap_v10020>(fn)(va, size);
  return r;
}

STANDIN int standin_export(void* fn, CUmemGenericAllocationHandle handle, int* fd) {
  int r = reinterpret_cast<PFN_cuMemExportToShareableHandle_v10020>(fn)(
      fd, handle, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0);
  return r;
}

STANDIN int standin_import(void* fn, CUmemGenericAllocationHandle* out, int fd) {
  int r = reinterpret_cast<PFN_cuMemImportFromShareableHandle_v10020>(fn)(
      out, reinterpret_cast<void*>(static_cast<long>(fd)), CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR);
  return r;
}

STANDIN int standin_multicast(void* fn, CUmemGenericAllocationHandle* out, size_t size) {
  CUmulticastObjectProp prop = {};
  prop.numDevices = 1;
  prop.size = size;
  prop.handleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
  int r = reinterpret_cast<PFN_cuMulticastCreate_v12010>(fn)(out, &prop);
  return r;
}

STANDIN int standin_multicast_bind_mem(void* fn, CUmemGenericAllocationHandle mc, CUmemGenericAllocationHandle memory,
                                       size_t size) {
  int r = reinterpret_cast<PFN_cuMulticastBindMem_v12010>(fn)(mc, 0, memory, 0, size, 0);
  return r;
}

STANDIN int standin_multicast_bind_addr(void* fn, CUmemGenericAllocationHandle mc, CUdeviceptr address, size_t size) {
  int r = reinterpret_cast<PFN_cuMulticastBindAddr_v12010>(fn)(mc, 0, address, size, 0);
  return r;
}

STANDIN int standin_ipc_open(void* fn, CUdeviceptr* out) {
  CUipcMemHandle handle = {};
  int r = reinterpret_cast<PFN_cuIpcOpenMemHandle_v11000>(fn)(out, handle, CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS);
  return r;
}

STANDIN int standin_ipc_close(void* fn, CUdeviceptr ptr) {
  int r = reinterpret_cast<PFN_cuIpcCloseMemHandle_v4010>(fn)(ptr);
  return r;
}
