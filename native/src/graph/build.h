// LOAD side: rebuild a CUgraph from a GraphDesc and instantiate it.
#pragma once

#include <cuda.h>

#include <memory>
#include <vector>

#include "graph/desc.h"
#include "graph/kernels.h"

namespace kiln {

class BuiltGraph {
 public:
  BuiltGraph(CUgraphExec exec, std::vector<CUevent> events, size_t nodes)
      : exec_(exec), events_(std::move(events)), nodes_(nodes) {}
  ~BuiltGraph();
  BuiltGraph(const BuiltGraph&) = delete;
  BuiltGraph& operator=(const BuiltGraph&) = delete;

  void launch(CUstream stream) const;
  void upload(CUstream stream) const;
  size_t node_count() const { return nodes_; }

 private:
  CUgraphExec exec_;
  std::vector<CUevent> events_;  // created for the graph's event nodes, owned
  size_t nodes_;
};

// Every region pointer and memory operand must be backed in this process (checked first,
// Error(unmapped_range)); kernels come from `kernels` (prepared here).
std::unique_ptr<BuiltGraph> build_graph(const GraphDesc& desc, KernelTable& kernels, int device);

}  // namespace kiln
