// Every graph of an archive, restored through topology templates: graphs with one
// signature share an instantiated template whose differing nodes are updated (stream-
// ordered: updates apply to later launches only) when another member replays. Background
// threads instantiate the templates first (making every graph replayable) and then a
// dedicated executable per graph, swapped in atomically so steady state runs without
// per-switch updates. Decoding needs no kernel binary, so it runs while the KernelTable's
// pool still loads them; each template then waits only for the kernels it launches.
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
#include "graph/build.h"
#include "graph/desc.h"
#include "graph/kernels.h"

namespace kiln {

struct BlobView {
  const uint8_t* data;
  size_t size;
};

class GraphSet {
 public:
  // Decodes the blobs (in parallel), groups the graphs and plans their kernels (CPU only:
  // kernels are resolved by the background builds that need them). The blobs' memory must
  // outlive the set only during construction; `kernels` must outlive it.
  GraphSet(const std::vector<BlobView>& blobs, KernelTable& kernels, int device, unsigned threads);
  ~GraphSet();
  GraphSet(const GraphSet&) = delete;
  GraphSet& operator=(const GraphSet&) = delete;

  // Background work: templates, then (if `dedicated`) one executable per graph.
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
  void upload_templates(CUstream stream);

  size_t size() const { return members_.size(); }
  size_t group_count() const { return groups_.size(); }
  size_t group_of(size_t i) const { return members_.at(i)->group; }
  size_t template_of(size_t group) const { return groups_.at(group)->tmpl; }
  size_t differing_from_template(size_t i) const { return members_.at(i)->diff.size(); }
  bool has_dedicated(size_t i) const { return members_.at(i)->dedicated.load(std::memory_order_acquire) != nullptr; }
  uint64_t switches() const { return switches_.load(); }
  const GraphDesc& desc(size_t i) const { return members_.at(i)->desc; }
  // Seconds per category (see graph_set.cpp): decoding, update preparation, and per phase
  // (templates, dedicated) the kernels, checks, graph building and instantiation.
  std::map<std::string, TimeTotal> timings() const { return timeline_.totals(); }

 private:
  struct Member {
    GraphDesc desc;
    size_t group = 0;
    std::vector<uint32_t> diff;  // nodes differing from the template, ascending
    std::atomic<BuiltGraph*> dedicated{nullptr};
    std::unique_ptr<BuiltGraph> dedicated_owner;
    bool dedicated_done = false;  // guarded by mu_
    std::exception_ptr dedicated_error;
  };
  struct Group {
    std::vector<size_t> members;
    size_t tmpl = 0;
    std::unique_ptr<BuiltGraph> exec;
    bool done = false;  // guarded by mu_
    std::exception_ptr error;
    std::mutex launch_mu;            // serialises switching and launching the template
    long current = -1;               // member the template holds now; -1: unknown
    std::vector<uint32_t> varying;   // union of members' diffs
  };

  void worker();
  void run_task(size_t task);
  std::unique_ptr<BuiltGraph> build_template(Group& g);
  std::unique_ptr<BuiltGraph> build_dedicated(Member& m);
  void record(const char* phase, const BuildTimes& t);
  void switch_to(Group& g, size_t target);

  std::vector<std::unique_ptr<Member>> members_;
  std::vector<std::unique_ptr<Group>> groups_;
  KernelTable& kernels_;
  int device_;
  unsigned threads_;
  CUcontext ctx_ = nullptr;

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::thread> workers_;
  std::atomic<size_t> next_task_{0};
  size_t task_count_ = 0;
  size_t templates_done_ = 0;  // guarded by mu_
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> switches_{0};
  SteadyClock::time_point started_;
  Timeline timeline_;
};

}  // namespace kiln
