// What is mapped where: the physical handles the process created, imported or made for
// multicast, and every mapping of them into its address space, seen through the interposer's
// cuMemCreate / cuMemImportFromShareableHandle / cuMulticastCreate / cuMemMap / cuIpc*
// wrappers. Each mapping gets a class (local, peer, host, multicast), the library that made
// it (region/owner.h), where it lies (a library slot of a region, the engine's part, or
// outside every region) and whether a graph capture was in progress. SAVE records the
// libraries' mappings; LOAD checks them before the first replay. Memory kiln maps for its
// own region is not seen here (kiln calls the driver directly).
#pragma once

#include <cuda.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <vector>

#include "region/owner.h"

namespace kiln {

enum class MappingClass : uint32_t {
  local = 0,      // memory of this process's device, created here
  peer = 1,       // memory another process exported (shareable handle or legacy IPC)
  host = 2,       // host memory mapped for the device
  multicast = 3,  // a multicast object
  unknown = 4,    // a handle kiln never saw made (created before kiln was enabled)
};

const char* mapping_class_name(MappingClass cls);

struct MappingRecord {
  uint64_t address;
  uint64_t size;
  MappingClass cls;
  Owner owner;           // the library that mapped it
  bool in_capture;       // mapped while a graph capture was in progress
  uint64_t sequence;     // order of mapping in this process
  CUmemGenericAllocationHandle handle = 0;  // 0 for a legacy IPC open
  bool multicast_bound = false;             // its memory is bound to a multicast object
};

// Memory a multicast object reaches: a multicast mapping, a mapping of memory bound to a
// multicast object (cuMulticastBindMem), or a range bound by address (cuMulticastBindAddr).
// Writes through the multicast address change it on every device of the object.
struct MulticastRange {
  uint64_t address;
  uint64_t size;
  Owner owner;  // who mapped or bound it
};

// A library mapping LOAD's mapping check found at SAVE's address with SAVE's class, slot
// offset and size; graph arguments may point into it (graph/build.cpp).
struct VerifiedRange {
  Owner owner;
  uint64_t address;
  uint64_t size;
};

class MappingRegistry {
 public:
  static MappingRegistry& instance();

  void on_create(CUmemGenericAllocationHandle handle, const CUmemAllocationProp* prop);
  void on_import(CUmemGenericAllocationHandle handle);
  void on_multicast(CUmemGenericAllocationHandle handle);
  // Memory bound to a multicast object, by handle or by address.
  void on_multicast_bind_mem(CUmemGenericAllocationHandle memory);
  void on_multicast_bind_addr(uint64_t address, uint64_t size, Owner owner);
  void on_export(CUmemGenericAllocationHandle handle);
  void on_release(CUmemGenericAllocationHandle handle);
  void on_map(uint64_t address, uint64_t size, CUmemGenericAllocationHandle handle, Owner owner);
  void on_unmap(uint64_t address);
  // A legacy IPC import: memory of another process, mapped where the driver chose.
  void on_ipc_open(uint64_t address, uint64_t size, Owner owner);

  // Whether a graph capture is in progress (kiln's capture paths set it around each
  // capture); mappings made meanwhile are marked in_capture.
  void set_capture_open(bool open);
  bool capture_open() const;

  // A library's reservation or allocation in its region slot; noted when a capture is in
  // progress.
  void on_library_request(Owner owner, const char* call, uint64_t size);

  // Every library call made while a capture was in progress (reservations, allocations,
  // mappings, IPC opens), in order, whether or not its memory is still mapped.
  struct CaptureEvent {
    Owner owner;
    const char* call;
    uint64_t size;
  };
  std::vector<CaptureEvent> capture_events() const;

  // Live mappings, in the order they were made.
  std::vector<MappingRecord> mappings() const;
  // Whether live mappings cover [address, address + len) without a gap.
  bool covers(uint64_t address, uint64_t len) const;
  // The live mapping holding `address`, if any.
  std::optional<MappingRecord> find(uint64_t address) const;
  // Everything a multicast object reaches (multicast mappings, bound memory), in no order.
  // A binding is kept until its memory is unmapped (kiln does not follow cuMulticastUnbind):
  // at worst a graph is refused that could have been kept.
  std::vector<MulticastRange> multicast_ranges() const;

  // The library mappings LOAD verified against SAVE's record (replacing any earlier set).
  void set_verified(std::vector<VerifiedRange> ranges);
  // Whether one verified range of `owner` holds [address, address + len) and live mappings
  // still cover it.
  bool verified_covers(Owner owner, uint64_t address, uint64_t len) const;
  // How many handles were exported as shareable handles.
  uint64_t exports() const;

  // Forgets every handle and mapping (tests: a fresh stand-in driver).
  void clear();

 private:
  struct Handle {
    MappingClass cls;
    bool exported;
    bool multicast_bound = false;
  };

  bool covers_locked(uint64_t address, uint64_t len) const;

  mutable std::mutex mu_;
  std::map<CUmemGenericAllocationHandle, Handle> handles_;
  std::map<uint64_t, MappingRecord> mappings_;  // by address
  std::vector<CaptureEvent> capture_events_;
  std::vector<MulticastRange> bound_ranges_;  // cuMulticastBindAddr
  std::vector<VerifiedRange> verified_;
  uint64_t sequence_ = 0;
  uint64_t exports_ = 0;
  bool capture_open_ = false;
};

}  // namespace kiln
