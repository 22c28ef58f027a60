#include "graph/desc.h"

#include <algorithm>
#include <cstring>
#include <iterator>
#include <set>
#include <type_traits>

namespace kiln {

const KernelShape& empty_kernel_shape() {
  static const KernelShape empty;
  return empty;
}

KernelNode::KernelNode(const KernelNode& other, const NodeAllocator& a)
    : shape(other.shape),
      shared_mem(other.shared_mem),
      args(other.args.begin(), other.args.end(), a),
      region_pointers(other.region_pointers.begin(), other.region_pointers.end(), a) {
  std::copy(std::begin(other.grid), std::end(other.grid), grid);
  std::copy(std::begin(other.block), std::end(other.block), block);
}

Node::Node(const Node& other, const NodeAllocator& a) : type(other.type), kernel(other.kernel, a) {
  static_assert(std::is_trivially_copyable_v<MemcpyNode> && sizeof(MemcpyNode) >= sizeof(MemsetNode) &&
                sizeof(MemcpyNode) >= sizeof(uint32_t));
  std::memcpy(&memcpy, &other.memcpy, sizeof memcpy);  // the whole union, whichever member it holds
}

GraphDesc::GraphDesc(const GraphDesc& other) : nodes(other.nodes), edges(other.edges), event_count(other.event_count) {}

GraphDesc& GraphDesc::operator=(const GraphDesc& other) {
  if (this != &other) *this = GraphDesc(other);
  return *this;
}

GraphDesc& GraphDesc::operator=(GraphDesc&& other) noexcept {
  nodes = std::move(other.nodes);  // first: the old nodes release into the old arena
  edges = std::move(other.edges);
  event_count = other.event_count;
  arena = std::move(other.arena);
  return *this;
}

std::shared_ptr<std::pmr::memory_resource> GraphDesc::make_arena(size_t bytes) {
  return std::make_shared<std::pmr::monotonic_buffer_resource>(std::max<size_t>(bytes, 4096));
}

size_t GraphDesc::kernel_count() const {
  size_t n = 0;
  for (const Node& node : nodes) n += node.type == NodeType::kernel;
  return n;
}

std::vector<uint32_t> GraphDesc::binaries() const {
  std::set<uint32_t> ids;
  for (const Node& node : nodes)
    if (node.type == NodeType::kernel) ids.insert(node.kernel.binary());
  return {ids.begin(), ids.end()};
}

}  // namespace kiln
