// The verdicts on an archive's sections while native threads hash them (SectionVerifier): a
// native consumer waits for its section's verdict before reading a byte of it, so LOAD
// loads binaries and decodes graphs while the rest of the archive is still being hashed,
// and nothing unverified reaches a parser or the driver.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace kiln {

class VerifyGate {
 public:
  explicit VerifyGate(size_t n) : state_(n, State::pending), message_(n) {}
  VerifyGate(const VerifyGate&) = delete;
  VerifyGate& operator=(const VerifyGate&) = delete;

  size_t size() const { return state_.size(); }
  // The first verdict on an item stands; later ones (a pass after cancel) are ignored.
  void pass(size_t i);
  void fail(size_t i, const std::string& message);
  // Every pending item fails with `message`: nothing will verify them (the consumer is
  // going away), and a thread waiting for one must not wait forever.
  void cancel(const std::string& message);
  // Blocks until item i has a verdict; throws Error(corrupt) with its message if it failed.
  void wait(size_t i) const;

 private:
  enum class State : unsigned char { pending, passed, failed };
  void settle(size_t i, State s, const std::string& message);

  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::vector<State> state_;
  std::vector<std::string> message_;
};

// A consumer's items of a gate: its i-th section is the gate's items[i]. Without a gate
// (the sections were verified before), wait returns at once.
struct GateItems {
  std::shared_ptr<VerifyGate> gate;
  std::vector<size_t> items;

  void wait(size_t i) const;
  // Throws Error(generic) unless there is no gate or one item for each of `n` sections.
  void check_count(size_t n, const char* consumer) const;
};

}  // namespace kiln
