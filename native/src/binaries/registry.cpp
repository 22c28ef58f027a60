#include "binaries/registry.h"

#include <dlfcn.h>

#include <cstring>
#include <fstream>
#include <iterator>

#include "common/driver.h"
#include "common/error.h"
#include "common/log.h"

namespace kiln {
namespace {

// Images inside a loaded shared object (nvcc's registered fatbins) outlive every use;
// anything else (Triton's cubins in a Python bytes object) must be copied now.
bool is_static_image(const void* p) {
  Dl_info info;
  return dladdr(p, &info) != 0 && info.dli_fname != nullptr;
}

}  // namespace

BinaryRegistry& BinaryRegistry::instance() {
  static BinaryRegistry* registry = new BinaryRegistry();  // never destroyed: hooks may run at exit
  return *registry;
}

uint32_t BinaryRegistry::add(const uint8_t* data, size_t size, ImageKind kind, bool is_static,
                             const std::string& origin) {
  std::lock_guard<std::mutex> lock(mu_);
  auto range = by_size_.equal_range(size);
  for (auto it = range.first; it != range.second; ++it) {
    const BinaryRecord& r = *records_[it->second];
    if (r.data == data || std::memcmp(r.data, data, size) == 0) return r.id;
  }
  auto rec = std::make_unique<BinaryRecord>();
  rec->id = static_cast<uint32_t>(records_.size());
  rec->size = size;
  rec->kind = kind;
  rec->origin = origin;
  if (is_static) {
    rec->data = data;
  } else {
    rec->owned.assign(data, data + size);
    rec->data = rec->owned.data();
  }
  uint32_t id = rec->id;
  KILN_DEBUG("binary #%u: %s, %zu bytes, %s, from %s", id, image_kind_name(kind), size,
             is_static ? "in place" : "copied", origin.c_str());
  records_.push_back(std::move(rec));
  by_size_.emplace(size, id);
  return id;
}

uint32_t BinaryRegistry::record_image(const void* image, const char* origin) {
  ImageView v = resolve_image(image);
  return add(v.data, v.size, v.kind, is_static_image(v.data), origin);
}

uint32_t BinaryRegistry::record_file(const char* path, const char* origin) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorKind::corrupt, format("cannot read kernel image file %s", path));
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.empty() || bytes.back() != 0) bytes.push_back(0);  // PTX files need their NUL in memory
  ImageView v = validate_image(bytes.data(), bytes.size());
  return add(v.data, v.size, v.kind, false, std::string(origin) + " " + path);
}

void BinaryRegistry::on_module(CUmodule module, uint32_t binary) {
  std::lock_guard<std::mutex> lock(mu_);
  modules_[module] = binary;
}

void BinaryRegistry::on_library(CUlibrary library, uint32_t binary) {
  std::lock_guard<std::mutex> lock(mu_);
  libraries_[library] = binary;
}

void BinaryRegistry::on_module_unload(CUmodule module) {
  std::lock_guard<std::mutex> lock(mu_);
  modules_.erase(module);  // its handles may be reused by a later load
  found_by_driver_.clear();
  ++unloads_;
}

void BinaryRegistry::on_library_unload(CUlibrary library) {
  std::lock_guard<std::mutex> lock(mu_);
  libraries_.erase(library);
  found_by_driver_.clear();
  ++unloads_;
}

void BinaryRegistry::on_module_function(CUfunction function, CUmodule module, const char* name) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = modules_.find(module);
  if (it != modules_.end() && name) functions_[function] = {it->second, name};
}

void BinaryRegistry::on_library_kernel(CUkernel kernel, CUlibrary library, const char* name) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = libraries_.find(library);
  if (it != libraries_.end() && name) kernels_[kernel] = {it->second, name};
}

void BinaryRegistry::on_kernel_function(CUfunction function, CUkernel kernel) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = kernels_.find(kernel);
  if (it != kernels_.end()) functions_[function] = it->second;
}

void BinaryRegistry::on_library_module(CUmodule module, CUlibrary library) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = libraries_.find(library);
  if (it != libraries_.end()) modules_[module] = it->second;
}

