#include "testing/fake_graphs.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

namespace kiln::testing {
namespace {

struct Function {
  std::string name;  // "library:entry"
  std::string entry;
  std::vector<uint32_t> sizes;
  std::map<int, int> attributes;
};

struct Library;
struct Kernel {
  Library* library;
  std::string entry;
  Function* function = nullptr;  // created on first cuKernelGetFunction
  Function* reused = nullptr;    // an unloaded kernel's function, handed out again by it
};

struct Library {
  std::string name;
  std::map<std::string, std::vector<uint32_t>> entries;
  std::map<std::string, std::map<int, int>> attributes;  // a fresh function's, by entry
  std::map<std::string, std::unique_ptr<Kernel>> kernels;
  std::vector<std::unique_ptr<Kernel>> reused;  // an unloaded library's kernels, next first
};

struct Graph;
struct Node {
  Graph* graph;
  size_t index;
  std::string digest;
  // What the node was added with, for the getters a walk (SAVE) calls. Kernel arguments are
  // copied, as the driver does: `kernel` points into `args`/`arg_slots`/`extra*`.
  CUgraphNodeType type = CU_GRAPH_NODE_TYPE_EMPTY;
  CUDA_KERNEL_NODE_PARAMS kernel{};
  std::vector<uint8_t> args;
  std::vector<void*> arg_slots;
  size_t extra_size = 0;
  void* extra[5] = {};
  std::map<int, CUlaunchAttributeValue> attributes;
  CUDA_MEMSET_NODE_PARAMS memset{};
  CUDA_MEMCPY3D memcpy{};
  CUevent event = nullptr;
};

struct Edge {
  Node* from;
  Node* to;
  CUgraphEdgeData data;
};

struct Graph {
  std::vector<std::unique_ptr<Node>> nodes;
  std::vector<std::string> edges;
  std::vector<Edge> links;           // the same edges, for cuGraphGetEdges
  std::map<CUevent, size_t> events;  // by first use, so records do not depend on handles
};

struct Exec {
  std::vector<std::string> nodes;
  std::vector<std::pair<size_t, size_t>> links;  // edges by node index
  std::vector<std::string> link_data;            // "from_port,to_port,type" of each link
  std::vector<char> enabled;                     // cuGraphNodeSetEnabled
  std::map<const Node*, size_t> index;
  unsigned long long flags;
};

struct State {
  std::mutex mu;
  bool strict = false;
  // Owned forever (handles stay unique for the process); liveness tracked separately.
  std::vector<std::unique_ptr<Library>> libraries;
  std::vector<std::unique_ptr<Function>> functions;
  std::set<const void*> kernels;  // every CUkernel handed out (alive while its library is)
  std::set<const void*> live_libraries, live_functions, live_graphs, live_execs, live_events, live_streams;
  std::vector<Library*> unloaded;  // most recent last: "//fake reuse-handles" takes it again
  std::map<const Graph*, std::unique_ptr<Graph>> graphs;
  std::map<const Exec*, std::unique_ptr<Exec>> execs;
  std::vector<std::string> launches;
  std::set<std::thread::id> loader_threads;
  int64_t loads = 0, preserved_loads = 0, loading = 0, max_loading = 0, attribute_sets = 0, context_errors = 0, instantiations = 0;
  int64_t get_kernel_calls = 0, param_info_calls = 0;
  int64_t enable_failures = 0;  // the next this many cuGraphNodeSetEnabled calls fail
  int64_t enable_calls = 0;
  int64_t event_records = 0, event_syncs = 0;
  int64_t uploads = 0, own_stream_uploads = 0;  // cuGraphUpload calls; of them, on a stream kiln created
  int64_t upload_failures = 0;                  // the next this many cuGraphUpload calls fail
  uint64_t next_event = 1, next_stream = 1;
  int64_t ctx_syncs = 0;
  bool work_pending = false;  // a launch since the last cuCtxSynchronize
};

State& st() {
  static State* s = new State();
  return *s;
}

const CUcontext kPrimary = reinterpret_cast<CUcontext>(0x1);
thread_local CUcontext tl_current = nullptr;

bool no_context() {
  if (!st().strict || tl_current) return false;
  std::lock_guard<std::mutex> l(st().mu);
  ++st().context_errors;
  return true;
}

std::string hex(const uint8_t* p, size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < n; ++i) out += digits[p[i] >> 4], out += digits[p[i] & 15];
  return out;
}

std::vector<uint32_t> parse_sizes(const std::string& text) {
  std::vector<uint32_t> out;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');)
    if (!item.empty()) out.push_back(static_cast<uint32_t>(std::stoul(item)));
  return out;
}

// Under st().mu.
CUresult kernel_digest(const CUDA_KERNEL_NODE_PARAMS* p, std::string* out) {
  State& s = st();
  if (!p || !s.live_functions.count(p->func)) return CUDA_ERROR_INVALID_HANDLE;
  auto* f = reinterpret_cast<Function*>(p->func);
  int max_shared = f->attributes[CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES];
  if (p->sharedMemBytes > static_cast<unsigned>(max_shared)) return CUDA_ERROR_INVALID_VALUE;
  std::string args;
  if (p->extra) {
    const uint8_t* buffer = nullptr;
    size_t size = 0;
    for (void** e = p->extra; *e != CU_LAUNCH_PARAM_END; e += 2) {
      if (e[0] == CU_LAUNCH_PARAM_BUFFER_POINTER) buffer = static_cast<const uint8_t*>(e[1]);
      else if (e[0] == CU_LAUNCH_PARAM_BUFFER_SIZE) size = *static_cast<size_t*>(e[1]);
      else return CUDA_ERROR_INVALID_VALUE;
    }
    args = "x" + hex(buffer, size);
  } else {
    if (!f->sizes.empty() && !p->kernelParams) return CUDA_ERROR_INVALID_VALUE;
    for (size_t i = 0; i < f->sizes.size(); ++i)
      args += hex(static_cast<const uint8_t*>(p->kernelParams[i]), f->sizes[i]) + ".";
  }
  std::ostringstream d;
  d << "kernel " << f->name << " grid " << p->gridDimX << "," << p->gridDimY << "," << p->gridDimZ << " block "
    << p->blockDimX << "," << p->blockDimY << "," << p->blockDimZ << " shared " << p->sharedMemBytes << " args "
    << args;
  *out = d.str();
  return CUDA_SUCCESS;
}

std::string memset_digest(const CUDA_MEMSET_NODE_PARAMS* p) {
  std::ostringstream d;
  d << "memset " << p->dst << " " << p->pitch << " " << p->value << " " << p->elementSize << " " << p->width << " "
    << p->height;
  return d.str();
}

std::string memcpy_digest(const CUDA_MEMCPY3D* p) {
  std::ostringstream d;
  d << "memcpy " << p->srcDevice << " " << p->srcXInBytes << " " << p->srcY << " " << p->srcZ << " " << p->srcPitch
    << " " << p->srcHeight << " " << p->dstDevice << " " << p->dstXInBytes << " " << p->dstY << " " << p->dstZ << " "
    << p->dstPitch << " " << p->dstHeight << " " << p->WidthInBytes << " " << p->Height << " " << p->Depth;
  return d.str();
}

// Under st().mu: a new node of a live graph.
CUresult add_node(CUgraphNode* out, CUgraph graph, size_t deps, std::string digest, CUgraphNodeType type,
                  Node** added = nullptr) {
  State& s = st();
  if (!s.live_graphs.count(graph) || deps != 0) return CUDA_ERROR_INVALID_VALUE;
  Graph* g = s.graphs.at(reinterpret_cast<Graph*>(graph)).get();
  auto node = std::make_unique<Node>();
  node->graph = g, node->index = g->nodes.size(), node->digest = std::move(digest), node->type = type;
  if (added) *added = node.get();
  *out = reinterpret_cast<CUgraphNode>(node.get());
  g->nodes.push_back(std::move(node));
  return CUDA_SUCCESS;
}

// Under st().mu: a node of a live graph, or null.
Node* live_node(CUgraphNode node) {
  auto* n = reinterpret_cast<Node*>(node);
  return n && st().live_graphs.count(n->graph) ? n : nullptr;
}

// Where each parameter lies in the argument buffer: in order, each aligned to its size (up to 8).
std::vector<size_t> param_offsets(const std::vector<uint32_t>& sizes) {
  std::vector<size_t> out;
  size_t end = 0;
  for (uint32_t size : sizes) {
    size_t align = size >= 8 ? 8 : size >= 4 ? 4 : size >= 2 ? 2 : 1;
    end = (end + align - 1) / align * align;
    out.push_back(end);
    end += size;
  }
  return out;
}

// Under st().mu, after kernel_digest accepted `p`: the node keeps its own copy of the arguments.
void keep_kernel_params(Node* n, const CUDA_KERNEL_NODE_PARAMS* p) {
  n->kernel = *p;
  n->kernel.kernelParams = nullptr, n->kernel.extra = nullptr;
  if (p->extra) {
    const uint8_t* buffer = nullptr;
    for (void** e = p->extra; *e != CU_LAUNCH_PARAM_END; e += 2) {
      if (e[0] == CU_LAUNCH_PARAM_BUFFER_POINTER) buffer = static_cast<const uint8_t*>(e[1]);
      if (e[0] == CU_LAUNCH_PARAM_BUFFER_SIZE) n->extra_size = *static_cast<size_t*>(e[1]);
    }
    if (buffer) n->args.assign(buffer, buffer + n->extra_size);
    n->extra[0] = CU_LAUNCH_PARAM_BUFFER_POINTER, n->extra[1] = n->args.data();
    n->extra[2] = CU_LAUNCH_PARAM_BUFFER_SIZE, n->extra[3] = &n->extra_size, n->extra[4] = CU_LAUNCH_PARAM_END;
    n->kernel.extra = n->extra;
    return;
  }
  const std::vector<uint32_t>& sizes = reinterpret_cast<const Function*>(p->func)->sizes;
  if (sizes.empty()) return;
  std::vector<size_t> offsets = param_offsets(sizes);
  n->args.assign(offsets.back() + sizes.back(), 0);
  for (size_t i = 0; i < sizes.size(); ++i) {
    std::memcpy(n->args.data() + offsets[i], p->kernelParams[i], sizes[i]);
    n->arg_slots.push_back(n->args.data() + offsets[i]);
  }
  n->kernel.kernelParams = n->arg_slots.data();
}

std::string event_digest(Graph* g, const char* what, CUevent e) {
  auto [it, fresh] = g->events.emplace(e, g->events.size());
  return std::string(what) + " " + std::to_string(it->second);
}

// Under st().mu: the exec and the index of `node` in it.
Exec* exec_node(CUgraphExec exec, CUgraphNode node, size_t* index) {
  State& s = st();
  if (!s.live_execs.count(exec)) return nullptr;
  Exec* x = s.execs.at(reinterpret_cast<Exec*>(exec)).get();
  auto it = x->index.find(reinterpret_cast<Node*>(node));
  if (it == x->index.end()) return nullptr;
  *index = it->second;
  return x;
}

CUresult library_load(CUlibrary* out, const void* code, CUjit_option*, void**, unsigned, CUlibraryOption* options,
                      void** values, unsigned option_count) {
  if (no_context()) return CUDA_ERROR_INVALID_CONTEXT;
  std::string text(static_cast<const char*>(code));
  auto lib = std::make_unique<Library>();
  int delay_ms = 0;
  bool fail = false, reuse = false;
  std::stringstream in(text);
  for (std::string line; std::getline(in, line);) {
    std::stringstream words(line);
    std::string tag, key, a, b;
    words >> tag >> key >> a >> b;
    if (tag != "//fake") continue;
    if (key == "name") lib->name = a;
    if (key == "entry") lib->entries[a] = parse_sizes(b);
    if (key == "attr" && b.find('=') != std::string::npos)  // //fake attr ENTRY ATTRIBUTE=VALUE
      lib->attributes[a][std::stoi(b.substr(0, b.find('=')))] = std::stoi(b.substr(b.find('=') + 1));
    if (key == "delay-ms") delay_ms = std::stoi(a);
    if (key == "fail-load") fail = true;
    if (key == "reuse-handles") reuse = true;
  }
  State& s = st();
  {
    std::lock_guard<std::mutex> l(s.mu);
    ++s.loads;
    for (unsigned i = 0; i < option_count; ++i)
      if (options[i] == CU_LIBRARY_BINARY_IS_PRESERVED && values[i]) ++s.preserved_loads;
    s.max_loading = std::max(s.max_loading, ++s.loading);
    s.loader_threads.insert(std::this_thread::get_id());
  }
  if (delay_ms) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
  std::lock_guard<std::mutex> l(s.mu);
  --s.loading;
  if (fail) return CUDA_ERROR_INVALID_IMAGE;
  if (reuse && !s.unloaded.empty()) {
    // The driver may hand an unloaded library's handle values to a later load: this one gets
    // the last unloaded library's handle, and its kernels and functions those of that
    // library's (in entry order), as they are first asked for.
    Library* old = s.unloaded.back();
    s.unloaded.pop_back();
    old->name = lib->name;
    old->entries = std::move(lib->entries);
    old->attributes = std::move(lib->attributes);
    old->reused.clear();
    for (auto it = old->kernels.rbegin(); it != old->kernels.rend(); ++it) old->reused.push_back(std::move(it->second));
    old->kernels.clear();
    lib.reset();
    *out = reinterpret_cast<CUlibrary>(old);
    s.live_libraries.insert(old);
    return CUDA_SUCCESS;
  }
  *out = reinterpret_cast<CUlibrary>(lib.get());
  s.live_libraries.insert(lib.get());
  s.libraries.push_back(std::move(lib));
  return CUDA_SUCCESS;
}

CUresult library_unload(CUlibrary lib) {
  std::lock_guard<std::mutex> l(st().mu);
  if (!st().live_libraries.erase(lib)) return CUDA_ERROR_INVALID_HANDLE;
  for (const auto& [entry, kernel] : reinterpret_cast<Library*>(lib)->kernels)
    if (kernel->function) st().live_functions.erase(kernel->function);  // they die with it
  st().unloaded.push_back(reinterpret_cast<Library*>(lib));
  return CUDA_SUCCESS;
}

CUresult library_get_kernel(CUkernel* out, CUlibrary library, const char* name) {
  std::lock_guard<std::mutex> l(st().mu);
  ++st().get_kernel_calls;
  if (!st().live_libraries.count(library)) return CUDA_ERROR_INVALID_HANDLE;
  auto* lib = reinterpret_cast<Library*>(library);
  if (!lib->entries.count(name)) return CUDA_ERROR_NOT_FOUND;
  auto& k = lib->kernels[name];
  if (!k && !lib->reused.empty()) {
    k = std::move(lib->reused.back());
    lib->reused.pop_back();
    *k = Kernel{lib, name, nullptr, k->function ? k->function : k->reused};
  }
  if (!k) {
    k = std::make_unique<Kernel>(Kernel{lib, name});
    st().kernels.insert(k.get());
  }
  *out = reinterpret_cast<CUkernel>(k.get());
  return CUDA_SUCCESS;
}

CUresult kernel_get_name(const char** name, CUkernel kernel) {
  std::lock_guard<std::mutex> l(st().mu);
  auto* k = reinterpret_cast<Kernel*>(kernel);
  if (!st().kernels.count(k) || !st().live_libraries.count(k->library)) return CUDA_ERROR_INVALID_HANDLE;
  *name = k->entry.c_str();
  return CUDA_SUCCESS;
}

CUresult func_get_name(const char** name, CUfunction f) {
  std::lock_guard<std::mutex> l(st().mu);
  if (!st().live_functions.count(f)) return CUDA_ERROR_INVALID_HANDLE;
  *name = reinterpret_cast<Function*>(f)->entry.c_str();
  return CUDA_SUCCESS;
}

CUresult func_get_param_info(CUfunction f, size_t index, size_t* offset, size_t* size) {
  std::lock_guard<std::mutex> l(st().mu);
  ++st().param_info_calls;
  if (!st().live_functions.count(f)) return CUDA_ERROR_INVALID_HANDLE;
  const std::vector<uint32_t>& sizes = reinterpret_cast<Function*>(f)->sizes;
  if (index >= sizes.size()) return CUDA_ERROR_INVALID_VALUE;
  *offset = param_offsets(sizes)[index], *size = sizes[index];
  return CUDA_SUCCESS;
}

CUresult kernel_get_function(CUfunction* out, CUkernel kernel) {
  if (no_context()) return CUDA_ERROR_INVALID_CONTEXT;
  std::lock_guard<std::mutex> l(st().mu);
  auto* k = reinterpret_cast<Kernel*>(kernel);
  if (!k->function) {
    Function* f = k->reused;
    if (f) {
      *f = Function{};
      k->reused = nullptr;
    } else {
      st().functions.push_back(std::make_unique<Function>());
      f = st().functions.back().get();
    }
    f->name = k->library->name + ":" + k->entry;
    f->entry = k->entry;
    f->sizes = k->library->entries.at(k->entry);
    f->attributes = k->library->attributes[k->entry];
    k->function = f;
    st().live_functions.insert(f);
  }
  *out = reinterpret_cast<CUfunction>(k->function);
  return CUDA_SUCCESS;
}

CUresult func_get_attribute(int* value, CUfunction_attribute attr, CUfunction f) {
  if (no_context()) return CUDA_ERROR_INVALID_CONTEXT;
  std::lock_guard<std::mutex> l(st().mu);
  if (!st().live_functions.count(f)) return CUDA_ERROR_INVALID_HANDLE;
  *value = reinterpret_cast<Function*>(f)->attributes[attr];
  return CUDA_SUCCESS;
}

CUresult func_set_attribute(CUfunction f, CUfunction_attribute attr, int value) {
  if (no_context()) return CUDA_ERROR_INVALID_CONTEXT;
  std::lock_guard<std::mutex> l(st().mu);
  if (!st().live_functions.count(f)) return CUDA_ERROR_INVALID_HANDLE;
  reinterpret_cast<Function*>(f)->attributes[attr] = value;
  ++st().attribute_sets;
  return CUDA_SUCCESS;
}

CUresult graph_create(CUgraph* out, unsigned int) {
  std::lock_guard<std::mutex> l(st().mu);
  auto g = std::make_unique<Graph>();
  *out = reinterpret_cast<CUgraph>(g.get());
  st().live_graphs.insert(g.get());
  st().graphs[g.get()] = std::move(g);
  return CUDA_SUCCESS;
}

CUresult graph_destroy(CUgraph graph) {
  std::lock_guard<std::mutex> l(st().mu);
  if (!st().live_graphs.erase(graph)) return CUDA_ERROR_INVALID_HANDLE;
  st().graphs.erase(reinterpret_cast<Graph*>(graph));
  return CUDA_SUCCESS;
}

CUresult add_kernel(CUgraphNode* out, CUgraph graph, const CUgraphNode*, size_t deps,
                    const CUDA_KERNEL_NODE_PARAMS* p) {
  if (no_context()) return CUDA_ERROR_INVALID_CONTEXT;
  std::lock_guard<std::mutex> l(st().mu);
  std::string digest;
  if (CUresult r = kernel_digest(p, &digest)) return r;
  Node* n = nullptr;
  if (CUresult r = add_node(out, graph, deps, digest, CU_GRAPH_NODE_TYPE_KERNEL, &n)) return r;
  keep_kernel_params(n, p);
  return CUDA_SUCCESS;
}

CUresult kernel_set_attribute(CUgraphNode node, CUkernelNodeAttrID id, const CUkernelNodeAttrValue* value) {
  std::lock_guard<std::mutex> l(st().mu);
  auto* n = reinterpret_cast<Node*>(node);
  n->digest += " attr " + std::to_string(id) + "=" + hex(reinterpret_cast<const uint8_t*>(value), sizeof *value);
  n->attributes[id] = *value;
  return CUDA_SUCCESS;
}

CUresult add_memset(CUgraphNode* out, CUgraph graph, const CUgraphNode*, size_t deps,
                    const CUDA_MEMSET_NODE_PARAMS* p, CUcontext) {
  std::lock_guard<std::mutex> l(st().mu);
  Node* n = nullptr;
  if (CUresult r = add_node(out, graph, deps, memset_digest(p), CU_GRAPH_NODE_TYPE_MEMSET, &n)) return r;
  n->memset = *p;
  return CUDA_SUCCESS;
}

CUresult add_memcpy(CUgraphNode* out, CUgraph graph, const CUgraphNode*, size_t deps, const CUDA_MEMCPY3D* p,
                    CUcontext) {
  std::lock_guard<std::mutex> l(st().mu);
  Node* n = nullptr;
  if (CUresult r = add_node(out, graph, deps, memcpy_digest(p), CU_GRAPH_NODE_TYPE_MEMCPY, &n)) return r;
  n->memcpy = *p;
  return CUDA_SUCCESS;
}

CUresult add_empty(CUgraphNode* out, CUgraph graph, const CUgraphNode*, size_t deps) {
  std::lock_guard<std::mutex> l(st().mu);
  return add_node(out, graph, deps, "empty", CU_GRAPH_NODE_TYPE_EMPTY);
}

CUresult add_event_node(CUgraphNode* out, CUgraph graph, size_t deps, CUevent e, CUgraphNodeType type) {
  std::lock_guard<std::mutex> l(st().mu);
  if (!st().live_graphs.count(graph)) return CUDA_ERROR_INVALID_VALUE;
  const char* what = type == CU_GRAPH_NODE_TYPE_EVENT_RECORD ? "record" : "wait";
  Node* n = nullptr;
  if (CUresult r = add_node(out, graph, deps, event_digest(reinterpret_cast<Graph*>(graph), what, e), type, &n))
    return r;
  n->event = e;
  return CUDA_SUCCESS;
}

CUresult add_event_record(CUgraphNode* out, CUgraph graph, const CUgraphNode*, size_t deps, CUevent e) {
  return add_event_node(out, graph, deps, e, CU_GRAPH_NODE_TYPE_EVENT_RECORD);
}

CUresult add_event_wait(CUgraphNode* out, CUgraph graph, const CUgraphNode*, size_t deps, CUevent e) {
  return add_event_node(out, graph, deps, e, CU_GRAPH_NODE_TYPE_WAIT_EVENT);
}

// --- what a walk reads back ---

CUresult graph_get_nodes(CUgraph graph, CUgraphNode* out, size_t* count) {
  std::lock_guard<std::mutex> l(st().mu);
  if (!st().live_graphs.count(graph)) return CUDA_ERROR_INVALID_VALUE;
  const std::vector<std::unique_ptr<Node>>& nodes = reinterpret_cast<Graph*>(graph)->nodes;
  if (!out) {
    *count = nodes.size();
    return CUDA_SUCCESS;
  }
  *count = std::min(*count, nodes.size());
  for (size_t i = 0; i < *count; ++i) out[i] = reinterpret_cast<CUgraphNode>(nodes[i].get());
  return CUDA_SUCCESS;
}

CUresult graph_get_edges(CUgraph graph, CUgraphNode* from, CUgraphNode* to, CUgraphEdgeData* data, size_t* count) {
  std::lock_guard<std::mutex> l(st().mu);
  if (!st().live_graphs.count(graph)) return CUDA_ERROR_INVALID_VALUE;
  const std::vector<Edge>& links = reinterpret_cast<Graph*>(graph)->links;
  if (!from) {
    *count = links.size();
    return CUDA_SUCCESS;
  }
  *count = std::min(*count, links.size());
  for (size_t i = 0; i < *count; ++i) {
    from[i] = reinterpret_cast<CUgraphNode>(links[i].from), to[i] = reinterpret_cast<CUgraphNode>(links[i].to);
    if (data) data[i] = links[i].data;
  }
  return CUDA_SUCCESS;
}

CUresult node_get_type(CUgraphNode node, CUgraphNodeType* type) {
  std::lock_guard<std::mutex> l(st().mu);
  const Node* n = live_node(node);
  if (!n) return CUDA_ERROR_INVALID_VALUE;
  *type = n->type;
  return CUDA_SUCCESS;
}

CUresult kernel_get_params(CUgraphNode node, CUDA_KERNEL_NODE_PARAMS* p) {
  std::lock_guard<std::mutex> l(st().mu);
  const Node* n = live_node(node);
  if (!n || n->type != CU_GRAPH_NODE_TYPE_KERNEL) return CUDA_ERROR_INVALID_VALUE;
  *p = n->kernel;
  return CUDA_SUCCESS;
}

CUresult kernel_get_attribute(CUgraphNode node, CUkernelNodeAttrID id, CUkernelNodeAttrValue* value) {
  std::lock_guard<std::mutex> l(st().mu);
  const Node* n = live_node(node);
  if (!n || n->type != CU_GRAPH_NODE_TYPE_KERNEL) return CUDA_ERROR_INVALID_VALUE;
  auto it = n->attributes.find(id);
  if (it != n->attributes.end()) *value = it->second;
  else std::memset(value, 0, sizeof *value);  // unset: the default
  return CUDA_SUCCESS;
}

CUresult memset_get_params(CUgraphNode node, CUDA_MEMSET_NODE_PARAMS* p) {
  std::lock_guard<std::mutex> l(st().mu);
  const Node* n = live_node(node);
  if (!n || n->type != CU_GRAPH_NODE_TYPE_MEMSET) return CUDA_ERROR_INVALID_VALUE;
  *p = n->memset;
  return CUDA_SUCCESS;
}

CUresult memcpy_get_params(CUgraphNode node, CUDA_MEMCPY3D* p) {
  std::lock_guard<std::mutex> l(st().mu);
  const Node* n = live_node(node);
  if (!n || n->type != CU_GRAPH_NODE_TYPE_MEMCPY) return CUDA_ERROR_INVALID_VALUE;
  *p = n->memcpy;
  return CUDA_SUCCESS;
}

CUresult event_node_get_event(CUgraphNode node, CUevent* e) {
  std::lock_guard<std::mutex> l(st().mu);
  const Node* n = live_node(node);
  if (!n || !n->event) return CUDA_ERROR_INVALID_VALUE;
  *e = n->event;
  return CUDA_SUCCESS;
}

CUresult add_dependencies(CUgraph graph, const CUgraphNode* from, const CUgraphNode* to, const CUgraphEdgeData* data,
                          size_t n) {
  std::lock_guard<std::mutex> l(st().mu);
  if (!st().live_graphs.count(graph)) return CUDA_ERROR_INVALID_VALUE;
  Graph* g = reinterpret_cast<Graph*>(graph);
  for (size_t i = 0; i < n; ++i) {
    auto* a = reinterpret_cast<Node*>(from[i]);
    auto* b = reinterpret_cast<Node*>(to[i]);
    if (a->graph != g || b->graph != g) return CUDA_ERROR_INVALID_VALUE;
    g->edges.push_back(std::to_string(a->index) + ">" + std::to_string(b->index) + " " +
                       std::to_string(data[i].from_port) + "," + std::to_string(data[i].to_port) + "," +
                       std::to_string(data[i].type));
    g->links.push_back({a, b, data[i]});
  }
  return CUDA_SUCCESS;
}

CUresult instantiate(CUgraphExec* out, CUgraph graph, unsigned long long flags) {
  if (no_context()) return CUDA_ERROR_INVALID_CONTEXT;
  std::lock_guard<std::mutex> l(st().mu);
  State& s = st();
  if (!s.live_graphs.count(graph)) return CUDA_ERROR_INVALID_VALUE;
  Graph* g = reinterpret_cast<Graph*>(graph);
  auto x = std::make_unique<Exec>();
  for (const auto& n : g->nodes) {
    x->index[n.get()] = x->nodes.size();
    x->nodes.push_back(n->digest);
  }
  for (const Edge& e : g->links) {
    x->links.emplace_back(x->index.at(e.from), x->index.at(e.to));
    x->link_data.push_back(std::to_string(e.data.from_port) + "," + std::to_string(e.data.to_port) + "," +
                           std::to_string(e.data.type));
  }
  x->enabled.assign(x->nodes.size(), 1);
  x->flags = flags;
  *out = reinterpret_cast<CUgraphExec>(x.get());
  s.live_execs.insert(x.get());
  s.execs[x.get()] = std::move(x);
  ++s.instantiations;
  return CUDA_SUCCESS;
}

CUresult exec_destroy(CUgraphExec exec) {
  std::lock_guard<std::mutex> l(st().mu);
  if (!st().live_execs.erase(exec)) return CUDA_ERROR_INVALID_HANDLE;
  st().execs.erase(reinterpret_cast<Exec*>(exec));
  return CUDA_SUCCESS;
}

CUresult exec_kernel_set(CUgraphExec exec, CUgraphNode node, const CUDA_KERNEL_NODE_PARAMS* p) {
  if (no_context()) return CUDA_ERROR_INVALID_CONTEXT;
  std::lock_guard<std::mutex> l(st().mu);
  size_t i;
  Exec* x = exec_node(exec, node, &i);
  if (!x) return CUDA_ERROR_INVALID_VALUE;
  std::string digest;
  if (CUresult r = kernel_digest(p, &digest)) return r;
  // Launch attributes belong to the topology: kept from the template.
  std::string& old = x->nodes[i];
  size_t attrs = old.find(" attr ");
  x->nodes[i] = digest + (attrs == std::string::npos ? "" : old.substr(attrs));
  return CUDA_SUCCESS;
}

CUresult exec_memset_set(CUgraphExec exec, CUgraphNode node, const CUDA_MEMSET_NODE_PARAMS* p, CUcontext) {
  std::lock_guard<std::mutex> l(st().mu);
  size_t i;
  Exec* x = exec_node(exec, node, &i);
  if (!x) return CUDA_ERROR_INVALID_VALUE;
  x->nodes[i] = memset_digest(p);
  return CUDA_SUCCESS;
}

CUresult exec_memcpy_set(CUgraphExec exec, CUgraphNode node, const CUDA_MEMCPY3D* p, CUcontext) {
  std::lock_guard<std::mutex> l(st().mu);
  size_t i;
  Exec* x = exec_node(exec, node, &i);
  if (!x) return CUDA_ERROR_INVALID_VALUE;
  x->nodes[i] = memcpy_digest(p);
  return CUDA_SUCCESS;
}

CUresult node_set_enabled(CUgraphExec exec, CUgraphNode node, unsigned on) {
  if (no_context()) return CUDA_ERROR_INVALID_CONTEXT;
  std::lock_guard<std::mutex> l(st().mu);
  size_t i;
  Exec* x = exec_node(exec, node, &i);
  if (!x) return CUDA_ERROR_INVALID_VALUE;
  ++st().enable_calls;
  if (st().enable_failures > 0) {
    --st().enable_failures;
    return CUDA_ERROR_NOT_SUPPORTED;
  }
  if (x->nodes[i].rfind("kernel", 0) != 0 && x->nodes[i].rfind("memset", 0) != 0 &&
      x->nodes[i].rfind("memcpy", 0) != 0)
    return CUDA_ERROR_INVALID_VALUE;  // the driver supports kernel, memset and memcpy nodes only
  x->enabled[i] = on ? 1 : 0;
  return CUDA_SUCCESS;
}

// What a launch runs: the enabled nodes in order and the order the graph imposes among
// them (a disabled node passes its dependencies on, as an empty node does), as the
// transitive reduction, so an executable with nodes disabled records what one built
// without them would.
std::string launch_record(const Exec& x) {
  const size_t n = x.nodes.size();
  std::vector<std::vector<size_t>> out(n);
  std::map<std::pair<size_t, size_t>, std::string> data;
  for (size_t e = 0; e < x.links.size(); ++e) {
    out[x.links[e].first].push_back(x.links[e].second);
    data.emplace(x.links[e], x.link_data[e]);
  }
  std::vector<long> renumbered(n, -1);
  std::string record;
  long count = 0;
  for (size_t i = 0; i < n; ++i)
    if (x.enabled[i]) renumbered[i] = count++, record += x.nodes[i] + "\n";
  // reach[i]: enabled nodes reachable from i.
  std::vector<std::vector<char>> reach(n, std::vector<char>(n, 0));
  for (size_t i = n; i-- > 0;)
    for (size_t j : out[i]) {
      if (x.enabled[j]) reach[i][j] = 1;
      for (size_t k = 0; k < n; ++k) reach[i][k] |= reach[j][k];
    }
  for (size_t i = 0; i < n; ++i) {
    if (!x.enabled[i]) continue;
    for (size_t j = 0; j < n; ++j) {
      if (!reach[i][j]) continue;
      bool implied = false;
      for (size_t k = 0; k < n && !implied; ++k) implied = k != j && reach[i][k] && reach[k][j];
      if (implied) continue;
      auto d = data.find({i, j});
      record += "edge " + std::to_string(renumbered[i]) + ">" + std::to_string(renumbered[j]) + " " +
                (d == data.end() ? std::string("0,0,0") : d->second) + "\n";
    }
  }
  return record;
}

CUresult launch(CUgraphExec exec, CUstream) {
  if (no_context()) return CUDA_ERROR_INVALID_CONTEXT;
  std::lock_guard<std::mutex> l(st().mu);
  if (!st().live_execs.count(exec)) return CUDA_ERROR_INVALID_HANDLE;
  const Exec* x = st().execs.at(reinterpret_cast<const Exec*>(exec)).get();
  std::string record = launch_record(*x);
  record += "flags " + std::to_string(x->flags);
  st().launches.push_back(std::move(record));
  st().work_pending = true;
  return CUDA_SUCCESS;
}

CUresult ctx_synchronize() {
  if (no_context()) return CUDA_ERROR_INVALID_CONTEXT;
  std::lock_guard<std::mutex> l(st().mu);
  ++st().ctx_syncs;
  st().work_pending = false;
  return CUDA_SUCCESS;
}

CUresult upload(CUgraphExec exec, CUstream stream) {
  if (no_context()) return CUDA_ERROR_INVALID_CONTEXT;
  std::lock_guard<std::mutex> l(st().mu);
  State& s = st();
  if (!s.live_execs.count(exec)) return CUDA_ERROR_INVALID_HANDLE;
  if (s.upload_failures > 0) {
    --s.upload_failures;
    return CUDA_ERROR_OUT_OF_MEMORY;
  }
  ++s.uploads;
  s.own_stream_uploads += s.live_streams.count(stream);
  return CUDA_SUCCESS;
}

// Streams kiln creates itself (any other stream is the caller's, taken as valid).
CUresult stream_create(CUstream* out, unsigned int) {
  if (no_context()) return CUDA_ERROR_INVALID_CONTEXT;
  std::lock_guard<std::mutex> l(st().mu);
  *out = reinterpret_cast<CUstream>(st().next_stream++ << 4 | 8);
  st().live_streams.insert(*out);
  return CUDA_SUCCESS;
}

CUresult stream_synchronize(CUstream stream) {
  if (no_context()) return CUDA_ERROR_INVALID_CONTEXT;
  std::lock_guard<std::mutex> l(st().mu);
  return !stream || st().live_streams.count(stream) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

CUresult stream_destroy(CUstream stream) {
  std::lock_guard<std::mutex> l(st().mu);
  return st().live_streams.erase(stream) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

CUresult event_create(CUevent* out, unsigned int) {
  std::lock_guard<std::mutex> l(st().mu);
  *out = reinterpret_cast<CUevent>(st().next_event++ << 4);
  st().live_events.insert(*out);
  return CUDA_SUCCESS;
}

CUresult event_destroy(CUevent e) {
  std::lock_guard<std::mutex> l(st().mu);
  return st().live_events.erase(e) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

CUresult event_record(CUevent e, CUstream) {
  if (no_context()) return CUDA_ERROR_INVALID_CONTEXT;
  std::lock_guard<std::mutex> l(st().mu);
  if (!st().live_events.count(e)) return CUDA_ERROR_INVALID_HANDLE;
  ++st().event_records;
  return CUDA_SUCCESS;
}

CUresult event_synchronize(CUevent e) {
  std::lock_guard<std::mutex> l(st().mu);
  if (!st().live_events.count(e)) return CUDA_ERROR_INVALID_HANDLE;
  ++st().event_syncs;
  return CUDA_SUCCESS;  // the fake runs nothing: every launch is already complete
}

CUresult ctx_get_current(CUcontext* c) {
  *c = st().strict ? tl_current : kPrimary;
  return CUDA_SUCCESS;
}

CUresult ctx_set_current(CUcontext c) {
  tl_current = c;
  return CUDA_SUCCESS;
}

CUresult primary_retain(CUcontext* c, CUdevice) {
  *c = kPrimary;
  return CUDA_SUCCESS;
}

}  // namespace

void install_fake_graph_calls(DriverTable& t, bool strict_context) {
  State& s = st();
  {
    std::lock_guard<std::mutex> l(s.mu);
    s.strict = strict_context;
    // Handles of an earlier install stay owned (a test may still hold them) but not live.
    s.live_libraries.clear(), s.live_functions.clear(), s.live_graphs.clear();
    s.live_execs.clear(), s.live_events.clear(), s.live_streams.clear(), s.launches.clear(), s.loader_threads.clear();
    s.unloaded.clear();
    s.loads = s.preserved_loads = s.loading = s.max_loading = s.attribute_sets = s.context_errors = s.instantiations = 0;
    s.get_kernel_calls = s.param_info_calls = s.enable_failures = s.enable_calls = 0;
    s.event_records = s.event_syncs = 0;
    s.uploads = s.own_stream_uploads = s.upload_failures = 0;
    s.ctx_syncs = 0;
    s.work_pending = false;
  }
  tl_current = nullptr;
  t.cuCtxGetCurrent = ctx_get_current;
  t.cuCtxSetCurrent = ctx_set_current;
  t.cuDevicePrimaryCtxRetain = primary_retain;
  t.cuLibraryLoadData = library_load;
  t.cuLibraryUnload = library_unload;
  t.cuLibraryGetKernel = library_get_kernel;
  t.cuKernelGetName = kernel_get_name;
  t.cuKernelGetFunction = kernel_get_function;
  t.cuFuncGetName = func_get_name;
  t.cuFuncGetParamInfo = func_get_param_info;
  t.cuFuncGetAttribute = func_get_attribute;
  t.cuFuncSetAttribute = func_set_attribute;
  t.cuGraphCreate = graph_create;
  t.cuGraphDestroy = graph_destroy;
  t.cuGraphAddKernelNode = add_kernel;
  t.cuGraphKernelNodeSetAttribute = kernel_set_attribute;
  t.cuGraphAddMemsetNode = add_memset;
  t.cuGraphAddMemcpyNode = add_memcpy;
  t.cuGraphAddEmptyNode = add_empty;
  t.cuGraphAddEventRecordNode = add_event_record;
  t.cuGraphAddEventWaitNode = add_event_wait;
  t.cuGraphAddDependencies = add_dependencies;
  t.cuGraphInstantiateWithFlags = instantiate;
  t.cuGraphExecDestroy = exec_destroy;
  t.cuGraphExecKernelNodeSetParams = exec_kernel_set;
  t.cuGraphExecMemsetNodeSetParams = exec_memset_set;
  t.cuGraphExecMemcpyNodeSetParams = exec_memcpy_set;
  t.cuGraphLaunch = launch;
  t.cuCtxSynchronize = ctx_synchronize;
  t.cuGraphNodeSetEnabled = node_set_enabled;
  t.cuGraphUpload = upload;
  t.cuStreamCreate = stream_create;
  t.cuStreamSynchronize = stream_synchronize;
  t.cuStreamDestroy = stream_destroy;
  t.cuEventCreate = event_create;
  t.cuEventDestroy = event_destroy;
  t.cuEventRecord = event_record;
  t.cuEventSynchronize = event_synchronize;
  t.cuGraphGetNodes = graph_get_nodes;
  t.cuGraphGetEdges = graph_get_edges;
  t.cuGraphNodeGetType = node_get_type;
  t.cuGraphKernelNodeGetParams = kernel_get_params;
  t.cuGraphKernelNodeGetAttribute = kernel_get_attribute;
  t.cuGraphMemsetNodeGetParams = memset_get_params;
  t.cuGraphMemcpyNodeGetParams = memcpy_get_params;
  t.cuGraphEventRecordNodeGetEvent = event_node_get_event;
  t.cuGraphEventWaitNodeGetEvent = event_node_get_event;
}

FakeGraphStats fake_graph_stats() {
  std::lock_guard<std::mutex> l(st().mu);
  State& s = st();
  return {static_cast<int64_t>(s.live_libraries.size()),
          static_cast<int64_t>(s.live_graphs.size()),
          static_cast<int64_t>(s.live_execs.size()),
          static_cast<int64_t>(s.live_events.size()),
          s.loads,
          s.preserved_loads,
          s.max_loading,
          static_cast<int64_t>(s.loader_threads.size()),
          s.attribute_sets,
          s.context_errors,
          s.instantiations,
          s.get_kernel_calls,
          s.param_info_calls,
          s.enable_calls,
          s.event_syncs,
          s.uploads,
          s.own_stream_uploads,
          static_cast<int64_t>(s.live_streams.size()),
          s.ctx_syncs};
}

bool fake_work_pending() {
  std::lock_guard<std::mutex> l(st().mu);
  return st().work_pending;
}

void fail_node_enables(int64_t count) {
  std::lock_guard<std::mutex> l(st().mu);
  st().enable_failures = count;
}

void fail_uploads(int64_t count) {
  std::lock_guard<std::mutex> l(st().mu);
  st().upload_failures = count;
}

std::vector<std::string> fake_launches() {
  std::lock_guard<std::mutex> l(st().mu);
  return st().launches;
}

void clear_fake_launches() {
  std::lock_guard<std::mutex> l(st().mu);
  st().launches.clear();
}

}  // namespace kiln::testing
