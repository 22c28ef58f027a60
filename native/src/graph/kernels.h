// LOAD side: the kernel functions an archive's graphs launch, resolved once per
// (binary slot, entry name) from the binaries loaded for the archive (or the copies the
// application already loaded), with function attributes applied once at their maximum.
#pragma once

#include <cuda.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "graph/desc.h"

namespace kiln {

struct BinarySource {
  CUlibrary library = nullptr;  // loaded from the archive by kiln, or the app's own
  CUmodule module = nullptr;    // the app's own module
  bool owned = false;           // kiln loaded it and unloads it
};

class KernelTable {
 public:
  explicit KernelTable(std::vector<BinarySource> slots) : slots_(std::move(slots)) {}
  ~KernelTable();
  KernelTable(const KernelTable&) = delete;
  KernelTable& operator=(const KernelTable&) = delete;

  // Resolves every kernel of `desc` and raises function attributes to what it needs.
  void prepare(const GraphDesc& desc);
  CUfunction function(uint32_t slot, const std::string& entry) const;
  size_t size() const { return functions_.size(); }

 private:
  CUfunction resolve(uint32_t slot, const std::string& entry);

  std::vector<BinarySource> slots_;
  std::map<std::pair<uint32_t, std::string>, CUfunction> functions_;
  std::map<std::pair<CUfunction, int32_t>, int32_t> applied_;  // attribute values set so far
};

// Loads an image held in memory that outlives the library (an archive's mmap).
CUlibrary load_library(const uint8_t* data, size_t size);

}  // namespace kiln
