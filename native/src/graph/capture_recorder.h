// Graphs an engine captures itself, seen where every capture ends (cuStreamEndCapture, which
// cudart and PyTorch call through the driver): while armed, each captured graph is walked
// and audited right away, before the engine instantiates and may destroy it. Lets kiln
// record engines' graphs without changing how engines capture them.
#pragma once

#include <cuda.h>

#include <exception>
#include <mutex>
#include <vector>

#include "graph/desc.h"

namespace kiln {

class CaptureRecorder {
 public:
  static CaptureRecorder& instance();

  // Start recording graphs captured on `device`'s context; drops anything recorded before.
  void arm(int device);
  void disarm();
  bool armed() const;

  // Called by the interposer after a successful end of capture. Never throws: a failure to
  // describe the graph is kept and raised by take().
  void on_end_capture(CUgraph graph) noexcept;

  // Disarms and returns the graphs recorded since arm(), in capture order; rethrows the first
  // error met while recording (unsupported node, pointer outside the region, ...).
  std::vector<GraphDesc> take();

 private:
  mutable std::mutex mu_;
  bool armed_ = false;
  int device_ = 0;
  std::vector<GraphDesc> graphs_;
  std::exception_ptr error_;
};

}  // namespace kiln
