#include "graph/family.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <iterator>
#include <string>
#include <tuple>

#include "common/log.h"
#include "graph/topology.h"

namespace kiln {
namespace {

struct Keys {
  std::vector<uint64_t> coarse;  // node_keys
  std::vector<uint64_t> sorted;  // `coarse`, sorted: for the quick lower bound

  void sort() {
    sorted = coarse;
    std::sort(sorted.begin(), sorted.end());
  }
};

using Matches = std::vector<std::pair<uint32_t, uint32_t>>;

// Index pairs (ascending) that keep a and b aligned: equal keys advance together; at a
// mismatch the nearest resynchronisation (fewest nodes skipped on both sides, confirmed by
// the keys after it) is taken. One engine's graphs differ in short local runs (another
// GEMM variant, a split-K step), which this finds in linear time; it need not be minimal,
// as every alignment it returns is checked. False when no resynchronisation lies within
// the window or more than max_d nodes are skipped.
bool align(const std::vector<uint64_t>& a, const std::vector<uint64_t>& b, size_t max_d, Matches& out) {
  constexpr size_t window = 32, confirm = 2;
  const size_t n = a.size(), m = b.size();
  auto agree = [&](size_t x, size_t y) {
    for (size_t k = 0; k <= confirm; ++k) {
      if (x + k >= n || y + k >= m) return k > 0 || (x + k >= n && y + k >= m);
      if (a[x + k] != b[y + k]) return false;
    }
    return true;
  };
  out.clear();
  out.reserve(std::min(n, m) + 1);  // and the end sentinel try_merge adds
  size_t x = 0, y = 0, skipped = 0;
  while (x < n && y < m) {
    if (a[x] == b[y]) {
      out.emplace_back(static_cast<uint32_t>(x++), static_cast<uint32_t>(y++));
      continue;
    }
    bool found = false;
    for (size_t step = 1; step <= 2 * window && !found; ++step) {
      for (size_t i = step > window ? step - window : 0; i <= std::min(step, window); ++i) {
        const size_t j = step - i;
        if (x + i < n && y + j < m && agree(x + i, y + j)) {
          x += i, y += j, skipped += step, found = true;
          break;
        }
      }
    }
    if (!found || skipped > max_d) return false;
  }
  return skipped + (n - x) + (m - y) <= max_d;
}

// Within one hunk of an alignment (nodes only one side has), the pairs that can share a
// slot: each node paired, in order, with the next node of the other side whose key it shares.
Matches pair_hunk(const std::vector<uint64_t>& a, uint32_t a0, uint32_t a1, const std::vector<uint64_t>& b,
                  uint32_t b0, uint32_t b1) {
  Matches out;
  uint32_t j = b0;
  for (uint32_t i = a0; i < a1 && j < b1; ++i)
    for (uint32_t t = j; t < b1; ++t)
      if (a[i] == b[t]) {
        out.emplace_back(i, t), j = t + 1;
        break;
      }
  return out;
}

// A lambda, not a function: sorting through a function pointer called it out of line.
constexpr auto edge_before = [](const Edge& a, const Edge& b) {
  return std::tie(a.from, a.to) < std::tie(b.from, b.to);
};
bool same_pair(const Edge& a, const Edge& b) { return a.from == b.from && a.to == b.to; }

}  // namespace

// The edges come sorted by node numbers (sorted_edges): slot numberings are monotone, so
// they stay sorted in any of them. Ports and types are dropped: a full dependency orders
// at least what a programmatic one does, and a disabled node then never carries one.
bool slot_edges(const std::vector<Edge>& edges, const std::vector<uint32_t>& slot, std::vector<Edge>& out) {
  out.clear();
  out.reserve(edges.size());
  for (const Edge& e : edges) {
    if (e.from >= slot.size() || e.to >= slot.size()) return false;
    Edge m{slot[e.from], slot[e.to], 0, 0, 0};
    if (m.from >= m.to) return false;
    out.push_back(m);
  }
  // Monotone numberings keep them sorted; checked, since sorting is what dedup relies on.
  if (!std::is_sorted(out.begin(), out.end(), edge_before)) std::sort(out.begin(), out.end(), edge_before);
  out.erase(std::unique(out.begin(), out.end(), same_pair), out.end());
  return true;
}

void merge_slot_edges(std::vector<Edge>& into, const std::vector<Edge>& more) {
  std::vector<Edge> out;
  out.reserve(into.size() + more.size());
  std::merge(into.begin(), into.end(), more.begin(), more.end(), std::back_inserter(out), edge_before);
  out.erase(std::unique(out.begin(), out.end(), same_pair), out.end());
  into = std::move(out);
}

namespace {

struct Building {
  std::vector<size_t> groups;
  std::vector<std::vector<uint32_t>> slot_of;
  std::vector<std::pair<uint32_t, uint32_t>> source;
  Keys keys;                    // per slot
  std::vector<uint32_t> cover;  // how many of the family's groups have each slot
  std::vector<Edge> edges;      // in slot numbers, sorted by (from, to), each pair once
  bool closed = false;          // its edges cannot be merged: no group joins it
};

const Node& source_node(const Building& f, uint32_t slot, const std::vector<const GraphDesc*>& descs) {
  auto [g, node] = f.source[slot];
  return descs[f.groups[g]]->nodes[node];
}

// Whether an alignment of two key sequences (given sorted) would need more than `limit`
// insertions plus deletions, by a lower bound: the keys one has and the other lacks.
bool surely_more_than(const std::vector<uint64_t>& a, const std::vector<uint64_t>& b, size_t limit) {
  const size_t gap = a.size() > b.size() ? a.size() - b.size() : b.size() - a.size();
  if (gap > limit) return true;
  size_t d = 0, i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    if (a[i] == b[j]) {
      ++i, ++j;
      continue;
    }
    ++(a[i] < b[j] ? i : j);
    if (++d > limit) return true;
  }
  return d + (a.size() - i) + (b.size() - j) > limit;
}

// Joins group `gi` into `f` when the limits and the rules in family.h allow it; otherwise
// returns why not (for the debug log), leaving `f` unchanged.
const char* try_merge(Building& f, size_t gi, const Keys& keys, const std::vector<Edge>& group_edges,
               const std::vector<const GraphDesc*>& descs, const FamilyLimits& limits) {
  const GraphDesc& g = *descs[gi];
  const size_t longer = std::max(f.source.size(), g.nodes.size());
  const size_t max_d = std::max<size_t>(
      limits.min_difference, static_cast<size_t>(std::floor(limits.max_difference * static_cast<double>(longer))));
  if (surely_more_than(f.keys.sorted, keys.sorted, max_d)) return "too many different nodes";
  Matches matches;
  if (!align(f.keys.coarse, keys.coarse, max_d, matches)) return "no alignment within the limit";

  // The merged order: matches in place; between two matches, the hunk's pairs in place and
  // each side's unpaired nodes before the next pair.
  struct Entry {
    long slot, node;  // -1: absent on that side
  };
  std::vector<Entry> order;
  order.reserve(longer + max_d);
  uint32_t pa = 0, pb = 0;
  matches.emplace_back(static_cast<uint32_t>(f.source.size()), static_cast<uint32_t>(g.nodes.size()));
  for (size_t mi = 0; mi < matches.size(); ++mi) {
    auto [ma, mb] = matches[mi];
    Matches pairs = pair_hunk(f.keys.coarse, pa, ma, keys.coarse, pb, mb);
    pairs.emplace_back(ma, mb);  // the match itself closes the hunk
    for (size_t pi = 0; pi < pairs.size(); ++pi) {
      auto [xa, xb] = pairs[pi];
      for (; pa < xa; ++pa) order.push_back({pa, -1});
      for (; pb < xb; ++pb) order.push_back({-1, pb});
      if (mi + 1 == matches.size() && pi + 1 == pairs.size()) break;  // the end sentinel
      order.push_back({xa, xb});
      pa = xa + 1, pb = xb + 1;
    }
  }

  const uint32_t total = static_cast<uint32_t>(f.groups.size() + 1);
  std::vector<uint32_t> renumber(f.source.size()), slot_g(g.nodes.size()), cover(order.size());
  for (size_t s = 0; s < order.size(); ++s) {
    const Entry& e = order[s];
    if (e.slot >= 0) renumber[static_cast<size_t>(e.slot)] = static_cast<uint32_t>(s);
    if (e.node >= 0) slot_g[static_cast<size_t>(e.node)] = static_cast<uint32_t>(s);
    cover[s] = (e.slot >= 0 ? f.cover[static_cast<size_t>(e.slot)] : 0) + (e.node >= 0 ? 1 : 0);
    const Node* have = e.slot >= 0 ? &source_node(f, static_cast<uint32_t>(e.slot), descs) : nullptr;
    const Node* join = e.node >= 0 ? &g.nodes[static_cast<size_t>(e.node)] : nullptr;
    if (cover[s] < total && !may_be_absent(have ? have->type : join->type)) return "a node some group lacks cannot be disabled";
    // Hashes aligned these: one exec update must really turn one into the other.
    if (have && join && !same_node_signature(*have, *join)) return "aligned nodes differ beyond an update";
  }

  // The family's edges renumbered (a monotone renumbering keeps them sorted) and the
  // group's, merged.
  std::vector<Edge> joining;
  if (!slot_edges(group_edges, slot_g, joining)) return "an edge runs backward in the merged order";
  std::vector<Edge> edges;
  edges.reserve(f.edges.size() + joining.size());
  for (const Edge& e : f.edges) edges.push_back({renumber[e.from], renumber[e.to], 0, 0, 0});
  merge_slot_edges(edges, joining);

  // Kept: commit.
  Building next;
  next.groups = f.groups;
  next.groups.push_back(gi);
  for (const std::vector<uint32_t>& old : f.slot_of) {
    next.slot_of.emplace_back();
    next.slot_of.back().reserve(old.size());
    for (uint32_t s : old) next.slot_of.back().push_back(renumber[s]);
  }
  next.slot_of.push_back(std::move(slot_g));
  next.cover = std::move(cover);
  next.edges = std::move(edges);
  next.keys.coarse.reserve(order.size());
  next.source.reserve(order.size());
  std::vector<uint64_t> added;  // keys of the slots the group adds
  for (const Entry& e : order) {
    if (e.slot >= 0) {
      size_t s = static_cast<size_t>(e.slot);
      next.source.push_back(f.source[s]);
      next.keys.coarse.push_back(f.keys.coarse[s]);
    } else {
      size_t n = static_cast<size_t>(e.node);
      next.source.emplace_back(static_cast<uint32_t>(f.groups.size()), static_cast<uint32_t>(n));
      next.keys.coarse.push_back(keys.coarse[n]);
      added.push_back(keys.coarse[n]);
    }
  }
  // The slots' keys, sorted: the family's (sorted already) and the few added, merged.
  std::sort(added.begin(), added.end());
  next.keys.sorted.reserve(order.size());
  std::merge(f.keys.sorted.begin(), f.keys.sorted.end(), added.begin(), added.end(),
             std::back_inserter(next.keys.sorted));
  f = std::move(next);
  return nullptr;
}

}  // namespace

