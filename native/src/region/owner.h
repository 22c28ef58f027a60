// Which library made a memory call. Communication libraries (NCCL, NVSHMEM) get their own
// slots of a region, apart from engine memory, so that their allocation sequence never moves
// the engine's weights or KV cache and a mismatch at LOAD names the library. The owner is
// the shared object that called the driver entry point: the wrapper's return address,
// resolved with dladdr to a file name.
#pragma once

#include <cstdint>

namespace kiln {

enum class Owner : uint32_t { engine = 0, nccl = 1, nvshmem = 2 };

// Library owners (every owner but the engine), each with one slot of a region.
constexpr int kLibraryOwners = 2;
constexpr Owner kLibraryOwnerList[kLibraryOwners] = {Owner::nccl, Owner::nvshmem};

// "engine", "nccl", "nvshmem": the names the archive and Python use.
const char* owner_name(Owner owner);
// Human-readable: "NCCL", "NVSHMEM", "the engine".
const char* owner_label(Owner owner);
// False for a name that is none of owner_name's.
bool owner_from_name(const char* name, Owner* out);

// The owner of a shared object by its path: libnccl* is NCCL (the library and its network
// plugins), libnvshmem* and nvshmem_* (its bootstrap and transport plugins) are NVSHMEM,
// anything else the engine.
Owner owner_of_path(const char* path);

// The owner of the code at `address` (a wrapper's return address); the engine when dladdr
// cannot name the object.
Owner owner_of_address(const void* address);

}  // namespace kiln
