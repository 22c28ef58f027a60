#include "archive/verify_gate.h"

#include "common/error.h"

namespace kiln {

void VerifyGate::settle(size_t i, State s, const std::string& message) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (i >= state_.size()) throw Error(ErrorKind::generic, format("verify gate: item %zu of %zu", i, state_.size()));
    if (state_[i] != State::pending) return;
    state_[i] = s;
    message_[i] = message;
  }
  cv_.notify_all();
}

void VerifyGate::pass(size_t i) { settle(i, State::passed, {}); }

void VerifyGate::fail(size_t i, const std::string& message) { settle(i, State::failed, message); }

void VerifyGate::cancel(const std::string& message) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    for (size_t i = 0; i < state_.size(); ++i)
      if (state_[i] == State::pending) state_[i] = State::failed, message_[i] = message;
  }
  cv_.notify_all();
}

void VerifyGate::wait(size_t i) const {
  std::unique_lock<std::mutex> lk(mu_);
  if (i >= state_.size()) throw Error(ErrorKind::corrupt, format("verify gate: item %zu of %zu", i, state_.size()));
  cv_.wait(lk, [&] { return state_[i] != State::pending; });
  if (state_[i] == State::failed) throw Error(ErrorKind::corrupt, message_[i]);
}

void GateItems::wait(size_t i) const {
  if (!gate) return;
  if (i >= items.size()) throw Error(ErrorKind::generic, format("verify gate: section %zu of %zu", i, items.size()));
  gate->wait(items[i]);
}

void GateItems::check_count(size_t n, const char* consumer) const {
  if (gate && items.size() != n)
    throw Error(ErrorKind::generic, format("%s: %zu verify gate items for %zu sections", consumer, items.size(), n));
}

}  // namespace kiln
