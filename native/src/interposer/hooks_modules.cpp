// Module and library wrappers: record every kernel image as it is loaded (lazy loading
// means this happens during warmup, not at import) and which handles name its kernels.
// Recording never changes what the driver returns; a failure to record is logged and
// surfaces later, at SAVE, as an unknown kernel.
#include "binaries/registry.h"
#include "common/error.h"
#include "common/log.h"
#include "interposer/hook_table.h"
#include "interposer/state.h"

namespace kiln {
namespace {

template <typename Fn>
void record(const char* call, Fn&& fn) {
  try {
    fn(BinaryRegistry::instance());
  } catch (const std::exception& e) {
    KILN_WARN("%s: could not record the kernel image: %s", call, e.what());
  }
}

}  // namespace

CUresult hook_cuModuleLoad_v2000_(CUmodule* module, const char* fname) {
  CUresult r = KILN_REAL(cuModuleLoad_v2000_)(module, fname);
  if (r == CUDA_SUCCESS && interposer_enabled())
    record("cuModuleLoad", [&](BinaryRegistry& reg) { reg.on_module(*module, reg.record_file(fname, "cuModuleLoad")); });
  return r;
}

CUresult hook_cuModuleLoadData_v2000_(CUmodule* module, const void* image) {
  CUresult r = KILN_REAL(cuModuleLoadData_v2000_)(module, image);
  if (r == CUDA_SUCCESS && interposer_enabled())
    record("cuModuleLoadData",
           [&](BinaryRegistry& reg) { reg.on_module(*module, reg.record_image(image, "cuModuleLoadData")); });
  return r;
}

CUresult hook_cuModuleLoadDataEx_v2010_(CUmodule* module, const void* image, unsigned int n, CUjit_option* options,
                                        void** values) {
  CUresult r = KILN_REAL(cuModuleLoadDataEx_v2010_)(module, image, n, options, values);
  if (r == CUDA_SUCCESS && interposer_enabled())
    record("cuModuleLoadDataEx",
           [&](BinaryRegistry& reg) { reg.on_module(*module, reg.record_image(image, "cuModuleLoadDataEx")); });
  return r;
}

CUresult hook_cuModuleLoadFatBinary_v2000_(CUmodule* module, const void* fatbin) {
  CUresult r = KILN_REAL(cuModuleLoadFatBinary_v2000_)(module, fatbin);
  if (r == CUDA_SUCCESS && interposer_enabled())
    record("cuModuleLoadFatBinary",
           [&](BinaryRegistry& reg) { reg.on_module(*module, reg.record_image(fatbin, "cuModuleLoadFatBinary")); });
  return r;
}

CUresult hook_cuModuleUnload_v2000_(CUmodule module) {
  CUresult r = KILN_REAL(cuModuleUnload_v2000_)(module);
  if (r == CUDA_SUCCESS && interposer_enabled()) BinaryRegistry::instance().on_module_unload(module);
  return r;
}

CUresult hook_cuModuleGetFunction_v2000_(CUfunction* function, CUmodule module, const char* name) {
  CUresult r = KILN_REAL(cuModuleGetFunction_v2000_)(function, module, name);
  if (r == CUDA_SUCCESS && interposer_enabled()) BinaryRegistry::instance().on_module_function(*function, module, name);
  return r;
}

CUresult hook_cuLibraryLoadData_v12000_(CUlibrary* library, const void* code, CUjit_option* jit_options,
                                        void** jit_values, unsigned int n_jit, CUlibraryOption* lib_options,
                                        void** lib_values, unsigned int n_lib) {
  CUresult r = KILN_REAL(cuLibraryLoadData_v12000_)(library, code, jit_options, jit_values, n_jit, lib_options,
                                                      lib_values, n_lib);
  if (r == CUDA_SUCCESS && interposer_enabled())
    record("cuLibraryLoadData",
           [&](BinaryRegistry& reg) { reg.on_library(*library, reg.record_image(code, "cuLibraryLoadData")); });
  return r;
}

CUresult hook_cuLibraryLoadFromFile_v12000_(CUlibrary* library, const char* path, CUjit_option* jit_options,
                                            void** jit_values, unsigned int n_jit, CUlibraryOption* lib_options,
                                            void** lib_values, unsigned int n_lib) {
  CUresult r = KILN_REAL(cuLibraryLoadFromFile_v12000_)(library, path, jit_options, jit_values, n_jit, lib_options,
                                                          lib_values, n_lib);
  if (r == CUDA_SUCCESS && interposer_enabled())
    record("cuLibraryLoadFromFile",
           [&](BinaryRegistry& reg) { reg.on_library(*library, reg.record_file(path, "cuLibraryLoadFromFile")); });
  return r;
}

CUresult hook_cuLibraryUnload_v12000_(CUlibrary library) {
  CUresult r = KILN_REAL(cuLibraryUnload_v12000_)(library);
  if (r == CUDA_SUCCESS && interposer_enabled()) BinaryRegistry::instance().on_library_unload(library);
  return r;
}

CUresult hook_cuLibraryGetKernel_v12000_(CUkernel* kernel, CUlibrary library, const char* name) {
  CUresult r = KILN_REAL(cuLibraryGetKernel_v12000_)(kernel, library, name);
  if (r == CUDA_SUCCESS && interposer_enabled()) BinaryRegistry::instance().on_library_kernel(*kernel, library, name);
  return r;
}

CUresult hook_cuLibraryGetModule_v12000_(CUmodule* module, CUlibrary library) {
  CUresult r = KILN_REAL(cuLibraryGetModule_v12000_)(module, library);
  if (r == CUDA_SUCCESS && interposer_enabled()) BinaryRegistry::instance().on_library_module(*module, library);
  return r;
}

CUresult hook_cuKernelGetFunction_v12000_(CUfunction* function, CUkernel kernel) {
  CUresult r = KILN_REAL(cuKernelGetFunction_v12000_)(function, kernel);
  if (r == CUDA_SUCCESS && interposer_enabled()) BinaryRegistry::instance().on_kernel_function(*function, kernel);
  return r;
}

CUresult hook_cuModuleGetGlobal_v3020_(CUdeviceptr* dptr, size_t* bytes, CUmodule module, const char* name) {
  CUresult r = KILN_REAL(cuModuleGetGlobal_v3020_)(dptr, bytes, module, name);
  if (r == CUDA_SUCCESS && interposer_enabled()) BinaryRegistry::instance().on_module_global(module, name);
  return r;
}

CUresult hook_cuLibraryGetGlobal_v12000_(CUdeviceptr* dptr, size_t* bytes, CUlibrary library, const char* name) {
  CUresult r = KILN_REAL(cuLibraryGetGlobal_v12000_)(dptr, bytes, library, name);
  if (r == CUDA_SUCCESS && interposer_enabled()) BinaryRegistry::instance().on_library_global(library, name);
  return r;
}

}  // namespace kiln
