// The driver entry points kiln itself calls, resolved from libcuda through the real
// cuGetProcAddress (never through kiln's own wrappers). Everything above this layer calls
// the driver through a DriverTable, so tests can inject a stand-in driver.
#pragma once

#include <cuda.h>
#include <cudaTypedefs.h>

#include <string>

namespace kiln {

// X(member, symbol, pfn version)
#define KILN_DRIVER_FUNCS(X)                                  \
  X(cuInit, cuInit, 2000)                                     \
  X(cuDriverGetVersion, cuDriverGetVersion, 2020)             \
  X(cuDeviceGet, cuDeviceGet, 2000)                           \
  X(cuDeviceGetAttribute, cuDeviceGetAttribute, 2000)         \
  X(cuDeviceGetName, cuDeviceGetName, 2000)                   \
  X(cuCtxGetCurrent, cuCtxGetCurrent, 4000)                   \
  X(cuCtxSetCurrent, cuCtxSetCurrent, 4000)                   \
  X(cuCtxGetDevice, cuCtxGetDevice, 2000)                     \
  X(cuCtxSynchronize, cuCtxSynchronize, 2000)                 \
  X(cuDevicePrimaryCtxRetain, cuDevicePrimaryCtxRetain, 7000) \
  X(cuMemAddressReserve, cuMemAddressReserve, 10020)          \
  X(cuMemAddressFree, cuMemAddressFree, 10020)                \
  X(cuMemCreate, cuMemCreate, 10020)                          \
  X(cuMemRelease, cuMemRelease, 10020)                        \
  X(cuMemMap, cuMemMap, 10020)                                \
  X(cuMemUnmap, cuMemUnmap, 10020)                            \
  X(cuMemSetAccess, cuMemSetAccess, 10020)                    \
  X(cuMemGetAllocationGranularity, cuMemGetAllocationGranularity, 10020) \
  X(cuMemGetAddressRange, cuMemGetAddressRange, 3020)         \
  X(cuPointerGetAttribute, cuPointerGetAttribute, 4000)       \
  X(cuGetErrorName, cuGetErrorName, 6000)                     \
  X(cuGraphGetNodes, cuGraphGetNodes, 10000)                  \
  X(cuGraphGetEdges, cuGraphGetEdges, 12030)                  \
  X(cuGraphNodeGetType, cuGraphNodeGetType, 10000)            \
  X(cuGraphKernelNodeGetParams, cuGraphKernelNodeGetParams, 12000) \
  X(cuGraphKernelNodeGetAttribute, cuGraphKernelNodeGetAttribute, 11000) \
  X(cuGraphKernelNodeSetAttribute, cuGraphKernelNodeSetAttribute, 11000) \
  X(cuGraphMemsetNodeGetParams, cuGraphMemsetNodeGetParams, 10000) \
  X(cuGraphMemcpyNodeGetParams, cuGraphMemcpyNodeGetParams, 10000) \
  X(cuGraphEventRecordNodeGetEvent, cuGraphEventRecordNodeGetEvent, 11010) \
  X(cuGraphEventWaitNodeGetEvent, cuGraphEventWaitNodeGetEvent, 11010) \
  X(cuGraphCreate, cuGraphCreate, 10000)                      \
  X(cuGraphDestroy, cuGraphDestroy, 10000)                    \
  X(cuGraphAddKernelNode, cuGraphAddKernelNode, 12000)        \
  X(cuGraphAddMemsetNode, cuGraphAddMemsetNode, 10000)        \
  X(cuGraphAddMemcpyNode, cuGraphAddMemcpyNode, 10000)        \
  X(cuGraphAddEmptyNode, cuGraphAddEmptyNode, 10000)          \
  X(cuGraphAddEventRecordNode, cuGraphAddEventRecordNode, 11010) \
  X(cuGraphAddEventWaitNode, cuGraphAddEventWaitNode, 11010)  \
  X(cuGraphAddDependencies, cuGraphAddDependencies, 12030)    \
  X(cuGraphInstantiateWithFlags, cuGraphInstantiateWithFlags, 11040) \
  X(cuGraphExecDestroy, cuGraphExecDestroy, 10000)            \
  X(cuGraphExecKernelNodeSetParams, cuGraphExecKernelNodeSetParams, 12000) \
  X(cuGraphExecMemsetNodeSetParams, cuGraphExecMemsetNodeSetParams, 10020) \
  X(cuGraphNodeSetEnabled, cuGraphNodeSetEnabled, 11060)      \
  X(cuGraphExecMemcpyNodeSetParams, cuGraphExecMemcpyNodeSetParams, 10020) \
  X(cuGraphLaunch, cuGraphLaunch, 10000)                      \
  X(cuGraphUpload, cuGraphUpload, 11010)                      \
  X(cuStreamCreate, cuStreamCreate, 2000)                     \
  X(cuStreamIsCapturing, cuStreamIsCapturing, 10000)          \
  X(cuStreamSynchronize, cuStreamSynchronize, 2000)           \
  X(cuStreamDestroy, cuStreamDestroy, 4000)                   \
  X(cuEventCreate, cuEventCreate, 2000)                       \
  X(cuEventDestroy, cuEventDestroy, 4000)                     \
  X(cuEventRecord, cuEventRecord, 2000)                       \
  X(cuEventSynchronize, cuEventSynchronize, 2000)             \
  X(cuFuncGetName, cuFuncGetName, 12030)                      \
  X(cuFuncGetModule, cuFuncGetModule, 11000)                  \
  X(cuFuncGetParamInfo, cuFuncGetParamInfo, 12040)            \
  X(cuFuncGetAttribute, cuFuncGetAttribute, 2020)             \
  X(cuFuncSetAttribute, cuFuncSetAttribute, 9000)             \
  X(cuKernelGetName, cuKernelGetName, 12030)                  \
  X(cuKernelGetParamInfo, cuKernelGetParamInfo, 12040)        \
  X(cuKernelGetFunction, cuKernelGetFunction, 12000)          \
  X(cuLibraryLoadData, cuLibraryLoadData, 12000)              \
  X(cuLibraryGetKernel, cuLibraryGetKernel, 12000)            \
  X(cuLibraryUnload, cuLibraryUnload, 12000)                  \
  X(cuModuleGetFunction, cuModuleGetFunction, 2000)

#define KILN_DRIVER_MEMBER(member, symbol, version) PFN_##symbol##_v##version member = nullptr;

struct DriverTable {
  KILN_DRIVER_FUNCS(KILN_DRIVER_MEMBER)
};

#undef KILN_DRIVER_MEMBER

// The table in use: the injected one if any, else the real driver (resolved on first use).
// Throws Error(driver) when libcuda cannot be loaded.
const DriverTable& driver();

// True when libcuda can be loaded in this process (does not initialise the driver).
bool driver_available();

// Replaces the driver with a stand-in table; nullptr restores the real one. Reachable
// from C++ only: kiln's Python module does not bind it. Its one caller is the test-only
// library (tests/native_support: the stand-in driver of the CPU tests), which links
// against this library and installs its table here.
void replace_driver(const DriverTable* table);

// "cuMemCreate failed: CUDA_ERROR_OUT_OF_MEMORY (2)"
std::string describe_result(const char* call, CUresult result);

// Throws Error(driver) naming the call when result is not CUDA_SUCCESS.
void check(CUresult result, const char* call);

}  // namespace kiln
