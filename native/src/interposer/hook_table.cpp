#include "interposer/hook_table.h"

#include <dlfcn.h>

#include <cstring>

#include "common/log.h"
#include "interposer/real_dlsym.h"

namespace kiln {

#define KILN_DEFINE_SLOT(wrapper, slot, base, ver, per_thread, exported, pfn) RealSlot slot{exported};
KILN_HOOKS(KILN_DEFINE_SLOT)
#undef KILN_DEFINE_SLOT

namespace {

void* libcuda_handle() {
  static void* handle = [] {
    void* h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
    if (!h) h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL);
    return h;
  }();
  return handle;
}

#define KILN_ENTRY(wrapper, slot, base, ver, per_thread, exported, pfn) \
  HookEntry{base, ver, per_thread != 0, exported, reinterpret_cast<void*>(static_cast<pfn>(&wrapper)), &slot},
const HookEntry g_entries[] = {KILN_HOOKS(KILN_ENTRY)};
#undef KILN_ENTRY

struct VersionInfo {
  const char* base;
  int version;
  bool per_thread;
};
#define KILN_VERSION(base, ver, pt) VersionInfo{base, ver, pt != 0},
const VersionInfo g_versions[] = {KILN_HOOK_VERSIONS(KILN_VERSION)};
#undef KILN_VERSION

// Only functions that really come from the driver get wrapped: another library exporting a
// cu* name (a stub, a shim) keeps its own.
bool comes_from_libcuda(void* fn) {
  Dl_info info;
  if (!dladdr(fn, &info) || !info.dli_fname) return false;
  const char* slash = std::strrchr(info.dli_fname, '/');
  const char* file = slash ? slash + 1 : info.dli_fname;
  return std::strncmp(file, "libcuda.so", 10) == 0;
}

void* bind(const HookEntry& e, void* real) {
  void* expected = nullptr;
  if (!e.real->fn.compare_exchange_strong(expected, real, std::memory_order_acq_rel) && expected != real) {
    // A second, different real pointer (e.g. a tool's wrapper): keep the first, both work.
    KILN_DEBUG("%s: driver handed out a second implementation; keeping the first", e.exported);
  }
  KILN_TRACE("wrapping %s (ABI %d%s)", e.exported, e.version, e.per_thread ? ", per-thread stream" : "");
  return e.wrapper;
}

}  // namespace

void* RealSlot::get() {
  void* f = fn.load(std::memory_order_acquire);
  if (f) return f;
  // A direct caller reached the exported wrapper before any dlsym or cuGetProcAddress
  // handed this entry point out: libcuda's own symbol (a handle lookup never finds kiln's).
  void* handle = libcuda_handle();
  void* found = handle ? real_dlsym(handle, exported) : nullptr;
  if (!found) {
    KILN_ERROR("%s: the CUDA driver's own function cannot be found (libcuda.so.1 %s)", exported,
               handle ? "lacks it" : "cannot be loaded");
    return nullptr;
  }
  void* expected = nullptr;
  if (!fn.compare_exchange_strong(expected, found, std::memory_order_acq_rel)) return expected;
  KILN_TRACE("%s resolved from libcuda for a direct caller", exported);
  return found;
}

const HookEntry* hook_entries(int* count) {
  *count = static_cast<int>(sizeof g_entries / sizeof g_entries[0]);
  return g_entries;
}

void* interpose_symbol(const char* name, void* real) {
  for (const HookEntry& e : g_entries) {
    if (std::strcmp(e.exported, name) == 0) return comes_from_libcuda(real) ? bind(e, real) : real;
  }
  return real;
}

void* interpose_proc(const char* symbol, int version, cuuint64_t flags, void* real) {
  // The driver hands out the newest ABI not newer than `version`; per-thread-stream twins
  // only when asked for and when they exist.
  const bool want_pt = (flags & CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM) != 0;
  int best_plain = -1, best_pt = -1;
  for (const VersionInfo& v : g_versions) {
    if (std::strcmp(v.base, symbol) != 0 || v.version > version) continue;
    int& best = v.per_thread ? best_pt : best_plain;
    if (v.version > best) best = v.version;
  }
  const bool per_thread = want_pt && best_pt >= 0;
  const int chosen = per_thread ? best_pt : best_plain;
  if (chosen < 0) return real;
  for (const HookEntry& e : g_entries) {
    if (e.version == chosen && e.per_thread == per_thread && std::strcmp(e.base, symbol) == 0) return bind(e, real);
  }
  return real;  // an ABI kiln does not wrap (e.g. a legacy 32-bit variant)
}

}  // namespace kiln
