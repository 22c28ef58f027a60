#include "region/owner.h"

#include <dlfcn.h>

#include <cstring>
#include <initializer_list>

namespace kiln {
namespace {

bool starts_with(const char* s, const char* prefix) { return std::strncmp(s, prefix, std::strlen(prefix)) == 0; }

}  // namespace

const char* owner_name(Owner owner) {
  switch (owner) {
    case Owner::nccl: return "nccl";
    case Owner::nvshmem: return "nvshmem";
    default: return "engine";
  }
}

const char* owner_label(Owner owner) {
  switch (owner) {
    case Owner::nccl: return "NCCL";
    case Owner::nvshmem: return "NVSHMEM";
    default: return "the engine";
  }
}

bool owner_from_name(const char* name, Owner* out) {
  for (Owner o : {Owner::engine, Owner::nccl, Owner::nvshmem}) {
    if (std::strcmp(name, owner_name(o)) == 0) {
      *out = o;
      return true;
    }
  }
  return false;
}

Owner owner_of_path(const char* path) {
  if (!path) return Owner::engine;
  const char* slash = std::strrchr(path, '/');
  const char* file = slash ? slash + 1 : path;
  if (starts_with(file, "libnccl")) return Owner::nccl;
  if (starts_with(file, "libnvshmem") || starts_with(file, "nvshmem_")) return Owner::nvshmem;
  return Owner::engine;
}

Owner owner_of_address(const void* address) {
  Dl_info info;
  if (!address || !dladdr(address, &info)) return Owner::engine;
  return owner_of_path(info.dli_fname);
}

}  // namespace kiln
