#include "region/region.h"

#include "common/error.h"
#include "common/log.h"

namespace kiln {
namespace {

CUmemAllocationProp device_prop(int device) {
  CUmemAllocationProp prop = {};
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  prop.location.id = device;
  return prop;
}

void require(bool ok, const char* what) {
  if (!ok) throw Error(ErrorKind::driver, format("the CUDA driver in use does not provide %s", what));
}

}  // namespace

Region::Region(const DriverTable& drv, const RegionConfig& config) : drv_(drv), config_(config) {
  require(drv_.cuMemAddressReserve && drv_.cuMemCreate && drv_.cuMemMap && drv_.cuMemSetAccess &&
              drv_.cuMemUnmap && drv_.cuMemRelease && drv_.cuMemAddressFree && drv_.cuMemGetAllocationGranularity,
          "the virtual memory management API (cuMemCreate/cuMemMap)");
  CUmemAllocationProp prop = device_prop(config_.device);
  size_t gran = 0;
  check(drv_.cuMemGetAllocationGranularity(&gran, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM),
        "cuMemGetAllocationGranularity");
  if (gran == 0) throw Error(ErrorKind::region, "the driver reported an allocation granularity of 0");
  granularity_ = gran;
  if (config_.base == 0 || config_.base % granularity_ != 0)
    throw Error(ErrorKind::region, format("region base 0x%llx is not a non-zero multiple of the allocation "
                                          "granularity (0x%llx)",
                                          (unsigned long long)config_.base, (unsigned long long)granularity_));
  if (config_.size == 0 || config_.size % granularity_ != 0)
    throw Error(ErrorKind::region, format("region size %llu is not a non-zero multiple of the allocation "
                                          "granularity (%llu)",
                                          (unsigned long long)config_.size, (unsigned long long)granularity_));
  CUdeviceptr got = 0;
  check(drv_.cuMemAddressReserve(&got, config_.size, granularity_, config_.base, 0), "cuMemAddressReserve");
  if (got != config_.base) {
    drv_.cuMemAddressFree(got, config_.size);
    throw Error(ErrorKind::region_base,
                format("the driver did not honour the region base: asked for 0x%llx (%llu bytes) on device %d, "
                       "got 0x%llx. Something reserved that range first (reserve the region before any other CUDA "
                       "work) or choose another base (KILN_REGION_BASE)",
                       (unsigned long long)config_.base, (unsigned long long)config_.size, config_.device,
                       (unsigned long long)got));
  }
  reserved_ = true;
  try {
    library_slot_ = config_.library_slot / granularity_ * granularity_;
    if (config_.library_slot && (library_slot_ == 0 || library_slot_ >= config_.size / (kLibraryOwners + 1)))
      throw Error(ErrorKind::region,
                  format("library slots of %llu bytes do not fit a region of %llu bytes: each of the %d library "
                         "slots must hold at least one granule (%llu bytes) and together leave the engine at least "
                         "as much as one slot (KILN_REGION_LIBRARY_SLOT)",
                         (unsigned long long)config_.library_slot, (unsigned long long)config_.size, kLibraryOwners,
                         (unsigned long long)granularity_));
    uint64_t engine_end = config_.size - kLibraryOwners * library_slot_;
    parts_[0].begin = 0, parts_[0].end = engine_end;
    for (int i = 0; i < kLibraryOwners; ++i) {
      parts_[1 + i].begin = engine_end + i * library_slot_;
      parts_[1 + i].end = parts_[1 + i].begin + library_slot_;
    }
    for (Part& p : parts_) p.cursor = p.begin;
    if (config_.prealloc) {
      prealloc_end_ = align_up(config_.prealloc, granularity_);
      if (prealloc_end_ > engine_end)
        throw Error(ErrorKind::region, "preallocation is larger than the engine's part of the region");
      prealloc_handle_ = map_piece(0, prealloc_end_);
      bytes_backed_ = prealloc_end_;
    }
  } catch (...) {
    teardown();
    throw;
  }
  KILN_INFO("region on device %d: [0x%llx, 0x%llx), granularity %llu, preallocated %llu bytes, library slots of "
            "%llu bytes",
            config_.device, (unsigned long long)config_.base, (unsigned long long)(config_.base + config_.size),
            (unsigned long long)granularity_, (unsigned long long)prealloc_end_, (unsigned long long)library_slot_);
}

Region::~Region() { teardown(); }

void Region::teardown() noexcept {
  for (auto& [offset, live] : live_) {
    uint64_t at = live.mapped_from;
    for (CUmemGenericAllocationHandle h : live.handles) {
      uint64_t piece = offset + live.size - at;  // the single piece past the preallocated prefix
      drv_.cuMemUnmap(config_.base + at, piece);
      drv_.cuMemRelease(h);
    }
  }
  live_.clear();
  if (prealloc_handle_) {
    drv_.cuMemUnmap(config_.base, prealloc_end_);
    drv_.cuMemRelease(prealloc_handle_);
    prealloc_handle_ = 0;
  }
  if (reserved_) {
    drv_.cuMemAddressFree(config_.base, config_.size);
    reserved_ = false;
  }
}

CUmemGenericAllocationHandle Region::map_piece(uint64_t offset, uint64_t bytes) {
  CUmemAllocationProp prop = device_prop(config_.device);
  CUmemGenericAllocationHandle handle = 0;
  CUresult r = drv_.cuMemCreate(&handle, bytes, &prop, 0);
  if (r != CUDA_SUCCESS) throw Error(ErrorKind::region, describe_result("cuMemCreate", r), r);
  r = drv_.cuMemMap(config_.base + offset, bytes, 0, handle, 0);
  if (r != CUDA_SUCCESS) {
    drv_.cuMemRelease(handle);
    throw Error(ErrorKind::region, describe_result("cuMemMap", r), r);
  }
  CUmemAccessDesc access = {};
  access.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  access.location.id = config_.device;
  access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
  r = drv_.cuMemSetAccess(config_.base + offset, bytes, &access, 1);
  if (r != CUDA_SUCCESS) {
    drv_.cuMemUnmap(config_.base + offset, bytes);
    drv_.cuMemRelease(handle);
    throw Error(ErrorKind::region, describe_result("cuMemSetAccess", r), r);
  }
  return handle;
}

int Region::part_index(Owner owner) const {
  return owner == Owner::engine || library_slot_ == 0 ? 0 : static_cast<int>(owner);
}

PartBounds Region::part(Owner owner) const {
  const Part& p = parts_[part_index(owner)];
  return {p.begin, p.end};
}

Owner Region::owner_at(uint64_t offset) const {
  for (Owner o : kLibraryOwnerList) {
    const Part& p = parts_[part_index(o)];
    if (library_slot_ && offset >= p.begin && offset < p.end) return o;
  }
  return Owner::engine;
}

uint64_t Region::carve(const Part& part, uint64_t bytes, uint64_t alignment, Owner owner) {
  uint64_t align = alignment > granularity_ ? align_up(alignment, granularity_) : granularity_;
  uint64_t offset = align_up(part.cursor, align);
  uint64_t size = align_up(bytes, granularity_);
  if (bytes == 0 || size < bytes || offset < part.cursor || offset > part.end || size > part.end - offset) {
    bool own_slot = owner != Owner::engine && library_slot_;
    throw Error(ErrorKind::region,
                format("%s%s on device %d is exhausted: %llu bytes requested at offset %llu of %llu%s",
                       own_slot ? owner_label(owner) : "region", own_slot ? "'s slot of the kiln region" : "",
                       config_.device, (unsigned long long)bytes, (unsigned long long)(offset - part.begin),
                       (unsigned long long)(part.end - part.begin),
                       own_slot ? " (raise KILN_REGION_LIBRARY_SLOT or bound the library's reservation, e.g. "
                                  "NVSHMEM_MAX_MEMORY_PER_GPU)"
                                : ""),
                CUDA_ERROR_OUT_OF_MEMORY);
  }
  return offset;
}

uint64_t Region::allocate(uint64_t bytes, AllocKind kind, Owner owner) {
  std::lock_guard<std::mutex> lock(mu_);
  Part& part = parts_[part_index(owner)];
  uint64_t offset = carve(part, bytes, granularity_, owner);
  uint64_t size = align_up(bytes, granularity_);
  Live live{size, false, {}, offset + size};
  if (offset + size > prealloc_end_) {
    // Back what the preallocated prefix does not cover with one physical piece.
    uint64_t from = offset > prealloc_end_ ? offset : prealloc_end_;
    live.handles.push_back(map_piece(from, offset + size - from));
    live.mapped_from = from;
    bytes_backed_ += offset + size - from;
  }
  live_.emplace(offset, std::move(live));
  part.cursor = offset + size;
  part.trajectory.push_back({offset - part.begin, bytes, kind});
  KILN_TRACE("region alloc #%zu of %s: offset 0x%llx, %llu bytes", part.trajectory.size() - 1, owner_name(owner),
             (unsigned long long)offset, (unsigned long long)bytes);
  return config_.base + offset;
}

uint64_t Region::reserve(uint64_t bytes, uint64_t alignment, Owner owner) {
  std::lock_guard<std::mutex> lock(mu_);
  Part& part = parts_[part_index(owner)];
  uint64_t offset = carve(part, bytes, alignment, owner);
  uint64_t size = align_up(bytes, granularity_);
  live_.emplace(offset, Live{size, true, {}, offset + size});
  part.cursor = offset + size;
  part.trajectory.push_back({offset - part.begin, bytes, AllocKind::reserve});
  KILN_DEBUG("region reservation #%zu of %s: offset 0x%llx, %llu bytes", part.trajectory.size() - 1,
             owner_name(owner), (unsigned long long)offset, (unsigned long long)bytes);
  return config_.base + offset;
}

std::vector<TrajectoryEntry> Region::library_trajectory(Owner owner) const {
  std::lock_guard<std::mutex> lock(mu_);
  int i = part_index(owner);
  if (i == 0) return {};
  return parts_[i].trajectory;
}

void Region::unmap_piece(uint64_t offset, uint64_t bytes, CUmemGenericAllocationHandle handle) {
  CUresult r = drv_.cuMemUnmap(config_.base + offset, bytes);
  if (r != CUDA_SUCCESS) KILN_ERROR("%s", describe_result("cuMemUnmap", r).c_str());
  r = drv_.cuMemRelease(handle);
  if (r != CUDA_SUCCESS) KILN_ERROR("%s", describe_result("cuMemRelease", r).c_str());
}

bool Region::release(uint64_t addr) {
  if (!contains(addr)) return false;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(addr - config_.base);
  if (it == live_.end() || it->second.reservation_only) return false;
  Live& live = it->second;
  for (CUmemGenericAllocationHandle h : live.handles) {
    uint64_t piece = it->first + live.size - live.mapped_from;
    unmap_piece(live.mapped_from, piece, h);
    bytes_backed_ -= piece;
  }
  live_.erase(it);  // the bump cursor never goes back: addresses are never reused
  return true;
}

bool Region::release_reservation(uint64_t addr) {
  if (!contains(addr)) return false;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(addr - config_.base);
  if (it == live_.end() || !it->second.reservation_only) return false;
  live_.erase(it);
  return true;
}

bool Region::is_backed(uint64_t addr, uint64_t len) const {
  if (!contains(addr) || len > config_.size - (addr - config_.base)) return false;
  uint64_t begin = addr - config_.base, end = begin + len;
  if (end <= prealloc_end_) return true;
  std::lock_guard<std::mutex> lock(mu_);
  // Walk the live allocations covering [begin, end); they must be contiguous and backed.
  uint64_t at = begin < prealloc_end_ ? prealloc_end_ : begin;
  auto it = live_.upper_bound(at);
  if (it == live_.begin()) return false;
  --it;
  while (at < end) {
    if (it == live_.end() || it->first > at || it->first + it->second.size <= at || it->second.reservation_only)
      return false;
    at = it->first + it->second.size;
    ++it;
  }
  return true;
}

bool Region::is_live(uint64_t addr) const {
  if (!contains(addr)) return false;
  uint64_t at = addr - config_.base;
  if (at < prealloc_end_) return true;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.upper_bound(at);
  if (it == live_.begin()) return false;
  --it;
  return at < it->first + it->second.size;
}

void Region::suspend() {
  std::lock_guard<std::mutex> lock(mu_);
  active_ = false;
}

void Region::resume() {
  std::lock_guard<std::mutex> lock(mu_);
  active_ = true;
}

bool Region::active() const {
  std::lock_guard<std::mutex> lock(mu_);
  return active_;
}

uint64_t Region::cursor() const {
  std::lock_guard<std::mutex> lock(mu_);
  return parts_[0].cursor;
}

void Region::set_cursor(uint64_t offset) {
  std::lock_guard<std::mutex> lock(mu_);
  Part& main = parts_[0];
  uint64_t highest = main.cursor;  // the bump cursor is the high-water mark of every allocation
  if (offset < highest || offset > main.end)
    throw Error(ErrorKind::region, format("cannot move the region cursor to offset %llu: allocations so far end at "
                                          "%llu and the engine's part of the region holds %llu bytes",
                                          (unsigned long long)offset, (unsigned long long)highest,
                                          (unsigned long long)main.end));
  main.cursor = offset;
}

std::vector<TrajectoryEntry> Region::trajectory() const {
  std::lock_guard<std::mutex> lock(mu_);
  return parts_[0].trajectory;
}

size_t Region::trajectory_length() const {
  std::lock_guard<std::mutex> lock(mu_);
  return parts_[0].trajectory.size();
}

std::optional<Divergence> Region::compare_prefix(const std::vector<TrajectoryEntry>& expected) const {
  std::lock_guard<std::mutex> lock(mu_);
  const std::vector<TrajectoryEntry>& trajectory = parts_[0].trajectory;
  size_t n = std::max(expected.size(), trajectory.size());
  for (size_t i = 0; i < n; ++i) {
    std::optional<TrajectoryEntry> want, got;
    if (i < expected.size()) want = expected[i];
    if (i < trajectory.size()) got = trajectory[i];
    if (!want || !got || want->offset != got->offset || want->size != got->size || want->kind != got->kind)
      return Divergence{i, want, got};
  }
  return std::nullopt;
}

uint64_t Region::bytes_backed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return bytes_backed_;
}

}  // namespace kiln
