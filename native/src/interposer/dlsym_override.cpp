// dlsym override: cudart, cuBLAS, Triton and NCCL find driver entry points with
// dlsym(libcuda, ...) (cuGetProcAddress first of all), so wrapping dlsym's answers for the
// few names kiln cares about routes every later driver call through kiln.
#include <dlfcn.h>

#include "common/log.h"
#include "interposer/hook_table.h"
#include "interposer/real_dlsym.h"

namespace kiln {
namespace {

using DlsymFn = void* (*)(void*, const char*);

DlsymFn resolve_libc_dlsym() {
  // dlvsym is not overridden, so it reaches the C library's dlsym directly. glibc >= 2.34
  // exports it as GLIBC_2.34, older ones as GLIBC_2.2.5.
  void* fn = dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.34");
  if (!fn) fn = dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.2.5");
  return reinterpret_cast<DlsymFn>(fn);
}

}  // namespace

void* real_dlsym(void* handle, const char* name) {
  static const DlsymFn libc_dlsym = resolve_libc_dlsym();
  if (!libc_dlsym) {
    KILN_ERROR("cannot find the C library's dlsym; symbol %s unresolved", name ? name : "(null)");
    return nullptr;
  }
  return libc_dlsym(handle, name);
}

}  // namespace kiln

extern "C" __attribute__((visibility("default"))) void* dlsym(void* handle, const char* name) {
  // glibc declares `name` non-null. RTLD_NEXT must be resolved relative to the caller, not to kiln: that is the one case we
  // cannot forward faithfully, so callers using it get the libc answer for kiln's own
  // position. No driver client uses RTLD_NEXT for cu* symbols.
  void* real = kiln::real_dlsym(handle, name);
  if (real && name[0] == 'c' && name[1] == 'u') return kiln::interpose_symbol(name, real);
  return real;
}
