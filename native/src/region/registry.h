// The process's regions, one per device. Hooks look regions up under a shared lock so that
// closing a region never races an allocation in flight.
#pragma once

#include <memory>
#include <shared_mutex>

#include "region/region.h"

namespace kiln {

constexpr int kMaxDevices = 64;

class RegionRegistry {
 public:
  static RegionRegistry& instance();

  // Throws when the device already has a region or the reservation fails.
  Region& open(const DriverTable& drv, const RegionConfig& config);
  void close(int device);
  bool has(int device) const;

  // Runs fn(Region*) under the shared lock; nullptr when there is no region for the device.
  template <typename Fn>
  auto with_device(int device, Fn&& fn) const {
    std::shared_lock<std::shared_mutex> lock(mu_);
    Region* r = (device >= 0 && device < kMaxDevices) ? regions_[device].get() : nullptr;
    return fn(r);
  }

  // Runs fn(Region*) with the region containing addr (nullptr if none).
  template <typename Fn>
  auto with_address(uint64_t addr, Fn&& fn) const {
    std::shared_lock<std::shared_mutex> lock(mu_);
    Region* found = nullptr;
    for (const auto& r : regions_) {
      if (r && r->contains(addr)) {
        found = r.get();
        break;
      }
    }
    return fn(found);
  }

  // True when any region exists (cheap check for the hooks' fast path).
  bool any() const;

 private:
  mutable std::shared_mutex mu_;
  std::unique_ptr<Region> regions_[kMaxDevices];
  int count_ = 0;
};

}  // namespace kiln
