// The binary encoding of a GraphDesc inside an archive. Decoding treats its input as
// hostile: every count and length is checked against the bytes left before use.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "graph/desc.h"

namespace kiln {

// An encoded graph in memory the caller keeps valid (typically the archive's mapping).
struct BlobView {
  const uint8_t* data;
  size_t size;
};

// A kernel a blob's nodes launch, as its shape table names it.
struct BlobKernel {
  uint32_t binary;
  std::string entry;
  std::vector<FunctionAttribute> function_attributes;
};

std::vector<uint8_t> encode_graph(const GraphDesc& desc);

// Throws Error(corrupt) naming what is wrong; never reads outside [data, data+size).
GraphDesc decode_graph(const uint8_t* data, size_t size);
// The kernels of a blob's shape table, read without decoding its nodes (a fraction of the
// bytes), so LOAD can start resolving kernels while the graphs decode. Same checks.
std::vector<BlobKernel> blob_kernels(const uint8_t* data, size_t size);

}  // namespace kiln
