// The CUDA context kiln's own threads work in. Threads kiln starts have no current context,
// and graphs, functions and libraries resolved in one context are invalid in another, so
// every kiln thread binds the device's primary context (the one PyTorch uses) first.
#pragma once

#include <cuda.h>

#include <exception>

namespace kiln {

// The device's primary context (retained for the life of the process, as PyTorch keeps
// it), made current on the calling thread when none is. Throws Error(restore) when another
// context is current: what kiln resolved there would not be usable by the application.
CUcontext primary_context(int device);

// Makes `ctx` current on the calling thread unless it already is.
void bind_context(CUcontext ctx);
// bind_context for a pool thread: the failure is returned (to be reported by every item the
// thread takes, where it is needed), not thrown.
std::exception_ptr try_bind_context(CUcontext ctx);

}  // namespace kiln
