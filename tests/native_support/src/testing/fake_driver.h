// A stand-in for the driver's virtual-memory API, for CPU tests of the region logic: it
// tracks reservations, physical handles and mappings, and injects faults on request. The
// module and graph calls LOAD uses come from testing/fake_graphs.*.
#pragma once

#include <cstdint>

#include "common/driver.h"

namespace kiln::testing {

struct FakeDriverConfig {
  uint64_t granularity = 2u << 20;
  bool honour_base = true;     // false: reservations land elsewhere than the hint
  int fail_create_after = -1;  // cuMemCreate fails once this many succeeded (-1: never)
  int fail_map_after = -1;
  uint64_t device_memory = 1ull << 40;  // cuMemCreate fails with OUT_OF_MEMORY past this
  bool strict_context = false;          // see install_fake_graph_calls
};

struct FakeDriverStats {
  int64_t reservations;
  int64_t live_handles;
  int64_t live_mappings;
  uint64_t physical_bytes;
  int64_t create_calls;
  int64_t busy_unmaps;  // cuMemUnmap calls while launched work was not yet synchronised
};

// Installs the fake as kiln's driver table (replacing any previous fake).
void install_fake_driver(const FakeDriverConfig& config);
void uninstall_fake_driver();
FakeDriverStats fake_driver_stats();

// The stand-in's sharing calls kiln does not call itself (cuMemExportToShareableHandle,
// cuMemImportFromShareableHandle, cuMulticastCreate, cuMulticastBindMem,
// cuMulticastBindAddr, cuIpcOpenMemHandle,
// cuIpcCloseMemHandle), by base name; nullptr for any other.
void* fake_sharing_function(const char* base);

}  // namespace kiln::testing
