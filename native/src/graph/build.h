// LOAD side: rebuild a CUgraph from a GraphDesc and instantiate it.
#pragma once

#include <cuda.h>

#include <memory>
#include <vector>

#include "common/timeline.h"
#include "graph/desc.h"
#include "graph/kernels.h"

namespace kiln {

// A kernel node's launch parameters in the driver's form, launching `function`. Pointers
// refer into the KernelNode (its argument bytes) and into this object, so it is neither
// copied nor moved.
struct KernelLaunchParams {
  CUDA_KERNEL_NODE_PARAMS params;
  std::vector<void*> slots;
  size_t extra_size = 0;
  void* extra[5] = {};

  KernelLaunchParams(const KernelNode& k, CUfunction function);
  KernelLaunchParams(const KernelLaunchParams&) = delete;
  KernelLaunchParams& operator=(const KernelLaunchParams&) = delete;
};

CUDA_MEMSET_NODE_PARAMS memset_params(const MemsetNode& m);
CUDA_MEMCPY3D memcpy_params(const MemcpyNode& c);

class BuiltGraph {
 public:
  // `graph` and `handles` are kept only for templates, whose nodes are updated later.
  BuiltGraph(CUgraphExec exec, std::vector<CUevent> events, size_t nodes, CUgraph graph = nullptr,
             std::vector<CUgraphNode> handles = {})
      : exec_(exec), events_(std::move(events)), nodes_(nodes), graph_(graph), handles_(std::move(handles)) {}
  ~BuiltGraph();
  BuiltGraph(const BuiltGraph&) = delete;
  BuiltGraph& operator=(const BuiltGraph&) = delete;

  void launch(CUstream stream) const;
  void upload(CUstream stream) const;
  // Uploads on a stream of its own and waits until done, so a launch from any stream finds
  // the executable on the device with no ordering against the upload.
  void upload_and_wait() const;
  size_t node_count() const { return nodes_; }
  CUgraphExec exec() const { return exec_; }
  CUgraph graph() const { return graph_; }  // null unless kept
  const std::vector<CUgraphNode>& handles() const { return handles_; }

 private:
  CUgraphExec exec_;
  std::vector<CUevent> events_;  // created for the graph's event nodes, owned
  size_t nodes_;
  CUgraph graph_;                     // owned when kept
  std::vector<CUgraphNode> handles_;  // node i of the description, in graph_
};

// When each step of one build_graph ended, for reports of where restore time goes.
struct BuildTimes {
  SteadyClock::time_point begin;     // call
  SteadyClock::time_point checked;   // every operand found backed
  SteadyClock::time_point described; // CUgraph built from the description: nodes, edges
  SteadyClock::time_point instantiated;
};

// Every region pointer and memory operand must be backed in this process (checked first,
// Error(unmapped_range)). Kernels come from `kernels`: planned and resolved here unless the
// caller did it already and passes where they sit (`prepared`, resolved by
// KernelTable::require).
std::unique_ptr<BuiltGraph> build_graph(const GraphDesc& desc, KernelTable& kernels, int device,
                                        bool keep_topology = false, const KernelIndices* prepared = nullptr,
                                        BuildTimes* times = nullptr);

}  // namespace kiln
