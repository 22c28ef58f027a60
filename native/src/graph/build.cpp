#include "graph/build.h"

#include <cstring>

#include "common/driver.h"
#include "common/error.h"
#include "region/mappings.h"
#include "region/registry.h"

namespace kiln {
namespace {

// A graph owned only until instantiation succeeded.
struct GraphGuard {
  CUgraph g = nullptr;
  ~GraphGuard() {
    if (g) driver().cuGraphDestroy(g);
  }
};

void check_backed(const GraphDesc& desc, int device) {
  RegionRegistry::instance().with_device(device, [&](Region* region) {
    // `what` names the operand only on failure: formatting it for every pointer of every
    // node cost more than the checks themselves.
    const MappingRegistry& mappings = MappingRegistry::instance();
    auto need = [&](uint64_t addr, uint64_t len, auto&& what) {
      uint64_t n = len ? len : 1;
      Owner library = region && region->contains(addr) ? region->owner_at(addr - region->base()) : Owner::engine;
      if (library != Owner::engine) {
        // A communication library's slot: the library, not kiln, maps its memory. Only a
        // mapping SAVE recorded for such pointers and LOAD's mapping check found again
        // (same library, class, offset and size) may back it.
        if (mappings.verified_covers(library, addr, n)) return;
        throw Error(ErrorKind::unmapped_range,
                    format("%s refers to [0x%llx, +%llu), in %s's slot of the region, where no %s mapping that "
                           "SAVE recorded for graph pointers and LOAD's mapping check verified lies",
                           what().c_str(), (unsigned long long)addr, (unsigned long long)len, owner_label(library),
                           owner_label(library)));
      }
      if (region && region->is_backed(addr, n)) return;
      throw Error(ErrorKind::unmapped_range,
                  format("%s refers to [0x%llx, +%llu), which is not backed by a live allocation in this process's "
                         "region; the allocations before LOAD differ from SAVE's",
                         what().c_str(), (unsigned long long)addr, (unsigned long long)len));
    };
    for (size_t i = 0; i < desc.nodes.size(); ++i) {
      const Node& n = desc.nodes[i];
      if (n.type == NodeType::kernel) {
        for (const RegionPointer& p : n.kernel.region_pointers)
          need(p.address, 1, [&] {
            return format("kernel %s (graph node %zu) argument byte %u", n.kernel.entry().c_str(), i, p.arg_offset);
          });
      } else if (n.type == NodeType::memset) {
        const MemsetNode& m = n.memset;
        uint64_t rows = m.height ? m.height : 1;
        need(m.dst, (rows - 1) * m.pitch + m.width * m.element_size, [&] { return format("memset node %zu", i); });
      } else if (n.type == NodeType::memcpy) {
        const MemcpyNode& c = n.memcpy;
        uint64_t depth = c.depth ? c.depth : 1, height = c.height ? c.height : 1;
        uint64_t src_rows = c.src_height ? c.src_height : height;
        uint64_t dst_rows = c.dst_height ? c.dst_height : height;
        uint64_t src = c.src + c.src_x + c.src_y * c.src_pitch + c.src_z * c.src_pitch * src_rows;
        uint64_t dst = c.dst + c.dst_x + c.dst_y * c.dst_pitch + c.dst_z * c.dst_pitch * dst_rows;
        uint64_t src_len = (depth - 1) * c.src_pitch * src_rows + (height - 1) * c.src_pitch + c.width;
        uint64_t dst_len = (depth - 1) * c.dst_pitch * dst_rows + (height - 1) * c.dst_pitch + c.width;
        need(src, src_len, [&] { return format("memcpy node %zu (source)", i); });
        need(dst, dst_len, [&] { return format("memcpy node %zu (destination)", i); });
      }
    }
    return 0;
  });
}

CUgraphNode add_kernel(const DriverTable& drv, CUgraph g, const KernelNode& k, CUfunction function) {
  KernelLaunchParams launch(k, function);  // the driver copies argument values when the node is added
  CUgraphNode node = nullptr;
  CUresult r = drv.cuGraphAddKernelNode(&node, g, nullptr, 0, &launch.params);
  if (r != CUDA_SUCCESS)
    throw Error(ErrorKind::restore,
                format("kernel %s: %s", k.entry().c_str(), describe_result("cuGraphAddKernelNode", r).c_str()), r);
  for (const LaunchAttribute& a : k.attributes()) {
    CUlaunchAttributeValue v;
    std::memcpy(&v, a.value, sizeof v);
    r = drv.cuGraphKernelNodeSetAttribute(node, static_cast<CUlaunchAttributeID>(a.id), &v);
    if (r != CUDA_SUCCESS)
      throw Error(ErrorKind::restore,
                  format("kernel %s: launch attribute %u: %s", k.entry().c_str(), a.id,
                         describe_result("cuGraphKernelNodeSetAttribute", r).c_str()),
                  r);
  }
  return node;
}

}  // namespace

KernelLaunchParams::KernelLaunchParams(const KernelNode& k, CUfunction function) {
  std::memset(&params, 0, sizeof params);
  params.func = function;
  params.gridDimX = k.grid[0], params.gridDimY = k.grid[1], params.gridDimZ = k.grid[2];
  params.blockDimX = k.block[0], params.blockDimY = k.block[1], params.blockDimZ = k.block[2];
  params.sharedMemBytes = k.shared_mem;
  void* args = const_cast<uint8_t*>(k.args.data());
  const KernelShape& shape = k.info();
  if (shape.extra_buffer) {
    extra_size = k.args.size();
    extra[0] = CU_LAUNCH_PARAM_BUFFER_POINTER, extra[1] = args;
    extra[2] = CU_LAUNCH_PARAM_BUFFER_SIZE, extra[3] = &extra_size, extra[4] = CU_LAUNCH_PARAM_END;
    params.extra = extra;
  } else if (!shape.params.empty()) {
    slots.reserve(shape.params.size());
    for (const ParamSlot& s : shape.params) slots.push_back(static_cast<uint8_t*>(args) + s.offset);
    params.kernelParams = slots.data();
  }
}

CUDA_MEMSET_NODE_PARAMS memset_params(const MemsetNode& m) {
  CUDA_MEMSET_NODE_PARAMS p;
  std::memset(&p, 0, sizeof p);
  p.dst = m.dst, p.pitch = m.pitch, p.value = m.value;
  p.elementSize = m.element_size, p.width = m.width, p.height = m.height;
  return p;
}

CUDA_MEMCPY3D memcpy_params(const MemcpyNode& c) {
  CUDA_MEMCPY3D p;
  std::memset(&p, 0, sizeof p);
  p.srcMemoryType = p.dstMemoryType = CU_MEMORYTYPE_DEVICE;
  p.srcDevice = c.src, p.srcXInBytes = c.src_x, p.srcY = c.src_y, p.srcZ = c.src_z;
  p.srcPitch = c.src_pitch, p.srcHeight = c.src_height;
  p.dstDevice = c.dst, p.dstXInBytes = c.dst_x, p.dstY = c.dst_y, p.dstZ = c.dst_z;
  p.dstPitch = c.dst_pitch, p.dstHeight = c.dst_height;
  p.WidthInBytes = c.width, p.Height = c.height, p.Depth = c.depth;
  return p;
}

BuiltGraph::~BuiltGraph() {
  try {
    const DriverTable& drv = driver();
    if (exec_) drv.cuGraphExecDestroy(exec_);
    if (graph_) drv.cuGraphDestroy(graph_);
    for (CUevent e : events_) drv.cuEventDestroy(e);
  } catch (const Error&) {
  }
}

void BuiltGraph::launch(CUstream stream) const { check(driver().cuGraphLaunch(exec_, stream), "cuGraphLaunch"); }

void BuiltGraph::upload(CUstream stream) const { check(driver().cuGraphUpload(exec_, stream), "cuGraphUpload"); }

void BuiltGraph::upload_and_wait() const {
  struct StreamGuard {
    CUstream s = nullptr;
    ~StreamGuard() {
      if (s) driver().cuStreamDestroy(s);
    }
  } stream;
  const DriverTable& drv = driver();
  check(drv.cuStreamCreate(&stream.s, CU_STREAM_NON_BLOCKING), "cuStreamCreate");
  check(drv.cuGraphUpload(exec_, stream.s), "cuGraphUpload");
  check(drv.cuStreamSynchronize(stream.s), "cuStreamSynchronize");
}

std::unique_ptr<BuiltGraph> build_graph(const GraphDesc& desc, KernelTable& kernels, int device, bool keep_topology,
                                        const KernelIndices* prepared, BuildTimes* times) {
  BuildTimes local;
  BuildTimes& t = times ? *times : local;
  t.begin = SteadyClock::now();
  const DriverTable& drv = driver();
  CUcontext ctx = nullptr;
  check(drv.cuCtxGetCurrent(&ctx), "cuCtxGetCurrent");
  // Without a current context a scratch probe on the H100 crashed in its graph calls.
  if (!ctx) throw Error(ErrorKind::restore, "build_graph: no CUDA context is current on the calling thread");
  check_backed(desc, device);
  KernelIndices own;
  if (!prepared) own = kernels.prepare(desc);
  const std::vector<uint32_t>& kernel_of = (prepared ? *prepared : own).of_node;
  if (kernel_of.size() != desc.nodes.size())
    throw Error(ErrorKind::restore, "build_graph: kernel indices of another graph");
  kernels.check_arguments(desc, kernel_of);  // before any argument bytes reach the driver
  t.checked = SteadyClock::now();
  GraphGuard graph;
  check(drv.cuGraphCreate(&graph.g, 0), "cuGraphCreate");

  std::vector<CUevent> events(desc.event_count, nullptr);
  struct EventGuard {
    std::vector<CUevent>& ev;
    bool keep = false;
    ~EventGuard() {
      if (!keep)
        for (CUevent e : ev)
          if (e) driver().cuEventDestroy(e);
    }
  } event_guard{events};
  for (CUevent& e : events) check(drv.cuEventCreate(&e, CU_EVENT_DISABLE_TIMING), "cuEventCreate");

  bool priorities = false;
  std::vector<CUgraphNode> nodes(desc.nodes.size());
  for (size_t i = 0; i < desc.nodes.size(); ++i) {
    const Node& n = desc.nodes[i];
    CUgraphNode& out = nodes[i];
    switch (n.type) {
      case NodeType::kernel:
        out = add_kernel(drv, graph.g, n.kernel, kernels.function(kernel_of[i]));
        for (const LaunchAttribute& a : n.kernel.attributes()) priorities |= a.id == CU_LAUNCH_ATTRIBUTE_PRIORITY;
        break;
      case NodeType::memset: {
        CUDA_MEMSET_NODE_PARAMS p = memset_params(n.memset);
        check(drv.cuGraphAddMemsetNode(&out, graph.g, nullptr, 0, &p, ctx), "cuGraphAddMemsetNode");
        break;
      }
      case NodeType::memcpy: {
        CUDA_MEMCPY3D p = memcpy_params(n.memcpy);
        check(drv.cuGraphAddMemcpyNode(&out, graph.g, nullptr, 0, &p, ctx), "cuGraphAddMemcpyNode");
        break;
      }
      case NodeType::empty: check(drv.cuGraphAddEmptyNode(&out, graph.g, nullptr, 0), "cuGraphAddEmptyNode"); break;
      case NodeType::event_record:
        check(drv.cuGraphAddEventRecordNode(&out, graph.g, nullptr, 0, events[n.event]), "cuGraphAddEventRecordNode");
        break;
      case NodeType::event_wait:
        check(drv.cuGraphAddEventWaitNode(&out, graph.g, nullptr, 0, events[n.event]), "cuGraphAddEventWaitNode");
        break;
    }
  }

  // Edges in runs of identical edge data: some drivers (580-610) apply the first edge's
  // data to every edge of a bulk call.
  std::vector<CUgraphNode> from, to;
  std::vector<CUgraphEdgeData> data;
  auto flush = [&] {
    if (from.empty()) return;
    check(drv.cuGraphAddDependencies(graph.g, from.data(), to.data(), data.data(), from.size()),
          "cuGraphAddDependencies");
    from.clear(), to.clear(), data.clear();
  };
  for (const Edge& e : desc.edges) {
    CUgraphEdgeData d;
    std::memset(&d, 0, sizeof d);
    d.from_port = e.from_port, d.to_port = e.to_port, d.type = e.type;
    if (!data.empty() && std::memcmp(&data.back(), &d, sizeof d) != 0) flush();
    from.push_back(nodes[e.from]), to.push_back(nodes[e.to]), data.push_back(d);
  }
  flush();
  t.described = SteadyClock::now();

  CUgraphExec exec = nullptr;
  unsigned long long flags = priorities ? CUDA_GRAPH_INSTANTIATE_FLAG_USE_NODE_PRIORITY : 0;
  CUresult r = drv.cuGraphInstantiateWithFlags(&exec, graph.g, flags);
  if (r != CUDA_SUCCESS) throw Error(ErrorKind::restore, describe_result("cuGraphInstantiateWithFlags", r), r);
  t.instantiated = SteadyClock::now();
  event_guard.keep = true;
  if (!keep_topology) return std::make_unique<BuiltGraph>(exec, std::move(events), desc.nodes.size());
  CUgraph kept = graph.g;
  graph.g = nullptr;
  return std::make_unique<BuiltGraph>(exec, std::move(events), desc.nodes.size(), kept, std::move(nodes));
}

}  // namespace kiln
