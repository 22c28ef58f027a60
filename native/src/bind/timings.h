// Timeline totals as Python dicts: {category: {"sum": s, "wall": s, "count": n, "first": t,
// "last": t}} (first and last on the steady clock, as time.monotonic()).
#pragma once

#include <nanobind/nanobind.h>

#include <map>
#include <string>

#include "common/timeline.h"

namespace kiln {

inline nanobind::dict timings_dict(const std::map<std::string, TimeTotal>& totals) {
  nanobind::dict out;
  for (const auto& [category, t] : totals) {
    nanobind::dict d;
    d["sum"] = t.sum;
    d["wall"] = t.wall;
    d["count"] = t.count;
    d["first"] = t.first;
    d["last"] = t.last;
    out[category.c_str()] = d;
  }
  return out;
}

}  // namespace kiln
