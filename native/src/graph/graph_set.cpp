#include "graph/graph_set.h"

#include <algorithm>
#include <future>
#include <set>
#include <string>

#include "common/context.h"
#include "common/driver.h"
#include "common/error.h"
#include "common/log.h"
#include "common/parallel.h"
#include "graph/blob.h"
#include "graph/topology.h"

namespace kiln {
namespace {

std::vector<uint32_t> merged(const std::vector<uint32_t>& a, const std::vector<uint32_t>& b) {
  std::vector<uint32_t> out;
  std::set_union(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(out));
  return out;
}

// Each kernel index once, in order of first use.
std::vector<uint32_t> distinct(const std::vector<uint32_t>& of_node) {
  std::vector<uint32_t> out;
  std::set<uint32_t> seen;
  for (uint32_t i : of_node)
    if (i != KernelIndices::none && seen.insert(i).second) out.push_back(i);
  return out;
}

}  // namespace

GraphSet::GraphSet(const std::vector<BlobView>& blobs, KernelTable& kernels, int device, unsigned threads,
                   size_t family_groups, const GateItems& gate, std::vector<RecordedFamily> recorded)
    : kernels_(kernels),
      device_(device),
      threads_(std::max(1u, threads)),
      // Decoding, grouping and update planning are CPU work only, free of the driver
      // contention that caps the build threads.
      cpu_threads_(std::max(threads_, std::min(8u, std::thread::hardware_concurrency()))) {
  gate.check_count(blobs.size(), "graph set");
  members_.resize(blobs.size());
  std::vector<std::string> signatures(blobs.size());
  std::vector<size_t> hashes(blobs.size());
  parallel_for(blobs.size(), cpu_threads_, [&](size_t i) {
    gate.wait(i);
    TimedSpan span(timeline_, "decode");
    auto m = std::make_unique<Member>();
    m->desc = decode_graph(blobs[i].data, blobs[i].size);
    signatures[i] = topology_signature(m->desc);
    hashes[i] = std::hash<std::string>{}(signatures[i]);
    members_[i] = std::move(m);
  });
  group(signatures, hashes);
  // The kernels' plan needs no families: it runs beside their planning and the updates'.
  std::vector<const GraphDesc*> descs;
  for (auto& m : members_) descs.push_back(&m->desc);
  std::future<std::vector<KernelIndices>> kernel_plan =
      std::async(std::launch::async, [&] { return kernels_.plan(descs, cpu_threads_); });
  plan(family_groups, std::move(recorded));
  // What switching a template to each member will update.
  parallel_for(members_.size(), cpu_threads_, [&](size_t i) {
    TimedSpan span(timeline_, "updates");
    Member& m = *members_[i];
    const Group& g = *groups_[m.group];
    const Family& f = *families_[g.family];
    std::vector<uint32_t> own = differing_nodes(members_[g.tmpl]->desc, m.desc);
    m.group_differing = own.size();
    if (!f.plan.merged()) {
      m.diff = std::move(own);
      return;
    }
    const std::vector<int32_t>& at = f.node_at[g.place];
    for (uint32_t s = 0; s < at.size(); ++s) {
      const Node& slot = *f.slots[s];
      if (at[s] < 0 ? can_disable(slot.type) : node_params_differ(slot, m.desc.nodes[static_cast<size_t>(at[s])]))
        m.diff.push_back(s);
    }
  });
  for (auto& f : families_)
    for (size_t i : f->members) f->varying = merged(f->varying, members_[i]->diff);
  std::vector<KernelIndices> planned = kernel_plan.get();
  for (size_t i = 0; i < members_.size(); ++i) members_[i]->kernels = std::move(planned[i]);
  list_family_kernels();
  ctx_ = kernels_.context();
  if (!ctx_) check(driver().cuCtxGetCurrent(&ctx_), "cuCtxGetCurrent");
  if (!ctx_) throw Error(ErrorKind::restore, "no CUDA context is current on the restoring thread");
  KILN_INFO("graph set: %zu graphs in %zu topology groups, %zu templates", members_.size(), groups_.size(),
            families_.size());
}

std::vector<FamilyPlan> GraphSet::checked_families(const std::vector<const GraphDesc*>& templates,
                                                   std::vector<RecordedFamily> recorded) const {
  std::vector<size_t> family_of(groups_.size(), SIZE_MAX);
  for (size_t f = 0; f < recorded.size(); ++f)
    for (size_t& g : recorded[f].groups) {
      if (g >= members_.size() || groups_[members_[g]->group]->tmpl != g)
        throw Error(ErrorKind::corrupt, format("archive family %zu names graph %zu, which is no topology group's "
                                               "template", f, g));
      g = members_[g]->group;
      if (family_of[g] != SIZE_MAX)
        throw Error(ErrorKind::corrupt, format("archive families %zu and %zu both hold topology group %zu",
                                               family_of[g], f, g));
      family_of[g] = f;
    }
  for (size_t g = 0; g < groups_.size(); ++g)
    if (family_of[g] == SIZE_MAX)
      throw Error(ErrorKind::corrupt, format("topology group %zu is in none of the archive's families", g));
  std::vector<FamilyPlan> plans;
  for (size_t f = 0; f < recorded.size(); ++f) plans.push_back(checked_family(templates, recorded[f], f, cpu_threads_));
  return plans;
}

void GraphSet::plan(size_t family_groups, std::vector<RecordedFamily> recorded) {
  TimedSpan span(timeline_, "families");
  std::vector<const GraphDesc*> templates;
  for (auto& g : groups_) templates.push_back(&members_[g->tmpl]->desc);
  FamilyLimits limits;
  limits.max_groups = family_groups ? family_groups : groups_.size();
  std::vector<FamilyPlan> plans;
  if (family_groups == 0 && !recorded.empty()) {
    plans = checked_families(templates, std::move(recorded));  // SAVE planned them without a cap
    families_recorded_ = true;
  } else {
    std::vector<std::vector<uint64_t>> keys;
    if (limits.max_groups > 1) {
      keys.resize(templates.size());
      parallel_for(templates.size(), cpu_threads_, [&](size_t g) { keys[g] = node_keys(*templates[g]); });
    }
    plans = plan_families(templates, std::move(keys), limits);
  }
  for (FamilyPlan& p : plans) {
    auto f = std::make_unique<Family>();
    for (size_t place = 0; place < p.groups.size(); ++place) {
      Group& g = *groups_[p.groups[place]];
      g.family = families_.size(), g.place = place;
      f->members.insert(f->members.end(), g.members.begin(), g.members.end());
    }
    if (p.merged()) {
      for (auto [place, node] : p.source) f->slots.push_back(&templates[p.groups[place]]->nodes[node]);
      f->node_at.assign(p.groups.size(), std::vector<int32_t>(p.slot_count(), -1));
      for (size_t place = 0; place < p.groups.size(); ++place)
        for (size_t n = 0; n < p.slot_of[place].size(); ++n)
          f->node_at[place][p.slot_of[place][n]] = static_cast<int32_t>(n);
    } else {
      f->single = templates[p.groups[0]];
      f->current = static_cast<long>(groups_[p.groups[0]]->tmpl);  // its exec holds the template's parameters
    }
    f->plan = std::move(p);
    f->enabled.assign(f->plan.slot_count(), 1);
    families_.push_back(std::move(f));
  }
}

void GraphSet::group(const std::vector<std::string>& signatures, const std::vector<size_t>& hashes) {
  TimedSpan span(timeline_, "groups");
  const std::vector<size_t> group_of = group_by_signature(signatures, hashes, cpu_threads_);
  for (size_t i = 0; i < members_.size(); ++i) {
    if (group_of[i] == groups_.size()) {
      groups_.push_back(std::make_unique<Group>());
      groups_.back()->tmpl = i;  // the first member (engines capture the largest size first)
    }
    members_[i]->group = group_of[i];
    groups_[group_of[i]]->members.push_back(i);
  }
}

void GraphSet::list_family_kernels() {
  // Per family: its template's kernels, and every member's once, so the template's build
  // resolves what switches launch without walking the members' nodes again.
  for (auto& f : families_) {
    const FamilyPlan& p = f->plan;
    if (p.merged()) {
      KernelIndices& k = f->merged_kernels;
      for (auto [place, node] : p.source)
        k.of_node.push_back(members_[groups_[p.groups[place]]->tmpl]->kernels.of_node[node]);
      k.distinct = distinct(k.of_node);
      f->base_kernels = &k;
    } else {
      f->base_kernels = &members_[groups_[p.groups[0]]->tmpl]->kernels;
    }
    for (size_t i : f->members) {
      const std::vector<uint32_t>& own = members_[i]->kernels.distinct;
      f->kernels.insert(f->kernels.end(), own.begin(), own.end());
    }
    std::sort(f->kernels.begin(), f->kernels.end());
    f->kernels.erase(std::unique(f->kernels.begin(), f->kernels.end()), f->kernels.end());
  }
}

GraphSet::~GraphSet() {
  {
    std::lock_guard<std::mutex> lk(mu_);  // a worker may be waiting for start_dedicated
    stop_.store(true);
  }
  cv_.notify_all();
  for (std::thread& t : workers_)
    if (t.joinable()) t.join();
  for (auto& m : members_) m->dedicated.store(nullptr);
}

void GraphSet::start(bool dedicated) {
  if (!workers_.empty()) throw Error(ErrorKind::restore, "graph set: background builds already started");
  task_count_ = families_.size() + (dedicated ? members_.size() : 0);
  started_ = SteadyClock::now();
  unsigned n = static_cast<unsigned>(std::min<size_t>(threads_, task_count_));
  for (unsigned t = 0; t < n; ++t) workers_.emplace_back([this] { worker(); });
}

void GraphSet::worker() {
  // The threads kiln starts have no current context: bind the one LOAD runs in (the
  // primary context PyTorch uses). A failure here is reported by each task, which binds
  // again before any driver call.
  driver().cuCtxSetCurrent(ctx_);
  for (size_t task; !stop_.load() && (task = next_task_.fetch_add(1)) < task_count_;) run_task(task);
}

void GraphSet::record(const char* phase, const BuildTimes& t) {
  std::string p = phase;
  timeline_.add(p + ".check", t.begin, t.checked);
  timeline_.add(p + ".build", t.checked, t.described);
  timeline_.add(p + ".instantiate", t.described, t.instantiated);
}

void GraphSet::copy_slots(Family& f) {
  size_t bytes = 0;  // what the nodes' arguments and region pointers take
  for (const Node* n : f.slots)
    bytes += n->kernel.args.size() + n->kernel.region_pointers.size() * sizeof(RegionPointer) + 8;
  f.merged.arena = GraphDesc::make_arena(bytes);
  const NodeAllocator alloc(f.merged.arena.get());
  f.merged.nodes.reserve(f.slots.size());
  for (const Node* n : f.slots) f.merged.nodes.emplace_back(*n, alloc);
  f.merged.edges = f.plan.edges;
  f.merged.event_count = f.plan.event_count;
}

std::unique_ptr<BuiltGraph> GraphSet::build_template(Family& f) {
  TimedSpan task(timeline_, "templates.task");
  if (f.plan.merged()) copy_slots(f);  // here, on the builds' threads: copying every node is not free
  {
    TimedSpan span(timeline_, "templates.kernels");
    kernels_.require(f.base_kernels->distinct);  // waits only for the binaries it launches
  }
  BuildTimes t;
  auto built = build_graph(f.base(), kernels_, device_, /*keep_topology=*/true, f.base_kernels, &t);
  record("templates", t);
  {
    // Here, beside the other templates' builds, rather than one after another on the
    // caller's thread once all exist; a failure is this family's.
    TimedSpan span(timeline_, "templates.upload");
    built->upload_and_wait();
  }
  // Switching to any member launches that member's kernels: resolved before the family
  // counts as replayable, so a failure surfaces at wait, not at the first switch.
  TimedSpan span(timeline_, "templates.member_kernels");
  kernels_.require(f.kernels);
  // Switches hand every member's argument bytes to the driver: checked before any is.
  for (size_t m : f.members)
    kernels_.check_arguments(members_[m]->desc, members_[m]->kernels.of_node, format("graph %zu", m));
  return built;
}

std::unique_ptr<BuiltGraph> GraphSet::build_dedicated(Member& m) {
  TimedSpan task(timeline_, "dedicated.task");
  kernels_.require(m.kernels.distinct);  // done by its template's task already; rethrows what failed there
  BuildTimes t;
  auto built = build_graph(m.desc, kernels_, device_, false, &m.kernels, &t);
  record("dedicated", t);
  return built;
}

void GraphSet::run_task(size_t task) {
  std::exception_ptr error;
  std::unique_ptr<BuiltGraph> built;
  bool is_family = task < families_.size();
  size_t index = is_family ? task : task - families_.size();
  if (!is_family) {
    // Own executables only after every template exists and is uploaded: until then all
    // threads work on making every graph replayable (builds contend inside the driver).
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait(lk, [&] { return (templates_done_ == families_.size() && dedicated_released_) || stop_.load(); });
  }
  try {
    bind_context(ctx_);
    built = is_family ? build_template(*families_[index]) : build_dedicated(*members_[index]);
  } catch (...) {
    error = std::current_exception();
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (is_family) {
      Family& f = *families_[index];
      f.exec = std::move(built);
      f.error = error;
      f.done = true;
      if (++templates_done_ == families_.size()) timeline_.add("templates.all", started_, SteadyClock::now());
    } else {
      Member& m = *members_[index];
      m.dedicated_error = error;
      m.dedicated_done = true;
      if (built && !m.dedicated.load()) {  // a fallback may have given it one already
        m.dedicated_owner = std::move(built);
        m.dedicated.store(m.dedicated_owner.get(), std::memory_order_release);
      }
    }
  }
  cv_.notify_all();
}

void GraphSet::wait(size_t i, bool dedicated) {
  Member& m = *members_.at(i);
  Family& f = *families_[groups_[m.group]->family];
  std::unique_lock<std::mutex> lk(mu_);
  if (workers_.empty()) throw Error(ErrorKind::restore, "graph set: background builds were not started");
  if (dedicated && task_count_ == families_.size())
    throw Error(ErrorKind::restore, "graph set: dedicated executables were not requested");
  cv_.wait(lk, [&] { return f.done; });
  if (f.error) std::rethrow_exception(f.error);
  if (!dedicated) return;
  release_dedicated(lk);
  cv_.wait(lk, [&] { return m.dedicated_done; });
  if (m.dedicated_error) std::rethrow_exception(m.dedicated_error);
}

void GraphSet::wait_all(bool dedicated) {
  for (size_t i = 0; i < members_.size(); ++i) wait(i, dedicated);
  kernels_.binaries().wait_all();  // a binary no graph needed yet still must not fail silently
}

void GraphSet::start_dedicated() {
  std::unique_lock<std::mutex> lk(mu_);
  release_dedicated(lk);
}

void GraphSet::release_dedicated(std::unique_lock<std::mutex>&) {
  if (dedicated_released_) return;
  dedicated_released_ = true;
  cv_.notify_all();
}

void GraphSet::launch(size_t i, CUstream stream) {
  if (BuiltGraph* own = members_.at(i)->dedicated.load(std::memory_order_acquire)) {
    own->launch(stream);
    return;
  }
  launch_template(i, stream);
}

void GraphSet::set_enabled(Family& f, uint32_t slot, bool on, size_t target) {
  const int8_t want = on ? 1 : 0;
  if (f.enabled[slot] == want) return;
  f.enabled[slot] = -1;  // unknown until the call succeeds
  CUresult r = driver().cuGraphNodeSetEnabled(f.exec->exec(), f.exec->handles()[slot], on ? 1u : 0u);
  if (r != CUDA_SUCCESS)
    throw Error(ErrorKind::restore,
                format("%s node %u of the merged template for graph %zu: %s", on ? "enabling" : "disabling", slot,
                       target, describe_result("cuGraphNodeSetEnabled", r).c_str()),
                r);
  f.enabled[slot] = want;
}

void GraphSet::switch_to(Family& f, size_t target) {
  const DriverTable& drv = driver();
  const Member& t = *members_[target];
  const std::vector<uint32_t>& slots =
      f.current < 0 ? f.varying : merged(members_[static_cast<size_t>(f.current)]->diff, t.diff);
  const std::vector<int32_t>* node_at = f.plan.merged() ? &f.node_at[groups_[t.group]->place] : nullptr;
  const std::vector<CUgraphNode>& handles = f.exec->handles();
  f.current = -1;  // until every node is updated
  for (uint32_t s : slots) {
    const long n = node_at ? (*node_at)[s] : static_cast<long>(s);
    CUresult r = CUDA_SUCCESS;
    const char* call = "";
    if (n < 0) {  // the graph lacks this node
      set_enabled(f, s, false, target);
      continue;
    }
    const Node& node = t.desc.nodes[static_cast<size_t>(n)];
    if (node_at && can_disable(node.type)) set_enabled(f, s, true, target);
    switch (node.type) {
      case NodeType::kernel: {
        KernelLaunchParams p(node.kernel, kernels_.function(t.kernels.of_node[static_cast<size_t>(n)]));
        r = drv.cuGraphExecKernelNodeSetParams(f.exec->exec(), handles[s], &p.params);
        call = "cuGraphExecKernelNodeSetParams";
        break;
      }
      case NodeType::memset: {
        CUDA_MEMSET_NODE_PARAMS p = memset_params(node.memset);
        r = drv.cuGraphExecMemsetNodeSetParams(f.exec->exec(), handles[s], &p, ctx_);
        call = "cuGraphExecMemsetNodeSetParams";
        break;
      }
      case NodeType::memcpy: {
        CUDA_MEMCPY3D p = memcpy_params(node.memcpy);
        r = drv.cuGraphExecMemcpyNodeSetParams(f.exec->exec(), handles[s], &p, ctx_);
        call = "cuGraphExecMemcpyNodeSetParams";
        break;
      }
      default: break;
    }
    if (r != CUDA_SUCCESS)
      throw Error(ErrorKind::restore,
                  format("updating node %u of the template for graph %zu: %s", s, target,
                         describe_result(call, r).c_str()),
                  r);
  }
  f.current = static_cast<long>(target);
  switches_.fetch_add(1);
}

GraphSet::Family::~Family() {
  try {
    if (launched) driver().cuEventDestroy(launched);
  } catch (const Error&) {
  }
}

void GraphSet::launch_template(size_t i, CUstream stream) {
  wait(i, false);
  Member& m = *members_[i];
  Family& f = *families_[groups_[m.group]->family];
  std::unique_lock<std::mutex> lk(f.launch_mu);
  const bool merged = f.plan.merged();
  if (merged && f.launched_recorded) check(driver().cuEventSynchronize(f.launched), "cuEventSynchronize");
  if (f.current != static_cast<long>(i)) {
    try {
      switch_to(f, i);
    } catch (const Error& e) {
      // Never replay a half-updated template: give this graph its own executable instead.
      KILN_WARN("%s; instantiating graph %zu on its own", e.what(), i);
      lk.unlock();
      std::unique_ptr<BuiltGraph> own = build_graph(m.desc, kernels_, device_, false, &m.kernels);
      own->launch(stream);
      std::lock_guard<std::mutex> guard(mu_);
      if (!m.dedicated.load()) {
        m.dedicated_owner = std::move(own);
        m.dedicated.store(m.dedicated_owner.get(), std::memory_order_release);
      }
      return;
    }
  }
  f.exec->launch(stream);
  if (merged) {
    const DriverTable& drv = driver();
    if (!f.launched) check(drv.cuEventCreate(&f.launched, CU_EVENT_DISABLE_TIMING), "cuEventCreate");
    check(drv.cuEventRecord(f.launched, stream), "cuEventRecord");
    f.launched_recorded = true;
  }
}

}  // namespace kiln
