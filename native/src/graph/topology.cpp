#include "graph/topology.h"

#include <algorithm>
#include <cstring>
#include <tuple>

namespace kiln {
namespace {

class Writer {
 public:
  template <typename T>
  void put(const T& v) {
    out_.append(reinterpret_cast<const char*>(&v), sizeof v);
  }
  void bytes(const void* p, size_t n) { out_.append(static_cast<const char*>(p), n); }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

bool one_dimensional(const MemcpyNode& c) { return c.height <= 1 && c.depth <= 1; }

}  // namespace

std::string topology_signature(const GraphDesc& desc) {
  Writer w;
  w.put(static_cast<uint64_t>(desc.nodes.size()));
  w.put(desc.event_count);
  for (const Node& n : desc.nodes) {
    w.put(static_cast<uint8_t>(n.type));
    switch (n.type) {
      case NodeType::kernel:
        w.put(static_cast<uint32_t>(n.kernel.attributes.size()));
        for (const LaunchAttribute& a : n.kernel.attributes) {
          w.put(a.id);
          w.bytes(a.value, sizeof a.value);
        }
        break;
      case NodeType::memset: {
        const MemsetNode& m = n.memset;
        w.put(m.pitch), w.put(m.width), w.put(m.height), w.put(m.value), w.put(m.element_size);
        break;
      }
      case NodeType::memcpy: {
        const MemcpyNode& c = n.memcpy;
        // Only the addresses of 1-D copies can be updated in an exec.
        MemcpyNode shape = c;
        if (one_dimensional(c)) shape.src = shape.dst = 0;
        w.bytes(&shape, sizeof shape);
        break;
      }
      case NodeType::event_record:
      case NodeType::event_wait: w.put(n.event); break;
      case NodeType::empty: break;
    }
  }
  std::vector<Edge> edges = desc.edges;
  std::sort(edges.begin(), edges.end(), [](const Edge& a, const Edge& b) {
    return std::tie(a.from, a.to, a.from_port, a.to_port, a.type) < std::tie(b.from, b.to, b.from_port, b.to_port, b.type);
  });
  w.put(static_cast<uint64_t>(edges.size()));
  for (const Edge& e : edges) w.put(e.from), w.put(e.to), w.put(e.from_port), w.put(e.to_port), w.put(e.type);
  return w.take();
}

bool node_params_differ(const Node& a, const Node& b) {
  switch (a.type) {
    case NodeType::kernel: {
      const KernelNode &x = a.kernel, &y = b.kernel;
      return x.binary != y.binary || x.entry != y.entry || std::memcmp(x.grid, y.grid, sizeof x.grid) != 0 ||
             std::memcmp(x.block, y.block, sizeof x.block) != 0 || x.shared_mem != y.shared_mem ||
             x.extra_buffer != y.extra_buffer || x.args != y.args;
    }
    case NodeType::memset: return a.memset.dst != b.memset.dst;
    case NodeType::memcpy: return a.memcpy.src != b.memcpy.src || a.memcpy.dst != b.memcpy.dst;
    default: return false;
  }
}

std::vector<uint32_t> differing_nodes(const GraphDesc& a, const GraphDesc& b) {
  std::vector<uint32_t> out;
  size_t n = std::min(a.nodes.size(), b.nodes.size());
  for (size_t i = 0; i < n; ++i)
    if (node_params_differ(a.nodes[i], b.nodes[i])) out.push_back(static_cast<uint32_t>(i));
  return out;
}

}  // namespace kiln
