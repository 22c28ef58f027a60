#include "binaries/image.h"

#include <elf.h>

#include <cstring>

#include "common/error.h"

namespace kiln {
namespace {

constexpr uint32_t kFatbinWrapperMagic = 0x466243b1;
constexpr uint32_t kFatbinMagic = 0xBA55ED50;

struct FatbinWrapper {
  int32_t magic;
  int32_t version;  // 1 or 2; both point at the fatbin in `data`
  const void* data;
  void* filename_or_fatbins;
};

struct FatbinHeader {
  uint32_t magic;
  uint16_t version;
  uint16_t header_size;
  uint64_t fat_size;
};

template <typename T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Size of an ELF64 image: the furthest of its section contents and its header tables.
// `limit` bounds every read (SIZE_MAX when the length is unknown).
size_t elf_size(const uint8_t* p, size_t limit) {
  if (limit < sizeof(Elf64_Ehdr)) throw Error(ErrorKind::corrupt, "ELF image shorter than its header");
  auto eh = load<Elf64_Ehdr>(p);
  if (eh.e_ident[EI_CLASS] != ELFCLASS64) throw Error(ErrorKind::corrupt, "ELF image is not 64-bit");
  auto table_end = [&](uint64_t off, uint64_t n, uint64_t entsize) -> uint64_t {
    if (n == 0) return 0;
    if (entsize == 0 || off > limit || n > (limit - off) / entsize)
      throw Error(ErrorKind::corrupt, "ELF header table lies outside the image");
    return off + n * entsize;
  };
  uint64_t end = sizeof(Elf64_Ehdr);
  end = std::max(end, table_end(eh.e_phoff, eh.e_phnum, eh.e_phentsize));
  uint64_t sh_end = table_end(eh.e_shoff, eh.e_shnum, eh.e_shentsize);
  end = std::max(end, sh_end);
  if (eh.e_shnum && eh.e_shentsize < sizeof(Elf64_Shdr))
    throw Error(ErrorKind::corrupt, "ELF section header entries are too small");
  if (eh.e_phnum && eh.e_phentsize < sizeof(Elf64_Phdr))
    throw Error(ErrorKind::corrupt, "ELF program header entries are too small");
  for (uint64_t i = 0; i < eh.e_shnum; ++i) {
    auto sh = load<Elf64_Shdr>(p + eh.e_shoff + i * eh.e_shentsize);
    if (sh.sh_type == SHT_NOBITS) continue;
    if (sh.sh_offset > limit || sh.sh_size > limit - sh.sh_offset)
      throw Error(ErrorKind::corrupt, "ELF section lies outside the image");
    end = std::max<uint64_t>(end, sh.sh_offset + sh.sh_size);
  }
  for (uint64_t i = 0; i < eh.e_phnum; ++i) {
    auto ph = load<Elf64_Phdr>(p + eh.e_phoff + i * eh.e_phentsize);
    if (ph.p_offset > limit || ph.p_filesz > limit - ph.p_offset)
      throw Error(ErrorKind::corrupt, "ELF segment lies outside the image");
    end = std::max<uint64_t>(end, ph.p_offset + ph.p_filesz);
  }
  return end;
}

ImageView classify(const uint8_t* p, size_t limit) {
  if (limit < 4) throw Error(ErrorKind::corrupt, "kernel image shorter than 4 bytes");
  uint32_t magic = load<uint32_t>(p);
  if (magic == kFatbinMagic) {
    if (limit < sizeof(FatbinHeader)) throw Error(ErrorKind::corrupt, "fatbin shorter than its header");
    auto h = load<FatbinHeader>(p);
    if (h.header_size < sizeof(FatbinHeader) || h.fat_size > limit || h.header_size > limit - h.fat_size)
      throw Error(ErrorKind::corrupt, "fatbin header claims more bytes than the image holds");
    return {p, h.header_size + h.fat_size, ImageKind::fatbin};
  }
  if (std::memcmp(p, ELFMAG, SELFMAG) == 0) return {p, elf_size(p, limit), ImageKind::elf};
  // PTX is text: require a printable start and a terminating NUL within bounds.
  if (p[0] == '/' || p[0] == '.' || p[0] == '\n' || p[0] == ' ' || p[0] == '\t') {
    if (limit == SIZE_MAX) return {p, std::strlen(reinterpret_cast<const char*>(p)) + 1, ImageKind::ptx};
    const void* nul = std::memchr(p, 0, limit);
    if (!nul) throw Error(ErrorKind::corrupt, "PTX image has no terminating NUL");
    return {p, static_cast<size_t>(static_cast<const uint8_t*>(nul) - p) + 1, ImageKind::ptx};
  }
  throw Error(ErrorKind::corrupt, format("unrecognised kernel image (first word 0x%08x)", magic));
}

}  // namespace

ImageView resolve_image(const void* image) {
  if (!image) throw Error(ErrorKind::corrupt, "null kernel image");
  auto p = static_cast<const uint8_t*>(image);
  if (load<uint32_t>(p) == kFatbinWrapperMagic) {
    auto w = load<FatbinWrapper>(p);
    if (w.version != 1 && w.version != 2)
      throw Error(ErrorKind::corrupt, format("fatbin wrapper version %d is not supported", w.version));
    p = static_cast<const uint8_t*>(w.data);
    if (!p || load<uint32_t>(p) != kFatbinMagic) throw Error(ErrorKind::corrupt, "fatbin wrapper points at no fatbin");
  }
  return classify(p, SIZE_MAX);
}

ImageView validate_image(const uint8_t* data, size_t length) {
  ImageView v = classify(data, length);
  if (v.size > length) throw Error(ErrorKind::corrupt, "kernel image is longer than its container");
  return v;
}

const char* image_kind_name(ImageKind kind) {
  switch (kind) {
    case ImageKind::fatbin: return "fatbin";
    case ImageKind::elf: return "cubin";
    case ImageKind::ptx: return "ptx";
  }
  return "unknown";
}

}  // namespace kiln
