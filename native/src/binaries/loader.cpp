#include "binaries/loader.h"

#include <exception>

#include "binaries/image.h"
#include "common/context.h"
#include "common/driver.h"
#include "common/error.h"
#include "common/log.h"

namespace kiln {

CUlibrary load_library(const uint8_t* data, size_t size, uint32_t slot) {
  ImageView v = validate_image(data, size);  // the driver would read past a lying header
  CUlibrary lib = nullptr;
  // Archive images stay mapped until the library is unloaded (BinaryLoader's keep_alive), so
  // the driver may read them in place instead of copying tens of MB of cubins first.
  CUlibraryOption option = CU_LIBRARY_BINARY_IS_PRESERVED;
  void* preserved = reinterpret_cast<void*>(uintptr_t{1});
  CUresult r = driver().cuLibraryLoadData(&lib, data, nullptr, nullptr, 0, &option, &preserved, 1);
  if (r != CUDA_SUCCESS)
    throw Error(ErrorKind::restore,
                format("archive binary %u (%s, %zu bytes): %s", slot, image_kind_name(v.kind), v.size,
                       describe_result("cuLibraryLoadData", r).c_str()),
                r);
  return lib;
}

BinaryLoader::BinaryLoader(std::vector<BinarySource> slots, CUcontext ctx, std::shared_ptr<void> keep_alive,
                           GateItems gate)
    : slots_(std::move(slots)),
      ctx_(ctx),
      keep_alive_(std::move(keep_alive)),
      gate_(std::move(gate)),
      cells_(slots_.size()),
      started_(SteadyClock::now()) {
  gate_.check_count(slots_.size(), "binary loader");
  // Slots holding the application's own handles need no loading.
  for (uint32_t i = 0; i < slots_.size(); ++i) {
    if (slots_[i].image)
      ++to_load_;
    else
      cells_.run(i, [] {});
  }
}

BinaryLoader::~BinaryLoader() {
  stop_.store(true);
  for (std::thread& t : workers_) t.join();
  const DriverTable* drv = nullptr;
  try {
    drv = &driver();
  } catch (const Error&) {
  }
  if (drv)
    for (const BinarySource& s : slots_)
      if (s.owned && s.library) drv->cuLibraryUnload(s.library);
  keep_alive_.reset();  // the images only now: the driver may read them until unloaded
}

void BinaryLoader::start(unsigned threads) {
  started_ = SteadyClock::now();
  if (threads == 0) {
    wait_all();
    return;
  }
  unsigned n = static_cast<unsigned>(std::min<size_t>(threads, slots_.size()));
  for (unsigned t = 0; t < n; ++t) workers_.emplace_back([this] { worker(); });
}

void BinaryLoader::load(uint32_t slot) {
  BinarySource& s = slots_[slot];
  gate_.wait(slot);  // the image is neither parsed nor handed to the driver unverified
  auto t0 = SteadyClock::now();
  s.library = load_library(s.image, s.size, slot);
  s.owned = true;
  auto t1 = SteadyClock::now();
  timeline_.add("binaries.load", t0, t1);
  if (finished_.fetch_add(1) + 1 == to_load_) timeline_.add("binaries.all", started_, t1);
}

void BinaryLoader::worker() {
  // Threads kiln starts have no current context.
  cells_.drain(stop_, try_bind_context(ctx_), [this](size_t i) { load(static_cast<uint32_t>(i)); });
}

const BinarySource& BinaryLoader::get(uint32_t slot) {
  if (slot >= slots_.size())
    throw Error(ErrorKind::corrupt, format("binary slot %u of %zu", slot, slots_.size()));
  cells_.run(slot, [&] {
    bind_context(ctx_);
    load(slot);
  });
  return slots_[slot];
}

void BinaryLoader::wait_all() {
  // Every slot settles before the first failure is raised, so no load is still in flight when
  // the caller sees the error (and counts what reached the driver).
  std::exception_ptr first;
  for (uint32_t i = 0; i < slots_.size(); ++i) {
    try {
      get(i);
    } catch (...) {
      if (!first) first = std::current_exception();
    }
  }
  if (first) std::rethrow_exception(first);
}

}  // namespace kiln
