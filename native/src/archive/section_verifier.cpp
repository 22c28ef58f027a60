#include "archive/section_verifier.h"

#include <algorithm>

#include "common/error.h"

namespace kiln {
namespace {

std::string hex(const Sha256Digest& d) {
  static const char digits[] = "0123456789abcdef";
  std::string out;
  for (uint8_t b : d) out += digits[b >> 4], out += digits[b & 15];
  return out;
}

}  // namespace

SectionVerifier::SectionVerifier(std::vector<Section> sections, std::string archive, unsigned threads,
                                 std::shared_ptr<void> keep_alive)
    : sections_(std::move(sections)),
      archive_(std::move(archive)),
      keep_alive_(std::move(keep_alive)),
      gate_(std::make_shared<VerifyGate>(sections_.size())) {
  if (!sha256_available()) throw Error(ErrorKind::generic, "section verifier: no libcrypto (OpenSSL) to hash with");
  unsigned n = static_cast<unsigned>(std::min<size_t>(std::max(1u, threads), std::max<size_t>(1, sections_.size())));
  for (unsigned t = 0; t < n; ++t) threads_.emplace_back([this] { worker(); });
}

SectionVerifier::~SectionVerifier() {
  stop_.store(true);
  gate_->cancel("the archive was closed before this section was verified");
  for (std::thread& t : threads_) t.join();
}

void SectionVerifier::worker() {
  for (size_t i; !stop_.load() && (i = next_.fetch_add(1)) < sections_.size();) {
    const Section& s = sections_[i];
    try {
      Sha256Digest got = sha256(s.data, s.size);
      if (got == s.expected) {
        gate_->pass(i);
      } else {
        // The same words as kiln.archive's Python check, so either path reads alike.
        gate_->fail(i, format("archive %s: section '%s' checksum mismatch (SHA-256 %s, table says %s)",
                              archive_.c_str(), s.name.c_str(), hex(got).c_str(), hex(s.expected).c_str()));
      }
    } catch (const std::exception& e) {
      gate_->fail(i, format("archive %s: section '%s' could not be verified: %s", archive_.c_str(), s.name.c_str(),
                            e.what()));
    }
  }
}

void SectionVerifier::wait_all() const {
  for (size_t i = 0; i < sections_.size(); ++i) gate_->wait(i);
}

}  // namespace kiln
