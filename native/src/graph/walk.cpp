#include "graph/walk.h"

#include <cstring>
#include <map>
#include <optional>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "binaries/registry.h"
#include "common/driver.h"
#include "common/error.h"
#include "common/log.h"
#include "graph/event_registry.h"
#include "graph/tensor_maps.h"
#include "region/registry.h"

namespace kiln {
namespace {

const char* node_type_name(CUgraphNodeType t) {
  switch (t) {
    case CU_GRAPH_NODE_TYPE_KERNEL: return "kernel";
    case CU_GRAPH_NODE_TYPE_MEMCPY: return "memcpy";
    case CU_GRAPH_NODE_TYPE_MEMSET: return "memset";
    case CU_GRAPH_NODE_TYPE_HOST: return "host";
    case CU_GRAPH_NODE_TYPE_GRAPH: return "child graph";
    case CU_GRAPH_NODE_TYPE_EMPTY: return "empty";
    case CU_GRAPH_NODE_TYPE_WAIT_EVENT: return "event wait";
    case CU_GRAPH_NODE_TYPE_EVENT_RECORD: return "event record";
    case CU_GRAPH_NODE_TYPE_EXT_SEMAS_SIGNAL: return "external semaphore signal";
    case CU_GRAPH_NODE_TYPE_EXT_SEMAS_WAIT: return "external semaphore wait";
    case CU_GRAPH_NODE_TYPE_MEM_ALLOC: return "memory allocation";
    case CU_GRAPH_NODE_TYPE_MEM_FREE: return "memory free";
    case CU_GRAPH_NODE_TYPE_BATCH_MEM_OP: return "batch memory operation";
    case CU_GRAPH_NODE_TYPE_CONDITIONAL: return "conditional";
    default: return "unknown";
  }
}

// Launch attributes a kernel node can carry that a restore copies onto the rebuilt node.
constexpr CUlaunchAttributeID kCopiedAttributes[] = {
    CU_LAUNCH_ATTRIBUTE_ACCESS_POLICY_WINDOW,         CU_LAUNCH_ATTRIBUTE_COOPERATIVE,
    CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION,            CU_LAUNCH_ATTRIBUTE_CLUSTER_SCHEDULING_POLICY_PREFERENCE,
    CU_LAUNCH_ATTRIBUTE_PRIORITY,                     CU_LAUNCH_ATTRIBUTE_MEM_SYNC_DOMAIN_MAP,
    CU_LAUNCH_ATTRIBUTE_MEM_SYNC_DOMAIN,              CU_LAUNCH_ATTRIBUTE_PREFERRED_CLUSTER_DIMENSION,
    CU_LAUNCH_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT, CU_LAUNCH_ATTRIBUTE_NVLINK_UTIL_CENTRIC_SCHEDULING,
};
// Every attribute id the headers define is read; one set to anything but its default that
// kiln does not copy (an event-carrying attribute, a device-updatable node, an id newer than
// this list) makes the graph non-persistable.
constexpr unsigned kLastAttribute = CU_LAUNCH_ATTRIBUTE_NVLINK_UTIL_CENTRIC_SCHEDULING;

bool copied_attribute(unsigned id) {
  for (CUlaunchAttributeID c : kCopiedAttributes)
    if (static_cast<unsigned>(c) == id) return true;
  return false;
}

const char* attribute_name(unsigned id) {
  switch (id) {
    case CU_LAUNCH_ATTRIBUTE_SYNCHRONIZATION_POLICY: return "SYNCHRONIZATION_POLICY";
    case CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION: return "PROGRAMMATIC_STREAM_SERIALIZATION";
    case CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_EVENT: return "PROGRAMMATIC_EVENT";
    case CU_LAUNCH_ATTRIBUTE_LAUNCH_COMPLETION_EVENT: return "LAUNCH_COMPLETION_EVENT";
    case CU_LAUNCH_ATTRIBUTE_DEVICE_UPDATABLE_KERNEL_NODE: return "DEVICE_UPDATABLE_KERNEL_NODE";
    default: return "unknown";
  }
}

// Function attributes set by the application (not fixed at compile time).
constexpr CUfunction_attribute kFunctionAttributes[] = {
    CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
    CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT,
    CU_FUNC_ATTRIBUTE_NON_PORTABLE_CLUSTER_SIZE_ALLOWED,
    CU_FUNC_ATTRIBUTE_CLUSTER_SCHEDULING_POLICY_PREFERENCE,
};

// Parameter layouts by kernel identity, shared by every walk: a layout costs a driver call
// per parameter and depends only on the kernel, which (binary, entry) names by content, so
// entries stay right across unloads and handle reuse. Only layouts read without error are kept.
class LayoutCache {
 public:
  static LayoutCache& instance() {
    static LayoutCache* cache = new LayoutCache();  // never destroyed: walks may run at exit
    return *cache;
  }