std::optional<KernelIdentity> BinaryRegistry::identify(const void* handle) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = functions_.find(handle); it != functions_.end()) return it->second;
  if (auto it = kernels_.find(handle); it != kernels_.end()) return it->second;
  return std::nullopt;
}

std::optional<KernelIdentity> BinaryRegistry::identify_with_driver(CUfunction function) const {
  if (auto known = identify(function)) return known;
  std::vector<std::pair<const void*, uint32_t>> libraries, modules;
  uint64_t unloads;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = found_by_driver_.find(function); it != found_by_driver_.end()) return it->second;
    libraries.assign(libraries_.begin(), libraries_.end());
    modules.assign(modules_.begin(), modules_.end());
    unloads = unloads_;
  }
  std::optional<KernelIdentity> found = search_driver(function, libraries, modules);
  if (found) {
    std::lock_guard<std::mutex> lock(mu_);
    // An unload during the search may have freed the handle: its answer must not outlive it.
    if (unloads_ == unloads) found_by_driver_.emplace(function, *found);
  }
  return found;
}

std::optional<KernelIdentity> BinaryRegistry::search_driver(
    CUfunction function, const std::vector<std::pair<const void*, uint32_t>>& libraries,
    const std::vector<std::pair<const void*, uint32_t>>& modules) {
  const DriverTable& drv = driver();
  // cudart resolves per-context functions inside the driver, so a graph node may carry a
  // CUfunction (or a CUkernel used as one) that no wrapped call returned. Find its name, then
  // ask each recorded library/module for that name and keep only an identical handle: a
  // match by name alone could pick a different kernel of the same name.
  const char* name = nullptr;
  bool as_kernel = false;
  if (!(drv.cuFuncGetName && drv.cuFuncGetName(&name, function) == CUDA_SUCCESS && name)) {
    name = nullptr;
    if (drv.cuKernelGetName && drv.cuKernelGetName(&name, reinterpret_cast<CUkernel>(function)) == CUDA_SUCCESS && name)
      as_kernel = true;
    else
      return std::nullopt;
  }
  std::string entry = name;
  for (const auto& [handle, binary] : libraries) {
    CUkernel k = nullptr;
    if (drv.cuLibraryGetKernel(&k, static_cast<CUlibrary>(const_cast<void*>(handle)), entry.c_str()) != CUDA_SUCCESS)
      continue;
    if (as_kernel ? reinterpret_cast<void*>(k) == reinterpret_cast<void*>(function) : false) return KernelIdentity{binary, entry};
    CUfunction f = nullptr;
    if (!as_kernel && drv.cuKernelGetFunction(&f, k) == CUDA_SUCCESS && f == function) return KernelIdentity{binary, entry};
  }
  if (!as_kernel) {
    CUmodule owner = nullptr;
    if (drv.cuFuncGetModule && drv.cuFuncGetModule(&owner, function) == CUDA_SUCCESS) {
      for (const auto& [handle, binary] : modules)
        if (handle == owner) return KernelIdentity{binary, entry};
    }
    for (const auto& [handle, binary] : modules) {
      CUfunction f = nullptr;
      if (drv.cuModuleGetFunction(&f, static_cast<CUmodule>(const_cast<void*>(handle)), entry.c_str()) == CUDA_SUCCESS &&
          f == function)
        return KernelIdentity{binary, entry};
    }
  }
  return std::nullopt;
}

std::optional<BinaryRegistry::LoadedHandle> BinaryRegistry::loaded_handle(uint32_t id) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [handle, binary] : libraries_)
    if (binary == id) return LoadedHandle{static_cast<CUlibrary>(const_cast<void*>(handle)), nullptr};
  for (const auto& [handle, binary] : modules_)
    if (binary == id) return LoadedHandle{nullptr, static_cast<CUmodule>(const_cast<void*>(handle))};
  return std::nullopt;
}

BinaryRecord BinaryRegistry::view(uint32_t id) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (id >= records_.size()) throw Error(ErrorKind::generic, format("no recorded binary #%u", id));
  const BinaryRecord& r = *records_[id];
  return BinaryRecord{r.id, r.data, r.size, r.kind, {}, r.origin};
}

size_t BinaryRegistry::count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return records_.size();
}

}  // namespace kiln
