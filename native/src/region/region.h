// A per-device deterministic address region: one virtual reservation at a fixed base,
// carved by a bump cursor at the allocation granularity and backed on demand (or from a
// preallocated prefix). The same sequence of requests gives the same addresses in every
// process; the trajectory of requests is recorded so a later process can prove it.
#pragma once

#include <cuda.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <vector>

#include "common/driver.h"

namespace kiln {

enum class AllocKind : uint32_t { alloc = 0, pitch = 1, reserve = 2, kiln = 3 };

struct TrajectoryEntry {
  uint64_t offset;  // from the region base
  uint64_t size;    // bytes requested
  AllocKind kind;
};

struct Divergence {
  uint64_t index;
  std::optional<TrajectoryEntry> expected;  // none: more allocations than recorded
  std::optional<TrajectoryEntry> actual;    // none: fewer allocations than recorded
};

struct RegionConfig {
  int device = 0;
  uint64_t base = 0;
  uint64_t size = 0;
  uint64_t prealloc = 0;  // bytes mapped up front (rounded up to the granularity)
};

class Region {
 public:
  // Reserves the range; throws Error(region_base) when the driver ignores the base hint.
  Region(const DriverTable& drv, const RegionConfig& config);
  ~Region();
  Region(const Region&) = delete;
  Region& operator=(const Region&) = delete;

  int device() const { return config_.device; }
  uint64_t base() const { return config_.base; }
  uint64_t size() const { return config_.size; }
  uint64_t granularity() const { return granularity_; }
  bool contains(uint64_t addr) const { return addr >= config_.base && addr - config_.base < config_.size; }

  // Backed allocation (cuMemAlloc and friends). Throws Error(region) with the driver's code.
  uint64_t allocate(uint64_t bytes, AllocKind kind);
  // Virtual range only (the application maps it itself).
  uint64_t reserve(uint64_t bytes, uint64_t alignment);
  // False when addr does not start a live allocation of this region.
  bool release(uint64_t addr);
  bool release_reservation(uint64_t addr);

  // Whether [addr, addr+len) lies inside live, backed allocations.
  bool is_backed(uint64_t addr, uint64_t len) const;
  // Whether a live allocation or reservation covers addr. Addresses are never reused, so a
  // region address that nothing covers now never held data a kernel could mean to read.
  bool is_live(uint64_t addr) const;

  void suspend();
  void resume();
  bool active() const;

  uint64_t cursor() const;
  // Moves the bump cursor forward; it may not move below the end of any allocation ever
  // made (addresses are never reused).
  void set_cursor(uint64_t offset);

  std::vector<TrajectoryEntry> trajectory() const;
  size_t trajectory_length() const;
  // First difference between this process's trajectory and `expected[0:count)`.
  std::optional<Divergence> compare_prefix(const std::vector<TrajectoryEntry>& expected) const;

  uint64_t bytes_backed() const;

 private:
  struct Live {
    uint64_t size;  // bytes of VA (granularity multiple)
    bool reservation_only;
    std::vector<CUmemGenericAllocationHandle> handles;  // physical pieces mapped by kiln
    uint64_t mapped_from;                                // offset of the first kiln mapping
  };

  uint64_t align_up(uint64_t v, uint64_t a) const { return (v + a - 1) / a * a; }
  uint64_t carve(uint64_t bytes, uint64_t alignment);  // caller holds mu_
  CUmemGenericAllocationHandle map_piece(uint64_t offset, uint64_t bytes);
  void unmap_piece(uint64_t offset, uint64_t bytes, CUmemGenericAllocationHandle handle);
  void teardown() noexcept;

  const DriverTable& drv_;
  RegionConfig config_;
  uint64_t granularity_ = 0;
  uint64_t prealloc_end_ = 0;  // offset; [0, prealloc_end_) is permanently mapped
  CUmemGenericAllocationHandle prealloc_handle_ = 0;
  bool reserved_ = false;

  mutable std::mutex mu_;
  bool active_ = true;
  uint64_t cursor_ = 0;
  std::map<uint64_t, Live> live_;  // by offset
  std::vector<TrajectoryEntry> trajectory_;
  uint64_t bytes_backed_ = 0;
};

}  // namespace kiln