  bool find(uint32_t binary, const std::string& entry, std::vector<ParamSlot>* out) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = layouts_.find({binary, entry});
    if (it == layouts_.end()) return false;
    *out = it->second;
    return true;
  }

  void store(uint32_t binary, const std::string& entry, const std::vector<ParamSlot>& layout) {
    std::lock_guard<std::mutex> lock(mu_);
    layouts_.emplace(std::make_pair(binary, entry), layout);
  }

 private:
  mutable std::mutex mu_;
  std::map<std::pair<uint32_t, std::string>, std::vector<ParamSlot>> layouts_;
};

class Walker {
 public:
  Walker(const DriverTable& drv, const Region* region) : drv_(drv), region_(region) {}

  GraphDesc run(CUgraph graph) {
    size_t n = 0;
    check(drv_.cuGraphGetNodes(graph, nullptr, &n), "cuGraphGetNodes");
    nodes_.resize(n);
    if (n) check(drv_.cuGraphGetNodes(graph, nodes_.data(), &n), "cuGraphGetNodes");
    for (size_t i = 0; i < n; ++i) index_[nodes_[i]] = static_cast<uint32_t>(i);

    size_t m = 0;
    check(drv_.cuGraphGetEdges(graph, nullptr, nullptr, nullptr, &m), "cuGraphGetEdges");
    std::vector<CUgraphNode> from(m), to(m);
    std::vector<CUgraphEdgeData> data(m);
    if (m) check(drv_.cuGraphGetEdges(graph, from.data(), to.data(), data.data(), &m), "cuGraphGetEdges");
    for (size_t e = 0; e < m; ++e)
      desc_.edges.push_back({index_.at(from[e]), index_.at(to[e]), data[e].from_port, data[e].to_port, data[e].type});

    desc_.nodes.resize(n);
    for (size_t i = 0; i < n; ++i) walk_node(static_cast<uint32_t>(i));
    check_events(graph);
    desc_.event_count = static_cast<uint32_t>(events_.size());
    return std::move(desc_);
  }

 private:
  std::string kernel_name(const void* handle) const {
    if (auto id = BinaryRegistry::instance().identify(handle)) return id->entry;
    const char* name = nullptr;
    if (drv_.cuFuncGetName && drv_.cuFuncGetName(&name, (CUfunction)handle) == CUDA_SUCCESS && name) return name;
    if (drv_.cuKernelGetName && drv_.cuKernelGetName(&name, (CUkernel)handle) == CUDA_SUCCESS && name) return name;
    return "<unnamed kernel>";
  }

  // What kiln saw of a kernel it cannot name by binary: whether the driver knows its
  // module, and how many binaries kiln recorded while enabled.
  std::string unknown_kernel_message(const void* handle, CUfunction func, uint32_t node) const {
    std::string module = "the driver names no module for it";
    CUmodule owner = nullptr;
    if (func && drv_.cuFuncGetModule && drv_.cuFuncGetModule(&owner, func) == CUDA_SUCCESS && owner)
      module = format("its module 0x%llx was loaded through no driver call kiln saw", (unsigned long long)owner);
    return format("kernel %s (graph node %u) comes from a binary kiln did not record: %s (%zu binaries recorded "
                  "while kiln was enabled). A binary loaded before kiln was enabled, or by code that reaches the "
                  "driver neither through dlsym, cuGetProcAddress nor the exported driver symbols, is unknown "
                  "to kiln",
                  kernel_name(handle).c_str(), node, module.c_str(), BinaryRegistry::instance().count());
  }

