#include "archive/sha256.h"

#include <dlfcn.h>

#include "common/error.h"
#include "interposer/real_dlsym.h"

namespace kiln {
namespace {

// The two libcrypto entry points used (stable across OpenSSL 1.1 and 3).
using EvpSha256Fn = const void* (*)();
using EvpDigestFn = int (*)(const void* data, size_t count, unsigned char* md, unsigned int* size, const void* type,
                            void* engine);

struct Crypto {
  EvpSha256Fn evp_sha256 = nullptr;
  EvpDigestFn evp_digest = nullptr;

  Crypto() {
    // The copy hashlib already loaded first, so both hash with the same library.
    const char* names[] = {"libcrypto.so.3", "libcrypto.so.1.1", "libcrypto.so"};
    void* handle = nullptr;
    for (const char* name : names)
      if ((handle = dlopen(name, RTLD_NOW | RTLD_NOLOAD))) break;
    for (const char* name : names)
      if (!handle && (handle = dlopen(name, RTLD_NOW | RTLD_LOCAL))) break;
    if (!handle) return;
    evp_sha256 = reinterpret_cast<EvpSha256Fn>(real_dlsym(handle, "EVP_sha256"));
    evp_digest = reinterpret_cast<EvpDigestFn>(real_dlsym(handle, "EVP_Digest"));
  }
  bool ok() const { return evp_sha256 && evp_digest; }
};

const Crypto& crypto() {
  static const Crypto c;
  return c;
}

}  // namespace

bool sha256_available() { return crypto().ok(); }

Sha256Digest sha256(const uint8_t* data, size_t size) {
  const Crypto& c = crypto();
  if (!c.ok()) throw Error(ErrorKind::generic, "SHA-256: no libcrypto (OpenSSL) in this process");
  Sha256Digest out{};
  unsigned int n = 0;
  static const uint8_t empty = 0;  // EVP_Digest wants a valid pointer even for no bytes
  if (c.evp_digest(size ? data : &empty, size, out.data(), &n, c.evp_sha256(), nullptr) != 1 || n != out.size())
    throw Error(ErrorKind::generic, "SHA-256: libcrypto's EVP_Digest failed");
  return out;
}

}  // namespace kiln
