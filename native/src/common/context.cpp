#include "common/context.h"

#include "common/driver.h"
#include "common/error.h"

namespace kiln {

CUcontext primary_context(int device) {
  const DriverTable& drv = driver();
  check(drv.cuInit(0), "cuInit");
  CUdevice dev = 0;
  check(drv.cuDeviceGet(&dev, device), "cuDeviceGet");
  CUcontext primary = nullptr;
  check(drv.cuDevicePrimaryCtxRetain(&primary, dev), "cuDevicePrimaryCtxRetain");
  CUcontext current = nullptr;
  check(drv.cuCtxGetCurrent(&current), "cuCtxGetCurrent");
  if (!current) {
    check(drv.cuCtxSetCurrent(primary), "cuCtxSetCurrent");
  } else if (current != primary) {
    throw Error(ErrorKind::restore,
                format("the calling thread's current CUDA context is not device %d's primary context; kiln restores "
                       "graphs into the primary context (the one PyTorch uses)",
                       device));
  }
  return primary;
}

void bind_context(CUcontext ctx) {
  const DriverTable& drv = driver();
  CUcontext current = nullptr;
  check(drv.cuCtxGetCurrent(&current), "cuCtxGetCurrent");
  if (current != ctx) check(drv.cuCtxSetCurrent(ctx), "cuCtxSetCurrent");
}

std::exception_ptr try_bind_context(CUcontext ctx) {
  try {
    bind_context(ctx);
  } catch (...) {
    return std::current_exception();
  }
  return nullptr;
}

}  // namespace kiln
