#include "graph/blob.h"

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <map>
#include <string>
#include <tuple>

#include "common/error.h"

namespace kiln {
namespace {

// KGR2: what kernel nodes of one function share (name, parameter layout, launch and function
// attributes) is stored once per distinct kernel "shape", which halved the blobs of KGR1
// (no longer read: an old blob fails as a bad magic number).
constexpr char kMagic[4] = {'K', 'G', 'R', '2'};
constexpr uint32_t kMaxArgBytes = 1u << 20;
constexpr uint32_t kMaxNameBytes = 1u << 16;

class Writer {
 public:
  template <typename T>
  void put(T v) {
    static_assert(std::is_trivially_copyable_v<T>);
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    out.insert(out.end(), p, p + sizeof v);
  }
  void bytes(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    out.insert(out.end(), b, b + n);
  }
  template <typename Bytes>
  void blob(const Bytes& v) {
    put<uint32_t>(static_cast<uint32_t>(v.size()));
    bytes(v.data(), v.size());
  }
  void str(const std::string& s) {
    put<uint32_t>(static_cast<uint32_t>(s.size()));
    bytes(s.data(), s.size());
  }
  std::vector<uint8_t> out;
};

class Reader {
 public:
  Reader(const uint8_t* p, size_t n) : p_(p), n_(n) {}

  template <typename T>
  T get(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, p_ + at_, sizeof v);
    at_ += sizeof v;
    return v;
  }
  void bytes(void* dst, size_t n, const char* what) {
    need(n, what);
    if (n) std::memcpy(dst, p_ + at_, n);  // an empty vector's data() may be null
    at_ += n;
  }
  // A count of elements each at least `min_bytes` long: bounded by what is left.
  uint32_t count(size_t min_bytes, const char* what) {
    uint32_t c = get<uint32_t>(what);
    if (min_bytes && c > remaining() / min_bytes)
      throw Error(ErrorKind::corrupt, format("graph blob: %s count %u exceeds the data left", what, c));
    return c;
  }
  // A length-prefixed run of bytes, in place: callers copy it once, into its final home.
  const uint8_t* run(uint32_t max, const char* what, uint32_t* size) {
    uint32_t n = get<uint32_t>(what);
    if (n > max) throw Error(ErrorKind::corrupt, format("graph blob: %s of %u bytes exceeds the limit", what, n));
    need(n, what);
    const uint8_t* p = p_ + at_;
    at_ += n;
    *size = n;
    return p;
  }
  std::string str(const char* what) {
    uint32_t n;
    const uint8_t* p = run(kMaxNameBytes, what, &n);
    return std::string(reinterpret_cast<const char*>(p), n);
  }
  size_t remaining() const { return n_ - at_; }

