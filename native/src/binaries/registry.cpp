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

template <typename Entry>
void BinaryRegistry::record(std::unordered_map<const void*, Entry>& map, HandleSet Handles::*set,
                            const void* handle, Entry entry) {
  Owner owner = entry.owner;
  auto [it, added] = map.try_emplace(handle, entry);
  if (!added) {
    // Re-recorded for another owner: the old owner's unload must not drop it now.
    if (!(it->second.owner == owner))
      if (auto old = owned_.find(it->second.owner); old != owned_.end()) (old->second.*set).erase(handle);
    it->second = std::move(entry);
  }
  (owned_[owner].*set).insert(handle);
}

bool BinaryRegistry::forget(const Owner& owner) {
  bool known = false;
  if (owner.library) {
    known = libraries_.erase(owner.handle) > 0;
  } else if (auto it = modules_.find(owner.handle); it != modules_.end() && it->second.owner == owner) {
    modules_.erase(it);
    known = true;
  }
  if (auto it = owned_.find(owner); it != owned_.end()) {
    // Only entries still owned by it: a handle since re-recorded for another owner stays.
    auto drop = [&](auto& map, const HandleSet& handles) {
      for (const void* h : handles)
        if (auto e = map.find(h); e != map.end() && e->second.owner == owner) map.erase(e);
    };
    drop(functions_, it->second.functions);
    drop(kernels_, it->second.kernels);
    drop(modules_, it->second.modules);
    owned_.erase(it);
    known = true;
  }
  return known;
}

void BinaryRegistry::forgot() {
  found_by_driver_.clear();  // its answers may name the forgotten handles
  ++unloads_;
}

void BinaryRegistry::on_module(CUmodule module, uint32_t binary) {
  std::lock_guard<std::mutex> lock(mu_);
  Owner self{module, false};
  bool stale = false;
  // Still on record: the module's (or, for a library's module, the library's) unload went unseen.
  if (auto it = modules_.find(module); it != modules_.end() && !(it->second.owner == self))
    stale = forget(it->second.owner);
  if (forget(self) || stale) forgot();
  modules_[module] = {binary, self};
}

void BinaryRegistry::on_library(CUlibrary library, uint32_t binary) {
  std::lock_guard<std::mutex> lock(mu_);
  if (forget({library, true})) forgot();  // an unseen unload of an earlier library with this handle
  libraries_[library] = binary;
}

void BinaryRegistry::on_module_unload(CUmodule module) {
  std::lock_guard<std::mutex> lock(mu_);
  forget({module, false});  // its handles may be reused by a later load
  forgot();
}

void BinaryRegistry::on_library_unload(CUlibrary library) {
  std::lock_guard<std::mutex> lock(mu_);
  forget({library, true});  // its kernels, functions and modules with it
  forgot();
}

void BinaryRegistry::on_module_function(CUfunction function, CUmodule module, const char* name) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = modules_.find(module);
  if (it != modules_.end() && name)
    record(functions_, &Handles::functions, function, Owned{{it->second.binary, name}, it->second.owner});
}

void BinaryRegistry::on_library_kernel(CUkernel kernel, CUlibrary library, const char* name) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = libraries_.find(library);
  if (it != libraries_.end() && name)
    record(kernels_, &Handles::kernels, kernel, Owned{{it->second, name}, {library, true}});
}

void BinaryRegistry::on_kernel_function(CUfunction function, CUkernel kernel) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = kernels_.find(kernel);
  if (it != kernels_.end()) record(functions_, &Handles::functions, function, it->second);  // the kernel's library owns it
}

void BinaryRegistry::on_library_module(CUmodule module, CUlibrary library) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = libraries_.find(library);
  if (it == libraries_.end()) return;
  Owner owner{library, true};
  if (auto m = modules_.find(module); m != modules_.end() && !(m->second.owner == owner))
    if (forget(m->second.owner)) forgot();  // the handle's earlier owner was unloaded unseen
  record(modules_, &Handles::modules, module, OwnedModule{it->second, owner});
}

void BinaryRegistry::on_module_global(CUmodule module, const char* name) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = modules_.find(module);
  if (it != modules_.end() && name) globals_[it->second.binary].insert(name);
}

void BinaryRegistry::on_library_global(CUlibrary library, const char* name) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = libraries_.find(library);
  if (it != libraries_.end() && name) globals_[it->second].insert(name);
}

std::vector<std::string> BinaryRegistry::globals_of(uint32_t binary) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = globals_.find(binary);
  if (it == globals_.end()) return {};
  return {it->second.begin(), it->second.end()};
}

std::optional<KernelIdentity> BinaryRegistry::identify(const void* handle) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = functions_.find(handle); it != functions_.end()) return it->second.identity;
  if (auto it = kernels_.find(handle); it != kernels_.end()) return it->second.identity;
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
    for (const auto& [handle, m] : modules_) modules.emplace_back(handle, m.binary);
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
    if (!drv.cuLibraryGetKernel || drv.cuLibraryGetKernel(&k, static_cast<CUlibrary>(const_cast<void*>(handle)), entry.c_str()) != CUDA_SUCCESS)
      continue;
    if (as_kernel ? reinterpret_cast<void*>(k) == reinterpret_cast<void*>(function) : false) return KernelIdentity{binary, entry};
    CUfunction f = nullptr;
    if (!as_kernel && drv.cuKernelGetFunction && drv.cuKernelGetFunction(&f, k) == CUDA_SUCCESS && f == function) return KernelIdentity{binary, entry};
  }
  if (!as_kernel) {
    CUmodule owner = nullptr;
    if (drv.cuFuncGetModule && drv.cuFuncGetModule(&owner, function) == CUDA_SUCCESS) {
      for (const auto& [handle, binary] : modules)
        if (handle == owner) return KernelIdentity{binary, entry};
    }
    for (const auto& [handle, binary] : modules) {
      CUfunction f = nullptr;
      if (drv.cuModuleGetFunction && drv.cuModuleGetFunction(&f, static_cast<CUmodule>(const_cast<void*>(handle)), entry.c_str()) == CUDA_SUCCESS &&
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
  for (const auto& [handle, m] : modules_)
    if (m.binary == id) return LoadedHandle{nullptr, static_cast<CUmodule>(const_cast<void*>(handle))};
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
