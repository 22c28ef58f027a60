// A binding argument pair (verifier, items) as the GateItems a native consumer waits on.
#pragma once

#include <nanobind/nanobind.h>

#include <vector>

#include "archive/section_verifier.h"
#include "archive/verify_gate.h"

namespace kiln {

inline GateItems gate_items(const SectionVerifier* verifier, const std::vector<size_t>& items) {
  if (!verifier) {
    if (!items.empty()) throw nanobind::value_error("gate items without a verifier");
    return {};
  }
  for (size_t i : items)
    if (i >= verifier->size()) throw nanobind::value_error("a gate item is not one of the verifier's sections");
  return {verifier->gate(), items};
}

}  // namespace kiln