  // "between kernels A and B": where an unsupported node sits, for the error message.
  std::string neighbourhood(uint32_t i) const {
    std::string before, after;
    for (const Edge& e : desc_.edges) {
      if (e.to == i && before.empty() && desc_.nodes[e.from].type == NodeType::kernel &&
          !desc_.nodes[e.from].kernel.entry().empty())
        before = desc_.nodes[e.from].kernel.entry();
      if (e.from == i && after.empty()) after = "node " + std::to_string(e.to);
    }
    std::string out;
    if (!before.empty()) out += ", after kernel " + before;
    if (!after.empty()) out += ", before " + after;
    return out;
  }

  void require_in_region(uint64_t addr, const std::string& what) const {
    if (!region_ || !region_->contains(addr))
      throw Error(ErrorKind::external_pointer,
                  format("%s uses address 0x%llx, outside the kiln region%s", what.c_str(), (unsigned long long)addr,
                         region_ ? "" : " (no region is open on this device)"));
  }

  bool is_device_memory(uint64_t word) const {
    if (word < 0x10000 || word >= (1ULL << 57)) return false;  // cannot be a device address
    unsigned int type = 0;
    return drv_.cuPointerGetAttribute(&type, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, word) == CUDA_SUCCESS;
  }

  // The kernel node being walked and its shape, filled before the node shares it.
  struct Walking {
    KernelNode& k;
    KernelShape& shape;
  };

  void audit_word(Walking& w, uint32_t node, uint32_t offset, int param) {
    KernelNode& k = w.k;
    uint64_t word;
    std::memcpy(&word, k.args.data() + offset, 8);
    if (region_ && region_->contains(word)) {
      // A word inside the region that no live allocation covers at capture is a value that
      // only looks like an address (vLLM qwen3-8b's FlashAttention 3 parameters held the
      // odd 0x601200000001): addresses are never reused, so the graph cannot read there.
      // Recording it would make LOAD demand memory that SAVE never had.
      if (region_->is_live(word)) {
        k.region_pointers.push_back({offset, word});
      } else {
        KILN_DEBUG("kernel %s (graph node %u) byte %u: 0x%llx lies in the region but nothing is allocated there; "
                   "not a pointer",
                   w.shape.entry.c_str(), node, offset, (unsigned long long)word);
      }
    } else if (is_device_memory(word)) {
      throw Error(ErrorKind::external_pointer,
                  format("kernel %s (graph node %u): argument %d (byte %u) holds 0x%llx, which points into device "
                         "memory outside the kiln region; allocate that buffer while the region is active",
                         w.shape.entry.c_str(), node, param, offset, (unsigned long long)word));
    }
  }

  void read_layout(KernelShape& k, const CUDA_KERNEL_NODE_PARAMS& p) {
    LayoutCache& cache = LayoutCache::instance();
    if (cache.find(k.binary, k.entry, &k.params)) return;
    read_layout_from_driver(k, p);
    cache.store(k.binary, k.entry, k.params);
  }

  void read_layout_from_driver(KernelShape& k, const CUDA_KERNEL_NODE_PARAMS& p) {
    for (size_t idx = 0;; ++idx) {
      size_t off = 0, size = 0;
      CUresult r = CUDA_ERROR_INVALID_HANDLE;
      if (p.func) r = drv_.cuFuncGetParamInfo(p.func, idx, &off, &size);
      if (r == CUDA_ERROR_INVALID_HANDLE && drv_.cuKernelGetParamInfo)
        r = drv_.cuKernelGetParamInfo(p.func ? (CUkernel)p.func : p.kern, idx, &off, &size);
      if (r == CUDA_ERROR_INVALID_VALUE) break;  // past the last parameter
      if (r != CUDA_SUCCESS)
        throw Error(ErrorKind::non_persistable,
                    format("kernel %s: cannot read its parameter layout (%s)", k.entry.c_str(),
                           describe_result("cuFuncGetParamInfo", r).c_str()));
      if (off > (1u << 20) || size > (1u << 20))
        throw Error(ErrorKind::non_persistable, format("kernel %s: implausible parameter layout", k.entry.c_str()));
      k.params.push_back({static_cast<uint32_t>(off), static_cast<uint32_t>(size)});
    }
  }

