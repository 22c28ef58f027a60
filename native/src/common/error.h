// The one exception type of the native core. `kind` selects the Python exception class
// (kiln.errors) when it crosses the binding; `what()` is the message that names the cause.
#pragma once

#include <stdexcept>
#include <string>

namespace kiln {

enum class ErrorKind {
  generic,
  driver,                 // a driver call failed
  region,                 // region setup or use
  region_base,            // the driver did not honour the fixed base
  drift,                  // allocation trajectory differs from the recorded one
  unsupported_allocator,  // cuMemAllocAsync / expandable segments
  non_persistable,        // unsupported node type, host memcpy, ...
  external_pointer,       // kernel argument into device memory outside the region
  unknown_kernel,         // kernel handle not backed by a recorded binary
  restore,                // rebuilding a graph failed
  unmapped_range,         // a recorded region pointer is not backed at LOAD
  corrupt,                // malformed serialized data
};

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message, int driver_code = 0)
      : std::runtime_error(message), kind_(kind), driver_code_(driver_code) {}
  ErrorKind kind() const { return kind_; }
  // The CUresult behind a driver failure (0 otherwise); hooks hand it back to their caller.
  int driver_code() const { return driver_code_; }

 private:
  ErrorKind kind_;
  int driver_code_;
};

std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

}  // namespace kiln
