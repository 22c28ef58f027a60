#include "graph/capture_recorder.h"

#include "graph/walk.h"

namespace kiln {

CaptureRecorder& CaptureRecorder::instance() {
  static CaptureRecorder* recorder = new CaptureRecorder();  // never destroyed: hooks may run at exit
  return *recorder;
}

void CaptureRecorder::arm(int device) {
  std::lock_guard<std::mutex> lk(mu_);
  armed_ = true;
  device_ = device;
  graphs_.clear();
  error_ = nullptr;
}

void CaptureRecorder::disarm() {
  std::lock_guard<std::mutex> lk(mu_);
  armed_ = false;
}

bool CaptureRecorder::armed() const {
  std::lock_guard<std::mutex> lk(mu_);
  return armed_;
}

void CaptureRecorder::on_end_capture(CUgraph graph) noexcept {
  std::lock_guard<std::mutex> lk(mu_);
  if (!armed_ || !graph || error_) return;
  try {
    graphs_.push_back(walk_graph(graph, device_));
  } catch (...) {
    error_ = std::current_exception();
  }
}

std::vector<GraphDesc> CaptureRecorder::take() {
  std::lock_guard<std::mutex> lk(mu_);
  armed_ = false;
  std::vector<GraphDesc> out = std::move(graphs_);
  graphs_.clear();
  std::exception_ptr error = error_;
  error_ = nullptr;
  if (error) std::rethrow_exception(error);
  return out;
}

}  // namespace kiln
