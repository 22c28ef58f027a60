// Python bindings (kiln._native). Thin: argument conversion, GIL release around driver work,
// and translation of kiln::Error into the classes of kiln.errors.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/unique_ptr.h>
#include <nanobind/stl/vector.h>

#include "bind/buffer_views.h"
#include "bind/gate_items.h"
#include "bind/timings.h"
#include "binaries/image_compare.h"
#include "binaries/loader.h"
#include "binaries/registry.h"
#include "common/context.h"
#include "common/driver.h"
#include "common/error.h"
#include "common/log.h"
#include "graph/blob.h"
#include "graph/build.h"
#include "graph/kernels.h"
#include "graph/walk.h"
#include "interposer/hook_table.h"
#include "interposer/state.h"
#include "region/registry.h"
#include "graph/event_registry.h"
#include "graph/tensor_maps.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace kiln {

void bind_graph_desc(nb::module_& m);  // graph_desc_bind.cpp
void bind_graph_set(nb::module_& m);   // graph_set_bind.cpp
void bind_archive(nb::module_& m);     // archive_bind.cpp
void bind_library_memory(nb::module_& m);  // library_memory_bind.cpp

namespace {

// The kiln.errors module, referenced forever: a global nb::object would be released after
// the interpreter is gone.
PyObject* g_errors = nullptr;

const char* error_class(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::driver: return "DriverError";
    case ErrorKind::region: return "RegionError";
    case ErrorKind::region_base: return "RegionBaseNotHonoured";
    case ErrorKind::drift: return "AllocationDriftError";
    case ErrorKind::unsupported_allocator: return "UnsupportedAllocator";
    case ErrorKind::non_persistable: return "NonPersistableGraph";
    case ErrorKind::external_pointer: return "ExternalPointerError";
    case ErrorKind::unknown_kernel: return "UnknownKernelError";
    case ErrorKind::restore: return "RestoreError";
    case ErrorKind::unmapped_range: return "UnmappedRangeError";
    case ErrorKind::corrupt: return "ArchiveCorrupt";
    default: return "KilnError";
  }
}

// A read-only view of any object supporting the buffer protocol (bytes, memoryview, mmap).
class Buffer {
 public:
  explicit Buffer(nb::handle obj) {
    if (PyObject_GetBuffer(obj.ptr(), &view_, PyBUF_SIMPLE) != 0) throw nb::python_error();
  }
  ~Buffer() { PyBuffer_Release(&view_); }
  const uint8_t* data() const { return static_cast<const uint8_t*>(view_.buf); }
  size_t size() const { return static_cast<size_t>(view_.len); }

 private:
  Py_buffer view_;
};

int ensure_context(int device) {
  const DriverTable& drv = driver();
  check(drv.cuInit(0), "cuInit");
  CUcontext ctx = nullptr;
  check(drv.cuCtxGetCurrent(&ctx), "cuCtxGetCurrent");
  if (!ctx) {
    // Bind the primary context, the one PyTorch uses, to this thread.
    CUdevice dev;
    check(drv.cuDeviceGet(&dev, device), "cuDeviceGet");
    check(drv.cuDevicePrimaryCtxRetain(&ctx, dev), "cuDevicePrimaryCtxRetain");
    check(drv.cuCtxSetCurrent(ctx), "cuCtxSetCurrent");
  }
  return device;
}

template <typename Fn>
auto with_region(int device, Fn&& fn) {
  return RegionRegistry::instance().with_device(device, [&](Region* r) {
    if (!r) throw Error(ErrorKind::region, format("no kiln region is open on device %d", device));
    return fn(*r);
  });
}

nb::tuple entry_tuple(const TrajectoryEntry& e) {
  return nb::make_tuple(e.offset, e.size, static_cast<uint32_t>(e.kind));
}