  void read_arguments(Walking& w, uint32_t node, const CUDA_KERNEL_NODE_PARAMS& p) {
    KernelNode& k = w.k;
    KernelShape& shape = w.shape;
    if (p.kernelParams) {
      read_layout(shape, p);
      size_t total = 0;
      for (const ParamSlot& s : shape.params) total = std::max<size_t>(total, s.offset + s.size);
      k.args.assign(total, 0);
      for (size_t i = 0; i < shape.params.size(); ++i)
        std::memcpy(k.args.data() + shape.params[i].offset, p.kernelParams[i], shape.params[i].size);
      for (size_t i = 0; i < shape.params.size(); ++i) {
        const ParamSlot& s = shape.params[i];
        for (uint32_t off = (s.offset + 7) / 8 * 8; off + 8 <= s.offset + s.size; off += 8)
          audit_word(w, node, off, static_cast<int>(i));
      }
    } else if (p.extra) {
      const void* buffer = nullptr;
      size_t size = 0;
      for (int i = 0; i < 16 && p.extra[i] != CU_LAUNCH_PARAM_END; i += 2) {
        if (p.extra[i] == CU_LAUNCH_PARAM_BUFFER_POINTER) buffer = p.extra[i + 1];
        else if (p.extra[i] == CU_LAUNCH_PARAM_BUFFER_SIZE) size = *static_cast<size_t*>(p.extra[i + 1]);
        else
          throw Error(ErrorKind::non_persistable,
                      format("kernel %s: unknown `extra` launch option", shape.entry.c_str()));
      }
      if (size && !buffer)
        throw Error(ErrorKind::non_persistable, format("kernel %s: `extra` without a buffer", shape.entry.c_str()));
      shape.extra_buffer = true;
      k.args.assign(static_cast<const uint8_t*>(buffer), static_cast<const uint8_t*>(buffer) + size);
      for (uint32_t off = 0; off + 8 <= size; off += 8) audit_word(w, node, off, -1);
    }
    audit_tensor_maps(w, node);
  }

  // A tensor map made while kiln ran, found among the arguments by its bytes: the address
  // it encodes is audited like a pointer argument. Inside the region it must be live and
  // appear as a plain word of the map, which the word audit recorded (LOAD checks it is
  // backed); outside, device memory is refused.
  void audit_tensor_maps(Walking& w, uint32_t node) {
    TensorMapRegistry& maps = TensorMapRegistry::instance();
    KernelNode& k = w.k;
    if (k.args.size() < kTensorMapBytes || maps.size() == 0) return;
    for (size_t off = 0; off + kTensorMapBytes <= k.args.size(); off += kTensorMapAlign) {
      std::optional<uint64_t> address = maps.address_of(k.args.data() + off);
      if (!address || *address == 0) continue;
      std::string what = format("kernel %s (graph node %u): the tensor map at argument byte %zu", w.shape.entry.c_str(),
                                node, off);
      if (!region_ || !region_->contains(*address)) {
        if (is_device_memory(*address))
          throw Error(ErrorKind::external_pointer,
                      format("%s encodes 0x%llx, which points into device memory outside the kiln region; allocate "
                             "that buffer while the region is active",
                             what.c_str(), (unsigned long long)*address));
        continue;
      }
      if (!region_->is_live(*address))
        throw Error(ErrorKind::non_persistable,
                    format("%s encodes 0x%llx, in the kiln region but not in a live allocation", what.c_str(),
                           (unsigned long long)*address));
      bool recorded = false;
      for (const RegionPointer& p : k.region_pointers)
        recorded |= p.arg_offset >= off && p.arg_offset + 8 <= off + kTensorMapBytes && p.address == *address;
      if (!recorded)
        throw Error(ErrorKind::non_persistable,
                    format("%s encodes 0x%llx in a form kiln cannot record as a pointer", what.c_str(),
                           (unsigned long long)*address));
    }
  }

