// Work items that must each run exactly once, whoever gets to them first: a background
// pool works through them in order while a consumer that needs one item now runs it on
// its own thread instead of waiting behind the queue. Later askers wait for the outcome;
// a failure is kept and rethrown to every asker, so it surfaces where the item is needed.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <mutex>
#include <vector>

namespace kiln {

class OnceCells {
 public:
  explicit OnceCells(size_t n = 0) : state_(n, State::pending), error_(n) {}

  // Appends a pending cell; returns its index.
  size_t add() {
    std::lock_guard<std::mutex> lk(mu_);
    state_.push_back(State::pending);
    error_.emplace_back();
    return state_.size() - 1;
  }
  size_t size() const {
    std::lock_guard<std::mutex> lk(mu_);
    return state_.size();
  }

  // Runs fn() for cell i unless another thread has run or is running it, then waits for
  // the outcome; rethrows the cell's error.
  template <typename Fn>
  void run(size_t i, Fn&& fn) {
    std::unique_lock<std::mutex> lk(mu_);
    if (state_.at(i) == State::pending) {
      state_[i] = State::running;
      lk.unlock();
      std::exception_ptr error;
      try {
        fn();
      } catch (...) {
        error = std::current_exception();
      }
      finish(i, error);
      lk.lock();
    } else {
      cv_.wait(lk, [&] { return state_[i] == State::done; });
    }
    if (error_[i]) std::rethrow_exception(error_[i]);
  }

  // Claims the lowest pending cell (the caller must finish it); false when none is left.
  bool claim(size_t* i) {
    std::lock_guard<std::mutex> lk(mu_);
    for (; scan_ < state_.size(); ++scan_) {
      if (state_[scan_] == State::pending) {
        state_[scan_] = State::running;
        *i = scan_++;
        return true;
      }
    }
    return false;
  }

  // A pool thread's loop: claims the lowest pending cell and runs fn(i) until none is left
  // or `stop` is set. `failed` (the thread could not start work, e.g. bind its context) is
  // kept as the error of every cell it claims instead of running fn, so it surfaces where
  // the cell is needed.
  template <typename Fn>
  void drain(const std::atomic<bool>& stop, std::exception_ptr failed, Fn&& fn) {
    for (size_t i; !stop.load() && claim(&i);) {
      std::exception_ptr error = failed;
      if (!error) {
        try {
          fn(i);
        } catch (...) {
          error = std::current_exception();
        }
      }
      finish(i, error);
    }
  }

  void finish(size_t i, std::exception_ptr error) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      state_.at(i) = State::done;
      error_[i] = error;
    }
    cv_.notify_all();
  }

  bool done(size_t i) const {
    std::lock_guard<std::mutex> lk(mu_);
    return state_.at(i) == State::done && !error_[i];
  }

 private:
  enum class State : unsigned char { pending, running, done };

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<State> state_;
  std::vector<std::exception_ptr> error_;
  size_t scan_ = 0;  // cells below were all claimed once
};

}  // namespace kiln
