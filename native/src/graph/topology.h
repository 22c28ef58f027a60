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

// Per graph, its topology group: graphs with equal signatures share one, and groups are
// numbered by their first graph. `hashes` (one per signature) decide first; equal hashes
// are confirmed byte for byte on up to `threads` threads, and should two different
// signatures share a hash, the bytes alone decide.
std::vector<size_t> group_by_signature(const std::vector<std::string>& signatures, const std::vector<size_t>& hashes,
                                       unsigned threads);

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
