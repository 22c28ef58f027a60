// Every graph of an archive, restored through templates: graphs with one topology
// signature form a group, and groups that differ in a few nodes form a family (family.h)
// that shares one instantiated template. Replaying a member updates the template's nodes
// that differ (stream-ordered: updates apply to later launches only) and disables the
// nodes the member lacks. Background threads instantiate and upload the templates first
// (making every graph replayable) and then a dedicated executable per graph, swapped in
// atomically so steady state runs without per-switch updates. Decoding needs no kernel
// binary, so it runs while the KernelTable's pool still loads them; each template then
// waits only for the kernels it launches.
#pragma once

#include <cuda.h>

#include <atomic>
#include <condition_variable>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/timeline.h"
#include "archive/verify_gate.h"
#include "graph/blob.h"
#include "graph/build.h"
#include "graph/desc.h"
#include "graph/family.h"
#include "graph/family_record.h"
#include "graph/kernels.h"

namespace kiln {

class GraphSet {
 public:
  // Decodes the blobs (in parallel), groups the graphs and plans their kernels (CPU only:
  // kernels are resolved by the background builds that need them). The blobs' memory must
  // outlive the set only during construction; `kernels` must outlive it. `family_groups`
  // caps the groups one template serves: 1 merges none, 0 sets no cap (on the H100 every
  // template costs driver work: decode67's 20 groups restore fastest through one).
  // With a gate (one item per blob), each blob is decoded once its item passed. `recorded`:
  // the families SAVE planned (family_record.h; each RecordedFamily's `groups` names its
  // groups by their template's graph index), checked and used instead of planning when
  // there is no cap; corrupt ones raise Error(corrupt).
  GraphSet(const std::vector<BlobView>& blobs, KernelTable& kernels, int device, unsigned threads,
           size_t family_groups = 0, const GateItems& gate = {}, std::vector<RecordedFamily> recorded = {});
  ~GraphSet();
  GraphSet(const GraphSet&) = delete;
  GraphSet& operator=(const GraphSet&) = delete;

  // Background work: templates, then (if `dedicated`) one executable per graph, begun once
  // start_dedicated ran or someone waits for an own executable.
  void start(bool dedicated);
  // Blocks until graph `i` is replayable (through its template, or its own executable when
  // `dedicated`); rethrows the error of the background build it waited for.
  void wait(size_t i, bool dedicated);
  // As wait for every graph; then every binary loaded (rethrows the lowest slot's failure).
  void wait_all(bool dedicated);

  // Replays graph i on `stream`: its own executable when built, else its group's template.
  void launch(size_t i, CUstream stream);
  // Always through the template (measures what switching costs).
  void launch_template(size_t i, CUstream stream);
  // Lets the own executables start building (each template's build uploaded it, on a
  // stream of its own and waited for, before its family counted as replayable).
  void start_dedicated();

  size_t size() const { return members_.size(); }
  size_t group_count() const { return groups_.size(); }
  size_t group_of(size_t i) const { return members_.at(i)->group; }
  size_t template_of(size_t group) const { return groups_.at(group)->tmpl; }
  // Nodes whose parameters differ from the group's template (what SAVE's manifest records).
  size_t differing_from_template(size_t i) const { return members_.at(i)->group_differing; }
  size_t family_count() const { return families_.size(); }
  // Whether the families are the ones the archive recorded (checked), not planned here.
  bool families_recorded() const { return families_recorded_; }
  size_t family_of_group(size_t group) const { return groups_.at(group)->family; }
  // Nodes of the family's template (its slots) and how many a switch to graph i touches.
  size_t family_slots(size_t family) const { return families_.at(family)->plan.slot_count(); }
  size_t switch_nodes(size_t i) const { return members_.at(i)->diff.size(); }
  bool has_dedicated(size_t i) const { return members_.at(i)->dedicated.load(std::memory_order_acquire) != nullptr; }
  uint64_t switches() const { return switches_.load(); }
  const GraphDesc& desc(size_t i) const { return members_.at(i)->desc; }
  // Seconds per category (see graph_set.cpp): decoding, update preparation, and per phase
  // (templates, dedicated) the kernels, checks, graph building and instantiation, and the
  // templates' uploads.
  std::map<std::string, TimeTotal> timings() const { return timeline_.totals(); }

