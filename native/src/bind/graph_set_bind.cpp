// GraphSet in Python: an archive's graphs restored through topology templates with
// background builds; plus the topology helpers SAVE and tests use.
#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <memory>

#include "bind/buffer_views.h"
#include "bind/gate_items.h"
#include "bind/timings.h"
#include "graph/capture_recorder.h"
#include "graph/graph_set.h"
#include "graph/topology.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace kiln {

void bind_graph_set(nb::module_& m) {
  m.def("topology_signature", [](const GraphDesc& d) {
    std::string s = topology_signature(d);
    return nb::bytes(s.data(), s.size());
  }, "desc"_a, "Bytes equal for graphs that one instantiated template can serve.");
  m.def("topology_difference", &topology_difference, "a"_a, "b"_a,
        "Why two graphs cannot share a template, in words; empty when they can.");
  m.def("differing_nodes", &differing_nodes, "a"_a, "b"_a,
        "Nodes whose updatable parameters differ between two graphs of one topology.");

  m.def("capture_recorder_arm", [](int device) { CaptureRecorder::instance().arm(device); }, "device"_a,
        "Record (walk and audit) every graph whose stream capture ends from now on.");
  m.def("capture_recorder_disarm", [] { CaptureRecorder::instance().disarm(); });
  m.def("capture_recorder_take", [] { return CaptureRecorder::instance().take(); },
        "Disarm; the graphs recorded since arming, or the first error met recording them.");

  nb::class_<GraphSet>(m, "GraphSet")
      .def("__init__",
           [](GraphSet* self, const std::vector<nb::object>& blobs, KernelTable& kernels, int device, unsigned threads,
              size_t family_groups, const SectionVerifier* verifier, const std::vector<size_t>& items) {
             BufferViews views(blobs);
             std::vector<BlobView> list = views.blobs();
             GateItems gate = gate_items(verifier, items);
             nb::gil_scoped_release release;
             new (self) GraphSet(list, kernels, device, threads, family_groups, gate);
           },
           "blobs"_a, "kernels"_a, "device"_a, "threads"_a = 4, "family_groups"_a = 0,
           "verifier"_a.none() = nb::none(), "items"_a = std::vector<size_t>{}, nb::keep_alive<1, 3>(),
           "Decode, group and prepare every graph blob (the blobs are copied; blob i once the verifier's item "
           "items[i] passed). Topology groups that differ in a few nodes share one template, at most "
           "`family_groups` groups each (1: none; 0: no cap).")
      .def("start", &GraphSet::start, "dedicated"_a = true, nb::call_guard<nb::gil_scoped_release>(),
           "Background builds: templates, then one executable per graph if `dedicated`.")
      .def("wait", &GraphSet::wait, "index"_a, "dedicated"_a = false, nb::call_guard<nb::gil_scoped_release>())
      .def("wait_all", &GraphSet::wait_all, "dedicated"_a = false, nb::call_guard<nb::gil_scoped_release>())
      .def("launch", [](GraphSet& s, size_t i, uintptr_t stream) { s.launch(i, reinterpret_cast<CUstream>(stream)); },
           "index"_a, "stream"_a, nb::call_guard<nb::gil_scoped_release>())
      .def("launch_template",
           [](GraphSet& s, size_t i, uintptr_t stream) { s.launch_template(i, reinterpret_cast<CUstream>(stream)); },
           "index"_a, "stream"_a, nb::call_guard<nb::gil_scoped_release>())
      .def("start_dedicated", &GraphSet::start_dedicated, nb::call_guard<nb::gil_scoped_release>(),
           "Let the own executables start building (the templates' builds uploaded them already).")
      .def("timings", [](const GraphSet& s) { return timings_dict(s.timings()); },
           "{category: {sum, wall, count}} seconds: decode, families, updates, templates.* and dedicated.* (task, "
           "kernels, check, build, instantiate; templates also upload and member_kernels); templates.all runs "
           "from start() to the last template.")
      .def("__len__", &GraphSet::size)
      .def_prop_ro("group_count", &GraphSet::group_count)
      .def("group_of", &GraphSet::group_of, "index"_a)
      .def("template_of", &GraphSet::template_of, "group"_a)
      .def("differing_from_template", &GraphSet::differing_from_template, "index"_a,
           "Nodes whose parameters differ from the group's template.")
      .def_prop_ro("family_count", &GraphSet::family_count, "Templates instantiated: one per family of groups.")
      .def("family_of_group", &GraphSet::family_of_group, "group"_a)
      .def("family_slots", &GraphSet::family_slots, "family"_a, "Nodes of the family's template.")
      .def("switch_nodes", &GraphSet::switch_nodes, "index"_a,
           "Template nodes that replaying graph `index` changes (updated or disabled).")
      .def("has_dedicated", &GraphSet::has_dedicated, "index"_a)
      .def("node_count", [](const GraphSet& s, size_t i) { return s.desc(i).nodes.size(); }, "index"_a)
      .def_prop_ro("switches", &GraphSet::switches);
}

}  // namespace kiln
