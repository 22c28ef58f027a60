#include "graph/desc.h"

#include <set>

namespace kiln {

size_t GraphDesc::kernel_count() const {
  size_t n = 0;
  for (const Node& node : nodes) n += node.type == NodeType::kernel;
  return n;
}

std::vector<uint32_t> GraphDesc::binaries() const {
  std::set<uint32_t> ids;
  for (const Node& node : nodes)
    if (node.type == NodeType::kernel) ids.insert(node.kernel.binary);
  return {ids.begin(), ids.end()};
}

}  // namespace kiln
