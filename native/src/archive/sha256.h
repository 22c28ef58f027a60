// SHA-256 through the process's OpenSSL libcrypto, the library Python's hashlib hashes
// archives with, so native threads can verify sections without holding the GIL. Where no
// libcrypto can be opened, sha256_available() is false and callers verify in Python.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace kiln {

using Sha256Digest = std::array<uint8_t, 32>;

bool sha256_available();
// Throws Error(generic) when libcrypto is unavailable or refuses.
Sha256Digest sha256(const uint8_t* data, size_t size);

}  // namespace kiln
