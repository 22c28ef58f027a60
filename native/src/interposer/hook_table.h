// The table of wrapped driver entry points, instantiated from the generated KILN_HOOKS list.
// Each entry pairs kiln's wrapper with a slot for the driver's real function, filled the
// first time the entry point is handed out (through dlsym or cuGetProcAddress), or, for a
// library linked against libcuda that calls the exported symbol directly, on its first call.
//
// Each wrapper is also exported under the driver's own symbol name (cuModuleLoadData,
// cuMemAlloc_v2, ...): under LD_PRELOAD the dynamic linker binds such direct callers
// (Triton's launcher, extensions that link libcuda) to kiln before libcuda.
#pragma once

#include <cuda.h>
#include <cudaTypedefs.h>

#include <atomic>
#include <type_traits>

#include "kiln_hook_table.h"

namespace kiln {

// Where a wrapper finds the driver's function: filled when the entry point is handed out,
// else resolved from libcuda by its exported name on first use.
struct RealSlot {
  std::atomic<void*> fn{nullptr};
  const char* exported;

  explicit constexpr RealSlot(const char* name) : exported(name) {}
  void* get();  // nullptr when libcuda cannot be loaded or lacks the symbol
};

struct HookEntry {
  const char* base;      // "cuMemAlloc"
  int version;           // ABI version of the PFN typedef
  bool per_thread;       // _ptsz / _ptds twin
  const char* exported;  // "cuMemAlloc_v2"
  void* wrapper;
  RealSlot* real;
};

// Wrapper and real-slot names: hook_cuMemAlloc_v3020_ / real_cuMemAlloc_v3020_ (suffix "_"
// for the plain variant, "_ptsz" for the per-thread one). Each wrapper is declared with the
// function type of its PFN typedef (a hand-written definition whose signature drifts from
// the header becomes an unresolved symbol at link time) and with the driver's exported
// symbol as its linker name.
#define KILN_DECLARE_HOOK(wrapper, slot, base, ver, per_thread, exported, pfn) \
  extern RealSlot slot;                                                       \
  __attribute__((visibility("default"))) std::remove_pointer_t<pfn> wrapper __asm__(exported);
KILN_HOOKS(KILN_DECLARE_HOOK)
#undef KILN_DECLARE_HOOK

// What a wrapper calls when the driver's function cannot be found (libcuda missing): the
// error every driver call gives before the driver is usable.
template <typename F>
struct Unavailable;
template <typename... Args>
struct Unavailable<CUresult(Args...)> {
  static CUresult call(Args...) { return CUDA_ERROR_NOT_INITIALIZED; }
};

template <typename Fn>
Fn* real_function(RealSlot& slot) {
  void* fn = slot.get();
  return fn ? reinterpret_cast<Fn*>(fn) : &Unavailable<Fn>::call;
}

// The real function behind a wrapper, typed: KILN_REAL(cuMemAlloc_v3020_).
#define KILN_REAL(stem) real_function<std::remove_pointer_t<decltype(&hook_##stem)>>(real_##stem)

const HookEntry* hook_entries(int* count);

// dlsym path: `real` is what the C library found for `name`; returns the wrapper to hand out
// instead, or `real` itself when kiln does not wrap that symbol.
void* interpose_symbol(const char* name, void* real);

// cuGetProcAddress path: the driver resolved (`symbol`, `version`, `flags`) to `real`.
void* interpose_proc(const char* symbol, int version, cuuint64_t flags, void* real);

}  // namespace kiln