nb::object divergence_dict(const std::optional<Divergence>& d) {
  if (!d) return nb::none();
  nb::dict out;
  out["index"] = d->index;
  out["expected"] = d->expected ? nb::object(entry_tuple(*d->expected)) : nb::none();
  out["actual"] = d->actual ? nb::object(entry_tuple(*d->actual)) : nb::none();
  return out;
}

}  // namespace
}  // namespace kiln

NB_MODULE(_native, m) {
  using namespace kiln;
  m.doc() = "kiln's native core: interposer state, deterministic regions, binaries, graphs.";

  g_errors = nb::module_::import_("kiln.errors").release().ptr();
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const Error& e) {
      nb::object cls = nb::handle(g_errors).attr(error_class(e.kind()));
      PyErr_SetString(cls.ptr(), e.what());
    }
  });

  // --- interposer ----------------------------------------------------------------------
  m.def("interposer_installed", &interposer_installed,
        "True when libkiln_preload.so was loaded through LD_PRELOAD (its dlsym is the process's).");
  m.def("set_enabled", &set_interposer_enabled, "enabled"_a);
  m.def("enabled", &interposer_enabled);
  m.def("take_last_hook_error", &take_last_hook_error,
        "The first error a driver wrapper could only report as a CUresult, then cleared.");
  m.def("set_log_level", [](const std::string& name) {
    LogLevel level;
    if (!parse_log_level(name.c_str(), &level))
      throw nb::value_error("log level must be one of off, error, warn, info, debug, trace");
    set_log_level(level);
  });
  m.def("hook_table", [] {
    int n = 0;
    const HookEntry* e = hook_entries(&n);
    nb::list out;
    for (int i = 0; i < n; ++i)
      out.append(nb::make_tuple(e[i].base, e[i].version, e[i].per_thread, e[i].exported, e[i].real->fn.load() != nullptr));
    return out;
  }, "(base, version, per_thread, exported symbol, bound) for every wrapped driver entry point.");

  // --- driver ----------------------------------------------------------------------------
  m.def("driver_available", &driver_available);
  m.def("driver_version", [] {
    int v = 0;
    check(driver().cuDriverGetVersion(&v), "cuDriverGetVersion");
    return v;
  });
  m.def("ensure_context", &ensure_context, "device"_a, "Initialise the driver and bind the primary context.");

  // --- regions ---------------------------------------------------------------------------
  m.def("region_open", [](int device, uint64_t base, uint64_t size, uint64_t prealloc, uint64_t library_slot) {
    nb::gil_scoped_release release;
    RegionConfig cfg{device, base, size, prealloc, library_slot};
    Region& r = RegionRegistry::instance().open(driver(), cfg);
    return r.granularity();
  }, "device"_a, "base"_a, "size"_a, "prealloc"_a = 0, "library_slot"_a = 0,
        "Reserve the region, with a slot of `library_slot` bytes per communication library at its top; returns "
        "the granularity.");
  m.def("region_close", [](int device) {
    nb::gil_scoped_release release;
    RegionRegistry::instance().close(device);
  }, "device"_a);
  m.def("region_exists", [](int device) { return RegionRegistry::instance().has(device); }, "device"_a);
  m.def("region_info", [](int device) {
    return with_region(device, [](Region& r) {
      nb::dict d;
      d["device"] = r.device();
      d["base"] = r.base();
      d["size"] = r.size();
      d["granularity"] = r.granularity();
      d["cursor"] = r.cursor();
      d["active"] = r.active();
      d["allocations"] = r.trajectory_length();
      d["bytes_backed"] = r.bytes_backed();
      d["library_slot"] = r.library_slot();
      return d;
    });
  }, "device"_a);
  m.def("region_suspend", [](int device) { with_region(device, [](Region& r) { r.suspend(); return 0; }); }, "device"_a);
  m.def("region_resume", [](int device) { with_region(device, [](Region& r) { r.resume(); return 0; }); }, "device"_a);
  m.def("region_set_cursor", [](int device, uint64_t offset) {
    with_region(device, [&](Region& r) { r.set_cursor(offset); return 0; });
  }, "device"_a, "offset"_a);
  m.def("region_allocate", [](int device, uint64_t bytes) {
    nb::gil_scoped_release release;
    return with_region(device, [&](Region& r) { return r.allocate(bytes, AllocKind::kiln); });
  }, "device"_a, "bytes"_a, "A backed allocation made by kiln itself (recorded as kind 3).");
  m.def("region_release", [](int device, uint64_t addr) {
    nb::gil_scoped_release release;
    return with_region(device, [&](Region& r) { return r.release(addr); });
  }, "device"_a, "address"_a);
  m.def("synchronize_device", [](int device) {
    nb::gil_scoped_release release;
    primary_context(device);  // bound on this thread unless it is current already
    check(driver().cuCtxSynchronize(), "cuCtxSynchronize");
  }, "device"_a, "Wait until all work on the device's primary context has completed.");
  m.def("region_is_backed", [](int device, uint64_t addr, uint64_t len) {
    return with_region(device, [&](Region& r) { return r.is_backed(addr, len); });
  }, "device"_a, "address"_a, "length"_a);
  m.def("region_is_live", [](int device, uint64_t addr) {
    return with_region(device, [&](Region& r) { return r.is_live(addr); });
  }, "device"_a, "address"_a, "Whether a live allocation or reservation covers the address.");
  m.def("region_trajectory", [](int device) {
    auto t = with_region(device, [](Region& r) { return r.trajectory(); });
    nb::list out;
    for (const auto& e : t) out.append(entry_tuple(e));
    return out;
  }, "device"_a, "[(offset, size, kind)] of every allocation in order.");
  m.def("region_compare_prefix", [](int device, const std::vector<std::tuple<uint64_t, uint64_t, uint32_t>>& expected) {
    std::vector<TrajectoryEntry> want;
    want.reserve(expected.size());
    for (const auto& [o, s, k] : expected) {
      if (k > 3) throw Error(ErrorKind::corrupt, "trajectory entry has an unknown kind");
      want.push_back({o, s, static_cast<AllocKind>(k)});
    }
    return divergence_dict(with_region(device, [&](Region& r) { return r.compare_prefix(want); }));
  }, "device"_a, "expected"_a, "None, or the first divergence {index, expected, actual}.");

  // --- binaries --------------------------------------------------------------------------
  m.def("binary_count", [] { return BinaryRegistry::instance().count(); });
  m.def("binary_info", [](uint32_t id) {
    BinaryRecord r = BinaryRegistry::instance().view(id);
    nb::dict d;
    d["id"] = r.id;
    d["size"] = r.size;
    d["kind"] = image_kind_name(r.kind);
    d["origin"] = r.origin;
    return d;
  }, "id"_a);
  m.def("binary_bytes", [](uint32_t id) {
    BinaryRecord r = BinaryRegistry::instance().view(id);
    return nb::bytes(reinterpret_cast<const char*>(r.data), r.size);
  }, "id"_a);
  m.def("binary_globals", [](uint32_t id) { return BinaryRegistry::instance().globals_of(id); }, "id"_a,
        "The module globals of a recorded binary whose addresses the application obtained (sorted).");
  m.def("event_violation", [] { return EventRegistry::instance().violation(); },
        "The first use outside its graph of an event a walked graph records or waits on ('' when none).");
  m.def("binary_loaded", [](uint32_t id) { return BinaryRegistry::instance().loaded_handle(id).has_value(); }, "id"_a);
  m.def("record_image", [](nb::handle image, const std::string& origin) {
    Buffer b(image);
    validate_image(b.data(), b.size());
    return BinaryRegistry::instance().record_image(b.data(), origin.c_str());
  }, "image"_a, "origin"_a = "test");
  m.def("validate_image", [](nb::handle image) {
    Buffer b(image);
    ImageView v = validate_image(b.data(), b.size());
    return nb::make_tuple(image_kind_name(v.kind), v.size);
  }, "image"_a, "(kind, size) an image's own header claims; raises ArchiveCorrupt if it does not fit.");
  m.def("compare_kernel_images", [](nb::bytes original, nb::bytes candidate, const std::vector<std::string>& entries) {
    ImageBytes a{reinterpret_cast<const uint8_t*>(original.c_str()), original.size()};
    ImageBytes b{reinterpret_cast<const uint8_t*>(candidate.c_str()), candidate.size()};
    nb::gil_scoped_release release;
    return compare_kernel_images(a, b, entries);
  }, "original"_a, "candidate"_a, "entries"_a,
        "None when the candidate image gives the driver the same kernels `entries` (every function attribute and "
        "the parameter layout, resolved in the current context) as the original; else what differs first, or the "
        "driver's refusal of the candidate.");

  // --- graphs ----------------------------------------------------------------------------
  bind_graph_desc(m);
  bind_graph_set(m);
  bind_archive(m);
  bind_library_memory(m);
  m.def("walk_graph", [](uintptr_t graph, int device) {
    nb::gil_scoped_release release;
    return walk_graph(reinterpret_cast<CUgraph>(graph), device);
  }, "graph"_a, "device"_a, "Describe a captured CUgraph (its raw handle), auditing every address.");

  nb::class_<KernelTable>(m, "KernelTable")
      .def("__len__", &KernelTable::size)
      .def("wait_loaded", [](KernelTable& t) { t.binaries().wait_all(); }, nb::call_guard<nb::gil_scoped_release>(),
           "Block until every binary is loaded; raises the lowest slot's failure.")
      .def_prop_ro("loader_threads", [](KernelTable& t) { return t.binaries().threads(); })
      .def("library", [](KernelTable& t, uint32_t slot) -> std::optional<uintptr_t> {
        if (slot >= t.binaries().size()) throw nb::index_error("no such binary slot");
        const BinarySource& b = t.binaries().get(slot);  // loads it if nobody has
        if (!b.owned || !b.library) return std::nullopt;
        return reinterpret_cast<uintptr_t>(b.library);
      }, "slot"_a, nb::call_guard<nb::gil_scoped_release>(),
           "The CUlibrary kiln loaded from the archive for a binary slot (loading it now if no thread has), or None "
           "when the slot runs from the application's own module.")
      .def("resolve_in_background",
           [](KernelTable& t, unsigned threads, const std::vector<nb::object>& blobs, const SectionVerifier* verifier,
              const std::vector<size_t>& items) {
             KernelTable::Blobs source;
             source.gate = gate_items(verifier, items);
             if (!blobs.empty()) {
               auto views = std::make_shared<BufferViews>(blobs);
               source.views = views->blobs();
               source.keep_alive = views;
             }
             t.resolve_in_background(threads, std::move(source));
           },
           "threads"_a, "blobs"_a = std::vector<nb::object>{}, "verifier"_a.none() = nb::none(),
           "items"_a = std::vector<size_t>{},
           "Resolve every planned kernel on `threads` background threads; once. With `blobs` (graph blobs, "
           "blob i read once the verifier's item `items[i]` passed), first plan the kernels their shape tables "
           "name, so resolution starts before the graphs decode. Failures are raised where a graph needs the "
           "kernel.")
      .def("wait_background", &KernelTable::wait_background, nb::call_guard<nb::gil_scoped_release>(),
           "Join the background resolvers (every planned kernel taken).")
      .def("timings", [](const KernelTable& t) { return timings_dict(t.timings()); },
           "{category: {sum, wall, count}} seconds: binaries.load (each image), binaries.all (start to last "
           "image), kernels.resolve (each function's lookup and attributes), kernels.background (resolve_in_background "
           "until its threads found nothing left).");
  m.def("make_kernel_table", [](const std::vector<nb::object>& sources, const std::vector<int>& app_binaries,
                                int device, unsigned threads, const SectionVerifier* verifier,
                                const std::vector<size_t>& items) {
    // sources[i]: a buffer with the binary's bytes, used unless app_binaries[i] >= 0 names
    // this process's own loaded copy. The table keeps views of the buffers until it is gone.
    // With a verifier, sources[i] is read once its item items[i] passed.
    if (sources.size() != app_binaries.size()) throw nb::value_error("sources and app_binaries differ in length");
    GateItems gate = gate_items(verifier, items);
    gate.check_count(sources.size(), "make_kernel_table");
    auto views = std::make_shared<BufferViews>(sources);
    std::vector<BinarySource> slots(sources.size());
    for (size_t i = 0; i < sources.size(); ++i) {
      BinarySource& s = slots[i];
      if (app_binaries[i] >= 0) {
        auto h = BinaryRegistry::instance().loaded_handle(static_cast<uint32_t>(app_binaries[i]));
        if (!h) throw Error(ErrorKind::restore, format("binary #%d is not loaded in this process", app_binaries[i]));
        s.library = h->library, s.module = h->module;
      } else {
        s.image = views->data(i), s.size = views->length(i);
        // Unverified bytes are not parsed: gated images are validated when loaded.
        if (!gate.gate) {
          // Checked here, before any thread starts: a corrupt archive fails at once.
          ImageView v = validate_image(s.image, s.size);
          s.image = v.data, s.size = v.size;
        }
      }
    }
    std::unique_ptr<KernelTable> table;
    {
      nb::gil_scoped_release release;
      CUcontext ctx = nullptr;
      if (device >= 0) {
        ctx = primary_context(device);
      } else {
        check(driver().cuCtxGetCurrent(&ctx), "cuCtxGetCurrent");
      }
      auto loader = std::make_unique<BinaryLoader>(std::move(slots), ctx, views, std::move(gate));
      loader->start(threads);  // 0: every binary now, on this thread
      table = std::make_unique<KernelTable>(std::move(loader));
    }
    return table;
  }, "sources"_a, "app_binaries"_a, "device"_a = -1, "threads"_a = 0, "verifier"_a.none() = nb::none(),
        "items"_a = std::vector<size_t>{},
        "Kernels for an archive's graphs. threads > 0 loads the binaries on that many background threads "
        "(bound to device's primary context) and returns at once; failures surface where a binary is needed "
        "or at wait_loaded. device < 0: use the calling thread's current context. With a verifier "
        "(SectionVerifier), source i is read only once the verifier's item items[i] passed.");

  nb::class_<BuiltGraph>(m, "BuiltGraph")
      .def("launch", [](const BuiltGraph& g, uintptr_t stream) { g.launch(reinterpret_cast<CUstream>(stream)); },
           "stream"_a, nb::call_guard<nb::gil_scoped_release>())
      .def("upload", [](const BuiltGraph& g, uintptr_t stream) { g.upload(reinterpret_cast<CUstream>(stream)); },
           "stream"_a, nb::call_guard<nb::gil_scoped_release>())
      .def_prop_ro("node_count", &BuiltGraph::node_count);
  m.def("build_graph", [](const GraphDesc& desc, KernelTable& kernels, int device) {
    nb::gil_scoped_release release;
    return build_graph(desc, kernels, device);
  }, "desc"_a, "kernels"_a, "device"_a);

  // --- tensors ---------------------------------------------------------------------------
  m.def("cuda_tensor", [](uintptr_t ptr, const std::vector<size_t>& shape, const std::vector<int64_t>& strides,
                          uint8_t code, uint8_t bits, int device, nb::handle owner) {
    if (shape.size() != strides.size()) throw nb::value_error("shape and strides differ in length");
    nb::dlpack::dtype dt{code, bits, 1};
    return nb::ndarray<nb::pytorch>(reinterpret_cast<void*>(ptr), shape.size(), shape.data(), owner, strides.data(),
                                    dt, nb::device::cuda::value, device);
  }, "ptr"_a, "shape"_a, "strides"_a, "code"_a, "bits"_a, "device"_a, "owner"_a,
        "A torch tensor aliasing device memory at ptr (strides in elements), keeping owner alive.");
}
