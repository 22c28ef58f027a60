// Process-wide interposer state: whether kiln is enabled (wrappers pass straight through
// until it is) and the last error a wrapper could only report as a CUresult.
#pragma once

#include <string>

namespace kiln {

bool interposer_enabled();
void set_interposer_enabled(bool enabled);

// True when this library was loaded through LD_PRELOAD, so its dlsym is the process's.
bool interposer_installed();

// Wrappers cannot throw into the driver's caller; they keep the message here for Python.
void set_last_hook_error(const std::string& message);
std::string take_last_hook_error();

}  // namespace kiln
