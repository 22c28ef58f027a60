// Where the time of a stage went when it runs on several threads at once: intervals per
// category, reported both summed (thread-seconds) and as wall time (the length of their
// union). With overlapping stages neither number alone says what a change shortened.
#pragma once

#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace kiln {

using SteadyClock = std::chrono::steady_clock;

struct TimeTotal {
  double sum = 0;   // seconds, over every thread
  double wall = 0;  // seconds during which at least one thread was in the category
  size_t count = 0;
  // Seconds on the steady clock (CLOCK_MONOTONIC, Python's time.monotonic) of the first
  // span's begin and the last span's end: where the category sits on the restore's path.
  double first = 0;
  double last = 0;
};

class Timeline {
 public:
  // Thread-safe.
  void add(const std::string& category, SteadyClock::time_point begin, SteadyClock::time_point end);
  std::map<std::string, TimeTotal> totals() const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::vector<std::pair<SteadyClock::time_point, SteadyClock::time_point>>> spans_;
};

// Records [construction, destruction) under `category`, also when unwinding.
class TimedSpan {
 public:
  TimedSpan(Timeline& timeline, const char* category)
      : timeline_(timeline), category_(category), begin_(SteadyClock::now()) {}
  ~TimedSpan() { timeline_.add(category_, begin_, SteadyClock::now()); }
  TimedSpan(const TimedSpan&) = delete;
  TimedSpan& operator=(const TimedSpan&) = delete;

 private:
  Timeline& timeline_;
  const char* category_;
  SteadyClock::time_point begin_;
};

}  // namespace kiln
