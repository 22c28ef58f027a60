// Every kernel binary the process loads while kiln is enabled, and which module, library,
// function and kernel handles came from it. A kernel node in a captured graph names its
// kernel by handle; this registry turns the handle into (binary, entry name), which is
// what an archive can store.
#pragma once

#include <cuda.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "binaries/image.h"

namespace kiln {

struct BinaryRecord {
  uint32_t id;
  const uint8_t* data;         // static images are referenced in place, others copied
  size_t size;
  ImageKind kind;
  std::vector<uint8_t> owned;  // the copy, when not static
  std::string origin;          // the driver call (and file) it came from
};

struct KernelIdentity {
  uint32_t binary;
  std::string entry;
};

class BinaryRegistry {
 public:
  static BinaryRegistry& instance();

  // Record an image handed to the driver; returns its id (deduplicated).
  uint32_t record_image(const void* image, const char* origin);
  uint32_t record_file(const char* path, const char* origin);

  // Unloading a module or library forgets every handle obtained from it: the driver may
  // hand the same values to a later load of another binary. A load returning a handle still
  // on record means its unload went unseen (kiln disabled), and forgets the same.
  void on_module(CUmodule module, uint32_t binary);
  void on_library(CUlibrary library, uint32_t binary);
  void on_module_unload(CUmodule module);
  void on_library_unload(CUlibrary library);
  void on_module_function(CUfunction function, CUmodule module, const char* name);
  void on_library_kernel(CUkernel kernel, CUlibrary library, const char* name);
  void on_kernel_function(CUfunction function, CUkernel kernel);
  void on_library_module(CUmodule module, CUlibrary library);
  // The application obtained the address of a module global (__device__ / __constant__
  // data, e.g. through cudaMemcpyToSymbol): the binary is stateful. A copy kiln loads from
  // an archive would hold the image's initial values, so LOAD must use the application's
  // own module of that binary.
  void on_module_global(CUmodule module, const char* name);
  void on_library_global(CUlibrary library, const char* name);
  // The globals obtained from a binary so far, sorted; empty when none.
  std::vector<std::string> globals_of(uint32_t binary) const;

  // What a graph's kernel handle (CUfunction, or CUkernel used as one) refers to.
  std::optional<KernelIdentity> identify(const void* handle) const;
  // As identify, falling back to asking the driver for the function's module and name.
  // Answers the driver gave are remembered until the next unload (failures never are).
  std::optional<KernelIdentity> identify_with_driver(CUfunction function) const;

  // A live handle through which this process already loaded the binary, if any: LOAD
  // resolves kernels from it rather than loading a second copy (which would duplicate the
  // binary's __device__ globals).
  struct LoadedHandle {
    CUlibrary library = nullptr;
    CUmodule module = nullptr;
  };
  std::optional<LoadedHandle> loaded_handle(uint32_t id) const;

  // A copy of the record's metadata plus its bytes' location; throws for an unknown id.
  BinaryRecord view(uint32_t id) const;
  size_t count() const;

 private:
  // The module or library a handle was obtained from: its handles die with it. A module
  // from cuLibraryGetModule, and whatever is obtained through it, belongs to its library.
  struct Owner {
    const void* handle;
    bool library;
    bool operator==(const Owner& o) const { return handle == o.handle && library == o.library; }
  };
  struct OwnerHash {
    size_t operator()(const Owner& o) const { return std::hash<const void*>()(o.handle) ^ size_t(o.library); }
  };
  struct Owned {
    KernelIdentity identity;
    Owner owner;
  };
  struct OwnedModule {
    uint32_t binary;
    Owner owner;
  };
  using HandleSet = std::unordered_set<const void*>;
  struct Handles {  // what one owner handed out
    HandleSet modules, functions, kernels;
  };

  uint32_t add(const uint8_t* data, size_t size, ImageKind kind, bool is_static, const std::string& origin);
  // Under mu_: map[handle] = entry, listed under entry.owner's handles.
  template <typename Entry>
  void record(std::unordered_map<const void*, Entry>& map, HandleSet Handles::*set, const void* handle, Entry entry);
  // Under mu_: drop the owner and every entry still owned by it; false when none was on record.
  bool forget(const Owner& owner);
  // Under mu_: after forgetting, drop identify_with_driver's answers (they may name the
  // forgotten handles) and tell searches in flight not to store theirs.
  void forgot();
  // identify_with_driver's search, on snapshots of the handle maps (no lock held).
  static std::optional<KernelIdentity> search_driver(CUfunction function,
                                                     const std::vector<std::pair<const void*, uint32_t>>& libraries,
                                                     const std::vector<std::pair<const void*, uint32_t>>& modules);

  mutable std::mutex mu_;
  std::vector<std::unique_ptr<BinaryRecord>> records_;
  std::unordered_multimap<size_t, uint32_t> by_size_;  // dedupe candidates
  std::unordered_map<const void*, OwnedModule> modules_;
  std::unordered_map<const void*, uint32_t> libraries_;
  std::unordered_map<const void*, Owned> functions_;
  std::unordered_map<const void*, Owned> kernels_;
  // Which handles each live module or library handed out, so an unload drops exactly those:
  // one binary may be loaded through several live handles (records are deduplicated), and
  // the others' handles stay valid.
  std::unordered_map<Owner, Handles, OwnerHash> owned_;
  // identify_with_driver's answers: its search asks every recorded library for the name,
  // repeated for every graph node that carries the handle. Cleared on unload (a handle may
  // be reused); `unloads_` tells a search that raced with an unload not to store.
  mutable std::unordered_map<const void*, KernelIdentity> found_by_driver_;
  std::unordered_map<uint32_t, std::set<std::string>> globals_;  // by binary id
  uint64_t unloads_ = 0;
};

}  // namespace kiln
