// Kernel images as the driver accepts them: a fatbin wrapper (what nvcc registers), a
// fatbin, an ELF cubin or NUL-terminated PTX. The driver takes a bare pointer, so the
// length has to be recovered from each format's own header.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace kiln {

enum class ImageKind : uint32_t { fatbin = 1, elf = 2, ptx = 3 };

struct ImageView {
  const uint8_t* data = nullptr;  // the fatbin itself when given a wrapper
  size_t size = 0;
  ImageKind kind = ImageKind::fatbin;
};

// From a pointer handed to the driver. Throws Error(corrupt) for an unrecognised image.
ImageView resolve_image(const void* image);

// Bounds-checked validation of an image held in memory of known length (archives):
// returns the size the image's own header claims, or throws Error(corrupt).
ImageView validate_image(const uint8_t* data, size_t length);

const char* image_kind_name(ImageKind kind);

}  // namespace kiln
