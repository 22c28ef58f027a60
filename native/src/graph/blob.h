// The binary encoding of a GraphDesc inside an archive. Decoding treats its input as
// hostile: every count and length is checked against the bytes left before use.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "graph/desc.h"

namespace kiln {

std::vector<uint8_t> encode_graph(const GraphDesc& desc);

// Throws Error(corrupt) naming what is wrong; never reads outside [data, data+size).
GraphDesc decode_graph(const uint8_t* data, size_t size);

}  // namespace kiln
