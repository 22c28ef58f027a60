// A captured graph as data: what an archive stores and what LOAD rebuilds from. Kernels are
// named by (binary slot, entry name); device addresses are raw (the region makes them
// deterministic) with every region pointer in kernel arguments listed for the LOAD check.
#pragma once

#include <cstdint>
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

struct KernelNode {
  uint32_t binary = 0;  // registry id while saving, archive slot after decoding
  std::string entry;
  uint32_t grid[3] = {1, 1, 1};
  uint32_t block[3] = {1, 1, 1};
  uint32_t shared_mem = 0;
  bool extra_buffer = false;        // arguments were one `extra` buffer, not kernelParams
  std::vector<uint8_t> args;
  std::vector<ParamSlot> params;    // layout of `args` (empty for an extra buffer)
  std::vector<RegionPointer> region_pointers;
  std::vector<LaunchAttribute> attributes;
  std::vector<FunctionAttribute> function_attributes;
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
  NodeType type = NodeType::empty;
  KernelNode kernel;
  MemsetNode memset{};
  MemcpyNode memcpy{};
  uint32_t event = 0;  // index into the graph's events
};

struct Edge {
  uint32_t from, to;
  uint8_t from_port, to_port, type;

  // A full dependency: no ports, no type (programmatic edges have them).
  bool plain() const { return from_port == 0 && to_port == 0 && type == 0; }
};

struct GraphDesc {
  std::vector<Node> nodes;
  std::vector<Edge> edges;
  uint32_t event_count = 0;

  size_t kernel_count() const;
  // Distinct binary ids/slots used by kernel nodes, ascending.
  std::vector<uint32_t> binaries() const;
};

}  // namespace kiln
