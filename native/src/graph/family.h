// Families: topology groups that one instantiated template serves together. Groups whose
// graphs differ in a few nodes only (cuBLAS picking a kernel with other cluster dimensions
// for some sizes, a split-K reduction that some sizes add) share one merged graph that
// holds every group's nodes in one order. Replaying a member disables the nodes it lacks
// (cuGraphNodeSetEnabled: a disabled node acts as an empty node) and updates the others
// as within a group. A merged template orders its nodes by full dependencies only: a
// programmatic edge (programmatic dependent launch) becomes a full one, which orders at
// least as much, so graphs whose programmatic edges differ (cuBLAS picks PDL kernels for
// some sizes) still share a template. Fewer templates to instantiate is what makes restore
// fast; replay through a merged template is slower (no launch overlap, disabled nodes)
// only until each graph's own executable swaps in.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "graph/desc.h"

namespace kiln {

struct FamilyPlan {
  std::vector<size_t> groups;  // indices into the planner's input, ascending
  // Per group (in the order of `groups`): the slot of each node of its template.
  std::vector<std::vector<uint32_t>> slot_of;
  // Slot s is built from node source[s].second of group groups[source[s].first].
  std::vector<std::pair<uint32_t, uint32_t>> source;
  // Merged families only: every group's edges in slot numbers, each once, sorted.
  std::vector<Edge> edges;
  uint32_t event_count = 0;

  bool merged() const { return groups.size() > 1; }
  size_t slot_count() const { return source.size(); }
};

struct FamilyLimits {
  size_t max_groups = 1;  // per family; 1 merges nothing
  // A group joins a family only when aligning its nodes with the family's slots takes at
  // most this fraction of the longer sequence in insertions plus deletions.
  double max_difference = 0.25;
  size_t min_difference = 8;  // what small graphs may differ in regardless of the fraction
};

// Partitions `groups` (one template graph per topology group, in group order) into
// families, greedily in order: each group joins the first family it merges into. A merge
// keeps every group's own dependencies (the merged graph may order more, never less);
// it is refused when a node a group lacks could not be disabled (event nodes) or when a
// group's edges do not run forward in node order.
// `keys` holds node_keys of each group (none: merge nothing).
std::vector<FamilyPlan> plan_families(const std::vector<const GraphDesc*>& groups,
                                      std::vector<std::vector<uint64_t>> keys, const FamilyLimits& limits);

// Per node, equal for nodes one exec update can turn into each other: their node
// signatures, hashed (the planner checks aligned pairs exactly before it keeps a merge).
std::vector<uint64_t> node_keys(const GraphDesc& desc);

// Whether a node of this type can be disabled in an executable (the driver supports
// kernel, memset and memcpy nodes).
bool can_disable(NodeType type);
// Whether a family member may lack a node of this type: one it can disable, or an empty node.
bool may_be_absent(NodeType type);

// A group's edges (sorted_edges order) in slot numbers as full dependencies, sorted, each
// pair once; false when one runs backward in slot order (the merged order could cycle).
// Shared by the planner and the check of recorded plans.
bool slot_edges(const std::vector<Edge>& edges, const std::vector<uint32_t>& slot, std::vector<Edge>& out);
// `into` and `more` (each from slot_edges) merged, each pair once.
void merge_slot_edges(std::vector<Edge>& into, const std::vector<Edge>& more);

}  // namespace kiln