  void read_attributes(KernelShape& k, uint32_t index, CUgraphNode node, CUfunction function) {
    for (unsigned id = 1; id <= kLastAttribute; ++id) {
      CUlaunchAttributeValue v;
      std::memset(&v, 0, sizeof v);
      CUresult r = drv_.cuGraphKernelNodeGetAttribute(node, static_cast<CUlaunchAttributeID>(id), &v);
      // INVALID_VALUE: an id kernel nodes do not carry (stream-only, launch-only, undefined).
      if (r == CUDA_ERROR_INVALID_VALUE || r == CUDA_ERROR_NOT_SUPPORTED) continue;
      if (r != CUDA_SUCCESS)
        throw Error(ErrorKind::non_persistable,
                    format("kernel %s (graph node %u): cannot read launch attribute %u (%s)", k.entry.c_str(), index,
                           id, describe_result("cuGraphKernelNodeGetAttribute", r).c_str()));
      static const uint8_t zero[sizeof v] = {};
      if (std::memcmp(&v, zero, sizeof v) == 0) continue;
      if (!copied_attribute(id))
        throw Error(ErrorKind::non_persistable,
                    format("kernel %s (graph node %u) carries launch attribute %s (id %u), which kiln does not "
                           "restore",
                           k.entry.c_str(), index, attribute_name(id), id));
      if (id == CU_LAUNCH_ATTRIBUTE_ACCESS_POLICY_WINDOW && v.accessPolicyWindow.base_ptr)
        require_in_region(reinterpret_cast<uint64_t>(v.accessPolicyWindow.base_ptr),
                          "kernel " + k.entry + ": access policy window");
      LaunchAttribute a{id, {}};
      std::memcpy(a.value, &v, sizeof a.value);
      k.attributes.push_back(a);
    }
    if (!function) return;
    for (CUfunction_attribute attr : kFunctionAttributes) {
      int value = 0;
      if (drv_.cuFuncGetAttribute(&value, attr, function) == CUDA_SUCCESS)
        k.function_attributes.push_back({static_cast<int32_t>(attr), value});
    }
  }

  void walk_kernel(uint32_t i) {
    CUDA_KERNEL_NODE_PARAMS p;
    std::memset(&p, 0, sizeof p);
    check(drv_.cuGraphKernelNodeGetParams(nodes_[i], &p), "cuGraphKernelNodeGetParams");
    KernelNode& k = desc_.nodes[i].kernel;
    KernelShape shape;
    const void* handle = p.func ? static_cast<const void*>(p.func) : static_cast<const void*>(p.kern);
    auto id = BinaryRegistry::instance().identify_with_driver(
        p.func ? p.func : reinterpret_cast<CUfunction>(p.kern));
    if (!id) throw Error(ErrorKind::unknown_kernel, unknown_kernel_message(handle, p.func, i));
    shape.binary = id->binary;
    shape.entry = id->entry;
    k.grid[0] = p.gridDimX, k.grid[1] = p.gridDimY, k.grid[2] = p.gridDimZ;
    k.block[0] = p.blockDimX, k.block[1] = p.blockDimY, k.block[2] = p.blockDimZ;
    k.shared_mem = p.sharedMemBytes;
    Walking w{k, shape};
    read_arguments(w, i, p);
    CUfunction function = p.func;
    if (!function && p.kern && drv_.cuKernelGetFunction) drv_.cuKernelGetFunction(&function, p.kern);
    read_attributes(shape, i, nodes_[i], function);
    k.shape = std::make_shared<const KernelShape>(std::move(shape));
  }

  void walk_memset(uint32_t i) {
    CUDA_MEMSET_NODE_PARAMS p;
    std::memset(&p, 0, sizeof p);
    check(drv_.cuGraphMemsetNodeGetParams(nodes_[i], &p), "cuGraphMemsetNodeGetParams");
    require_in_region(p.dst, format("memset node %u", i));
    desc_.nodes[i].memset = {p.dst, p.pitch, p.width, p.height, p.value, p.elementSize};
  }

  void walk_memcpy(uint32_t i) {
    CUDA_MEMCPY3D p;
    std::memset(&p, 0, sizeof p);
    check(drv_.cuGraphMemcpyNodeGetParams(nodes_[i], &p), "cuGraphMemcpyNodeGetParams");
    auto device_side = [](CUmemorytype t) { return t == CU_MEMORYTYPE_DEVICE || t == CU_MEMORYTYPE_UNIFIED; };
    if (!device_side(p.srcMemoryType) || !device_side(p.dstMemoryType) || p.srcArray || p.dstArray)
      throw Error(ErrorKind::non_persistable,
                  format("memcpy node %u copies to or from host memory or a CUDA array; only device-to-device "
                         "copies can be persisted%s",
                         i, neighbourhood(i).c_str()));
    require_in_region(p.srcDevice, format("memcpy node %u (source)", i));
    require_in_region(p.dstDevice, format("memcpy node %u (destination)", i));
    desc_.nodes[i].memcpy = {p.srcDevice,   p.srcXInBytes, p.srcY,   p.srcZ,         p.srcPitch,
                             p.srcHeight,   p.dstDevice,   p.dstXInBytes, p.dstY,    p.dstZ,
                             p.dstPitch,    p.dstHeight,   p.WidthInBytes, p.Height, p.Depth};
  }

