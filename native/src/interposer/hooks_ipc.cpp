// Legacy IPC wrapper: the driver cannot make a cudaIpc handle for VMM memory, which kiln's
// region is, and says only CUDA_ERROR_INVALID_VALUE. kiln refuses first, naming what to
// change (engines' custom all-reduce exchanges such handles), and keeps the message for the
// lifecycle driver, which applies the policy to it.
#include <string>

#include "common/log.h"
#include "interposer/hook_table.h"
#include "interposer/state.h"
#include "region/registry.h"

namespace kiln {

CUresult hook_cuIpcGetMemHandle_v4010_(CUipcMemHandle* handle, CUdeviceptr ptr) {
  if (interposer_enabled() && RegionRegistry::instance().any()) {
    bool in_region = RegionRegistry::instance().with_address(ptr, [](Region* r) { return r != nullptr; });
    if (in_region) {
      std::string msg =
          "a legacy IPC handle (cuIpcGetMemHandle) was asked for memory in kiln's region, which is VMM memory "
          "the driver cannot export that way: turn off the engine's custom all-reduce (vLLM: "
          "--disable-custom-all-reduce; SGLang: --disable-custom-all-reduce)";
      KILN_ERROR("%s", msg.c_str());
      set_last_hook_error(msg);
      return CUDA_ERROR_NOT_SUPPORTED;
    }
  }
  return KILN_REAL(cuIpcGetMemHandle_v4010_)(handle, ptr);
}

}  // namespace kiln
