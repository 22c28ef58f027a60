#include "graph/family_record.h"

#include <algorithm>
#include <string>

#include "common/error.h"
#include "common/parallel.h"
#include "graph/topology.h"

namespace kiln {
namespace {

constexpr uint32_t kNone = UINT32_MAX;

[[noreturn]] void refuse(size_t family, const std::string& why) {
  throw Error(ErrorKind::corrupt, format("archive family %zu: %s", family, why.c_str()));
}

// The slot of each of a group's `nodes` nodes, from its runs; empty when the runs do not
// number every node once, in order, with slots rising below `slots`.
std::vector<uint32_t> expand(const std::vector<SlotRun>& runs, size_t nodes, uint32_t slots) {
  std::vector<uint32_t> slot_of;
  slot_of.reserve(nodes);
  uint64_t next_slot = 0;  // the lowest slot the next node may take
  for (const SlotRun& r : runs) {
    const uint64_t end = uint64_t{r.slot} + r.count;
    if (r.count == 0 || r.node != slot_of.size() || r.slot < next_slot || end > slots ||
        slot_of.size() + r.count > nodes)
      return {};
    for (uint32_t k = 0; k < r.count; ++k) slot_of.push_back(r.slot + k);
    next_slot = end;
  }
  if (slot_of.size() != nodes) return {};
  return slot_of;
}

}  // namespace

RecordedFamily record_family(const FamilyPlan& plan) {
  RecordedFamily r;
  r.groups = plan.groups;
  if (!plan.merged()) return r;
  r.slots = static_cast<uint32_t>(plan.slot_count());
  for (const std::vector<uint32_t>& slot_of : plan.slot_of) {
    std::vector<SlotRun>& runs = r.runs.emplace_back();
    for (uint32_t n = 0; n < slot_of.size(); ++n) {
      if (!runs.empty() && runs.back().node + runs.back().count == n &&
          runs.back().slot + runs.back().count == slot_of[n])
        ++runs.back().count;
      else
        runs.push_back({n, slot_of[n], 1});
    }
  }
  return r;
}

FamilyPlan checked_family(const std::vector<const GraphDesc*>& groups, const RecordedFamily& recorded,
                          size_t index, unsigned threads) {
  const std::vector<size_t>& members = recorded.groups;
  if (members.empty()) refuse(index, "it names no topology group");
  for (size_t p = 0; p < members.size(); ++p)
    if (members[p] >= groups.size() || (p && members[p] <= members[p - 1]))
      refuse(index, "its groups are not distinct topology groups in ascending order");
  FamilyPlan plan;
  plan.groups = members;
  if (members.size() == 1) {  // its template is the group's own graph
    if (recorded.slots != 0 || !recorded.runs.empty()) refuse(index, "a single group with a slot numbering");
    const uint32_t n = static_cast<uint32_t>(groups[members[0]]->nodes.size());
    plan.slot_of.emplace_back(n);
    for (uint32_t i = 0; i < n; ++i) plan.slot_of[0][i] = i, plan.source.emplace_back(0, i);
    return plan;
  }
  if (recorded.runs.size() != members.size()) refuse(index, "not one slot numbering per group");
  size_t total_nodes = 0;
  for (size_t g : members) total_nodes += groups[g]->nodes.size();
  if (recorded.slots == 0 || recorded.slots > total_nodes) refuse(index, "an impossible number of slots");

  // Each group's numbering, checked on its own.
  plan.slot_of.resize(members.size());
  parallel_for(members.size(), threads, [&](size_t p) {
    plan.slot_of[p] = expand(recorded.runs[p], groups[members[p]]->nodes.size(), recorded.slots);
  });
  for (size_t p = 0; p < members.size(); ++p)
    if (plan.slot_of[p].empty() && !groups[members[p]]->nodes.empty())
      refuse(index, format("group %zu's nodes are not numbered once each, in order, within the slots", p));

  // Each slot is built from the first group that has it (what the planner keeps).
  const uint32_t slots = recorded.slots;
  std::vector<uint32_t> cover(slots, 0);
  plan.source.assign(slots, {kNone, kNone});
  for (uint32_t p = 0; p < members.size(); ++p)
    for (uint32_t n = 0; n < plan.slot_of[p].size(); ++n) {
      const uint32_t s = plan.slot_of[p][n];
      if (cover[s]++ == 0) plan.source[s] = {p, n};
    }
  auto source_node = [&](uint32_t s) -> const Node& {
    return groups[members[plan.source[s].first]]->nodes[plan.source[s].second];
  };
  for (uint32_t s = 0; s < slots; ++s) {
    if (cover[s] == 0) refuse(index, format("slot %u is no group's node", s));
    if (cover[s] < members.size() && !may_be_absent(source_node(s).type))
      refuse(index, format("slot %u, which some group lacks, holds a node that cannot be disabled", s));
  }

  // Per group: nodes sharing a slot must be one exec update apart; its edges in slots.
  std::vector<std::vector<Edge>> edges(members.size());
  std::vector<std::string> failures(members.size());
  parallel_for(members.size(), threads, [&](size_t p) {
    const GraphDesc& g = *groups[members[p]];
    for (uint32_t n = 0; n < g.nodes.size(); ++n) {
      const uint32_t s = plan.slot_of[p][n];
      if (plan.source[s].first != p && !same_node_signature(source_node(s), g.nodes[n])) {
        failures[p] = format("group %zu's node %u differs from slot %u beyond what an update changes", p, n, s);
        return;
      }
    }
    if (!slot_edges(sorted_edges(g.edges, g.nodes.size()), plan.slot_of[p], edges[p]))
      failures[p] = format("group %zu has an edge backward in slot order", p);
  });
  for (const std::string& why : failures)
    if (!why.empty()) refuse(index, why);

  for (size_t p = 0; p < members.size(); ++p) {
    merge_slot_edges(plan.edges, edges[p]);
    plan.event_count = std::max(plan.event_count, groups[members[p]]->event_count);
  }
  return plan;
}

}  // namespace kiln
