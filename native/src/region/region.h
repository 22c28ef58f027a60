// A per-device deterministic address region: one virtual reservation at a fixed base,
// carved by a bump cursor at the allocation granularity and backed on demand (or from a
// preallocated prefix). The same sequence of requests gives the same addresses in every
// process; the trajectory of requests is recorded so a later process can prove it.
//
// The region is split in parts, each with its own bump cursor and trajectory: the engine's
// part, [0, size - kLibraryOwners * library_slot), and one slot of `library_slot` bytes per
// communication library at the top (NCCL, then NVSHMEM; see region/owner.h). A library's
// requests are carved from its own slot, so a change in its allocation sequence never moves
// the engine's memory. With library_slot 0 every request goes to the engine's part.
#pragma once

#include <cuda.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <vector>

#include "common/driver.h"
#include "region/owner.h"

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
  uint64_t library_slot = 0;  // bytes of each library's slot (rounded down to the granularity)
};

// Where an owner's part of the region lies, as offsets from the region base.
struct PartBounds {
  uint64_t begin;
  uint64_t end;
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

  // Backed allocation (cuMemAlloc and friends) from `owner`'s part. Throws Error(region)
  // with the driver's code.
  uint64_t allocate(uint64_t bytes, AllocKind kind, Owner owner = Owner::engine);
  // Virtual range only (the application maps it itself), from `owner`'s part.
  uint64_t reserve(uint64_t bytes, uint64_t alignment, Owner owner = Owner::engine);

  // Bytes of each library slot (0: libraries share the engine's part).
  uint64_t library_slot() const { return library_slot_; }
  // The part `owner`'s requests are carved from (the engine's part when there are no slots).
  PartBounds part(Owner owner) const;
  // The part holding a region offset, by owner; the engine for the engine's part.
  Owner owner_at(uint64_t offset) const;
  // A library's requests so far, offsets from its slot's start (empty without slots).
  std::vector<TrajectoryEntry> library_trajectory(Owner owner) const;
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

  // The engine part's cursor (offset from the base).
  uint64_t cursor() const;
  // Moves the engine part's bump cursor forward; it may not move below the end of any allocation ever
  // made (addresses are never reused).
  void set_cursor(uint64_t offset);

  // The engine part's trajectory (offsets from the base).
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

  struct Part {
    uint64_t begin = 0, end = 0;  // offsets from the base
    uint64_t cursor = 0;          // offset from the base
    std::vector<TrajectoryEntry> trajectory;
  };

  uint64_t align_up(uint64_t v, uint64_t a) const { return (v + a - 1) / a * a; }
  int part_index(Owner owner) const;
  uint64_t carve(const Part& part, uint64_t bytes, uint64_t alignment, Owner owner);  // caller holds mu_
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
  uint64_t library_slot_ = 0;
  Part parts_[1 + kLibraryOwners];  // the engine's, then one per library owner
  std::map<uint64_t, Live> live_;   // by offset
  uint64_t bytes_backed_ = 0;
};

}  // namespace kiln
