// Communication libraries' memory in Python: their slots of a region, the trajectory of each
// library's requests, the mappings the interposer saw and the calls made during a capture
// (region/owner.h, region/mappings.h).
#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include "common/error.h"
#include "region/mappings.h"
#include "region/registry.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace kiln {
namespace {

Owner library_owner(const std::string& name) {
  Owner owner;
  if (!owner_from_name(name.c_str(), &owner) || owner == Owner::engine)
    throw Error(ErrorKind::generic, "unknown communication library " + name + " (nccl, nvshmem)");
  return owner;
}

template <typename Fn>
auto with_open_region(int device, Fn&& fn) {
  return RegionRegistry::instance().with_device(device, [&](Region* r) {
    if (!r) throw Error(ErrorKind::region, format("no kiln region is open on device %d", device));
    return fn(*r);
  });
}

// Where a mapping lies: (slot name, offset from the slot's start). The slot is the owner of
// the region part holding it ("engine" for the engine's part), or "outside" any region.
std::tuple<std::string, uint64_t> placement(uint64_t address) {
  return RegionRegistry::instance().with_address(address, [&](Region* r) -> std::tuple<std::string, uint64_t> {
    if (!r) return {"outside", 0};
    uint64_t offset = address - r->base();
    Owner slot = r->owner_at(offset);
    return {owner_name(slot), offset - r->part(slot).begin};
  });
}

}  // namespace

void bind_library_memory(nb::module_& m) {
  m.def("region_library_slots", [](int device) {
    return with_open_region(device, [](Region& r) {
      nb::list out;
      if (!r.library_slot()) return out;
      for (Owner o : kLibraryOwnerList) {
        PartBounds p = r.part(o);
        out.append(nb::make_tuple(owner_name(o), p.begin, p.end - p.begin));
      }
      return out;
    });
  }, "device"_a, "[(library, offset from the base, size)] of each library's slot; empty without slots.");
  m.def("region_library_trajectory", [](int device, const std::string& library) {
    Owner owner = library_owner(library);
    auto t = with_open_region(device, [&](Region& r) { return r.library_trajectory(owner); });
    nb::list out;
    for (const auto& e : t) out.append(nb::make_tuple(e.offset, e.size, static_cast<uint32_t>(e.kind)));
    return out;
  }, "device"_a, "library"_a, "[(offset from the slot's start, size, kind)] of the library's requests in order.");
  m.def("library_mappings", [] {
    nb::list out;
    for (const MappingRecord& rec : MappingRegistry::instance().mappings()) {
      if (rec.owner == Owner::engine) continue;
      auto [slot, offset] = placement(rec.address);
      nb::dict d;
      d["library"] = owner_name(rec.owner);
      d["class"] = mapping_class_name(rec.cls);
      d["slot"] = slot;
      d["offset"] = offset;
      d["size"] = rec.size;
      d["address"] = rec.address;
      d["in_capture"] = rec.in_capture;
      out.append(d);
    }
    return out;
  }, "The communication libraries' live mappings in the order they were made: {library, class, slot, offset, "
     "size, address, in_capture}.");
  m.def("library_capture_events", [] {
    nb::list out;
    for (const auto& e : MappingRegistry::instance().capture_events())
      out.append(nb::make_tuple(owner_name(e.owner), e.call, e.size));
    return out;
  }, "[(library, driver call, bytes)] of each library call made while a graph capture was in progress.");
  m.def("set_capture_open", [](bool open) { MappingRegistry::instance().set_capture_open(open); }, "open"_a,
        "Marks a graph capture in progress (library mappings made meanwhile are refused at SAVE).");
  m.def("capture_open", [] { return MappingRegistry::instance().capture_open(); });
  m.def("library_mapping_exports", [] { return MappingRegistry::instance().exports(); },
        "How many physical handles were exported as shareable handles.");
  m.def("mappings_cover", [](uint64_t address, uint64_t length) {
    return MappingRegistry::instance().covers(address, length);
  }, "address"_a, "length"_a, "Whether live mappings the interposer saw cover the range without a gap.");
  m.def("multicast_ranges", [] {
    nb::list out;
    for (const MulticastRange& r : MappingRegistry::instance().multicast_ranges())
      out.append(nb::make_tuple(owner_name(r.owner), r.address, r.size));
    return out;
  }, "[(who, address, size)] of everything a multicast object reaches: multicast mappings, mappings of memory "
     "bound to one, ranges bound by address; who is a library or 'engine'.");
  m.def("set_verified_library_ranges", [](const std::vector<std::tuple<std::string, uint64_t, uint64_t>>& ranges) {
    std::vector<VerifiedRange> verified;
    verified.reserve(ranges.size());
    for (const auto& [library, address, size] : ranges) verified.push_back({library_owner(library), address, size});
    MappingRegistry::instance().set_verified(std::move(verified));
  }, "ranges"_a, "The library mappings [(library, address, size)] LOAD verified against SAVE's record; graph "
     "pointers into a library slot must lie in one of them (replaces the earlier set).");
}

}  // namespace kiln
