// Which graphs can share one instantiated executable. Two graphs with equal signatures
// differ only in what per-node exec updates may change (kernel function, grid, block,
// shared memory, arguments; memset/1-D memcpy addresses), so one instantiated template
// serves both after those nodes are updated.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "graph/desc.h"

namespace kiln {

// Canonical bytes of everything an exec update cannot change: node types and order, edges
// with their ports and types, kernel launch attributes (cluster dimensions, cooperative,
// priority, ...), memset shapes and values, memcpy shapes (and addresses of copies that are
// not 1-D), event slots.
std::string topology_signature(const GraphDesc& desc);

// `edges` sorted by (from, to, from_port, to_port, type): linear in edges and nodes when every
// edge starts at one of `nodes` nodes.
std::vector<Edge> sorted_edges(const std::vector<Edge>& edges, size_t nodes);

// Why two graphs cannot share a template: the first thing their signatures disagree on, in
// words ("" when they can). For `kiln inspect`, to see what splits a graph set into groups.
std::string topology_difference(const GraphDesc& a, const GraphDesc& b);

// Appends the part of the signature one node contributes: equal for two nodes exactly when
// an exec update can turn one into the other.
void append_node_signature(std::string& out, const Node& node);
// Whether two nodes' signatures are equal, without building them.
bool same_node_signature(const Node& a, const Node& b);

// True when an exec update is needed to turn node `a` into node `b` (same signature).
bool node_params_differ(const Node& a, const Node& b);

// Indices of the nodes whose updatable parameters differ, ascending.
std::vector<uint32_t> differing_nodes(const GraphDesc& a, const GraphDesc& b);

}  // namespace kiln