 private:
  void need(size_t k, const char* what) {
    if (k > n_ - at_) throw Error(ErrorKind::corrupt, format("graph blob is truncated (reading %s)", what));
  }
  const uint8_t* p_;
  size_t n_;
  size_t at_ = 0;
};

std::string shape_key(const KernelShape& k) {
  std::string key;
  auto add = [&key](const void* p, size_t n) { key.append(static_cast<const char*>(p), n); };
  add(&k.binary, sizeof k.binary);
  uint32_t len = static_cast<uint32_t>(k.entry.size());
  add(&len, sizeof len);
  key += k.entry;
  key += k.extra_buffer ? '\1' : '\0';
  uint32_t counts[3] = {static_cast<uint32_t>(k.params.size()), static_cast<uint32_t>(k.attributes.size()),
                        static_cast<uint32_t>(k.function_attributes.size())};
  add(counts, sizeof counts);
  for (const ParamSlot& p : k.params) add(&p, sizeof p);
  for (const LaunchAttribute& a : k.attributes) add(&a.id, sizeof a.id), add(a.value, sizeof a.value);
  for (const FunctionAttribute& f : k.function_attributes) add(&f, sizeof f);
  return key;
}

void encode_shape(Writer& w, const KernelShape& k) {
  w.put<uint32_t>(k.binary);
  w.str(k.entry);
  w.put<uint8_t>(k.extra_buffer ? 1 : 0);
  w.put<uint32_t>(static_cast<uint32_t>(k.params.size()));
  for (const ParamSlot& s : k.params) w.put(s.offset), w.put(s.size);
  w.put<uint32_t>(static_cast<uint32_t>(k.attributes.size()));
  for (const LaunchAttribute& a : k.attributes) w.put(a.id), w.bytes(a.value, sizeof a.value);
  w.put<uint32_t>(static_cast<uint32_t>(k.function_attributes.size()));
  for (const FunctionAttribute& f : k.function_attributes) w.put(f.attribute), w.put(f.value);
}

void check_entry(const std::string& entry) {
  if (entry.empty()) throw Error(ErrorKind::corrupt, "graph blob: kernel with an empty entry name");
  // Entry names are C identifiers (mangled): anything else is corruption, and must not reach
  // error messages or Python strings undecoded.
  for (char ch : entry)
    if (static_cast<unsigned char>(ch) < 0x21 || static_cast<unsigned char>(ch) > 0x7e)
      throw Error(ErrorKind::corrupt, "graph blob: kernel entry name has a non-printable or non-ASCII byte");
}

KernelShape decode_shape(Reader& r) {
  KernelShape k;  // KGR2 stores what kernel nodes of one function launched alike share once
  k.binary = r.get<uint32_t>("kernel binary");
  k.entry = r.str("kernel entry name");
  check_entry(k.entry);
  uint8_t extra = r.get<uint8_t>("argument mode");
  if (extra > 1) throw Error(ErrorKind::corrupt, "graph blob: bad kernel argument mode");
  k.extra_buffer = extra == 1;
  uint32_t np = r.count(8, "parameter");
  // (offset, size) pairs of u32 as ParamSlot lays them out: one copy (count checked the length).
  static_assert(sizeof(ParamSlot) == 8 && offsetof(ParamSlot, size) == 4);
  k.params.resize(np);
  r.bytes(k.params.data(), np * sizeof(ParamSlot), "parameter");
  if (k.extra_buffer && np) throw Error(ErrorKind::corrupt, "graph blob: extra-buffer kernel with a parameter layout");
  uint32_t na = r.count(68, "launch attribute");
  k.attributes.reserve(na);
  for (uint32_t i = 0; i < na; ++i) {
    LaunchAttribute a;
    a.id = r.get<uint32_t>("attribute id");
    r.bytes(a.value, sizeof a.value, "attribute value");
    k.attributes.push_back(a);
  }
  uint32_t nf = r.count(8, "function attribute");
  static_assert(sizeof(FunctionAttribute) == 8 && offsetof(FunctionAttribute, value) == 4);
  k.function_attributes.resize(nf);
  r.bytes(k.function_attributes.data(), nf * sizeof(FunctionAttribute), "function attribute");
  return k;
}

void encode_kernel(Writer& w, const KernelNode& k, uint32_t shape) {
  w.put<uint32_t>(shape);
  for (uint32_t v : k.grid) w.put(v);
  for (uint32_t v : k.block) w.put(v);
  w.put<uint32_t>(k.shared_mem);
  w.blob(k.args);
  // Region pointers by offset only: the address is the argument word itself.
  w.put<uint32_t>(static_cast<uint32_t>(k.region_pointers.size()));
  for (const RegionPointer& p : k.region_pointers) {
    uint64_t word = 0;
    if (k.args.size() >= 8 && p.arg_offset <= k.args.size() - 8) std::memcpy(&word, k.args.data() + p.arg_offset, 8);
    if (word != p.address)
      throw Error(ErrorKind::generic, format("kernel %s: region pointer at argument byte %u disagrees with the "
                                             "argument bytes", k.entry().c_str(), p.arg_offset));
    w.put(p.arg_offset);
  }
}

// A decoded shape, shared by its nodes, with the argument bytes its parameters span: a
// node's arguments cover every parameter exactly when they cover that many bytes.
struct SharedShape {
  std::shared_ptr<const KernelShape> shape;
  uint64_t params_end = 0;

