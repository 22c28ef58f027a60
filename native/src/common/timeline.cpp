#include "common/timeline.h"

#include <algorithm>

namespace kiln {

void Timeline::add(const std::string& category, SteadyClock::time_point begin, SteadyClock::time_point end) {
  std::lock_guard<std::mutex> lk(mu_);
  spans_[category].emplace_back(begin, std::max(begin, end));
}

std::map<std::string, TimeTotal> Timeline::totals() const {
  std::map<std::string, TimeTotal> out;
  std::lock_guard<std::mutex> lk(mu_);
  for (const auto& [category, recorded] : spans_) {
    auto spans = recorded;
    std::sort(spans.begin(), spans.end());
    TimeTotal& t = out[category];
    t.count = spans.size();
    SteadyClock::duration sum{0}, wall{0};
    SteadyClock::time_point covered = spans.front().first;  // end of the union so far
    SteadyClock::time_point last = covered;
    for (const auto& [b, e] : spans) {
      sum += e - b;
      last = std::max(last, e);
      if (e > covered) {
        wall += e - std::max(b, covered);
        covered = e;
      }
    }
    t.sum = std::chrono::duration<double>(sum).count();
    t.wall = std::chrono::duration<double>(wall).count();
    t.first = std::chrono::duration<double>(spans.front().first.time_since_epoch()).count();
    t.last = std::chrono::duration<double>(last.time_since_epoch()).count();
  }
  return out;
}

}  // namespace kiln