bool can_disable(NodeType type) {
  return type == NodeType::kernel || type == NodeType::memset || type == NodeType::memcpy;
}

// Empty nodes need not be disabled: they do nothing.
bool may_be_absent(NodeType type) { return can_disable(type) || type == NodeType::empty; }

std::vector<uint64_t> node_keys(const GraphDesc& d) {
  std::vector<uint64_t> keys;
  keys.reserve(d.nodes.size());
  std::hash<std::string> hash;
  std::string buffer;
  for (const Node& n : d.nodes) {
    buffer.clear();
    append_node_signature(buffer, n);
    keys.push_back(hash(buffer));
  }
  return keys;
}

std::vector<FamilyPlan> plan_families(const std::vector<const GraphDesc*>& groups,
                                      std::vector<std::vector<uint64_t>> keys, const FamilyLimits& limits) {
  std::vector<Building> families;
  const bool merging = limits.max_groups > 1 && keys.size() == groups.size();
  for (size_t gi = 0; gi < groups.size(); ++gi) {
    Keys k;
    std::vector<Edge> edges;
    if (merging) {
      k.coarse = std::move(keys[gi]), k.sort();
      edges = sorted_edges(groups[gi]->edges, groups[gi]->nodes.size());
    }
    bool joined = false;
    if (merging)
      for (size_t fi = 0; fi < families.size() && !joined; ++fi) {
        Building& f = families[fi];
        if (f.closed || f.groups.size() >= limits.max_groups) continue;
        const char* refused = try_merge(f, gi, k, edges, groups, limits);
        joined = refused == nullptr;
        if (refused) KILN_DEBUG("family: group %zu not merged into family %zu: %s", gi, fi, refused);
      }
    if (joined) continue;
    Building f;
    f.groups = {gi};
    const size_t n = groups[gi]->nodes.size();
    f.slot_of.emplace_back(n);
    for (uint32_t i = 0; i < n; ++i) f.slot_of[0][i] = i, f.source.emplace_back(0, i);
    f.cover.assign(n, 1);
    // A group whose edges cannot be listed this way only ever has a family of its own.
    f.closed = merging && !slot_edges(edges, f.slot_of[0], f.edges);
    f.keys = std::move(k);
    families.push_back(std::move(f));
  }
  std::vector<FamilyPlan> out;
  for (Building& f : families) {
    FamilyPlan p;
    p.groups = std::move(f.groups);
    p.slot_of = std::move(f.slot_of);
    p.source = std::move(f.source);
    if (p.merged()) {  // else its template is the group's own graph
      p.edges = std::move(f.edges);
      for (size_t g : p.groups) p.event_count = std::max(p.event_count, groups[g]->event_count);
    }
    out.push_back(std::move(p));
  }
  return out;
}

}  // namespace kiln
