#include "graph/kernels.h"

#include "binaries/image.h"
#include "common/driver.h"
#include "common/error.h"
#include "common/log.h"

namespace kiln {

CUlibrary load_library(const uint8_t* data, size_t size) {
  validate_image(data, size);  // the driver would read past a lying header
  CUlibrary lib = nullptr;
  CUresult r = driver().cuLibraryLoadData(&lib, data, nullptr, nullptr, 0, nullptr, nullptr, 0);
  if (r != CUDA_SUCCESS) throw Error(ErrorKind::restore, describe_result("cuLibraryLoadData", r), r);
  return lib;
}

KernelTable::~KernelTable() {
  const DriverTable* drv = nullptr;
  try {
    drv = &driver();
  } catch (const Error&) {
    return;
  }
  for (const BinarySource& s : slots_)
    if (s.owned && s.library) drv->cuLibraryUnload(s.library);
}

CUfunction KernelTable::resolve(uint32_t slot, const std::string& entry) {
  auto key = std::make_pair(slot, entry);
  if (auto it = functions_.find(key); it != functions_.end()) return it->second;
  if (slot >= slots_.size())
    throw Error(ErrorKind::corrupt, format("kernel %s refers to binary slot %u of %zu", entry.c_str(), slot, slots_.size()));
  const DriverTable& drv = driver();
  const BinarySource& src = slots_[slot];
  CUfunction f = nullptr;
  CUresult r;
  if (src.module) {
    r = drv.cuModuleGetFunction(&f, src.module, entry.c_str());
  } else {
    CUkernel k = nullptr;
    r = drv.cuLibraryGetKernel(&k, src.library, entry.c_str());
    if (r == CUDA_SUCCESS) r = drv.cuKernelGetFunction(&f, k);
  }
  if (r != CUDA_SUCCESS)
    throw Error(ErrorKind::restore, format("kernel %s not found in archive binary %u: %s", entry.c_str(), slot,
                                           describe_result("kernel lookup", r).c_str()),
                r);
  functions_.emplace(key, f);
  return f;
}

void KernelTable::prepare(const GraphDesc& desc) {
  const DriverTable& drv = driver();
  // Maximum requirement per function across this graph first, then one set per raise.
  std::map<std::pair<CUfunction, int32_t>, int32_t> wanted;
  for (const Node& n : desc.nodes) {
    if (n.type != NodeType::kernel) continue;
    CUfunction f = resolve(n.kernel.binary, n.kernel.entry);
    for (const FunctionAttribute& a : n.kernel.function_attributes) {
      auto key = std::make_pair(f, a.attribute);
      auto [it, inserted] = wanted.emplace(key, a.value);
      if (!inserted && a.value > it->second) it->second = a.value;
    }
    auto key = std::make_pair(f, static_cast<int32_t>(CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES));
    auto [it, inserted] = wanted.emplace(key, static_cast<int32_t>(n.kernel.shared_mem));
    if (!inserted && static_cast<int32_t>(n.kernel.shared_mem) > it->second) it->second = n.kernel.shared_mem;
  }
  for (const auto& [key, value] : wanted) {
    auto done = applied_.find(key);
    if (done != applied_.end() && done->second >= value) continue;
    int current = 0;
    if (drv.cuFuncGetAttribute(&current, static_cast<CUfunction_attribute>(key.second), key.first) == CUDA_SUCCESS &&
        current == value) {
      applied_[key] = value;
      continue;
    }
    CUresult r = drv.cuFuncSetAttribute(key.first, static_cast<CUfunction_attribute>(key.second), value);
    if (r != CUDA_SUCCESS)
      throw Error(ErrorKind::restore,
                  format("cannot set function attribute %d to %d: %s", key.second, value,
                         describe_result("cuFuncSetAttribute", r).c_str()),
                  r);
    applied_[key] = value;
  }
}

CUfunction KernelTable::function(uint32_t slot, const std::string& entry) const {
  auto it = functions_.find(std::make_pair(slot, entry));
  if (it == functions_.end()) throw Error(ErrorKind::restore, format("kernel %s was not prepared", entry.c_str()));
  return it->second;
}

}  // namespace kiln
