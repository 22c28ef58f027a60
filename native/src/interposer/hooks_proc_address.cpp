// cuGetProcAddress wrappers. cudart asks the driver for every entry point by base name and
// ABI version through this resolver (it found the resolver itself through dlsym, or asks the
// resolver for itself), so each answer is passed through interpose_proc.
#include "interposer/hook_table.h"

namespace kiln {

CUresult hook_cuGetProcAddress_v12000_(const char* symbol, void** pfn, int version, cuuint64_t flags,
                                        CUdriverProcAddressQueryResult* status) {
  CUresult r = KILN_REAL(cuGetProcAddress_v12000_)(symbol, pfn, version, flags, status);
  if (r == CUDA_SUCCESS && symbol && pfn && *pfn) *pfn = interpose_proc(symbol, version, flags, *pfn);
  return r;
}

CUresult hook_cuGetProcAddress_v11030_(const char* symbol, void** pfn, int version, cuuint64_t flags) {
  CUresult r = KILN_REAL(cuGetProcAddress_v11030_)(symbol, pfn, version, flags);
  if (r == CUDA_SUCCESS && symbol && pfn && *pfn) *pfn = interpose_proc(symbol, version, flags, *pfn);
  return r;
}

}  // namespace kiln
