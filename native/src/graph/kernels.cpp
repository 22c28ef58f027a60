#include "graph/kernels.h"

#include <algorithm>
#include <set>
#include <string_view>
#include <unordered_map>

#include "common/context.h"
#include "common/driver.h"
#include "common/error.h"
#include "common/log.h"
#include "common/parallel.h"

namespace kiln {

namespace {

using Wanted = std::vector<std::pair<int32_t, int32_t>>;  // attribute, maximum (KernelTable::Wanted)

// Raises `attribute` in `wanted` to at least `value`.
void want(Wanted& wanted, int32_t attribute, int32_t value) {
  for (auto& [a, v] : wanted)
    if (a == attribute) {
      v = std::max(v, value);
      return;
    }
  wanted.emplace_back(attribute, value);
}

// The parameter layout the driver reports for a loaded function (`kernel`: its library
// kernel, when it came from a library), as SAVE's walk read it.
std::vector<ParamSlot> read_layout(CUfunction f, CUkernel kernel, const std::string& entry) {
  const DriverTable& drv = driver();
  std::vector<ParamSlot> out;
  for (size_t idx = 0;; ++idx) {
    size_t off = 0, size = 0;
    CUresult r = drv.cuFuncGetParamInfo ? drv.cuFuncGetParamInfo(f, idx, &off, &size) : CUDA_ERROR_NOT_SUPPORTED;
    if (r == CUDA_ERROR_INVALID_HANDLE && kernel && drv.cuKernelGetParamInfo)
      r = drv.cuKernelGetParamInfo(kernel, idx, &off, &size);
    if (r == CUDA_ERROR_INVALID_VALUE) break;  // past the last parameter
    if (r != CUDA_SUCCESS)
      throw Error(ErrorKind::restore,
                  format("kernel %s: cannot read the loaded function's parameter layout: %s", entry.c_str(),
                         describe_result("cuFuncGetParamInfo", r).c_str()),
                  r);
    if (idx >= (1u << 16) || off > UINT32_MAX || size > UINT32_MAX)  // parameters fit in 32 KiB
      throw Error(ErrorKind::restore, format("kernel %s: the loaded function reports an implausible parameter layout",
                                             entry.c_str()));
    out.push_back({static_cast<uint32_t>(off), static_cast<uint32_t>(size)});
  }
  return out;
}

uint64_t layout_end(const std::vector<ParamSlot>& layout) {
  uint64_t end = 0;
  for (const ParamSlot& s : layout) end = std::max<uint64_t>(end, uint64_t{s.offset} + s.size);
  return end;
}

// What differs between a node's recorded parameter layout and its function's, or "".
std::string layout_difference(const KernelShape& shape, const std::vector<ParamSlot>& function) {
  if (shape.extra_buffer) return "";  // one buffer, no recorded layout: its length is checked per node
  const std::vector<ParamSlot>& recorded = shape.params;
  if (recorded.size() != function.size())
    return format("the archive records %zu parameter%s, the loaded function takes %zu", recorded.size(),
                  recorded.size() == 1 ? "" : "s", function.size());
  for (size_t i = 0; i < recorded.size(); ++i)
    if (recorded[i].offset != function[i].offset || recorded[i].size != function[i].size)
      return format("parameter %zu is recorded at byte %u with %u bytes, the loaded function has it at byte %u with "
                    "%u bytes",
                    i, recorded[i].offset, recorded[i].size, function[i].offset, function[i].size);
  return "";
}

void check_slot(uint32_t binary, const std::string& entry, size_t binaries) {
  if (binary >= binaries)
    throw Error(ErrorKind::corrupt, format("kernel %s refers to binary slot %u of %zu", entry.c_str(), binary, binaries));
}

}  // namespace

KernelTable::KernelTable(std::unique_ptr<BinaryLoader> binaries) : binaries_(std::move(binaries)) {}

KernelTable::~KernelTable() {
  stop_.store(true);
  wait_background();
}

void KernelTable::wait_background() {
  for (std::thread& t : resolvers_)
    if (t.joinable()) t.join();
}

void KernelTable::resolve_in_background(unsigned threads, Blobs blobs) {
  if (!resolvers_.empty()) throw Error(ErrorKind::restore, "kernel table: background resolution already started");
  blobs.gate.check_count(blobs.views.size(), "kernel table");
  blobs_ = std::move(blobs);
  resolvers_started_ = SteadyClock::now();
  resolvers_left_.store(threads);
  for (unsigned t = 0; t < threads; ++t) resolvers_.emplace_back([this] { resolver(); });
}

void KernelTable::plan_blobs() {
  TimedSpan span(timeline_, "kernels.plan_blobs");
  std::map<std::pair<uint32_t, std::string>, Wanted> found;  // ordered by slot: the loader's order
  const size_t binaries = binaries_->size();
  for (size_t i = 0; i < blobs_.views.size() && !stop_.load(); ++i) {
    blobs_.gate.wait(i);
    for (BlobKernel& k : blob_kernels(blobs_.views[i].data, blobs_.views[i].size)) {
      check_slot(k.binary, k.entry, binaries);
      Wanted& wanted = found[{k.binary, std::move(k.entry)}];
      for (const FunctionAttribute& a : k.function_attributes) want(wanted, a.attribute, a.value);
    }
  }
  std::lock_guard<std::mutex> lk(mu_);
  std::lock_guard<std::mutex> attrs(attr_mu_);
  for (const auto& [key, wanted] : found) add_planned(key.first, key.second, wanted);
}

void KernelTable::rethrow_blob_plan_failure() {
  std::lock_guard<std::mutex> lk(blob_plan_mu_);
  if (blob_plan_error_) std::rethrow_exception(blob_plan_error_);
}

void KernelTable::resolver() {
  std::call_once(blob_plan_once_, [this] {  // until it is done there is nothing to resolve
    try {
      plan_blobs();
    } catch (...) {
      std::lock_guard<std::mutex> lk(blob_plan_mu_);
      blob_plan_error_ = std::current_exception();
    }
  });
  cells_.drain(stop_, try_bind_context(binaries_->context()), [this](size_t i) { resolve(kernels_[i]); });
  if (resolvers_left_.fetch_sub(1) == 1) timeline_.add("kernels.background", resolvers_started_, SteadyClock::now());
}

namespace {

// One graph's distinct kernels with the attribute values it needs: graphs repeat the same
// few hundred kernels over thousands of nodes, so the shared table sees each once per graph.
struct GraphKernels {
  struct Use {
    uint32_t slot;
    const std::string* entry;
    Wanted wanted;
  };
  std::vector<Use> uses;
  std::vector<uint32_t> use_of_node;  // KernelIndices::none for other nodes
};

struct SlotEntryHash {
  size_t operator()(const std::pair<uint32_t, std::string_view>& k) const {
    return std::hash<std::string_view>{}(k.second) * 31 + k.first;
  }
};

GraphKernels kernels_of(const GraphDesc& desc, size_t binaries) {
  GraphKernels out;
  out.use_of_node.assign(desc.nodes.size(), KernelIndices::none);
  // Nodes decoded from one blob share their shapes: each name is hashed once per shape.
  std::unordered_map<const KernelShape*, uint32_t> by_shape;
  std::unordered_map<std::pair<uint32_t, std::string_view>, uint32_t, SlotEntryHash> seen;
  for (size_t i = 0; i < desc.nodes.size(); ++i) {
    const Node& n = desc.nodes[i];
    if (n.type != NodeType::kernel) continue;
    const KernelShape& shape = n.kernel.info();
    auto [known, first] = by_shape.emplace(&shape, 0);
    if (first) {
      check_slot(shape.binary, shape.entry, binaries);
      auto [it, fresh] = seen.emplace(std::make_pair(shape.binary, std::string_view(shape.entry)),
                                      static_cast<uint32_t>(out.uses.size()));
      if (fresh) out.uses.push_back({shape.binary, &shape.entry, {}});
      known->second = it->second;
      Wanted& wanted = out.uses[it->second].wanted;
      for (const FunctionAttribute& a : shape.function_attributes) want(wanted, a.attribute, a.value);
    }
    out.use_of_node[i] = known->second;
    want(out.uses[known->second].wanted, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
         static_cast<int32_t>(n.kernel.shared_mem));
  }
  return out;
}

// A graph's uses renumbered as table indices.
KernelIndices table_indices(const GraphKernels& g, const std::vector<uint32_t>& index_of_use) {
  KernelIndices out;
  out.distinct = index_of_use;
  out.of_node.reserve(g.use_of_node.size());
  for (uint32_t use : g.use_of_node) out.of_node.push_back(use == KernelIndices::none ? use : index_of_use[use]);
  return out;
}

}  // namespace

std::vector<KernelIndices> KernelTable::plan(const std::vector<const GraphDesc*>& descs, unsigned threads) {
  std::vector<GraphKernels> per_graph(descs.size());
  const size_t binaries = binaries_->size();
  parallel_for(descs.size(), threads, [&](size_t i) { per_graph[i] = kernels_of(*descs[i], binaries); });
  std::vector<std::vector<uint32_t>> index_of_use(descs.size());
  {
    std::lock_guard<std::mutex> lk(mu_);
    std::lock_guard<std::mutex> attrs(attr_mu_);
    for (size_t g = 0; g < descs.size(); ++g)
      for (const GraphKernels::Use& use : per_graph[g].uses)
        index_of_use[g].push_back(static_cast<uint32_t>(add_planned(use.slot, *use.entry, use.wanted)));
  }
  std::vector<KernelIndices> out(descs.size());
  for (size_t g = 0; g < descs.size(); ++g) out[g] = table_indices(per_graph[g], index_of_use[g]);
  return out;
}

size_t KernelTable::add_planned(uint32_t slot, const std::string& entry, const Wanted& wanted) {
  auto [it, fresh] = index_.emplace(std::make_pair(slot, entry), kernels_.size());
  if (fresh) {
    kernels_.append([&](Kernel& k) { k.slot = slot, k.entry = entry; });
    cells_.add();
  }
  Kernel& k = kernels_[it->second];
  for (auto [attribute, value] : wanted) {
    auto [w, inserted] = k.wanted.emplace(attribute, value);
    if (!inserted && value > w->second) w->second = value;
  }
  return it->second;
}

size_t KernelTable::index_of(uint32_t slot, const std::string& entry) const {
  auto it = index_.find(std::make_pair(slot, entry));
  if (it == index_.end()) throw Error(ErrorKind::restore, format("kernel %s was not planned", entry.c_str()));
  return it->second;
}

KernelIndices KernelTable::indices(const GraphDesc& desc) const {
  KernelIndices out;
  out.of_node.assign(desc.nodes.size(), KernelIndices::none);
  std::unordered_map<const KernelShape*, uint32_t> by_shape;  // one name lookup per shape
  std::set<uint32_t> seen;
  std::lock_guard<std::mutex> lk(mu_);
  for (size_t i = 0; i < desc.nodes.size(); ++i) {
    const Node& n = desc.nodes[i];
    if (n.type != NodeType::kernel) continue;
    const KernelShape& shape = n.kernel.info();
    auto [known, first] = by_shape.emplace(&shape, 0);
    if (first) known->second = static_cast<uint32_t>(index_of(shape.binary, shape.entry));
    out.of_node[i] = known->second;
    if (seen.insert(known->second).second) out.distinct.push_back(known->second);
  }
  return out;
}

void KernelTable::resolve(Kernel& k) {
  const BinarySource& src = binaries_->get(k.slot);  // loads the binary here if nobody has
  TimedSpan span(timeline_, "kernels.resolve");
  const DriverTable& drv = driver();
  CUfunction f = nullptr;
  CUkernel kernel = nullptr;
  CUresult r;
  if (src.module) {
    r = drv.cuModuleGetFunction(&f, src.module, k.entry.c_str());
  } else {
    r = drv.cuLibraryGetKernel(&kernel, src.library, k.entry.c_str());
    if (r == CUDA_SUCCESS) r = drv.cuKernelGetFunction(&f, kernel);
  }
  if (r != CUDA_SUCCESS)
    throw Error(ErrorKind::restore, format("kernel %s not found in archive binary %u: %s", k.entry.c_str(), k.slot,
                                           describe_result("kernel lookup", r).c_str()),
                r);
  k.layout = read_layout(f, kernel, k.entry);
  k.function = f;
  apply_attributes(k);
  k.resolved.store(true, std::memory_order_release);
}

namespace {

// Limits the application may have raised further for its own launches of a kernel it
// shares with the archive (engines reuse PyTorch's loaded modules): kiln raises these to
// what its graphs need and never lowers them.
bool is_limit(int32_t attribute) {
  return attribute == CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES ||
         attribute == CU_FUNC_ATTRIBUTE_NON_PORTABLE_CLUSTER_SIZE_ALLOWED;
}

}  // namespace

void KernelTable::apply_attributes(Kernel& k) {
  const DriverTable& drv = driver();
  std::lock_guard<std::mutex> lk(attr_mu_);
  for (const auto& [attribute, value] : k.wanted) {
    auto done = k.applied.find(attribute);
    if (done != k.applied.end() && done->second >= value) continue;
    auto attr = static_cast<CUfunction_attribute>(attribute);
    int current = 0;
    if (drv.cuFuncGetAttribute(&current, attr, k.function) == CUDA_SUCCESS &&
        (current == value || (is_limit(attribute) && current > value))) {
      k.applied[attribute] = value;
      continue;
    }
    CUresult r = drv.cuFuncSetAttribute(k.function, attr, value);
    if (r != CUDA_SUCCESS)
      throw Error(ErrorKind::restore,
                  format("kernel %s: cannot set function attribute %d to %d: %s", k.entry.c_str(), attribute, value,
                         describe_result("cuFuncSetAttribute", r).c_str()),
                  r);
    k.applied[attribute] = value;
  }
}

void KernelTable::require(const GraphDesc& desc) {
  rethrow_blob_plan_failure();  // before the lookups: a failed blob plan leaves kernels unplanned
  require(indices(desc).distinct);
}

void KernelTable::require(const std::vector<uint32_t>& kernels) {
  rethrow_blob_plan_failure();
  for (uint32_t i : kernels) {
    if (i >= kernels_.size()) throw Error(ErrorKind::restore, format("kernel #%u was not planned", i));
    Kernel& k = kernels_[i];
    cells_.run(i, [&] { resolve(k); });
    apply_attributes(k);  // a later plan may have raised what an earlier one applied
  }
}

KernelIndices KernelTable::prepare(const GraphDesc& desc) {
  KernelIndices indices = std::move(plan({&desc}).front());
  require(indices.distinct);
  return indices;
}

CUfunction KernelTable::function(uint32_t index) const {
  if (index >= kernels_.size()) throw Error(ErrorKind::restore, format("kernel #%u was not planned", index));
  const Kernel& k = kernels_[index];
  if (!k.resolved.load(std::memory_order_acquire))
    throw Error(ErrorKind::restore, format("kernel %s was not prepared", k.entry.c_str()));
  return k.function;
}

CUfunction KernelTable::function(uint32_t slot, const std::string& entry) const {
  size_t i;
  {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = index_.find(std::make_pair(slot, entry));
    if (it == index_.end()) throw Error(ErrorKind::restore, format("kernel %s was not prepared", entry.c_str()));
    i = it->second;
  }
  return function(static_cast<uint32_t>(i));
}

void KernelTable::check_arguments(const GraphDesc& desc, const std::vector<uint32_t>& kernel_of,
                                  const std::string& graph) const {
  if (kernel_of.size() != desc.nodes.size())
    throw Error(ErrorKind::restore, "check_arguments: kernel indices of another graph");
  // Nodes decoded from one blob share their shapes: each layout is compared once.
  std::unordered_map<const KernelShape*, uint64_t> needed;  // shape -> argument bytes it needs
  for (size_t i = 0; i < desc.nodes.size(); ++i) {
    const Node& n = desc.nodes[i];
    if (n.type != NodeType::kernel) continue;
    const KernelShape& shape = n.kernel.info();
    auto [it, first] = needed.emplace(&shape, 0);
    auto fail = [&](const std::string& what) {
      return Error(ErrorKind::restore, format("kernel %s (graph node %zu%s%s): %s", shape.entry.c_str(), i,
                                              graph.empty() ? "" : " of ", graph.c_str(), what.c_str()));
    };
    if (first) {
      function(kernel_of[i]);  // throws unless resolved
      const Kernel& k = kernels_[kernel_of[i]];
      std::string differs = layout_difference(shape, k.layout);
      if (!differs.empty()) throw fail(differs);
      it->second = layout_end(shape.extra_buffer ? k.layout : shape.params);
    }
    if (n.kernel.args.size() < it->second)
      throw fail(format("its %zu argument bytes do not cover the function's parameters (%llu bytes)",
                        n.kernel.args.size(), (unsigned long long)it->second));
  }
}

size_t KernelTable::size() const {
  size_t n = 0;
  for (size_t i = 0, planned = kernels_.size(); i < planned; ++i) n += kernels_[i].resolved.load();
  return n;
}

std::map<std::string, TimeTotal> KernelTable::timings() const {
  std::map<std::string, TimeTotal> out = binaries_->timings();
  for (auto& [category, total] : timeline_.totals()) out[category] = total;
  return out;
}

}  // namespace kiln
