// The table of wrapped driver entry points, instantiated from the generated KILN_HOOKS list.
// Each entry pairs kiln's wrapper with a slot for the driver's real function, filled the
// first time the entry point is handed out (through dlsym or cuGetProcAddress).
#pragma once

#include <cuda.h>
#include <cudaTypedefs.h>

#include <atomic>
#include <type_traits>

#include "kiln_hook_table.h"

namespace kiln {

struct HookEntry {
  const char* base;      // "cuMemAlloc"
  int version;           // ABI version of the PFN typedef
  bool per_thread;       // _ptsz / _ptds twin
  const char* exported;  // "cuMemAlloc_v2"
  void* wrapper;
  std::atomic<void*>* real;
};

// Wrapper and real-slot names: hook_cuMemAlloc_v3020_ / real_cuMemAlloc_v3020_ (suffix "_"
// for the plain variant, "_ptsz" for the per-thread one). Each wrapper is declared with the
// function type of its PFN typedef: a hand-written definition whose signature drifts from
// the header becomes an unresolved symbol at link time.
#define KILN_DECLARE_HOOK(wrapper, slot, base, ver, per_thread, exported, pfn) \
  extern std::atomic<void*> slot;                                             \
  std::remove_pointer_t<pfn> wrapper;
KILN_HOOKS(KILN_DECLARE_HOOK)
#undef KILN_DECLARE_HOOK

// The real function behind a wrapper, typed: KILN_REAL(cuMemAlloc_v3020_). Only called from
// wrappers that were handed out, so the slot is filled.
#define KILN_REAL(stem) reinterpret_cast<decltype(&hook_##stem)>(real_##stem.load(std::memory_order_acquire))

const HookEntry* hook_entries(int* count);

// dlsym path: `real` is what the C library found for `name`; returns the wrapper to hand out
// instead, or `real` itself when kiln does not wrap that symbol.
void* interpose_symbol(const char* name, void* real);

// cuGetProcAddress path: the driver resolved (`symbol`, `version`, `flags`) to `real`.
void* interpose_proc(const char* symbol, int version, cuuint64_t flags, void* real);

}  // namespace kiln
