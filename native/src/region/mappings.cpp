#include "region/mappings.h"

#include <algorithm>

#include "common/log.h"

namespace kiln {

const char* mapping_class_name(MappingClass cls) {
  switch (cls) {
    case MappingClass::local: return "local";
    case MappingClass::peer: return "peer";
    case MappingClass::host: return "host";
    case MappingClass::multicast: return "multicast";
    default: return "unknown";
  }
}

MappingRegistry& MappingRegistry::instance() {
  static MappingRegistry* registry = new MappingRegistry();  // never destroyed: hooks may run at exit
  return *registry;
}

void MappingRegistry::on_create(CUmemGenericAllocationHandle handle, const CUmemAllocationProp* prop) {
  MappingClass cls = MappingClass::local;
  if (prop) {
    switch (prop->location.type) {
      case CU_MEM_LOCATION_TYPE_HOST:
      case CU_MEM_LOCATION_TYPE_HOST_NUMA:
      case CU_MEM_LOCATION_TYPE_HOST_NUMA_CURRENT: cls = MappingClass::host; break;
      default: break;
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  handles_[handle] = Handle{cls, false};
}

void MappingRegistry::on_import(CUmemGenericAllocationHandle handle) {
  std::lock_guard<std::mutex> lock(mu_);
  handles_[handle] = Handle{MappingClass::peer, false};
}

void MappingRegistry::on_multicast(CUmemGenericAllocationHandle handle) {
  std::lock_guard<std::mutex> lock(mu_);
  handles_[handle] = Handle{MappingClass::multicast, false};
}

void MappingRegistry::on_multicast_bind_mem(CUmemGenericAllocationHandle memory) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = handles_.find(memory);
  if (it != handles_.end()) it->second.multicast_bound = true;
  for (auto& [address, m] : mappings_)
    if (m.handle == memory) m.multicast_bound = true;
}

void MappingRegistry::on_multicast_bind_addr(uint64_t address, uint64_t size, Owner owner) {
  std::lock_guard<std::mutex> lock(mu_);
  bound_ranges_.push_back({address, size, owner});
}

void MappingRegistry::on_export(CUmemGenericAllocationHandle handle) {
  std::lock_guard<std::mutex> lock(mu_);
  ++exports_;
  auto it = handles_.find(handle);
  if (it != handles_.end()) it->second.exported = true;
}

void MappingRegistry::on_release(CUmemGenericAllocationHandle handle) {
  // A mapping keeps its memory alive after the handle is released: its record stays.
  std::lock_guard<std::mutex> lock(mu_);
  handles_.erase(handle);
}

void MappingRegistry::on_map(uint64_t address, uint64_t size, CUmemGenericAllocationHandle handle, Owner owner) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = handles_.find(handle);
  MappingClass cls = it == handles_.end() ? MappingClass::unknown : it->second.cls;
  bool bound = it != handles_.end() && it->second.multicast_bound;
  mappings_[address] = MappingRecord{address, size, cls, owner, capture_open_, sequence_++, handle, bound};
  if (capture_open_) capture_events_.push_back({owner, "cuMemMap", size});
  KILN_DEBUG("%s mapped %s memory at 0x%llx (%llu bytes)%s", owner_label(owner), mapping_class_name(cls),
             (unsigned long long)address, (unsigned long long)size, capture_open_ ? " during a graph capture" : "");
}

void MappingRegistry::on_unmap(uint64_t address) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = mappings_.find(address);
  if (it == mappings_.end()) return;
  uint64_t end = address + it->second.size;
  mappings_.erase(it);
  // A binding by address ends with the memory it bound.
  bound_ranges_.erase(std::remove_if(bound_ranges_.begin(), bound_ranges_.end(),
                                     [&](const MulticastRange& b) { return b.address >= address && b.address < end; }),
                      bound_ranges_.end());
}

void MappingRegistry::on_ipc_open(uint64_t address, uint64_t size, Owner owner) {
  std::lock_guard<std::mutex> lock(mu_);
  mappings_[address] = MappingRecord{address, size, MappingClass::peer, owner, capture_open_, sequence_++};
  if (capture_open_) capture_events_.push_back({owner, "cuIpcOpenMemHandle", size});
  KILN_DEBUG("%s opened a legacy IPC handle at 0x%llx (%llu bytes)%s", owner_label(owner),
             (unsigned long long)address, (unsigned long long)size, capture_open_ ? " during a graph capture" : "");
}

void MappingRegistry::on_library_request(Owner owner, const char* call, uint64_t size) {
  std::lock_guard<std::mutex> lock(mu_);
  if (capture_open_) capture_events_.push_back({owner, call, size});
}

std::vector<MappingRegistry::CaptureEvent> MappingRegistry::capture_events() const {
  std::lock_guard<std::mutex> lock(mu_);
  return capture_events_;
}

void MappingRegistry::set_capture_open(bool open) {
  std::lock_guard<std::mutex> lock(mu_);
  capture_open_ = open;
}

bool MappingRegistry::capture_open() const {
  std::lock_guard<std::mutex> lock(mu_);
  return capture_open_;
}

std::vector<MappingRecord> MappingRegistry::mappings() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<MappingRecord> out;
  out.reserve(mappings_.size());
  for (const auto& [address, m] : mappings_) out.push_back(m);
  std::sort(out.begin(), out.end(),
            [](const MappingRecord& a, const MappingRecord& b) { return a.sequence < b.sequence; });
  return out;
}

bool MappingRegistry::covers(uint64_t address, uint64_t len) const {
  std::lock_guard<std::mutex> lock(mu_);
  return covers_locked(address, len);
}

bool MappingRegistry::covers_locked(uint64_t address, uint64_t len) const {
  uint64_t at = address, end = address + len;
  if (end < address) return false;
  auto it = mappings_.upper_bound(at);
  if (it == mappings_.begin()) return false;
  --it;
  while (at < end) {
    if (it == mappings_.end() || it->first > at || it->first + it->second.size <= at) return false;
    at = it->first + it->second.size;
    ++it;
  }
  return true;
}

std::optional<MappingRecord> MappingRegistry::find(uint64_t address) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = mappings_.upper_bound(address);
  if (it == mappings_.begin()) return std::nullopt;
  --it;
  if (address - it->first >= it->second.size) return std::nullopt;
  return it->second;
}

std::vector<MulticastRange> MappingRegistry::multicast_ranges() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<MulticastRange> out = bound_ranges_;
  for (const auto& [address, m] : mappings_)
    if (m.cls == MappingClass::multicast || m.multicast_bound) out.push_back({address, m.size, m.owner});
  return out;
}

void MappingRegistry::set_verified(std::vector<VerifiedRange> ranges) {
  std::lock_guard<std::mutex> lock(mu_);
  verified_ = std::move(ranges);
}

bool MappingRegistry::verified_covers(Owner owner, uint64_t address, uint64_t len) const {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t end = address + len;
  if (end < address) return false;
  for (const VerifiedRange& v : verified_)
    if (v.owner == owner && address >= v.address && end <= v.address + v.size) return covers_locked(address, len);
  return false;
}

uint64_t MappingRegistry::exports() const {
  std::lock_guard<std::mutex> lock(mu_);
  return exports_;
}

void MappingRegistry::clear() {
  std::lock_guard<std::mutex> lock(mu_);
  handles_.clear();
  mappings_.clear();
  capture_events_.clear();
  bound_ranges_.clear();
  verified_.clear();
  sequence_ = 0;
  exports_ = 0;
  capture_open_ = false;
}

}  // namespace kiln
