// The stand-in driver's module and graph calls, for CPU tests of LOAD (binary loading,
// kernel resolution, template builds and switches). Images are PTX-shaped text whose
// "//fake" lines declare what the driver would find in a real binary:
//   //fake name b3            the library's name in launch records
//   //fake entry k0 8,4,8     a kernel and its parameter sizes (none: no parameters)
//   //fake attr k0 4=40       a fresh function's attribute (CUfunction_attribute 4 is 40)
//   //fake delay-ms 20        cuLibraryLoadData takes this long
//   //fake fail-load          cuLibraryLoadData fails with CUDA_ERROR_INVALID_IMAGE
//   //fake reuse-handles      the load reuses the last unloaded library's handle values
//                             (library, then its kernels and functions), as the driver may
// Graphs can also be read back (nodes, edges, kernel parameters and layouts, names), so a
// graph LOAD built can be walked as SAVE walks a captured one.
// Every launch appends a record of what the executable would run (kernels by library and
// entry name, their argument bytes, memset/memcpy operands, edges): two restores of one
// archive launch the same records exactly when they built the same graphs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/driver.h"

namespace kiln::testing {

struct FakeGraphStats {
  int64_t live_libraries;
  int64_t live_graphs;
  int64_t live_execs;
  int64_t live_events;
  int64_t library_loads;
  int64_t preserved_loads;      // loads that let the driver keep reading the caller's image
  int64_t max_concurrent_loads;
  int64_t loader_threads;       // distinct threads that called cuLibraryLoadData
  int64_t attribute_sets;       // cuFuncSetAttribute calls
  int64_t context_errors;       // calls made with no current context (strict mode)
  int64_t instantiations;
  int64_t get_kernel_calls;     // cuLibraryGetKernel calls
  int64_t param_info_calls;     // cuFuncGetParamInfo calls
  int64_t enable_calls;         // cuGraphNodeSetEnabled calls
  int64_t event_syncs;          // cuEventSynchronize calls
  int64_t uploads;              // successful cuGraphUpload calls
  int64_t own_stream_uploads;   // of them, on a live stream created through cuStreamCreate
  int64_t live_streams;         // streams created and not yet destroyed
  int64_t ctx_syncs;            // cuCtxSynchronize calls
};

// Fills the table's module, graph and context calls and resets their state. Strict
// context: a thread has no current context until it sets one, and calls that need one fail
// with CUDA_ERROR_INVALID_CONTEXT (as new threads do on the real driver).
void install_fake_graph_calls(DriverTable& table, bool strict_context);
FakeGraphStats fake_graph_stats();
// Whether a graph was launched since the last cuCtxSynchronize (its work may still run).
bool fake_work_pending();
std::vector<std::string> fake_launches();  // in launch order
void clear_fake_launches();
// The next `count` cuGraphNodeSetEnabled calls fail (CUDA_ERROR_NOT_SUPPORTED).
void fail_node_enables(int64_t count);
// The next `count` cuGraphUpload calls fail (CUDA_ERROR_OUT_OF_MEMORY).
void fail_uploads(int64_t count);

}  // namespace kiln::testing