 private:
  void release_dedicated(std::unique_lock<std::mutex>& held);  // with mu_ held
  struct Member {
    GraphDesc desc;
    KernelIndices kernels;  // where its kernels sit in the table
    size_t group = 0;
    size_t group_differing = 0;  // nodes differing from the group's template
    // Slots of the family's template that replaying this graph changes from the state it
    // was instantiated in (parameters, or disabled because the graph lacks them), ascending.
    std::vector<uint32_t> diff;
    std::atomic<BuiltGraph*> dedicated{nullptr};
    std::unique_ptr<BuiltGraph> dedicated_owner;
    bool dedicated_done = false;  // guarded by mu_
    std::exception_ptr dedicated_error;
  };
  struct Group {
    std::vector<size_t> members;
    size_t tmpl = 0;
    size_t family = 0;
    size_t place = 0;  // its index in the family's plan
  };
  struct Family {
    FamilyPlan plan;
    std::vector<const Node*> slots;         // each slot's node, in its group's template graph
    GraphDesc merged;                       // built from `slots` by the template's task
    const GraphDesc* single = nullptr;      // the one group's template graph, if not merged
    KernelIndices merged_kernels;           // merged: where the slots' kernels sit
    const KernelIndices* base_kernels = nullptr;  // the template graph's
    std::vector<uint32_t> kernels;          // every member's kernels, each once (what switches launch)
    std::vector<std::vector<int32_t>> node_at;  // per place: slot -> node, -1 if lacking
    std::vector<size_t> members;
    std::unique_ptr<BuiltGraph> exec;
    bool done = false;  // guarded by mu_
    std::exception_ptr error;
    std::mutex launch_mu;            // serialises switching and launching the template
    long current = -1;               // member the template holds now; -1: unknown
    std::vector<uint32_t> varying;   // union of members' diffs
    std::vector<int8_t> enabled;     // per slot: 1, 0, or -1 when a failed call left it unknown
    // Merged templates only: completion of the last launch, waited for on the host before the
    // next. On the H100 (driver 580), relaunching an executable with disabled nodes while its
    // previous launch still ran faulted (unspecified launch failure) within 50 back-to-back
    // replays; with each launch complete first, every replay was exact.
    CUevent launched = nullptr;
    bool launched_recorded = false;
    ~Family();

    const GraphDesc& base() const { return plan.merged() ? merged : *single; }  // merged: once built
  };

  void worker();
  void run_task(size_t task);
  void plan(size_t family_groups, std::vector<RecordedFamily> recorded);
  // The recorded families, their groups renumbered from template graphs to groups and
  // checked (every group in exactly one).
  std::vector<FamilyPlan> checked_families(const std::vector<const GraphDesc*>& templates,
                                           std::vector<RecordedFamily> recorded) const;
  // Graphs with equal topology signatures form a group, numbered by first member.
  void group(const std::vector<std::string>& signatures, const std::vector<size_t>& hashes);
  // Per family: its template's kernels, and every member's once (after the kernel plan,
  // which covers every graph at once so that each function attribute is set once, at its
  // maximum, before any graph uses the function).
  void list_family_kernels();
  void copy_slots(Family& f);  // the merged template graph, from its slots' nodes
  std::unique_ptr<BuiltGraph> build_template(Family& f);
  std::unique_ptr<BuiltGraph> build_dedicated(Member& m);
  void record(const char* phase, const BuildTimes& t);
  void switch_to(Family& f, size_t target);
  void set_enabled(Family& f, uint32_t slot, bool on, size_t target);

  std::vector<std::unique_ptr<Member>> members_;
  std::vector<std::unique_ptr<Group>> groups_;
  std::vector<std::unique_ptr<Family>> families_;
  KernelTable& kernels_;
  int device_;
  unsigned threads_;      // background builds
  unsigned cpu_threads_;  // decoding and planning in the constructor
  CUcontext ctx_ = nullptr;

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::thread> workers_;
  std::atomic<size_t> next_task_{0};
  size_t task_count_ = 0;
  size_t templates_done_ = 0;  // guarded by mu_
  // Own executables start building once start_dedicated ran (or someone waits for an own
  // executable): their instantiations would contend with the templates' in the driver.
  bool dedicated_released_ = false;  // guarded by mu_
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> switches_{0};
  bool families_recorded_ = false;
  SteadyClock::time_point started_;
  Timeline timeline_;
};

}  // namespace kiln
