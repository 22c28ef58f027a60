// GraphDesc in Python: an opaque value with a summary, the blob codec, and a dict form for
// tests and `kiln inspect`.
#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <cstring>
#include <map>
#include <memory>

#include "bind/buffer_views.h"
#include "common/error.h"
#include "graph/blob.h"
#include "graph/desc.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace kiln {
namespace {

const char* type_name(NodeType t) {
  switch (t) {
    case NodeType::kernel: return "kernel";
    case NodeType::memcpy: return "memcpy";
    case NodeType::memset: return "memset";
    case NodeType::empty: return "empty";
    case NodeType::event_wait: return "event_wait";
    case NodeType::event_record: return "event_record";
  }
  return "unknown";
}

NodeType type_from(const std::string& s) {
  for (NodeType t : {NodeType::kernel, NodeType::memcpy, NodeType::memset, NodeType::empty, NodeType::event_wait,
                     NodeType::event_record})
    if (s == type_name(t)) return t;
  throw nb::value_error(("unknown node type " + s).c_str());
}

nb::dict kernel_dict(const KernelNode& node) {
  const KernelShape& k = node.info();
  nb::dict d;
  d["binary"] = k.binary;
  d["entry"] = k.entry;
  d["grid"] = nb::make_tuple(node.grid[0], node.grid[1], node.grid[2]);
  d["block"] = nb::make_tuple(node.block[0], node.block[1], node.block[2]);
  d["shared_mem"] = node.shared_mem;
  d["extra_buffer"] = k.extra_buffer;
  d["args"] = nb::bytes(reinterpret_cast<const char*>(node.args.data()), node.args.size());
  nb::list params, ptrs, attrs, fattrs;
  for (const ParamSlot& s : k.params) params.append(nb::make_tuple(s.offset, s.size));
  for (const RegionPointer& p : node.region_pointers) ptrs.append(nb::make_tuple(p.arg_offset, p.address));
  for (const LaunchAttribute& a : k.attributes)
    attrs.append(nb::make_tuple(a.id, nb::bytes(reinterpret_cast<const char*>(a.value), sizeof a.value)));
  for (const FunctionAttribute& f : k.function_attributes) fattrs.append(nb::make_tuple(f.attribute, f.value));
  d["params"] = params;
  d["region_pointers"] = ptrs;
  d["attributes"] = attrs;
  d["function_attributes"] = fattrs;
  return d;
}

template <size_t N>
void fill3(uint32_t (&out)[N], nb::handle seq) {
  for (size_t i = 0; i < N; ++i) out[i] = nb::cast<uint32_t>(seq[i]);
}

KernelNode kernel_from(nb::dict d) {
  KernelNode node;
  KernelShape k;
  k.binary = nb::cast<uint32_t>(d["binary"]);
  k.entry = nb::cast<std::string>(d["entry"]);
  fill3(node.grid, d["grid"]);
  fill3(node.block, d["block"]);
  node.shared_mem = nb::cast<uint32_t>(d["shared_mem"]);
  k.extra_buffer = nb::cast<bool>(d["extra_buffer"]);
  nb::bytes args = nb::cast<nb::bytes>(d["args"]);
  node.args.assign(static_cast<const uint8_t*>(args.data()), static_cast<const uint8_t*>(args.data()) + args.size());
  for (nb::handle p : d["params"]) k.params.push_back({nb::cast<uint32_t>(p[0]), nb::cast<uint32_t>(p[1])});
  for (nb::handle p : d["region_pointers"])
    node.region_pointers.push_back({nb::cast<uint32_t>(p[0]), nb::cast<uint64_t>(p[1])});
  for (nb::handle a : d["attributes"]) {
    LaunchAttribute la{nb::cast<uint32_t>(a[0]), {}};
    nb::bytes v = nb::cast<nb::bytes>(a[1]);
    if (v.size() != sizeof la.value) throw nb::value_error("launch attribute values are 64 bytes");
    std::memcpy(la.value, v.data(), sizeof la.value);
    k.attributes.push_back(la);
  }
  for (nb::handle f : d["function_attributes"])
    k.function_attributes.push_back({nb::cast<int32_t>(f[0]), nb::cast<int32_t>(f[1])});
  node.shape = std::make_shared<const KernelShape>(std::move(k));
  return node;
}

nb::dict to_dict(const GraphDesc& g) {
  nb::list nodes, edges;
  for (const Node& n : g.nodes) {
    nb::dict d;
    d["type"] = type_name(n.type);
    switch (n.type) {
      case NodeType::kernel: d["kernel"] = kernel_dict(n.kernel); break;
      case NodeType::memset: {
        const MemsetNode& m = n.memset;
        d["memset"] = nb::make_tuple(m.dst, m.pitch, m.width, m.height, m.value, m.element_size);
        break;
      }
      case NodeType::memcpy: {
        const MemcpyNode& c = n.memcpy;
        d["memcpy"] = nb::make_tuple(c.src, c.src_x, c.src_y, c.src_z, c.src_pitch, c.src_height, c.dst, c.dst_x,
                                     c.dst_y, c.dst_z, c.dst_pitch, c.dst_height, c.width, c.height, c.depth);
        break;
      }
      case NodeType::event_record:
      case NodeType::event_wait: d["event"] = n.event; break;
      case NodeType::empty: break;
    }
    nodes.append(d);
  }
  for (const Edge& e : g.edges) edges.append(nb::make_tuple(e.from, e.to, e.from_port, e.to_port, e.type));
  nb::dict out;
  out["nodes"] = nodes;
  out["edges"] = edges;
  out["event_count"] = g.event_count;
  return out;
}

GraphDesc from_dict(nb::dict d) {
  GraphDesc g;
  g.event_count = nb::cast<uint32_t>(d["event_count"]);
  for (nb::handle h : d["nodes"]) {
    nb::dict nd = nb::cast<nb::dict>(h);
    Node n;
    n.type = type_from(nb::cast<std::string>(nd["type"]));
    if (n.type == NodeType::kernel) n.kernel = kernel_from(nb::cast<nb::dict>(nd["kernel"]));
    if (n.type == NodeType::memset) {
      nb::handle m = nd["memset"];
      n.memset = {nb::cast<uint64_t>(m[0]), nb::cast<uint64_t>(m[1]), nb::cast<uint64_t>(m[2]),
                  nb::cast<uint64_t>(m[3]), nb::cast<uint32_t>(m[4]), nb::cast<uint32_t>(m[5])};
    }
    if (n.type == NodeType::memcpy) {
      nb::handle c = nd["memcpy"];
      uint64_t v[15];
      for (int i = 0; i < 15; ++i) v[i] = nb::cast<uint64_t>(c[i]);
      n.memcpy = {v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12], v[13], v[14]};
    }
    if (n.type == NodeType::event_record || n.type == NodeType::event_wait) n.event = nb::cast<uint32_t>(nd["event"]);
    g.nodes.push_back(std::move(n));
  }
  for (nb::handle e : d["edges"])
    g.edges.push_back({nb::cast<uint32_t>(e[0]), nb::cast<uint32_t>(e[1]), nb::cast<uint8_t>(e[2]),
                       nb::cast<uint8_t>(e[3]), nb::cast<uint8_t>(e[4])});
  return g;
}

}  // namespace