  explicit SharedShape(KernelShape&& s) : shape(std::make_shared<const KernelShape>(std::move(s))) {
    for (const ParamSlot& p : shape->params) params_end = std::max<uint64_t>(params_end, uint64_t{p.offset} + p.size);
  }
};
using Shapes = std::vector<SharedShape>;

// Throws for the first parameter of `shape` outside `n_args` argument bytes, if any.
void check_params(const KernelShape& shape, uint32_t n_args) {
  for (size_t i = 0; i < shape.params.size(); ++i) {
    const ParamSlot& s = shape.params[i];
    if (s.offset > n_args || s.size > n_args - s.offset)
      throw Error(ErrorKind::corrupt, format("graph blob: kernel %s parameter %zu lies outside its arguments",
                                             shape.entry.c_str(), i));
  }
}

void decode_kernel(Reader& r, const Shapes& shapes, KernelNode& k) {
  uint32_t index = r.get<uint32_t>("kernel shape");
  if (index >= shapes.size())
    throw Error(ErrorKind::corrupt, format("graph blob: kernel shape %u of %zu", index, shapes.size()));
  const SharedShape& shared = shapes[index];
  const KernelShape& shape = *shared.shape;
  for (uint32_t& v : k.grid) v = r.get<uint32_t>("grid");
  for (uint32_t& v : k.block) v = r.get<uint32_t>("block");
  k.shared_mem = r.get<uint32_t>("shared memory");
  uint32_t n_args;
  const uint8_t* args = r.run(kMaxArgBytes, "kernel arguments", &n_args);
  if (shared.params_end > n_args) check_params(shape, n_args);
  uint32_t nr = r.count(4, "region pointer");
  k.region_pointers.reserve(nr);
  for (uint32_t i = 0; i < nr; ++i) {
    uint32_t offset = r.get<uint32_t>("pointer offset");
    if (n_args < 8 || offset > n_args - 8)
      throw Error(ErrorKind::corrupt, format("graph blob: kernel %s region pointer %u lies outside its arguments",
                                             shape.entry.c_str(), i));
    uint64_t address;
    std::memcpy(&address, args + offset, 8);
    k.region_pointers.push_back({offset, address});
  }
  k.args.assign(args, args + n_args);
  k.shape = shared.shape;
}

}  // namespace

std::vector<uint8_t> encode_graph(const GraphDesc& desc) {
  // Shapes by content (nodes built one at a time each have their own copy), each shared
  // object's key built once.
  std::map<std::string, uint32_t> index;
  std::map<const KernelShape*, uint32_t> seen;
  std::vector<const KernelShape*> shapes;
  std::vector<uint32_t> shape_of(desc.nodes.size(), 0);
  for (size_t i = 0; i < desc.nodes.size(); ++i) {
    if (desc.nodes[i].type != NodeType::kernel) continue;
    const KernelShape* shape = &desc.nodes[i].kernel.info();
    auto known = seen.find(shape);
    if (known == seen.end()) {
      auto [it, fresh] = index.emplace(shape_key(*shape), static_cast<uint32_t>(shapes.size()));
      if (fresh) shapes.push_back(shape);
      known = seen.emplace(shape, it->second).first;
    }
    shape_of[i] = known->second;
  }
  Writer w;
  w.bytes(kMagic, sizeof kMagic);
  w.put<uint32_t>(static_cast<uint32_t>(desc.nodes.size()));
  w.put<uint32_t>(static_cast<uint32_t>(desc.edges.size()));
  w.put<uint32_t>(desc.event_count);
  w.put<uint32_t>(static_cast<uint32_t>(shapes.size()));
  for (const KernelShape* k : shapes) encode_shape(w, *k);
  for (size_t i = 0; i < desc.nodes.size(); ++i) {
    const Node& n = desc.nodes[i];
    w.put<uint8_t>(static_cast<uint8_t>(n.type));
    switch (n.type) {
      case NodeType::kernel: encode_kernel(w, n.kernel, shape_of[i]); break;
      case NodeType::memset: w.put(n.memset); break;
      case NodeType::memcpy: w.put(n.memcpy); break;
      case NodeType::event_record:
      case NodeType::event_wait: w.put<uint32_t>(n.event); break;
      case NodeType::empty: break;
    }
  }
  for (const Edge& e : desc.edges) w.put(e.from), w.put(e.to), w.put(e.from_port), w.put(e.to_port), w.put(e.type);
  return std::move(w.out);
}

