// Section verification in Python: an archive's sections hashed on native threads (no GIL
// held), and the gate that LOAD's binary loader, kernel planner and decoders wait on.
#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cstring>
#include <memory>

#include "archive/section_verifier.h"
#include "archive/sha256.h"
#include "bind/buffer_views.h"
#include "common/error.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace kiln {

void bind_archive(nb::module_& m) {
  m.def("sha256_available", &sha256_available, "Whether native threads can hash (libcrypto was found).");
  m.def("sha256", [](const nb::object& buffer) {
    BufferViews view({buffer});
    Sha256Digest d;
    {
      nb::gil_scoped_release release;
      d = sha256(view.data(0), view.length(0));
    }
    return nb::bytes(reinterpret_cast<const char*>(d.data()), d.size());
  }, "buffer"_a, "SHA-256 digest of a buffer, hashed by the native path section verification uses.");

  nb::class_<SectionVerifier>(m, "SectionVerifier")
      .def("__init__",
           [](SectionVerifier* self, const std::vector<nb::object>& buffers, const std::vector<nb::bytes>& digests,
              const std::vector<std::string>& names, const std::string& archive, unsigned threads) {
             if (buffers.size() != digests.size() || buffers.size() != names.size())
               throw nb::value_error("buffers, digests and names differ in length");
             auto views = std::make_shared<BufferViews>(buffers);
             std::vector<SectionVerifier::Section> sections(buffers.size());
             for (size_t i = 0; i < buffers.size(); ++i) {
               if (digests[i].size() != 32) throw nb::value_error("a SHA-256 digest has 32 bytes");
               SectionVerifier::Section& s = sections[i];
               s.name = names[i], s.data = views->data(i), s.size = views->length(i);
               std::memcpy(s.expected.data(), digests[i].c_str(), 32);
             }
             new (self) SectionVerifier(std::move(sections), archive, threads, views);
           },
           "buffers"_a, "digests"_a, "names"_a, "archive"_a, "threads"_a,
           "Start hashing the buffers on `threads` native threads, in order; item i of the gate that "
           "make_kernel_table, GraphSet and KernelTable.resolve_in_background take is buffers[i].")
      .def("__len__", &SectionVerifier::size)
      .def("wait_all", &SectionVerifier::wait_all, nb::call_guard<nb::gil_scoped_release>(),
           "Block until every section is hashed; raises ArchiveCorrupt for the first that does not match.");
}

}  // namespace kiln