void bind_graph_desc(nb::module_& m) {
  nb::class_<GraphDesc>(m, "GraphDesc")
      .def_prop_ro("node_count", [](const GraphDesc& g) { return g.nodes.size(); })
      .def_prop_ro("edge_count", [](const GraphDesc& g) { return g.edges.size(); })
      .def_prop_ro("kernel_count", &GraphDesc::kernel_count)
      .def_prop_ro("param_bytes", [](const GraphDesc& g) {
        // What the driver needs per node: kernel argument bytes, memset/memcpy operands.
        size_t total = 0;
        for (const Node& n : g.nodes) {
          if (n.type == NodeType::kernel) total += n.kernel.args.size();
          if (n.type == NodeType::memset) total += sizeof(MemsetNode);
          if (n.type == NodeType::memcpy) total += sizeof(MemcpyNode);
        }
        return total;
      }, "Bytes of per-node parameters (kernel arguments, memset and memcpy operands).")
      .def("binaries", &GraphDesc::binaries, "Distinct binary ids (or slots) used by kernel nodes.")
      .def("kernels", [](const GraphDesc& g) {
        std::vector<std::pair<uint32_t, std::string>> out;
        for (const Node& n : g.nodes)
          if (n.type == NodeType::kernel) out.emplace_back(n.kernel.binary(), n.kernel.entry());
        nb::list l;
        for (auto& [b, e] : out) l.append(nb::make_tuple(b, e));
        return l;
      }, "(binary, entry) of every kernel node, in node order.")
      .def("region_pointers", [](const GraphDesc& g) {
        std::vector<uint64_t> out;
        for (const Node& n : g.nodes)
          if (n.type == NodeType::kernel)
            for (const RegionPointer& p : n.kernel.region_pointers) out.push_back(p.address);
        return out;
      })
      .def("pointers_between", [](const GraphDesc& g, uint64_t begin, uint64_t end) {
        nb::list out;
        for (size_t i = 0; i < g.nodes.size(); ++i) {
          const Node& n = g.nodes[i];
          if (n.type != NodeType::kernel) continue;
          for (const RegionPointer& p : n.kernel.region_pointers)
            if (p.address >= begin && p.address < end)
              out.append(nb::make_tuple(i, p.arg_offset, p.address, n.kernel.entry()));
        }
        return out;
      }, "begin"_a, "end"_a,
      "[(node, argument byte, address, kernel entry)] of every kernel argument pointer in [begin, end), in node "
      "order.")
      .def("encode", [](const GraphDesc& g, const std::vector<uint32_t>& old_ids, const std::vector<uint32_t>& new_ids) {
        // Kernel binaries are renamed on the way out (registry ids -> archive slots); the
        // description itself is left as captured.
        if (old_ids.size() != new_ids.size()) throw nb::value_error("id lists differ in length");
        GraphDesc out = g;
        std::map<const KernelShape*, std::shared_ptr<const KernelShape>> renamed;  // shapes are shared: copy each once
        for (Node& n : out.nodes) {
          if (n.type != NodeType::kernel || old_ids.empty()) continue;
          std::shared_ptr<const KernelShape>& copy = renamed[&n.kernel.info()];
          if (!copy) {
            size_t i = 0;
            while (i < old_ids.size() && old_ids[i] != n.kernel.binary()) ++i;
            if (i == old_ids.size()) throw nb::value_error("a kernel's binary is missing from the mapping");
            KernelShape shape = n.kernel.info();
            shape.binary = new_ids[i];
            copy = std::make_shared<const KernelShape>(std::move(shape));
          }
          n.kernel.shape = copy;
        }
        std::vector<uint8_t> blob = encode_graph(out);
        return nb::bytes(reinterpret_cast<const char*>(blob.data()), blob.size());
      }, "old_ids"_a = std::vector<uint32_t>{}, "new_ids"_a = std::vector<uint32_t>{},
         "The blob; kernel binary ids in old_ids are renamed to new_ids (all ids when non-empty).")
      .def("to_dict", &to_dict)
      .def_static("from_dict", &from_dict, "d"_a);
  m.def("decode_graph", [](nb::handle data) {
    Py_buffer view;
    if (PyObject_GetBuffer(data.ptr(), &view, PyBUF_SIMPLE) != 0) throw nb::python_error();
    try {
      GraphDesc g = decode_graph(static_cast<const uint8_t*>(view.buf), static_cast<size_t>(view.len));
      PyBuffer_Release(&view);
      return g;
    } catch (...) {
      PyBuffer_Release(&view);
      throw;
    }
  }, "data"_a, "Decode a graph blob; raises ArchiveCorrupt naming the defect.");
  m.def("blob_kernels", [](const nb::object& data) {
    BufferViews view({data});
    std::vector<std::tuple<uint32_t, std::string>> out;
    for (BlobKernel& k : blob_kernels(view.data(0), view.length(0))) out.emplace_back(k.binary, std::move(k.entry));
    return out;
  }, "data"_a, "(binary slot, entry) of each kernel shape a graph blob names, read without decoding its nodes; "
     "raises ArchiveCorrupt like decode_graph.");
}

}  // namespace kiln
