// An archive's sections hashed (SHA-256) on background threads, in the order given, each
// settling its item of a VerifyGate. LOAD starts loading binaries and decoding graphs at
// once, each consumer waiting only for its own section, instead of hashing the whole
// archive first (about a tenth of the decode67 restore on the H100: 25 ms of 171 MB).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "archive/sha256.h"
#include "archive/verify_gate.h"

namespace kiln {

class SectionVerifier {
 public:
  struct Section {
    std::string name;
    const uint8_t* data;
    size_t size;
    Sha256Digest expected;
  };

  // Item i of gate() is sections[i]. `keep_alive` holds the sections' memory until the
  // verifier's threads are gone. `archive` names the file in messages.
  SectionVerifier(std::vector<Section> sections, std::string archive, unsigned threads,
                  std::shared_ptr<void> keep_alive = nullptr);
  ~SectionVerifier();  // stops, fails the items not yet hashed, joins
  SectionVerifier(const SectionVerifier&) = delete;
  SectionVerifier& operator=(const SectionVerifier&) = delete;

  const std::shared_ptr<VerifyGate>& gate() const { return gate_; }
  size_t size() const { return sections_.size(); }
  // Blocks until every section is hashed; throws Error(corrupt) for the first (in order)
  // that does not match its digest.
  void wait_all() const;

 private:
  void worker();

  std::vector<Section> sections_;
  std::string archive_;
  std::shared_ptr<void> keep_alive_;
  std::shared_ptr<VerifyGate> gate_;
  std::atomic<size_t> next_{0};
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
};

}  // namespace kiln
