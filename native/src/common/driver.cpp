#include "common/driver.h"

#include <dlfcn.h>

#include <atomic>
#include <mutex>

#include "common/error.h"
#include "common/log.h"
#include "interposer/real_dlsym.h"

namespace kiln {
namespace {

std::atomic<const DriverTable*> g_injected{nullptr};

void* open_libcuda() {
  void* handle = dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL);
  if (!handle) handle = dlopen("libcuda.so", RTLD_NOW | RTLD_GLOBAL);
  return handle;
}

struct RealDriver {
  DriverTable table;
  std::string failure;

  RealDriver() {
    void* handle = open_libcuda();
    if (!handle) {
      failure = std::string("cannot load the CUDA driver (libcuda.so.1): ") + dlerror();
      return;
    }
    auto get_proc = reinterpret_cast<PFN_cuGetProcAddress_v12000>(real_dlsym(handle, "cuGetProcAddress_v2"));
    if (!get_proc) {
      failure = "libcuda.so.1 has no cuGetProcAddress_v2 (driver older than CUDA 12)";
      return;
    }
    // Ask for the exact ABI each member is typed with; a missing one is an error at use.
#define KILN_RESOLVE(member, symbol, version)                                                   \
  {                                                                                             \
    void* fn = nullptr;                                                                         \
    CUdriverProcAddressQueryResult status;                                                      \
    if (get_proc(#symbol, &fn, version, CU_GET_PROC_ADDRESS_DEFAULT, &status) == CUDA_SUCCESS && \
        status == CU_GET_PROC_ADDRESS_SUCCESS)                                                  \
      table.member = reinterpret_cast<PFN_##symbol##_v##version>(fn);                           \
    else                                                                                        \
      KILN_DEBUG("driver has no %s (ABI %d)", #symbol, version);                                \
  }
    KILN_DRIVER_FUNCS(KILN_RESOLVE)
#undef KILN_RESOLVE
  }
};

const RealDriver& real_driver() {
  static RealDriver instance;
  return instance;
}

}  // namespace

const DriverTable& driver() {
  if (const DriverTable* injected = g_injected.load(std::memory_order_acquire)) return *injected;
  const RealDriver& real = real_driver();
  if (!real.failure.empty()) throw Error(ErrorKind::driver, real.failure);
  return real.table;
}

bool driver_available() {
  if (g_injected.load(std::memory_order_acquire)) return true;
  void* handle = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_NOLOAD);
  if (!handle) handle = dlopen("libcuda.so.1", RTLD_LAZY);
  if (!handle) return false;
  dlclose(handle);
  return true;
}

void replace_driver(const DriverTable* table) { g_injected.store(table, std::memory_order_release); }

std::string describe_result(const char* call, CUresult result) {
  const char* name = nullptr;
  const DriverTable* table = g_injected.load(std::memory_order_acquire);
  if (!table && real_driver().failure.empty()) table = &real_driver().table;
  if (table && table->cuGetErrorName) table->cuGetErrorName(result, &name);
  return format("%s failed: %s (%d)", call, name ? name : "unknown CUDA error", static_cast<int>(result));
}

void check(CUresult result, const char* call) {
  if (result != CUDA_SUCCESS) throw Error(ErrorKind::driver, describe_result(call, result), result);
}

}  // namespace kiln
