// Tensor maps (CUtensorMap, 128 opaque bytes that TMA kernels take by value) and the device
// address each encodes. The driver's encoding is not documented, so the pointer audit cannot
// read the address out of the bytes: the interposer's cuTensorMapEncode* wrappers note each
// map as it is made, and the SAVE walk recognises a map among a kernel's arguments by its
// bytes.
#pragma once

#include <cuda.h>

#include <array>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <unordered_map>

namespace kiln {

constexpr size_t kTensorMapBytes = sizeof(CUtensorMap);  // 128
constexpr size_t kTensorMapAlign = 64;

class TensorMapRegistry {
 public:
  static TensorMapRegistry& instance();

  void on_encode(const CUtensorMap* map, const void* address);
  // The address a map with exactly these bytes encodes, if one was made while kiln ran.
  std::optional<uint64_t> address_of(const uint8_t* bytes) const;
  size_t size() const;
  void clear();

  // Maps are made per launch by some libraries: only the newest this many are kept.
  static constexpr size_t kCapacity = 1 << 16;

 private:
  using Key = std::array<uint8_t, kTensorMapBytes>;
  struct KeyHash {
    size_t operator()(const Key& k) const;
  };
  mutable std::mutex mu_;
  std::unordered_map<Key, uint64_t, KeyHash> addresses_;
  std::deque<Key> order_;  // oldest first
};

}  // namespace kiln
