// Families planned at SAVE and recorded in the archive's manifest. LOAD checks a recorded
// plan against the decoded graphs, by every rule plan_families keeps, instead of aligning
// the groups itself: planning is serial work on the restore path, checking runs per group
// on many threads. A plan that breaks a rule is corrupt, and the error names the rule.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "graph/desc.h"
#include "graph/family.h"

namespace kiln {

// Nodes [node, node + count) of a group's template sit in slots [slot, slot + count).
struct SlotRun {
  uint32_t node = 0, slot = 0, count = 0;
};

struct RecordedFamily {
  std::vector<size_t> groups;               // ascending indices into the groups checked
  uint32_t slots = 0;                       // nodes of the merged template; 0 for one group
  std::vector<std::vector<SlotRun>> runs;   // per group (merged families only)
};

// What the manifest records of a plan: its slot numbering as runs (a few dozen per group,
// where the numbering itself has thousands of entries).
RecordedFamily record_family(const FamilyPlan& plan);

// The plan `recorded` describes (groups indexed into `groups`, one template graph each),
// checked: every group's nodes numbered in order, slots no group lacks, aligned nodes that
// one exec update turns into each other, nodes some group lacks that can be disabled, edges
// forward in slot order (the template's edges are full dependencies, family.h). Per-group
// checks run on up to `threads` threads. Throws
// Error(corrupt) naming family `index` and the rule it breaks.
FamilyPlan checked_family(const std::vector<const GraphDesc*>& groups, const RecordedFamily& recorded,
                          size_t index, unsigned threads);

}  // namespace kiln
