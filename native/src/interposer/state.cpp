#include "interposer/state.h"

#include <dlfcn.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "common/log.h"
#include "interposer/real_dlsym.h"

namespace kiln {
namespace {

bool env_enabled() {
  const char* v = std::getenv("KILN_ENABLE");
  return v && (std::strcmp(v, "1") == 0 || std::strcmp(v, "true") == 0);
}

std::atomic<bool> g_enabled{env_enabled()};
std::mutex g_error_mu;
std::string g_last_error;

}  // namespace

bool interposer_enabled() { return g_enabled.load(std::memory_order_relaxed); }

void set_interposer_enabled(bool enabled) {
  g_enabled.store(enabled, std::memory_order_relaxed);
  KILN_DEBUG("interposer %s", enabled ? "enabled" : "disabled");
}

namespace {
void self_marker() {}
}  // namespace

bool interposer_installed() {
  // Under LD_PRELOAD the first dlsym in the global scope is the one in this library.
  void* first = real_dlsym(RTLD_DEFAULT, "dlsym");
  Dl_info found, self;
  if (!first || !dladdr(first, &found) || !dladdr(reinterpret_cast<void*>(&self_marker), &self)) return false;
  return found.dli_fbase == self.dli_fbase;
}

void set_last_hook_error(const std::string& message) {
  std::lock_guard<std::mutex> lock(g_error_mu);
  if (g_last_error.empty()) g_last_error = message;  // keep the first: it is the cause
}

std::string take_last_hook_error() {
  std::lock_guard<std::mutex> lock(g_error_mu);
  std::string out;
  out.swap(g_last_error);
  return out;
}

}  // namespace kiln