namespace {

struct BlobHead {
  uint32_t nodes, edges, events;
  std::vector<KernelShape> shapes;
};

BlobHead decode_head(Reader& r) {
  char magic[4];
  r.bytes(magic, 4, "magic");
  if (std::memcmp(magic, kMagic, 4) != 0) throw Error(ErrorKind::corrupt, "graph blob has a bad magic number");
  BlobHead h;
  h.nodes = r.get<uint32_t>("node count");
  h.edges = r.get<uint32_t>("edge count");
  h.events = r.get<uint32_t>("event count");
  uint32_t n_shapes = r.count(21, "kernel shape");
  h.shapes.reserve(n_shapes);
  for (uint32_t i = 0; i < n_shapes; ++i) h.shapes.push_back(decode_shape(r));
  return h;
}

}  // namespace

std::vector<BlobKernel> blob_kernels(const uint8_t* data, size_t size) {
  Reader r(data, size);
  BlobHead h = decode_head(r);
  std::vector<BlobKernel> out;
  out.reserve(h.shapes.size());
  for (KernelShape& s : h.shapes) out.push_back({s.binary, std::move(s.entry), std::move(s.function_attributes)});
  return out;
}

GraphDesc decode_graph(const uint8_t* data, size_t size) {
  Reader r(data, size);
  BlobHead head = decode_head(r);
  GraphDesc desc;
  const uint32_t n_nodes = head.nodes, n_edges = head.edges;
  desc.event_count = head.events;
  Shapes shapes;  // shared by the nodes that launch them
  shapes.reserve(head.shapes.size());
  for (KernelShape& s : head.shapes) shapes.emplace_back(std::move(s));
  if (n_nodes > r.remaining()) throw Error(ErrorKind::corrupt, "graph blob: node count exceeds the data left");
  if (n_edges > r.remaining() / 11) throw Error(ErrorKind::corrupt, "graph blob: edge count exceeds the data left");
  if (desc.event_count > n_nodes) throw Error(ErrorKind::corrupt, "graph blob: more events than nodes");
  // Argument bytes are copied 1:1 and each 4-byte region pointer offset becomes a 16-byte
  // RegionPointer: the blob's size plus a quarter holds them (the arena grows if not).
  desc.arena = GraphDesc::make_arena(size + size / 4);
  const NodeAllocator alloc(desc.arena.get());
  desc.nodes.reserve(n_nodes);
  for (uint32_t i = 0; i < n_nodes; ++i) {
    Node& n = desc.nodes.emplace_back(alloc);
    uint8_t t = r.get<uint8_t>("node type");
    switch (t) {
      case static_cast<uint8_t>(NodeType::kernel):
        n.type = NodeType::kernel;
        decode_kernel(r, shapes, n.kernel);
        break;
      case static_cast<uint8_t>(NodeType::memset): n.type = NodeType::memset; n.memset = r.get<MemsetNode>("memset"); break;
      case static_cast<uint8_t>(NodeType::memcpy): n.type = NodeType::memcpy; n.memcpy = r.get<MemcpyNode>("memcpy"); break;
      case static_cast<uint8_t>(NodeType::empty): n.type = NodeType::empty; break;
      case static_cast<uint8_t>(NodeType::event_record):
      case static_cast<uint8_t>(NodeType::event_wait):
        n.type = static_cast<NodeType>(t);
        n.event = r.get<uint32_t>("event index");
        if (n.event >= desc.event_count) throw Error(ErrorKind::corrupt, "graph blob: event index out of range");
        break;
      default: throw Error(ErrorKind::corrupt, format("graph blob: node %u has unknown type %u", i, t));
    }
  }
  desc.edges.reserve(n_edges);
  for (uint32_t i = 0; i < n_edges; ++i) {
    Edge e;
    e.from = r.get<uint32_t>("edge");
    e.to = r.get<uint32_t>("edge");
    e.from_port = r.get<uint8_t>("edge port");
    e.to_port = r.get<uint8_t>("edge port");
    e.type = r.get<uint8_t>("edge type");
    if (e.from >= n_nodes || e.to >= n_nodes || e.from == e.to)
      throw Error(ErrorKind::corrupt, format("graph blob: edge %u connects nodes out of range", i));
    desc.edges.push_back(e);
  }
  if (r.remaining()) throw Error(ErrorKind::corrupt, "graph blob has trailing bytes");
  return desc;
}

}  // namespace kiln
