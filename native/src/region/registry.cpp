#include "region/registry.h"

#include <mutex>

#include "common/error.h"

namespace kiln {

RegionRegistry& RegionRegistry::instance() {
  static RegionRegistry* registry = new RegionRegistry();  // never destroyed: hooks may run at exit
  return *registry;
}

Region& RegionRegistry::open(const DriverTable& drv, const RegionConfig& config) {
  if (config.device < 0 || config.device >= kMaxDevices)
    throw Error(ErrorKind::region, format("device ordinal %d is out of range", config.device));
  std::unique_lock<std::shared_mutex> lock(mu_);
  if (regions_[config.device])
    throw Error(ErrorKind::region, format("device %d already has a kiln region", config.device));
  regions_[config.device] = std::make_unique<Region>(drv, config);
  ++count_;
  return *regions_[config.device];
}

void RegionRegistry::close(int device) {
  if (device < 0 || device >= kMaxDevices) return;
  std::unique_lock<std::shared_mutex> lock(mu_);
  if (regions_[device]) {
    regions_[device].reset();
    --count_;
  }
}

bool RegionRegistry::has(int device) const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  return device >= 0 && device < kMaxDevices && regions_[device] != nullptr;
}

bool RegionRegistry::any() const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  return count_ > 0;
}

}  // namespace kiln
