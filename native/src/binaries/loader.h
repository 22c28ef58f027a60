// LOAD side: an archive's kernel binaries, one slot each, loaded once into the driver.
// A small pool loads them in slot order in the background while the caller decodes the
// graph blobs (nothing in decoding needs a binary); a thread that needs a slot nobody has
// started loads it itself, so the binaries a template needs never queue behind the rest.
// Each handle stays in its slot whichever thread loaded it, so results do not depend on
// the thread count.
#pragma once

#include <cuda.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/once_cells.h"
#include "common/timeline.h"
#include "archive/verify_gate.h"

namespace kiln {

struct BinarySource {
  CUlibrary library = nullptr;     // loaded from the archive by kiln, or the app's own
  CUmodule module = nullptr;       // the app's own module
  bool owned = false;              // kiln loaded it and unloads it
  const uint8_t* image = nullptr;  // bytes to load (already validated) when no handle is given
  size_t size = 0;
};

class BinaryLoader {
 public:
  // Images must stay valid while the loader exists; `keep_alive` (released last, after
  // every library is unloaded) can hold them. `ctx`: the context the pool's threads bind.
  // With a gate (one item per slot), a slot's image is read only once its item passed.
  BinaryLoader(std::vector<BinarySource> slots, CUcontext ctx, std::shared_ptr<void> keep_alive = nullptr,
               GateItems gate = {});
  ~BinaryLoader();
  BinaryLoader(const BinaryLoader&) = delete;
  BinaryLoader& operator=(const BinaryLoader&) = delete;

  // threads > 0: load on that many background threads and return at once (failures are
  // kept per slot and rethrown by get/wait_all). 0: load every slot now, on this thread,
  // throwing the first failure.
  void start(unsigned threads);
  // The slot's handles, loading it on this thread if nobody has started; rethrows the
  // failure that loading it met. Thread-safe.
  const BinarySource& get(uint32_t slot);
  // Every slot settled (pending ones loaded on this thread), then the lowest failed slot's
  // failure rethrown.
  void wait_all();

  size_t size() const { return slots_.size(); }
  CUcontext context() const { return ctx_; }
  unsigned threads() const { return static_cast<unsigned>(workers_.size()); }
  // "binaries.load": each image's cuLibraryLoadData; "binaries.all": from start() until the
  // last slot was loaded.
  std::map<std::string, TimeTotal> timings() const { return timeline_.totals(); }

 private:
  void load(uint32_t slot);
  void worker();

  std::vector<BinarySource> slots_;
  CUcontext ctx_;
  std::shared_ptr<void> keep_alive_;
  GateItems gate_;
  OnceCells cells_;
  std::vector<std::thread> workers_;
  std::atomic<bool> stop_{false};
  size_t to_load_ = 0;
  std::atomic<size_t> finished_{0};
  SteadyClock::time_point started_;
  Timeline timeline_;
};

// Loads one image into the driver (context-independent library); Error(restore) names the
// slot when the driver refuses it.
CUlibrary load_library(const uint8_t* data, size_t size, uint32_t slot);

}  // namespace kiln
