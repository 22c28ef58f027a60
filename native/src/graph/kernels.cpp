#include "graph/kernels.h"

#include <set>

#include "common/driver.h"
#include "common/error.h"
#include "common/log.h"

namespace kiln {

KernelTable::KernelTable(std::unique_ptr<BinaryLoader> binaries) : binaries_(std::move(binaries)) {}

void KernelTable::plan(const std::vector<const GraphDesc*>& descs) {
  std::lock_guard<std::mutex> lk(mu_);
  std::lock_guard<std::mutex> attrs(attr_mu_);
  for (const GraphDesc* desc : descs) {
    for (const Node& n : desc->nodes) {
      if (n.type != NodeType::kernel) continue;
      const KernelNode& kn = n.kernel;
      if (kn.binary >= binaries_->size())
        throw Error(ErrorKind::corrupt, format("kernel %s refers to binary slot %u of %zu", kn.entry.c_str(),
                                               kn.binary, binaries_->size()));
      auto [it, fresh] = index_.emplace(std::make_pair(kn.binary, kn.entry), kernels_.size());
      if (fresh) {
        kernels_.emplace_back();
        kernels_.back().slot = kn.binary;
        kernels_.back().entry = kn.entry;
        cells_.add();
      }
      Kernel& k = kernels_[it->second];
      auto want = [&](int32_t attribute, int32_t value) {
        auto [w, inserted] = k.wanted.emplace(attribute, value);
        if (!inserted && value > w->second) w->second = value;
      };
      for (const FunctionAttribute& a : kn.function_attributes) want(a.attribute, a.value);
      want(CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, static_cast<int32_t>(kn.shared_mem));
    }
  }
}

size_t KernelTable::index_of(uint32_t slot, const std::string& entry) const {
  auto it = index_.find(std::make_pair(slot, entry));
  if (it == index_.end()) throw Error(ErrorKind::restore, format("kernel %s was not planned", entry.c_str()));
  return it->second;
}

void KernelTable::resolve(Kernel& k) {
  const BinarySource& src = binaries_->get(k.slot);  // loads the binary here if nobody has
  TimedSpan span(timeline_, "kernels.resolve");
  const DriverTable& drv = driver();
  CUfunction f = nullptr;
  CUresult r;
  if (src.module) {
    r = drv.cuModuleGetFunction(&f, src.module, k.entry.c_str());
  } else {
    CUkernel kernel = nullptr;
    r = drv.cuLibraryGetKernel(&kernel, src.library, k.entry.c_str());
    if (r == CUDA_SUCCESS) r = drv.cuKernelGetFunction(&f, kernel);
  }
  if (r != CUDA_SUCCESS)
    throw Error(ErrorKind::restore, format("kernel %s not found in archive binary %u: %s", k.entry.c_str(), k.slot,
                                           describe_result("kernel lookup", r).c_str()),
                r);
  k.function = f;
  apply_attributes(k);
}

void KernelTable::apply_attributes(Kernel& k) {
  const DriverTable& drv = driver();
  std::lock_guard<std::mutex> lk(attr_mu_);
  for (const auto& [attribute, value] : k.wanted) {
    auto done = k.applied.find(attribute);
    if (done != k.applied.end() && done->second >= value) continue;
    auto attr = static_cast<CUfunction_attribute>(attribute);
    int current = 0;
    if (drv.cuFuncGetAttribute(&current, attr, k.function) == CUDA_SUCCESS && current == value) {
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
  std::vector<size_t> needed;
  {
    std::lock_guard<std::mutex> lk(mu_);
    std::set<size_t> seen;
    for (const Node& n : desc.nodes) {
      if (n.type != NodeType::kernel) continue;
      size_t i = index_of(n.kernel.binary, n.kernel.entry);
      if (seen.insert(i).second) needed.push_back(i);
    }
  }
  for (size_t i : needed) {
    Kernel* k;
    {
      std::lock_guard<std::mutex> lk(mu_);
      k = &kernels_[i];
    }
    cells_.run(i, [&] { resolve(*k); });
    apply_attributes(*k);  // a later plan may have raised what an earlier one applied
  }
}

void KernelTable::prepare(const GraphDesc& desc) {
  plan({&desc});
  require(desc);
}

CUfunction KernelTable::function(uint32_t slot, const std::string& entry) const {
  size_t i;
  const Kernel* k;
  {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = index_.find(std::make_pair(slot, entry));
    if (it == index_.end()) throw Error(ErrorKind::restore, format("kernel %s was not prepared", entry.c_str()));
    i = it->second;
    k = &kernels_[i];
  }
  if (!cells_.done(i)) throw Error(ErrorKind::restore, format("kernel %s was not prepared", entry.c_str()));
  return k->function;
}

size_t KernelTable::size() const {
  std::lock_guard<std::mutex> lk(mu_);
  size_t n = 0;
  for (size_t i = 0; i < kernels_.size(); ++i) n += cells_.done(i);
  return n;
}

std::map<std::string, TimeTotal> KernelTable::timings() const {
  std::map<std::string, TimeTotal> out = binaries_->timings();
  for (auto& [category, total] : timeline_.totals()) out[category] = total;
  return out;
}

}  // namespace kiln
