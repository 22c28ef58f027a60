#include "graph/family.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <tuple>
#include <unordered_map>

#include "graph/topology.h"

namespace kiln {
namespace {

uint64_t mix(uint64_t h, uint64_t v) { return h ^ (v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2)); }

// Per node: `coarse` is equal for nodes one exec update can turn into each other (their
// node signatures; hashed for speed, checked exactly before a merge is kept); `fine`
// adds the kernel, so alignment keeps identical kernels together.
struct Keys {
  std::vector<uint64_t> coarse, fine;
  std::vector<uint64_t> sorted;  // `fine`, sorted: for the quick lower bound

  void sort() {
    sorted = fine;
    std::sort(sorted.begin(), sorted.end());
  }
};

Keys keys_of(const GraphDesc& d) {
  Keys k;
  k.coarse.reserve(d.nodes.size()), k.fine.reserve(d.nodes.size());
  std::hash<std::string> hash;
  for (const Node& n : d.nodes) {
    uint64_t c = hash(node_signature(n));
    uint64_t f = n.type == NodeType::kernel ? mix(mix(c, n.kernel.binary), hash(n.kernel.entry)) : c;
    k.coarse.push_back(c), k.fine.push_back(f);
  }
  k.sort();
  return k;
}

using Matches = std::vector<std::pair<uint32_t, uint32_t>>;

// Index pairs (ascending) that a shortest edit script between a and b keeps, by Myers'
// O((N+M)D) algorithm; false when it needs more than max_d insertions plus deletions.
bool align(const std::vector<uint64_t>& a, const std::vector<uint64_t>& b, size_t max_d, Matches& out) {
  const long n = static_cast<long>(a.size()), m = static_cast<long>(b.size());
  const long limit = std::min<long>(static_cast<long>(max_d), n + m);
  const long off = limit + 1;
  std::vector<int32_t> v(static_cast<size_t>(2 * limit + 3), 0);
  std::vector<std::vector<int32_t>> trace;  // v before each step, to walk the script back
  long found = -1;
  for (long d = 0; d <= limit && found < 0; ++d) {
    trace.push_back(v);
    for (long k = -d; k <= d; k += 2) {
      bool down = k == -d || (k != d && v[off + k - 1] < v[off + k + 1]);
      long x = down ? v[off + k + 1] : v[off + k - 1] + 1;
      long y = x - k;
      while (x < n && y < m && a[x] == b[y]) ++x, ++y;
      v[off + k] = static_cast<int32_t>(x);
      if (x >= n && y >= m) {
        found = d;
        break;
      }
    }
  }
  if (found < 0) return false;
  out.clear();
  long x = n, y = m;
  for (long d = found; d > 0; --d) {
    const std::vector<int32_t>& pv = trace[static_cast<size_t>(d)];
    long k = x - y;
    bool down = k == -d || (k != d && pv[off + k - 1] < pv[off + k + 1]);
    long pk = down ? k + 1 : k - 1;
    long px = pv[off + pk], py = px - pk;
    while (x > px && y > py) --x, --y, out.emplace_back(x, y);
    x = px, y = py;
  }
  while (x > 0 && y > 0) --x, --y, out.emplace_back(x, y);
  std::reverse(out.begin(), out.end());
  return true;
}

// Within one hunk of an alignment (nodes only one side has), the pairs that can share a
// slot: a longest common subsequence of coarse keys (greedy when the hunk is large).
Matches pair_hunk(const std::vector<uint64_t>& a, uint32_t a0, uint32_t a1, const std::vector<uint64_t>& b,
                  uint32_t b0, uint32_t b1) {
  Matches out;
  const size_t ha = a1 - a0, hb = b1 - b0;
  if (ha == 0 || hb == 0) return out;
  if (ha * hb > (1u << 16)) {
    uint32_t j = b0;
    for (uint32_t i = a0; i < a1 && j < b1; ++i)
      for (uint32_t t = j; t < b1; ++t)
        if (a[i] == b[t]) {
          out.emplace_back(i, t), j = t + 1;
          break;
        }
    return out;
  }
  std::vector<uint32_t> len((ha + 1) * (hb + 1), 0);
  auto at = [&](size_t i, size_t j) -> uint32_t& { return len[i * (hb + 1) + j]; };
  for (size_t i = ha; i-- > 0;)
    for (size_t j = hb; j-- > 0;)
      at(i, j) = a[a0 + i] == b[b0 + j] ? at(i + 1, j + 1) + 1 : std::max(at(i + 1, j), at(i, j + 1));
  for (size_t i = 0, j = 0; i < ha && j < hb;) {
    if (a[a0 + i] == b[b0 + j]) {
      out.emplace_back(a0 + i, b0 + j), ++i, ++j;
    } else if (at(i + 1, j) >= at(i, j + 1)) {
      ++i;
    } else {
      ++j;
    }
  }
  return out;
}

struct Building {
  std::vector<size_t> groups;
  std::vector<std::vector<uint32_t>> slot_of;
  std::vector<std::pair<uint32_t, uint32_t>> source;
  Keys keys;  // per slot
  std::vector<uint32_t> cover;  // how many of the family's groups have each slot
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

uint64_t edge_key(uint32_t from, uint32_t to) { return (static_cast<uint64_t>(from) << 32) | to; }

bool default_edge(const Edge& e) { return e.from_port == 0 && e.to_port == 0 && e.type == 0; }

// Joins group `gi` into `f` when the limits and the rules in family.h allow it.
bool try_merge(Building& f, size_t gi, const Keys& keys, const std::vector<const GraphDesc*>& descs,
               const FamilyLimits& limits) {
  const GraphDesc& g = *descs[gi];
  const size_t longer = std::max(f.source.size(), g.nodes.size());
  const size_t max_d = std::max<size_t>(
      limits.min_difference, static_cast<size_t>(std::floor(limits.max_difference * static_cast<double>(longer))));
  if (surely_more_than(f.keys.sorted, keys.sorted, max_d)) return false;
  Matches matches;
  if (!align(f.keys.fine, keys.fine, max_d, matches)) return false;

  // The merged order: matches in place; between two matches, the hunk's pairs in place and
  // each side's unpaired nodes before the next pair.
  struct Entry {
    long slot, node;  // -1: absent on that side
  };
  std::vector<Entry> order;
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

  const size_t total = f.groups.size() + 1;
  std::vector<uint32_t> renumber(f.source.size()), slot_g(g.nodes.size());
  std::vector<uint32_t> cover(order.size());
  for (size_t s = 0; s < order.size(); ++s) {
    const Entry& e = order[s];
    if (e.slot >= 0) renumber[static_cast<size_t>(e.slot)] = static_cast<uint32_t>(s);
    if (e.node >= 0) slot_g[static_cast<size_t>(e.node)] = static_cast<uint32_t>(s);
    cover[s] = (e.slot >= 0 ? f.cover[static_cast<size_t>(e.slot)] : 0) + (e.node >= 0 ? 1 : 0);
    NodeType type = e.slot >= 0 ? source_node(f, static_cast<uint32_t>(e.slot), descs).type
                                : g.nodes[static_cast<size_t>(e.node)].type;
    if (cover[s] < total && !may_be_absent(type)) return false;
    // Hashes aligned these: one exec update must really turn one into the other.
    if (e.slot >= 0 && e.node >= 0 &&
        node_signature(source_node(f, static_cast<uint32_t>(e.slot), descs)) !=
            node_signature(g.nodes[static_cast<size_t>(e.node)]))
      return false;
  }

  // Every group's edges, renumbered; one edge with two sets of data cannot be built.
  std::unordered_map<uint64_t, Edge> edges;
  auto add_edges = [&](const GraphDesc& d, const std::vector<uint32_t>& slot) {
    for (const Edge& e : d.edges) {
      if (e.from >= slot.size() || e.to >= slot.size()) return false;
      Edge m{slot[e.from], slot[e.to], e.from_port, e.to_port, e.type};
      if (m.from >= m.to) return false;  // not forward: the merged order could cycle
      if (!default_edge(m) && (cover[m.from] < total || cover[m.to] < total)) return false;
      auto [it, fresh] = edges.emplace(edge_key(m.from, m.to), m);
      if (!fresh && !(it->second.from_port == m.from_port && it->second.to_port == m.to_port &&
                      it->second.type == m.type))
        return false;
    }
    return true;
  };
  std::vector<std::vector<uint32_t>> slot_of(f.slot_of.size());
  for (size_t h = 0; h < f.groups.size(); ++h) {
    for (uint32_t s : f.slot_of[h]) slot_of[h].push_back(renumber[s]);
    if (!add_edges(*descs[f.groups[h]], slot_of[h])) return false;
  }
  if (!add_edges(g, slot_g)) return false;

  // Kept: commit.
  Building next;
  next.groups = f.groups;
  next.groups.push_back(gi);
  next.slot_of = std::move(slot_of);
  next.slot_of.push_back(std::move(slot_g));
  next.cover = std::move(cover);
  for (const Entry& e : order) {
    if (e.slot >= 0) {
      size_t s = static_cast<size_t>(e.slot);
      next.source.push_back(f.source[s]);
      next.keys.coarse.push_back(f.keys.coarse[s]), next.keys.fine.push_back(f.keys.fine[s]);
    } else {
      size_t n = static_cast<size_t>(e.node);
      next.source.emplace_back(static_cast<uint32_t>(f.groups.size()), static_cast<uint32_t>(n));
      next.keys.coarse.push_back(keys.coarse[n]), next.keys.fine.push_back(keys.fine[n]);
    }
  }
  next.keys.sort();
  f = std::move(next);
  return true;
}

}  // namespace

bool can_disable(NodeType type) {
  return type == NodeType::kernel || type == NodeType::memset || type == NodeType::memcpy;
}

bool may_be_absent(NodeType type) { return can_disable(type) || type == NodeType::empty; }

std::vector<FamilyPlan> plan_families(const std::vector<const GraphDesc*>& groups, const FamilyLimits& limits) {
  std::vector<Building> families;
  const bool merging = limits.max_groups > 1;
  for (size_t gi = 0; gi < groups.size(); ++gi) {
    Keys keys = merging ? keys_of(*groups[gi]) : Keys{};
    bool joined = false;
    if (merging)
      for (Building& f : families)
        if (f.groups.size() < limits.max_groups && (joined = try_merge(f, gi, keys, groups, limits))) break;
    if (joined) continue;
    Building f;
    f.groups = {gi};
    const size_t n = groups[gi]->nodes.size();
    f.slot_of.emplace_back(n);
    for (uint32_t i = 0; i < n; ++i) f.slot_of[0][i] = i, f.source.emplace_back(0, i);
    f.cover.assign(n, 1);
    f.keys = std::move(keys);
    families.push_back(std::move(f));
  }
  std::vector<FamilyPlan> out;
  for (Building& f : families) {
    FamilyPlan p;
    p.groups = std::move(f.groups);
    p.slot_of = std::move(f.slot_of);
    p.source = std::move(f.source);
    if (!p.merged()) {  // its template is the group's own graph
      out.push_back(std::move(p));
      continue;
    }
    std::unordered_map<uint64_t, Edge> unique;
    for (size_t h = 0; h < p.groups.size(); ++h) {
      const GraphDesc& d = *groups[p.groups[h]];
      p.event_count = std::max(p.event_count, d.event_count);
      for (const Edge& e : d.edges) {
        Edge m{p.slot_of[h][e.from], p.slot_of[h][e.to], e.from_port, e.to_port, e.type};
        unique.emplace(edge_key(m.from, m.to), m);
      }
    }
    for (const auto& [k, e] : unique) p.edges.push_back(e);
    std::sort(p.edges.begin(), p.edges.end(),
              [](const Edge& a, const Edge& b) { return std::tie(a.from, a.to) < std::tie(b.from, b.to); });
    out.push_back(std::move(p));
  }
  return out;
}

GraphDesc family_graph(const FamilyPlan& plan, const std::vector<const GraphDesc*>& groups) {
  GraphDesc d;
  d.nodes.reserve(plan.source.size());
  for (auto [g, node] : plan.source) d.nodes.push_back(groups[plan.groups[g]]->nodes[node]);
  d.edges = plan.edges;
  d.event_count = plan.event_count;
  return d;
}

}  // namespace kiln
