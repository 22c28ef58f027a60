// A growing array whose elements never move, readable without a lock: appends (serialised
// by the caller) fill new segments of doubling size, and a segment's pointer, once set, never
// changes. A reader may index any element it learned of through some synchronisation with
// the append (a mutex, a cell's outcome, a thread start).
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <utility>

namespace kiln {

template <typename T>
class StableVector {
 public:
  StableVector() = default;
  ~StableVector() {
    for (auto& s : segments_) delete[] s.load(std::memory_order_relaxed);
  }
  StableVector(const StableVector&) = delete;
  StableVector& operator=(const StableVector&) = delete;

  // Default-constructs an element, lets init(element) fill it, then publishes it; returns its
  // index. Callers serialise appends.
  template <typename Init>
  size_t append(Init&& init) {
    const size_t i = size_.load(std::memory_order_relaxed);
    auto [seg, off] = locate(i);
    T* s = segments_[seg].load(std::memory_order_relaxed);
    if (!s) {
      s = new T[kFirst << seg];
      segments_[seg].store(s, std::memory_order_release);
    }
    init(s[off]);
    size_.store(i + 1, std::memory_order_release);
    return i;
  }

  size_t size() const { return size_.load(std::memory_order_acquire); }
  T& operator[](size_t i) { return at(i); }
  const T& operator[](size_t i) const { return at(i); }

 private:
  static constexpr size_t kFirst = 16;  // segment k holds kFirst << k elements

  static std::pair<size_t, size_t> locate(size_t i) {
    const size_t seg = 63 - static_cast<size_t>(__builtin_clzll(i / kFirst + 1));
    return {seg, i - kFirst * ((size_t{1} << seg) - 1)};
  }
  T& at(size_t i) const {
    auto [seg, off] = locate(i);
    return segments_[seg].load(std::memory_order_acquire)[off];
  }

  std::array<std::atomic<T*>, 48> segments_{};
  std::atomic<size_t> size_{0};
};

}  // namespace kiln
