#include "graph/topology.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <string_view>
#include <tuple>
#include <unordered_map>

#include "common/error.h"
#include "common/parallel.h"

namespace kiln {
namespace {

// Appends to `out` through a cursor: a signature is thousands of few-byte fields, and a
// string append per field cost more than the rest of the signature. The string grows ahead
// of the cursor and is cut back to it when the writer goes.
class Writer {
 public:
  explicit Writer(std::string& out) : out_(out), at_(out.size()) {}
  ~Writer() { out_.resize(at_); }
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  template <typename T>
  void put(const T& v) {
    bytes(&v, sizeof v);
  }
  void bytes(const void* p, size_t n) {
    if (n > out_.size() - at_) out_.resize(std::max(2 * out_.size(), at_ + n + 256));
    std::memcpy(&out_[at_], p, n);
    at_ += n;
  }

 private:
  std::string& out_;
  size_t at_;
};

bool one_dimensional(const MemcpyNode& c) { return c.height <= 1 && c.depth <= 1; }

void put_node_signature(Writer& w, const Node& n) {
  w.put(static_cast<uint8_t>(n.type));
  switch (n.type) {
    case NodeType::kernel:
      w.put(static_cast<uint32_t>(n.kernel.attributes().size()));
      for (const LaunchAttribute& a : n.kernel.attributes()) {
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

}  // namespace

void append_node_signature(std::string& out, const Node& node) {
  Writer w(out);
  put_node_signature(w, node);
}

bool same_node_signature(const Node& a, const Node& b) {
  if (a.type != b.type) return false;
  switch (a.type) {
    case NodeType::kernel: {
      if (a.kernel.shape == b.kernel.shape) return true;  // nodes decoded from one blob share shapes
      const auto &p = a.kernel.attributes(), &q = b.kernel.attributes();
      if (p.size() != q.size()) return false;
      for (size_t k = 0; k < p.size(); ++k)
        if (p[k].id != q[k].id || std::memcmp(p[k].value, q[k].value, sizeof p[k].value) != 0) return false;
      return true;
    }
    case NodeType::memset: {
      const MemsetNode &x = a.memset, &y = b.memset;
      return x.pitch == y.pitch && x.width == y.width && x.height == y.height && x.value == y.value &&
             x.element_size == y.element_size;
    }
    case NodeType::memcpy: {
      MemcpyNode x = a.memcpy, y = b.memcpy;
      if (one_dimensional(x)) x.src = x.dst = 0;
      if (one_dimensional(y)) y.src = y.dst = 0;
      return std::memcmp(&x, &y, sizeof x) == 0;
    }
    case NodeType::event_record:
    case NodeType::event_wait: return a.event == b.event;
    case NodeType::empty: return true;
  }
  return false;
}

namespace {

// A lambda, not a function: algorithms called a function pointer out of line.
constexpr auto edge_less = [](const Edge& a, const Edge& b) {
  return std::tie(a.from, a.to, a.from_port, a.to_port, a.type) <
         std::tie(b.from, b.to, b.from_port, b.to_port, b.type);
};

}  // namespace

std::vector<Edge> sorted_edges(const std::vector<Edge>& edges, size_t nodes) {
  std::vector<Edge> out;
  if (std::is_sorted(edges.begin(), edges.end(), edge_less)) return edges;
  bool in_range = true;
  for (const Edge& e : edges) in_range &= e.from < nodes;
  if (!in_range) {  // not a valid graph's edges: sorted all the same
    out = edges;
    std::sort(out.begin(), out.end(), edge_less);
    return out;
  }
  // Counting sort by `from`, then each node's few out-edges by the rest.
  std::vector<uint32_t> start(nodes + 1, 0);
  for (const Edge& e : edges) ++start[e.from + 1];
  for (size_t i = 0; i < nodes; ++i) start[i + 1] += start[i];
  out.resize(edges.size());
  std::vector<uint32_t> next(start.begin(), start.end() - 1);
  for (const Edge& e : edges) out[next[e.from]++] = e;
  for (size_t i = 0; i < nodes; ++i)
    if (start[i + 1] - start[i] > 1) std::sort(out.begin() + start[i], out.begin() + start[i + 1], edge_less);
  return out;
}

std::string topology_signature(const GraphDesc& desc) {
  // Captured edges may come in any order; a valid graph's sort in linear time.
  std::vector<Edge> sorted;
  const std::vector<Edge>* edges = &desc.edges;
  if (!std::is_sorted(desc.edges.begin(), desc.edges.end(), edge_less)) {
    sorted = sorted_edges(desc.edges, desc.nodes.size());
    edges = &sorted;
  }
  std::string out;
  out.reserve(16 + desc.nodes.size() * 5 + edges->size() * 11);
  {
    Writer w(out);
    w.put(static_cast<uint64_t>(desc.nodes.size()));
    w.put(desc.event_count);
    for (const Node& n : desc.nodes) put_node_signature(w, n);
    w.put(static_cast<uint64_t>(edges->size()));
    for (const Edge& e : *edges) w.put(e.from), w.put(e.to), w.put(e.from_port), w.put(e.to_port), w.put(e.type);
  }
  return out;
}

namespace {

const char* type_word(NodeType t) {
  switch (t) {
    case NodeType::kernel: return "kernel";
    case NodeType::memcpy: return "memcpy";
    case NodeType::memset: return "memset";
    case NodeType::empty: return "empty";
    case NodeType::event_wait: return "event wait";
    case NodeType::event_record: return "event record";
  }
  return "unknown";
}

std::string edge_summary(const GraphDesc& d) {
  size_t programmatic = 0;
  for (const Edge& e : d.edges) programmatic += !e.plain();
  return format("%zu edges, %zu programmatic", d.edges.size(), programmatic);
}

}  // namespace

std::string topology_difference(const GraphDesc& a, const GraphDesc& b) {
  if (topology_signature(a) == topology_signature(b)) return "";
  if (a.nodes.size() != b.nodes.size()) return format("%zu nodes against %zu", a.nodes.size(), b.nodes.size());
  if (a.event_count != b.event_count) return format("%u events against %u", a.event_count, b.event_count);
  for (size_t i = 0; i < a.nodes.size(); ++i) {
    const Node &x = a.nodes[i], &y = b.nodes[i];
    if (x.type != y.type) return format("node %zu is a %s node against a %s node", i, type_word(x.type), type_word(y.type));
    if (same_node_signature(x, y)) continue;
    if (x.type == NodeType::kernel) {
      const auto &p = x.kernel.attributes(), &q = y.kernel.attributes();
      for (size_t k = 0; k < std::max(p.size(), q.size()); ++k) {
        if (k >= p.size() || k >= q.size() || p[k].id != q[k].id)
          return format("node %zu (%s against %s): launch attributes differ in which are set", i,
                        x.kernel.entry().c_str(), y.kernel.entry().c_str());
        if (std::memcmp(p[k].value, q[k].value, sizeof p[k].value) != 0)
          return format("node %zu (%s against %s): launch attribute %u differs", i, x.kernel.entry().c_str(),
                        y.kernel.entry().c_str(), p[k].id);
      }
    }
    return format("node %zu (%s): its shape or operands differ", i, type_word(x.type));
  }
  return format("edges differ (%s against %s)", edge_summary(a).c_str(), edge_summary(b).c_str());
}

namespace {

// Whether an update must switch the function or the argument mode (a shared shape: neither).
bool function_differs(const KernelNode& x, const KernelNode& y) {
  if (x.shape == y.shape) return false;
  const KernelShape &p = x.info(), &q = y.info();
  return p.binary != q.binary || p.extra_buffer != q.extra_buffer || p.entry != q.entry;
}

}  // namespace

bool node_params_differ(const Node& a, const Node& b) {
  switch (a.type) {
    case NodeType::kernel: {
      const KernelNode &x = a.kernel, &y = b.kernel;
      return std::memcmp(x.grid, y.grid, sizeof x.grid) != 0 || std::memcmp(x.block, y.block, sizeof x.block) != 0 ||
             x.shared_mem != y.shared_mem || x.args != y.args || function_differs(x, y);
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

std::vector<size_t> group_by_signature(const std::vector<std::string>& signatures, const std::vector<size_t>& hashes,
                                       unsigned threads) {
  const size_t n = signatures.size();
  if (hashes.size() != n) throw Error(ErrorKind::restore, "group_by_signature: one hash per signature");
  std::vector<size_t> group_of(n), first_of;  // per graph its group; per group its first graph
  std::unordered_map<size_t, size_t> by_hash;
  for (size_t i = 0; i < n; ++i) {
    auto [it, fresh] = by_hash.emplace(hashes[i], first_of.size());
    if (fresh) first_of.push_back(i);
    group_of[i] = it->second;
  }
  // Confirmed on many threads: a signature is hundreds of KB, and most graphs share one.
  std::atomic<bool> collided{false};
  parallel_for(n, threads, [&](size_t i) {
    const size_t first = first_of[group_of[i]];
    if (first != i && signatures[i] != signatures[first]) collided.store(true);
  });
  if (!collided.load()) return group_of;
  std::map<std::string_view, size_t> by_signature;
  size_t groups = 0;
  for (size_t i = 0; i < n; ++i) {
    auto [it, fresh] = by_signature.emplace(signatures[i], groups);
    groups += fresh;
    group_of[i] = it->second;
  }
  return group_of;
}

}  // namespace kiln
