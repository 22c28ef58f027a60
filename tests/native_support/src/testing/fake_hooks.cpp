#include "testing/fake_hooks.h"

#include <cstring>

#include "common/driver.h"
#include "interposer/hook_table.h"
#include "testing/fake_driver.h"

namespace kiln::testing {
namespace {

void* stand_in(const DriverTable& t, const char* base) {
  if (std::strcmp(base, "cuMemCreate") == 0) return reinterpret_cast<void*>(t.cuMemCreate);
  if (std::strcmp(base, "cuMemRelease") == 0) return reinterpret_cast<void*>(t.cuMemRelease);
  if (std::strcmp(base, "cuMemMap") == 0) return reinterpret_cast<void*>(t.cuMemMap);
  if (std::strcmp(base, "cuMemUnmap") == 0) return reinterpret_cast<void*>(t.cuMemUnmap);
  return fake_sharing_function(base);
}

}  // namespace

void route_mapping_hooks_to_fake() {
  const DriverTable& t = driver();
  int n = 0;
  const HookEntry* e = hook_entries(&n);
  for (int i = 0; i < n; ++i) {
    if (void* fn = stand_in(t, e[i].base)) e[i].real->fn.store(fn);
  }
}

void unroute_mapping_hooks() {
  const DriverTable& t = driver();
  int n = 0;
  const HookEntry* e = hook_entries(&n);
  for (int i = 0; i < n; ++i) {
    if (stand_in(t, e[i].base)) e[i].real->fn.store(nullptr);
  }
}

}  // namespace kiln::testing
