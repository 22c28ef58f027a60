// SAVE side: whether a rewritten image (kiln.cubin_prune) gives the driver the same kernels
// as the image the application loaded. Both are loaded, each named kernel is resolved in
// the current context, and every function attribute and the parameter layout compared.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace kiln {

struct ImageBytes {
  const uint8_t* data;
  size_t size;
};

// nullopt when every entry matches; else what differs first ("kernel K: attribute 4 (...) is
// 40 in the original, 38 in the candidate", or the driver's refusal of the candidate).
// Throws Error(driver) when the original itself cannot be loaded or resolved.
std::optional<std::string> compare_kernel_images(ImageBytes original, ImageBytes candidate,
                                                 const std::vector<std::string>& entries);

}  // namespace kiln