  uint32_t event_index(CUevent ev, uint32_t node, bool record) {
    auto [it, inserted] = events_.emplace(ev, static_cast<uint32_t>(events_.size()));
    EventUse& use = event_uses_[ev];
    (record ? use.record_node : use.wait_node) = node;
    return it->second;
  }

  // A restored graph gets private events: faithful only when the graph both records and
  // waits on each of its events and nothing else (eager code, another graph) uses them.
  void check_events(CUgraph graph) {
    for (const auto& [ev, use] : event_uses_) {
      uint32_t node = use.record_node != kNone ? use.record_node : use.wait_node;
      std::string where = format("graph node %u (event %s)", node, use.record_node != kNone ? "record" : "wait");
      if (use.record_node == kNone || use.wait_node == kNone)
        throw Error(ErrorKind::non_persistable,
                    format("%s: the graph %s an event it never %s, so it synchronises with code outside the graph; a "
                           "restored graph gets private events and would lose that synchronisation%s",
                           where.c_str(), use.record_node == kNone ? "waits on" : "records",
                           use.record_node == kNone ? "records" : "waits on", neighbourhood(node).c_str()));
      EventRegistry::instance().claim(ev, graph, where);
    }
  }

  void walk_node(uint32_t i) {
    CUgraphNodeType t;
    check(drv_.cuGraphNodeGetType(nodes_[i], &t), "cuGraphNodeGetType");
    Node& node = desc_.nodes[i];
    switch (t) {
      case CU_GRAPH_NODE_TYPE_KERNEL: node.type = NodeType::kernel; walk_kernel(i); break;
      case CU_GRAPH_NODE_TYPE_MEMSET: node.type = NodeType::memset; walk_memset(i); break;
      case CU_GRAPH_NODE_TYPE_MEMCPY: node.type = NodeType::memcpy; walk_memcpy(i); break;
      case CU_GRAPH_NODE_TYPE_EMPTY: node.type = NodeType::empty; break;
      case CU_GRAPH_NODE_TYPE_EVENT_RECORD: {
        CUevent ev;
        check(drv_.cuGraphEventRecordNodeGetEvent(nodes_[i], &ev), "cuGraphEventRecordNodeGetEvent");
        node.type = NodeType::event_record;
        node.event = event_index(ev, i, true);
        break;
      }
      case CU_GRAPH_NODE_TYPE_WAIT_EVENT: {
        CUevent ev;
        check(drv_.cuGraphEventWaitNodeGetEvent(nodes_[i], &ev), "cuGraphEventWaitNodeGetEvent");
        node.type = NodeType::event_wait;
        node.event = event_index(ev, i, false);
        break;
      }
      default:
        throw Error(ErrorKind::non_persistable,
                    format("graph node %u is a %s node (type %d), which kiln cannot persist%s", i, node_type_name(t),
                           static_cast<int>(t), neighbourhood(i).c_str()));
    }
  }

  const DriverTable& drv_;
  const Region* region_;
  GraphDesc desc_;
  std::vector<CUgraphNode> nodes_;
  std::unordered_map<CUgraphNode, uint32_t> index_;
  std::unordered_map<CUevent, uint32_t> events_;
  static constexpr uint32_t kNone = ~0u;
  struct EventUse {
    uint32_t record_node = kNone, wait_node = kNone;
  };
  std::map<CUevent, EventUse> event_uses_;  // ordered: the first refusal does not depend on hashing
};

}  // namespace

GraphDesc walk_graph(CUgraph graph, int device) {
  const DriverTable& drv = driver();
  return RegionRegistry::instance().with_device(device, [&](Region* region) { return Walker(drv, region).run(graph); });
}

}  // namespace kiln
