#include "binaries/image_compare.h"

#include <cuda.h>

#include "binaries/image.h"
#include "common/driver.h"
#include "common/error.h"

namespace kiln {
namespace {

// A library loaded past the interposer (the registry never sees it), unloaded on scope exit.
class ScratchLibrary {
 public:
  ScratchLibrary(ImageBytes image, CUresult* result) {
    validate_image(image.data, image.size);  // the driver would read past a lying header
    *result = driver().cuLibraryLoadData(&lib_, image.data, nullptr, nullptr, 0, nullptr, nullptr, 0);
    if (*result != CUDA_SUCCESS) lib_ = nullptr;
  }
  ~ScratchLibrary() {
    if (lib_) driver().cuLibraryUnload(lib_);
  }
  ScratchLibrary(const ScratchLibrary&) = delete;
  ScratchLibrary& operator=(const ScratchLibrary&) = delete;

  CUresult function(const std::string& entry, CUfunction* f) const {
    CUkernel k = nullptr;
    CUresult r = driver().cuLibraryGetKernel(&k, lib_, entry.c_str());
    return r == CUDA_SUCCESS ? driver().cuKernelGetFunction(f, k) : r;
  }

 private:
  CUlibrary lib_ = nullptr;
};

struct KernelFacts {
  std::vector<std::pair<CUresult, int>> attributes;  // by CUfunction_attribute
  std::vector<std::pair<size_t, size_t>> params;     // (offset, size)
};

KernelFacts facts_of(CUfunction f) {
  const DriverTable& drv = driver();
  KernelFacts out;
  for (int a = 0; a < CU_FUNC_ATTRIBUTE_MAX; ++a) {
    int value = 0;
    CUresult r = drv.cuFuncGetAttribute(&value, static_cast<CUfunction_attribute>(a), f);
    out.attributes.emplace_back(r, r == CUDA_SUCCESS ? value : 0);
  }
  for (size_t i = 0; drv.cuFuncGetParamInfo; ++i) {
    size_t off = 0, size = 0;
    if (drv.cuFuncGetParamInfo(f, i, &off, &size) != CUDA_SUCCESS) break;
    out.params.emplace_back(off, size);
  }
  return out;
}

std::optional<std::string> differs(const std::string& entry, const KernelFacts& a, const KernelFacts& b) {
  for (size_t i = 0; i < a.attributes.size(); ++i)
    if (a.attributes[i] != b.attributes[i])
      return format("kernel %s: attribute %zu is %d in the original, %d in the candidate", entry.c_str(), i,
                    a.attributes[i].second, b.attributes[i].second);
  if (a.params != b.params)
    return format("kernel %s: %zu parameters in the original, %zu in the candidate, or their layout differs",
                  entry.c_str(), a.params.size(), b.params.size());
  return std::nullopt;
}

}  // namespace

std::optional<std::string> compare_kernel_images(ImageBytes original, ImageBytes candidate,
                                                 const std::vector<std::string>& entries) {
  CUresult r = CUDA_SUCCESS;
  ScratchLibrary orig(original, &r);
  check(r, "cuLibraryLoadData (original image)");
  ScratchLibrary cand(candidate, &r);
  if (r != CUDA_SUCCESS) return "the driver refuses the candidate: " + describe_result("cuLibraryLoadData", r);
  for (const std::string& entry : entries) {
    CUfunction fo = nullptr, fc = nullptr;
    check(orig.function(entry, &fo), ("resolving " + entry + " in the original image").c_str());
    r = cand.function(entry, &fc);
    if (r != CUDA_SUCCESS)
      return "kernel " + entry + ": " + describe_result("cuKernelGetFunction (candidate)", r);
    if (auto d = differs(entry, facts_of(fo), facts_of(fc))) return d;
  }
  return std::nullopt;
}

}  // namespace kiln
