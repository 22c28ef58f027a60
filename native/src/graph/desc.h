// A captured graph as data: what an archive stores and what LOAD rebuilds from. Kernels are
// named by (binary slot, entry name); device addresses are raw (the region makes them
// deterministic) with every region pointer in kernel arguments listed for the LOAD check.
#pragma once

#include <cstdint>
#include <memory>
#include <memory_resource>
#include <string>
#include <vector>

namespace kiln {

enum class NodeType : uint8_t { kernel = 0, memcpy = 1, memset = 2, empty = 5, event_wait = 6, event_record = 7 };

struct ParamSlot {
  uint32_t offset;
  uint32_t size;
};

struct RegionPointer {
  uint32_t arg_offset;  // byte offset of the word in the argument bytes
  uint64_t address;
};

struct LaunchAttribute {
  uint32_t id;             // CUlaunchAttributeID
  uint8_t value[64];       // CUlaunchAttributeValue
};

struct FunctionAttribute {
  int32_t attribute;  // CUfunction_attribute
  int32_t value;
};

// What kernel nodes of one function launched the same way share: its name, parameter
// layout, launch and function attributes. A blob stores each once and the nodes decoded from
// it share one immutable copy (copying the names and layouts into every node made decoding
// allocate six times per node).
struct KernelShape {
  uint32_t binary = 0;  // registry id while saving, archive slot after decoding
  std::string entry;
  bool extra_buffer = false;        // arguments were one `extra` buffer, not kernelParams
  std::vector<ParamSlot> params;    // layout of the arguments (empty for an extra buffer)
  std::vector<LaunchAttribute> attributes;
  std::vector<FunctionAttribute> function_attributes;
};

const KernelShape& empty_kernel_shape();

// Where a node's variable-length parts live: a decoded graph's arena (GraphDesc::arena), or
// the heap (the default, and what every copy of a node uses).
using NodeAllocator = std::pmr::polymorphic_allocator<std::byte>;

struct KernelNode {
  KernelNode() = default;
  explicit KernelNode(const NodeAllocator& a) : args(a), region_pointers(a) {}
  KernelNode(const KernelNode& other, const NodeAllocator& a);  // a copy in `a`
  KernelNode(const KernelNode&) = default;                      // a copy on the heap
  KernelNode(KernelNode&&) = default;
  KernelNode& operator=(const KernelNode&) = default;
  KernelNode& operator=(KernelNode&&) = default;

  std::shared_ptr<const KernelShape> shape;  // set for every kernel node
  uint32_t grid[3] = {1, 1, 1};
  uint32_t block[3] = {1, 1, 1};
  uint32_t shared_mem = 0;
  std::pmr::vector<uint8_t> args;
  std::pmr::vector<RegionPointer> region_pointers;

  // The shape's fields; an empty shape when none is set yet, so no reader dereferences null.
  const KernelShape& info() const { return shape ? *shape : empty_kernel_shape(); }
  uint32_t binary() const { return info().binary; }
  const std::string& entry() const { return info().entry; }
  bool extra_buffer() const { return info().extra_buffer; }
  const std::vector<ParamSlot>& params() const { return info().params; }
  const std::vector<LaunchAttribute>& attributes() const { return info().attributes; }
  const std::vector<FunctionAttribute>& function_attributes() const { return info().function_attributes; }
};

struct MemsetNode {
  uint64_t dst, pitch, width, height;
  uint32_t value, element_size;
};

struct MemcpyNode {  // device-to-device only
  uint64_t src, src_x, src_y, src_z, src_pitch, src_height;
  uint64_t dst, dst_x, dst_y, dst_z, dst_pitch, dst_height;
  uint64_t width, height, depth;
};

struct Node {
  Node() = default;
  explicit Node(const NodeAllocator& a) : kernel(a) {}
  Node(const Node& other, const NodeAllocator& a);  // a copy in `a`
  Node(const Node&) = default;                      // a copy on the heap
  Node(Node&&) = default;
  Node& operator=(const Node&) = default;
  Node& operator=(Node&&) = default;

  NodeType type = NodeType::empty;
  KernelNode kernel;
  union {  // by `type`: no node reads another type's member (sharing their bytes saves 48 per node)
    MemcpyNode memcpy{};  // the largest: zeroes the others' bytes too
    MemsetNode memset;
    uint32_t event;  // index into the graph's events
  };
};

struct Edge {
  uint32_t from, to;
  uint8_t from_port, to_port, type;

  // A full dependency: no ports, no type (programmatic edges have them).
  bool plain() const { return from_port == 0 && to_port == 0 && type == 0; }
};

struct GraphDesc {
  // Decoding allocates every node's argument bytes and region pointers here, in a few large
  // blocks, instead of twice per node on the heap: parallel decoders growing their malloc
  // heaps in small steps contended in the kernel (on the H100 host, 8 decoders spent 3x the
  // CPU of one). Null for graphs built otherwise. Declared first: destroyed after the nodes
  // that point into it.
  std::shared_ptr<std::pmr::memory_resource> arena;
  std::vector<Node> nodes;
  std::vector<Edge> edges;
  uint32_t event_count = 0;

  GraphDesc() = default;
  GraphDesc(const GraphDesc& other);  // the copy's nodes live on the heap
  GraphDesc(GraphDesc&&) noexcept = default;
  GraphDesc& operator=(const GraphDesc& other);
  GraphDesc& operator=(GraphDesc&& other) noexcept;  // drops the old nodes before their arena

  // An arena for about `bytes` of node data, as `arena` holds.
  static std::shared_ptr<std::pmr::memory_resource> make_arena(size_t bytes);

  size_t kernel_count() const;
  // Distinct binary ids/slots used by kernel nodes, ascending.
  std::vector<uint32_t> binaries() const;
};

}  // namespace kiln
