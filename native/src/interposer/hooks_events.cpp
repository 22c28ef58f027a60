// Event wrappers: note every event that code outside a stream capture records, waits on,
// queries or synchronises with (see graph/event_registry.h). The driver's result is
// returned unchanged; bookkeeping happens only after a successful call.
#include "common/driver.h"
#include "common/error.h"
#include "graph/event_registry.h"
#include "interposer/hook_table.h"
#include "interposer/state.h"

namespace kiln {
namespace {

// Whether `stream` is capturing (a captured record or wait becomes part of the graph, not
// an eager use). An unknown status counts as eager: refusing is the safe side.
bool capturing(CUstream stream, bool per_thread) {
  try {
    const DriverTable& drv = driver();
    if (!drv.cuStreamIsCapturing) return false;
    CUstreamCaptureStatus status = CU_STREAM_CAPTURE_STATUS_NONE;
    if (!stream && per_thread) stream = CU_STREAM_PER_THREAD;
    if (drv.cuStreamIsCapturing(stream, &status) != CUDA_SUCCESS) return false;
    return status != CU_STREAM_CAPTURE_STATUS_NONE;
  } catch (const Error&) {
    return false;
  }
}

void on_stream_use(CUresult r, CUevent event, CUstream stream, bool per_thread, const char* call) {
  if (r == CUDA_SUCCESS && interposer_enabled() && !capturing(stream, per_thread))
    EventRegistry::instance().on_eager_use(event, call);
}

void on_host_use(CUresult r, CUevent event, const char* call) {
  // cuEventQuery reports an unfinished event as CUDA_ERROR_NOT_READY: still a use.
  if ((r == CUDA_SUCCESS || r == CUDA_ERROR_NOT_READY) && interposer_enabled())
    EventRegistry::instance().on_eager_use(event, call);
}

}  // namespace

CUresult hook_cuEventRecord_v2000_(CUevent event, CUstream stream) {
  CUresult r = KILN_REAL(cuEventRecord_v2000_)(event, stream);
  on_stream_use(r, event, stream, false, "cuEventRecord");
  return r;
}

CUresult hook_cuEventRecord_v7000_ptsz(CUevent event, CUstream stream) {
  CUresult r = KILN_REAL(cuEventRecord_v7000_ptsz)(event, stream);
  on_stream_use(r, event, stream, true, "cuEventRecord");
  return r;
}

CUresult hook_cuEventRecordWithFlags_v11010_(CUevent event, CUstream stream, unsigned int flags) {
  CUresult r = KILN_REAL(cuEventRecordWithFlags_v11010_)(event, stream, flags);
  on_stream_use(r, event, stream, false, "cuEventRecordWithFlags");
  return r;
}

CUresult hook_cuEventRecordWithFlags_v11010_ptsz(CUevent event, CUstream stream, unsigned int flags) {
  CUresult r = KILN_REAL(cuEventRecordWithFlags_v11010_ptsz)(event, stream, flags);
  on_stream_use(r, event, stream, true, "cuEventRecordWithFlags");
  return r;
}

CUresult hook_cuStreamWaitEvent_v3020_(CUstream stream, CUevent event, unsigned int flags) {
  CUresult r = KILN_REAL(cuStreamWaitEvent_v3020_)(stream, event, flags);
  on_stream_use(r, event, stream, false, "cuStreamWaitEvent");
  return r;
}

CUresult hook_cuStreamWaitEvent_v7000_ptsz(CUstream stream, CUevent event, unsigned int flags) {
  CUresult r = KILN_REAL(cuStreamWaitEvent_v7000_ptsz)(stream, event, flags);
  on_stream_use(r, event, stream, true, "cuStreamWaitEvent");
  return r;
}

CUresult hook_cuEventQuery_v2000_(CUevent event) {
  CUresult r = KILN_REAL(cuEventQuery_v2000_)(event);
  on_host_use(r, event, "cuEventQuery");
  return r;
}

CUresult hook_cuEventSynchronize_v2000_(CUevent event) {
  CUresult r = KILN_REAL(cuEventSynchronize_v2000_)(event);
  on_host_use(r, event, "cuEventSynchronize");
  return r;
}

}  // namespace kiln
