// GraphSet in Python: an archive's graphs restored through topology templates with
// background builds; plus the topology helpers SAVE and tests use.
#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <algorithm>
#include <memory>
#include <tuple>

#include "bind/buffer_views.h"
#include "bind/gate_items.h"
#include "bind/timings.h"
#include "common/error.h"
#include "graph/capture_recorder.h"
#include "graph/family.h"
#include "graph/family_record.h"
#include "graph/graph_set.h"
#include "graph/topology.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace kiln {
namespace {

// A family as the manifest holds it: (groups, slots, per group its runs as flat
// (node, slot, count) triples).
using FamilyTuple = std::tuple<std::vector<size_t>, uint32_t, std::vector<std::vector<uint32_t>>>;

FamilyTuple to_tuple(const RecordedFamily& r) {
  FamilyTuple t{r.groups, r.slots, {}};
  for (const std::vector<SlotRun>& runs : r.runs) {
    auto& out = std::get<2>(t).emplace_back();
    for (const SlotRun& run : runs) out.insert(out.end(), {run.node, run.slot, run.count});
  }
  return t;
}

RecordedFamily from_tuple(const FamilyTuple& t) {
  RecordedFamily r{std::get<0>(t), std::get<1>(t), {}};
  for (const std::vector<uint32_t>& flat : std::get<2>(t)) {
    if (flat.size() % 3) throw Error(ErrorKind::corrupt, "a family's runs are not (node, slot, count) triples");
    auto& out = r.runs.emplace_back();
    for (size_t k = 0; k < flat.size(); k += 3) out.push_back({flat[k], flat[k + 1], flat[k + 2]});
  }
  return r;
}

}  // namespace

void bind_graph_set(nb::module_& m) {
  m.def("plan_families", [](const std::vector<const GraphDesc*>& templates) {
    std::vector<std::vector<uint64_t>> keys;
    for (const GraphDesc* d : templates) keys.push_back(node_keys(*d));
    FamilyLimits limits;
    limits.max_groups = std::max<size_t>(templates.size(), 1);
    std::vector<FamilyTuple> out;
    for (const FamilyPlan& p : plan_families(templates, std::move(keys), limits)) out.push_back(to_tuple(record_family(p)));
    return out;
  }, "templates"_a, nb::call_guard<nb::gil_scoped_release>(),
        "The families LOAD would plan, without a cap, for one template graph per topology group (in group order), "
        "as the manifest records them: (groups, slots, runs), runs per group as flat (node, slot, count) triples; "
        "slots 0 for a family of one group.");
  m.def("topology_signature", [](const GraphDesc& d) {
    std::string s = topology_signature(d);
    return nb::bytes(s.data(), s.size());
  }, "desc"_a, "Bytes equal for graphs that one instantiated template can serve.");
  m.def("group_by_signature", [](const std::vector<nb::bytes>& signatures, const std::vector<size_t>& hashes) {
    std::vector<std::string> s;
    for (const nb::bytes& b : signatures) s.emplace_back(b.c_str(), b.size());
    return group_by_signature(s, hashes, 4);
  }, "signatures"_a, "hashes"_a,
        "Each graph's topology group as LOAD assigns it (numbered by first graph), from its signature and the "
        "signature's hash: equal hashes are confirmed byte for byte.");
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
              size_t family_groups, const SectionVerifier* verifier, const std::vector<size_t>& items,
              const std::vector<FamilyTuple>& families) {
             BufferViews views(blobs);
             std::vector<BlobView> list = views.blobs();
             GateItems gate = gate_items(verifier, items);
             std::vector<RecordedFamily> recorded;
             for (const FamilyTuple& f : families) recorded.push_back(from_tuple(f));
             nb::gil_scoped_release release;
             new (self) GraphSet(list, kernels, device, threads, family_groups, gate, std::move(recorded));
           },
           "blobs"_a, "kernels"_a, "device"_a, "threads"_a = 4, "family_groups"_a = 0,
           "verifier"_a.none() = nb::none(), "items"_a = std::vector<size_t>{},
           "families"_a = std::vector<FamilyTuple>{}, nb::keep_alive<1, 3>(),
           "Decode, group and prepare every graph blob (the blobs are copied; blob i once the verifier's item "
           "items[i] passed). Topology groups that differ in a few nodes share one template, at most "
           "`family_groups` groups each (1: none; 0: no cap). `families`: the plan SAVE recorded (as plan_families "
           "returns it, groups named by their template's blob index), checked and used when there is no cap.")
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
      .def_prop_ro("families_recorded", &GraphSet::families_recorded,
                   "Whether the families are the archive's recorded plan (checked) rather than planned at LOAD.")
      .def("family_slots", &GraphSet::family_slots, "family"_a, "Nodes of the family's template.")
      .def("switch_nodes", &GraphSet::switch_nodes, "index"_a,
           "Template nodes that replaying graph `index` changes (updated or disabled).")
      .def("has_dedicated", &GraphSet::has_dedicated, "index"_a)
      .def("node_count", [](const GraphSet& s, size_t i) { return s.desc(i).nodes.size(); }, "index"_a)
      .def_prop_ro("switches", &GraphSet::switches);
}

}  // namespace kiln
