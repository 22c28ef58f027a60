// Python bindings of the test-only library (kiln_testing._native_testing): the stand-in
// driver (testing/fake_driver.*, testing/fake_graphs.*) and helpers that drive kiln's
// registries as the interposer's hooks would. Never part of the runtime: this module links
// against the installed libkiln_preload.so (the instance kiln._native loaded, found by its
// soname), and injects the stand-in through kiln::replace_driver (common/driver.h), which
// kiln's own Python module does not expose.
#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/unique_ptr.h>
#include <nanobind/stl/vector.h>

#include <set>

#include "binaries/registry.h"
#include "common/driver.h"
#include "common/error.h"
#include "graph/build.h"
#include "graph/event_registry.h"
#include "graph/kernels.h"
#include "graph/tensor_maps.h"
#include "testing/fake_driver.h"
#include "testing/fake_graphs.h"
#include "testing/fake_hooks.h"
#include "region/mappings.h"

namespace nb = nanobind;
using namespace nb::literals;

NB_MODULE(_native_testing, t) {
  using namespace kiln;
  t.doc() = "A stand-in driver for CPU tests of kiln's native core (test-only).";
  // GraphDesc, KernelTable and BuiltGraph are kiln._native's classes: import it first.
  nb::module_::import_("kiln._native");
  t.def("install_fake_driver", [](uint64_t granularity, bool honour_base, int fail_create_after, int fail_map_after,
                                  uint64_t device_memory, bool strict_context) {
    testing::install_fake_driver(
        {granularity, honour_base, fail_create_after, fail_map_after, device_memory, strict_context});
  }, "granularity"_a = 2u << 20, "honour_base"_a = true, "fail_create_after"_a = -1, "fail_map_after"_a = -1,
        "device_memory"_a = 1ull << 40, "strict_context"_a = false);
  t.def("uninstall_fake_driver", &testing::uninstall_fake_driver);
  t.def("route_mapping_hooks", [] {
    testing::route_mapping_hooks_to_fake();
    MappingRegistry::instance().clear();
  }, "Bind the interposer's mapping wrappers to the stand-in (as cuGetProcAddress binds them to libcuda) and "
     "forget every mapping recorded so far.");
  t.def("unroute_mapping_hooks", [] {
    testing::unroute_mapping_hooks();
    MappingRegistry::instance().clear();
  });
  t.def("fake_driver_stats", [] {
    auto s = testing::fake_driver_stats();
    nb::dict d;
    d["reservations"] = s.reservations;
    d["live_handles"] = s.live_handles;
    d["live_mappings"] = s.live_mappings;
    d["physical_bytes"] = s.physical_bytes;
    d["create_calls"] = s.create_calls;
    d["busy_unmaps"] = s.busy_unmaps;
    return d;
  });
  t.def("fake_graph_stats", [] {
    auto s = testing::fake_graph_stats();
    nb::dict d;
    d["live_libraries"] = s.live_libraries;
    d["live_graphs"] = s.live_graphs;
    d["live_execs"] = s.live_execs;
    d["live_events"] = s.live_events;
    d["library_loads"] = s.library_loads;
    d["preserved_loads"] = s.preserved_loads;
    d["max_concurrent_loads"] = s.max_concurrent_loads;
    d["loader_threads"] = s.loader_threads;
    d["attribute_sets"] = s.attribute_sets;
    d["context_errors"] = s.context_errors;
    d["instantiations"] = s.instantiations;
    d["library_get_kernel_calls"] = s.get_kernel_calls;
    d["param_info_calls"] = s.param_info_calls;
    d["enable_calls"] = s.enable_calls;
    d["event_syncs"] = s.event_syncs;
    d["uploads"] = s.uploads;
    d["own_stream_uploads"] = s.own_stream_uploads;
    d["live_streams"] = s.live_streams;
    d["ctx_syncs"] = s.ctx_syncs;
    return d;
  });
  t.def("fail_node_enables", &testing::fail_node_enables, "count"_a,
        "The next `count` cuGraphNodeSetEnabled calls fail with CUDA_ERROR_NOT_SUPPORTED.");
  t.def("fail_uploads", &testing::fail_uploads, "count"_a,
        "The next `count` cuGraphUpload calls fail with CUDA_ERROR_OUT_OF_MEMORY.");
  t.def("fake_launches", [] {
    nb::list out;
    for (const std::string& r : testing::fake_launches()) out.append(nb::str(r.c_str()));
    return out;
  }, "What each cuGraphLaunch would have run, in launch order (see testing/fake_graphs.h).");
  t.def("clear_fake_launches", &testing::clear_fake_launches);
  // The application's libraries, loaded and recorded in two steps as the interposer's hooks
  // do (a library loaded before kiln was enabled is never recorded).
  t.def("load_library", [](nb::bytes image) {
    CUlibrary lib = nullptr;
    check(driver().cuLibraryLoadData(&lib, image.c_str(), nullptr, nullptr, 0, nullptr, nullptr, 0),
          "cuLibraryLoadData");
    return reinterpret_cast<uintptr_t>(lib);
  }, "image"_a);
  t.def("record_library", [](uintptr_t library, nb::bytes image) {
    BinaryRegistry& reg = BinaryRegistry::instance();
    uint32_t id = reg.record_image(image.c_str(), "test");
    reg.on_library(reinterpret_cast<CUlibrary>(library), id);
    return id;
  }, "library"_a, "image"_a, "Record a loaded library as the cuLibraryLoadData hook does; returns its binary id.");
  t.def("unload_library", [](uintptr_t library, bool hooked) {
    auto lib = reinterpret_cast<CUlibrary>(library);
    check(driver().cuLibraryUnload(lib), "cuLibraryUnload");
    if (hooked) BinaryRegistry::instance().on_library_unload(lib);
  }, "library"_a, "hooked"_a = true,
        "Unload a library as the application would, with the cuLibraryUnload hook's bookkeeping (none when not "
        "hooked: kiln was disabled).");
  t.def("recorded_function", [](uintptr_t library, const std::string& entry) {
    BinaryRegistry& reg = BinaryRegistry::instance();
    CUkernel k = nullptr;
    CUfunction f = nullptr;
    check(driver().cuLibraryGetKernel(&k, reinterpret_cast<CUlibrary>(library), entry.c_str()), "cuLibraryGetKernel");
    reg.on_library_kernel(k, reinterpret_cast<CUlibrary>(library), entry.c_str());
    check(driver().cuKernelGetFunction(&f, k), "cuKernelGetFunction");
    reg.on_kernel_function(f, k);
    return std::make_tuple(reinterpret_cast<uintptr_t>(k), reinterpret_cast<uintptr_t>(f));
  }, "library"_a, "entry"_a,
        "(CUkernel, CUfunction) of a library's kernel as the application gets them, through the cuLibraryGetKernel "
        "and cuKernelGetFunction hooks, so the registry records both.");
  // The fake driver has no modules: these are the module hooks' bookkeeping alone, for
  // handles a test makes up (identification never asks the driver about a recorded one).
  t.def("record_module", [](uintptr_t module, uint32_t binary) {
    BinaryRegistry::instance().on_module(reinterpret_cast<CUmodule>(module), binary);
  }, "module"_a, "binary"_a, "The cuModuleLoadData hook's bookkeeping for a module of a recorded binary.");
  t.def("record_library_module", [](uintptr_t module, uintptr_t library) {
    BinaryRegistry::instance().on_library_module(reinterpret_cast<CUmodule>(module),
                                                 reinterpret_cast<CUlibrary>(library));
  }, "module"_a, "library"_a, "The cuLibraryGetModule hook's bookkeeping.");
  t.def("record_module_function", [](uintptr_t function, uintptr_t module, const std::string& entry) {
    BinaryRegistry::instance().on_module_function(reinterpret_cast<CUfunction>(function),
                                                  reinterpret_cast<CUmodule>(module), entry.c_str());
  }, "function"_a, "module"_a, "entry"_a, "The cuModuleGetFunction hook's bookkeeping.");
  t.def("unload_module", [](uintptr_t module) {
    BinaryRegistry::instance().on_module_unload(reinterpret_cast<CUmodule>(module));
  }, "module"_a, "The cuModuleUnload hook's bookkeeping.");
  t.def("unrecorded_function", [](uintptr_t library, const std::string& entry) {
    CUkernel k = nullptr;
    CUfunction f = nullptr;
    check(driver().cuLibraryGetKernel(&k, reinterpret_cast<CUlibrary>(library), entry.c_str()), "cuLibraryGetKernel");
    check(driver().cuKernelGetFunction(&f, k), "cuKernelGetFunction");
    return reinterpret_cast<uintptr_t>(f);
  }, "library"_a, "entry"_a,
        "A kernel's CUfunction obtained past the interposer (as cudart resolves them), so the registry cannot know "
        "it.");
  t.def("record_module_global", [](uintptr_t module, const std::string& name) {
    BinaryRegistry::instance().on_module_global(reinterpret_cast<CUmodule>(module), name.c_str());
  }, "module"_a, "name"_a, "The cuModuleGetGlobal hook's bookkeeping.");
  t.def("record_tensor_map", [](nb::bytes map, uint64_t address) {
    if (map.size() != kTensorMapBytes) throw nb::value_error("a tensor map is 128 bytes");
    TensorMapRegistry::instance().on_encode(reinterpret_cast<const CUtensorMap*>(map.c_str()),
                                            reinterpret_cast<const void*>(address));
  }, "map"_a, "address"_a, "The cuTensorMapEncode* hooks' bookkeeping for a map encoding `address`.");
  t.def("eager_event_use", [](uintptr_t event, const std::string& call) {
    static std::set<std::string> names;  // the registry keeps the call name's pointer
    EventRegistry::instance().on_eager_use(reinterpret_cast<CUevent>(event), names.insert(call).first->c_str());
  }, "event"_a, "call"_a, "The event hooks' bookkeeping for a use outside any capture.");
  t.def("graph_events", [](uintptr_t graph) {
    const DriverTable& drv = driver();
    size_t n = 0;
    check(drv.cuGraphGetNodes(reinterpret_cast<CUgraph>(graph), nullptr, &n), "cuGraphGetNodes");
    std::vector<CUgraphNode> nodes(n);
    if (n) check(drv.cuGraphGetNodes(reinterpret_cast<CUgraph>(graph), nodes.data(), &n), "cuGraphGetNodes");
    std::vector<uintptr_t> events;
    for (CUgraphNode node : nodes) {
      CUgraphNodeType type;
      check(drv.cuGraphNodeGetType(node, &type), "cuGraphNodeGetType");
      CUevent ev = nullptr;
      if (type == CU_GRAPH_NODE_TYPE_EVENT_RECORD) check(drv.cuGraphEventRecordNodeGetEvent(node, &ev), "event");
      else if (type == CU_GRAPH_NODE_TYPE_WAIT_EVENT) check(drv.cuGraphEventWaitNodeGetEvent(node, &ev), "event");
      if (ev) events.push_back(reinterpret_cast<uintptr_t>(ev));
    }
    return events;
  }, "graph"_a, "The event handles of a graph's event nodes, in node order.");
  t.def("forget_events_and_tensor_maps", [] {
    EventRegistry::instance().clear();
    TensorMapRegistry::instance().clear();
  });
  t.def("identify_kernel", [](uintptr_t handle) -> std::optional<std::tuple<uint32_t, std::string>> {
    auto id = BinaryRegistry::instance().identify_with_driver(reinterpret_cast<CUfunction>(handle));
    if (!id) return std::nullopt;
    return std::make_tuple(id->binary, id->entry);
  }, "handle"_a, "(binary id, entry) of a kernel handle as SAVE's walk identifies it, or None.");
  t.def("build_kept_graph", [](const GraphDesc& desc, KernelTable& kernels, int device) {
    nb::gil_scoped_release release;
    return build_graph(desc, kernels, device, /*keep_topology=*/true);
  }, "desc"_a, "kernels"_a, "device"_a, "As build_graph, keeping the CUgraph (see graph_handle).");
  t.def("graph_handle", [](const BuiltGraph& g) { return reinterpret_cast<uintptr_t>(g.graph()); }, "graph"_a);
}
