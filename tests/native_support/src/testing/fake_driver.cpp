#include "testing/fake_driver.h"

#include "testing/fake_graphs.h"

#include <map>
#include <mutex>
#include <string>

namespace kiln::testing {
namespace {

struct State {
  std::mutex mu;
  FakeDriverConfig config;
  std::map<uint64_t, uint64_t> reservations;  // base -> size
  std::map<uint64_t, uint64_t> handles;       // handle -> size
  std::map<uint64_t, uint64_t> mappings;      // va -> size
  uint64_t next_handle = 1;
  uint64_t physical = 0;
  int64_t creates = 0;
  int64_t maps = 0;
  int64_t busy_unmaps = 0;
  DriverTable table{};
};

State& st() {
  static State* s = new State();
  return *s;
}

CUresult granularity(size_t* g, const CUmemAllocationProp*, CUmemAllocationGranularity_flags) {
  *g = st().config.granularity;
  return CUDA_SUCCESS;
}

CUresult reserve(CUdeviceptr* ptr, size_t size, size_t, CUdeviceptr addr, unsigned long long) {
  std::lock_guard<std::mutex> l(st().mu);
  uint64_t at = addr && st().config.honour_base ? addr : 0x100000000000ull + st().reservations.size() * (1ull << 40);
  st().reservations[at] = size;
  *ptr = at;
  return CUDA_SUCCESS;
}

CUresult address_free(CUdeviceptr ptr, size_t) {
  std::lock_guard<std::mutex> l(st().mu);
  return st().reservations.erase(ptr) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

CUresult create(CUmemGenericAllocationHandle* h, size_t size, const CUmemAllocationProp*, unsigned long long) {
  std::lock_guard<std::mutex> l(st().mu);
  State& s = st();
  if (s.config.fail_create_after >= 0 && s.creates >= s.config.fail_create_after) return CUDA_ERROR_OUT_OF_MEMORY;
  if (s.physical + size > s.config.device_memory) return CUDA_ERROR_OUT_OF_MEMORY;
  ++s.creates;
  *h = s.next_handle++;
  s.handles[*h] = size;
  s.physical += size;
  return CUDA_SUCCESS;
}

CUresult release(CUmemGenericAllocationHandle h) {
  std::lock_guard<std::mutex> l(st().mu);
  auto it = st().handles.find(h);
  if (it == st().handles.end()) return CUDA_ERROR_INVALID_VALUE;
  st().physical -= it->second;
  st().handles.erase(it);
  return CUDA_SUCCESS;
}

CUresult map(CUdeviceptr va, size_t size, size_t, CUmemGenericAllocationHandle h, unsigned long long) {
  std::lock_guard<std::mutex> l(st().mu);
  State& s = st();
  if (s.config.fail_map_after >= 0 && s.maps >= s.config.fail_map_after) return CUDA_ERROR_INVALID_VALUE;
  if (!s.handles.count(h)) return CUDA_ERROR_INVALID_HANDLE;
  // The range must lie in a reservation and not overlap an existing mapping.
  auto r = s.reservations.upper_bound(va);
  if (r == s.reservations.begin()) return CUDA_ERROR_INVALID_VALUE;
  --r;
  if (va + size > r->first + r->second) return CUDA_ERROR_INVALID_VALUE;
  auto next = s.mappings.lower_bound(va);
  if (next != s.mappings.end() && next->first < va + size) return CUDA_ERROR_ALREADY_MAPPED;
  if (next != s.mappings.begin() && std::prev(next)->first + std::prev(next)->second > va)
    return CUDA_ERROR_ALREADY_MAPPED;
  ++s.maps;
  s.mappings[va] = size;
  return CUDA_SUCCESS;
}

CUresult unmap(CUdeviceptr va, size_t size) {
  std::lock_guard<std::mutex> l(st().mu);
  auto it = st().mappings.find(va);
  if (it == st().mappings.end() || it->second != size) return CUDA_ERROR_INVALID_VALUE;
  if (fake_work_pending()) ++st().busy_unmaps;  // a launched graph may still use the memory
  st().mappings.erase(it);
  return CUDA_SUCCESS;
}

CUresult set_access(CUdeviceptr, size_t, const CUmemAccessDesc*, size_t) { return CUDA_SUCCESS; }

// A new physical handle of `size` bytes (caller holds the lock).
uint64_t new_handle(State& s, uint64_t size) {
  uint64_t h = s.next_handle++;
  s.handles[h] = size;
  s.physical += size;
  return h;
}

CUresult export_handle(void* shareable, CUmemGenericAllocationHandle h, CUmemAllocationHandleType,
                       unsigned long long) {
  std::lock_guard<std::mutex> l(st().mu);
  if (!st().handles.count(h) || !shareable) return CUDA_ERROR_INVALID_VALUE;
  *static_cast<int*>(shareable) = static_cast<int>(1000 + h);  // a stand-in file descriptor
  return CUDA_SUCCESS;
}

// Another process's memory, one granule of it.
CUresult import_handle(CUmemGenericAllocationHandle* h, void*, CUmemAllocationHandleType) {
  std::lock_guard<std::mutex> l(st().mu);
  *h = new_handle(st(), st().config.granularity);
  return CUDA_SUCCESS;
}

CUresult multicast_create(CUmemGenericAllocationHandle* h, const CUmulticastObjectProp* prop) {
  std::lock_guard<std::mutex> l(st().mu);
  if (!prop || prop->size == 0) return CUDA_ERROR_INVALID_VALUE;
  *h = new_handle(st(), prop->size);
  return CUDA_SUCCESS;
}

CUresult multicast_bind_mem(CUmemGenericAllocationHandle mc, size_t, CUmemGenericAllocationHandle memory, size_t,
                            size_t, unsigned long long) {
  std::lock_guard<std::mutex> l(st().mu);
  return st().handles.count(mc) && st().handles.count(memory) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

CUresult multicast_bind_addr(CUmemGenericAllocationHandle mc, size_t, CUdeviceptr, size_t, unsigned long long) {
  std::lock_guard<std::mutex> l(st().mu);
  return st().handles.count(mc) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

// Legacy IPC: the driver reserves and maps one granule of the exporter's memory wherever it
// likes (here: far from any region).
CUresult ipc_open(CUdeviceptr* ptr, CUipcMemHandle, unsigned int) {
  std::lock_guard<std::mutex> l(st().mu);
  State& s = st();
  uint64_t at = 0x300000000000ull + s.reservations.size() * (1ull << 32);
  s.reservations[at] = s.config.granularity;
  s.mappings[at] = s.config.granularity;
  *ptr = at;
  return CUDA_SUCCESS;
}

CUresult ipc_close(CUdeviceptr ptr) {
  std::lock_guard<std::mutex> l(st().mu);
  if (!st().mappings.erase(ptr)) return CUDA_ERROR_INVALID_VALUE;
  st().reservations.erase(ptr);
  return CUDA_SUCCESS;
}

CUresult address_range(CUdeviceptr* base, size_t* size, CUdeviceptr ptr) {
  std::lock_guard<std::mutex> l(st().mu);
  auto it = st().mappings.upper_bound(ptr);
  if (it == st().mappings.begin() || ptr >= std::prev(it)->first + std::prev(it)->second)
    return CUDA_ERROR_NOT_FOUND;
  --it;
  if (base) *base = it->first;
  if (size) *size = it->second;
  return CUDA_SUCCESS;
}

// Only mapped memory is device memory here.
CUresult pointer_attribute(void* data, CUpointer_attribute attr, CUdeviceptr ptr) {
  std::lock_guard<std::mutex> l(st().mu);
  auto it = st().mappings.upper_bound(ptr);
  bool mapped = it != st().mappings.begin() && ptr < std::prev(it)->first + std::prev(it)->second;
  if (attr != CU_POINTER_ATTRIBUTE_MEMORY_TYPE || !mapped) return CUDA_ERROR_INVALID_VALUE;
  *static_cast<unsigned int*>(data) = CU_MEMORYTYPE_DEVICE;
  return CUDA_SUCCESS;
}

CUresult error_name(CUresult r, const char** name) {
  *name = r == CUDA_ERROR_OUT_OF_MEMORY ? "CUDA_ERROR_OUT_OF_MEMORY" : "CUDA_ERROR_FAKE";
  return CUDA_SUCCESS;
}

CUresult ctx_get_device(CUdevice* d) {
  *d = 0;
  return CUDA_SUCCESS;
}

CUresult init(unsigned int) { return CUDA_SUCCESS; }
CUresult device_get(CUdevice* d, int ordinal) {
  *d = ordinal;
  return CUDA_SUCCESS;
}
CUresult ctx_get_current(CUcontext* c) {
  *c = reinterpret_cast<CUcontext>(0x1);
  return CUDA_SUCCESS;
}

}  // namespace

void install_fake_driver(const FakeDriverConfig& config) {
  State& s = st();
  {
    std::lock_guard<std::mutex> l(s.mu);
    s.config = config;
    s.reservations.clear(), s.handles.clear(), s.mappings.clear();
    s.physical = 0, s.creates = 0, s.maps = 0, s.busy_unmaps = 0;
    s.table = DriverTable{};
    s.table.cuMemGetAllocationGranularity = granularity;
    s.table.cuMemAddressReserve = reserve;
    s.table.cuMemAddressFree = address_free;
    s.table.cuMemCreate = create;
    s.table.cuMemRelease = release;
    s.table.cuMemMap = map;
    s.table.cuMemUnmap = unmap;
    s.table.cuMemSetAccess = set_access;
    s.table.cuPointerGetAttribute = pointer_attribute;
    s.table.cuGetErrorName = error_name;
    s.table.cuCtxGetDevice = ctx_get_device;
    s.table.cuInit = init;
    s.table.cuDeviceGet = device_get;
    s.table.cuCtxGetCurrent = ctx_get_current;
    s.table.cuMemGetAddressRange = address_range;
    install_fake_graph_calls(s.table, config.strict_context);
  }
  replace_driver(&s.table);
}

void uninstall_fake_driver() { replace_driver(nullptr); }

void* fake_sharing_function(const char* base) {
  std::string name = base;
  if (name == "cuMemExportToShareableHandle") return reinterpret_cast<void*>(&export_handle);
  if (name == "cuMemImportFromShareableHandle") return reinterpret_cast<void*>(&import_handle);
  if (name == "cuMulticastCreate") return reinterpret_cast<void*>(&multicast_create);
  if (name == "cuMulticastBindMem") return reinterpret_cast<void*>(&multicast_bind_mem);
  if (name == "cuMulticastBindAddr") return reinterpret_cast<void*>(&multicast_bind_addr);
  if (name == "cuIpcOpenMemHandle") return reinterpret_cast<void*>(&ipc_open);
  if (name == "cuIpcCloseMemHandle") return reinterpret_cast<void*>(&ipc_close);
  return nullptr;
}

FakeDriverStats fake_driver_stats() {
  std::lock_guard<std::mutex> l(st().mu);
  State& s = st();
  return {static_cast<int64_t>(s.reservations.size()), static_cast<int64_t>(s.handles.size()),
          static_cast<int64_t>(s.mappings.size()), s.physical, s.creates, s.busy_unmaps};
}

}  // namespace kiln::testing
