// SAVE side: turn a captured CUgraph into a GraphDesc, auditing every device address.
#pragma once

#include <cuda.h>

#include "graph/desc.h"

namespace kiln {

// Throws Error(non_persistable / external_pointer / unknown_kernel) naming the node, the
// kernel and, for pointers, the argument and address. `device` selects the region that
// kernel pointers must fall into.
GraphDesc walk_graph(CUgraph graph, int device);

}  // namespace kiln
