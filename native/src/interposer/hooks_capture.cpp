// Stream-capture wrappers: hand every graph whose capture ends to the capture recorder
// (which ignores it unless kiln asked to record). The driver's result is returned unchanged.
#include "graph/capture_recorder.h"
#include "interposer/hook_table.h"
#include "interposer/state.h"

namespace kiln {
namespace {

void seen(CUresult r, CUgraph* graph) {
  if (r == CUDA_SUCCESS && graph && interposer_enabled()) CaptureRecorder::instance().on_end_capture(*graph);
}

}  // namespace

CUresult hook_cuStreamEndCapture_v10000_(CUstream stream, CUgraph* graph) {
  CUresult r = KILN_REAL(cuStreamEndCapture_v10000_)(stream, graph);
  seen(r, graph);
  return r;
}

CUresult hook_cuStreamEndCapture_v10000_ptsz(CUstream stream, CUgraph* graph) {
  CUresult r = KILN_REAL(cuStreamEndCapture_v10000_ptsz)(stream, graph);
  seen(r, graph);
  return r;
}

}  // namespace kiln
