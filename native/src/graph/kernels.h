// LOAD side: the kernel functions an archive's graphs launch, resolved once per (binary
// slot, entry name) from the binaries loaded for the archive (or the copies the
// application already loaded). Function attributes are planned over every graph first and
// then set once, at their maximum, before any graph uses the function: raising one later,
// while another thread instantiates a graph with it, would race.
#pragma once

#include <cuda.h>

#include <atomic>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "archive/verify_gate.h"
#include "binaries/loader.h"
#include "common/once_cells.h"
#include "common/stable_vector.h"
#include "common/timeline.h"
#include "graph/blob.h"
#include "graph/desc.h"

namespace kiln {

// Where a graph's kernels sit in a KernelTable, so builds and switches find each node's
// function by index instead of by name.
struct KernelIndices {
  static constexpr uint32_t none = UINT32_MAX;  // a node that launches no kernel
  std::vector<uint32_t> of_node;   // per node of the graph
  std::vector<uint32_t> distinct;  // each kernel once, in order of first use
};

class KernelTable {
 public:
  explicit KernelTable(std::unique_ptr<BinaryLoader> binaries);
  ~KernelTable();
  KernelTable(const KernelTable&) = delete;
  KernelTable& operator=(const KernelTable&) = delete;

  // Registers the kernels of `descs` with each function attribute at its maximum over them
  // (and over earlier plans); returns where each graph's kernels sit. CPU only, each graph's
  // kernels listed on up to `threads` threads. Throws Error(corrupt) for a slot the archive
  // lacks.
  std::vector<KernelIndices> plan(const std::vector<const GraphDesc*>& descs, unsigned threads = 1);
  // Where the kernels of `desc` sit; every one must have been planned (else Error(restore)).
  KernelIndices indices(const GraphDesc& desc) const;
  // Resolves the kernels `desc` launches (loading their binaries here if nobody has started
  // them) and applies their planned attributes; rethrows the failure of a binary or lookup
  // it depends on. Thread-safe; every kernel of `desc` must have been planned.
  void require(const GraphDesc& desc);
  // The same for planned kernels given by index (KernelIndices::distinct).
  void require(const std::vector<uint32_t>& kernels);
  // The archive's graph blobs for resolve_in_background to plan from before they decode.
  struct Blobs {
    std::vector<BlobView> views;
    GateItems gate;                    // each blob is read once its item passed
    std::shared_ptr<void> keep_alive;  // the views' memory, released with the table
  };
  // Starts `threads` background threads (bound to the loader's context) that resolve every
  // planned kernel nobody has taken yet, in plan order, so that builds find the kernels of
  // the graphs they switch to already resolved. With `blobs`, one of them first plans the
  // kernels their shape tables name, in binary slot order (the order the loader loads
  // them), with their recorded function attributes (plan adds each node's shared memory
  // later), so resolution runs beside the binary loads instead of after decoding. A failure
  // stays in the kernel's cell and is rethrown by require, as is a failure to plan the
  // blobs. Once.
  void resolve_in_background(unsigned threads, Blobs blobs = {});
  // Joins the background resolvers (once every planned kernel was taken); failures stay in
  // their kernels' cells. Not thread-safe against itself or resolve_in_background.
  void wait_background();
  // plan + require, for callers restoring one graph at a time.
  KernelIndices prepare(const GraphDesc& desc);
  // A kernel resolved by require, by index: lock-free, for every node a build adds or a
  // switch updates. Throws Error(restore) if it was not resolved.
  CUfunction function(uint32_t index) const;
  // The same by name (a map lookup under a lock); thread-safe.
  CUfunction function(uint32_t slot, const std::string& entry) const;
  // Checks every kernel node of `desc` against the function it launches (by `kernel_of`, per
  // node, each resolved by require) before its argument bytes reach the driver, which reads
  // one buffer per parameter of the function: the recorded layout (count, offsets, sizes)
  // must be the function's, and the argument bytes must cover it. Throws Error(restore)
  // naming the kernel, the graph node (and `graph` when given) and what differs.
  void check_arguments(const GraphDesc& desc, const std::vector<uint32_t>& kernel_of,
                       const std::string& graph = "") const;

  size_t size() const;  // kernels resolved so far
  CUcontext context() const { return binaries_->context(); }
  BinaryLoader& binaries() { return *binaries_; }
  // "kernels.resolve": each function's lookup and attribute setting (binary loading not
  // included); "kernels.background": from resolve_in_background until its threads found
  // nothing left; plus the binary loader's categories.
  std::map<std::string, TimeTotal> timings() const;

 private:
  struct Kernel {
    uint32_t slot = 0;
    std::string entry;
    CUfunction function = nullptr;          // set by resolve, before `resolved`
    std::vector<ParamSlot> layout;          // the function's parameters, set with `function`
    std::atomic<bool> resolved{false};      // found and its attributes applied
    std::map<int32_t, int32_t> wanted;      // attribute -> planned value; guarded by attr_mu_
    std::map<int32_t, int32_t> applied;     // guarded by attr_mu_
  };

  using Wanted = std::vector<std::pair<int32_t, int32_t>>;  // attribute, maximum

  size_t index_of(uint32_t slot, const std::string& entry) const;  // caller holds mu_
  // Registers a kernel (or raises its wanted attributes) and returns its index; caller holds
  // mu_ and attr_mu_.
  size_t add_planned(uint32_t slot, const std::string& entry, const Wanted& wanted);
  void plan_blobs();
  void rethrow_blob_plan_failure();
  void resolve(Kernel& k);
  void apply_attributes(Kernel& k);
  void resolver();

  std::unique_ptr<BinaryLoader> binaries_;
  mutable std::mutex mu_;  // index_ and appending to kernels_ (each Kernel's cell guards its function)
  std::map<std::pair<uint32_t, std::string>, size_t> index_;
  StableVector<Kernel> kernels_;  // read by index without mu_
  OnceCells cells_;             // one per kernel: resolved once, whoever needs it first
  std::mutex attr_mu_;
  std::vector<std::thread> resolvers_;
  std::atomic<bool> stop_{false};
  std::atomic<unsigned> resolvers_left_{0};
  Blobs blobs_;
  std::once_flag blob_plan_once_;   // the first resolver plans; the others wait for it
  std::mutex blob_plan_mu_;         // blob_plan_error_, which require reads
  std::exception_ptr blob_plan_error_;
  SteadyClock::time_point resolvers_started_;
  Timeline timeline_;
};

}  // namespace kiln
