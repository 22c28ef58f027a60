// Read-only views of Python buffers (bytes, memoryview, an archive's mmap), released when
// the holder goes. The release takes the GIL itself: a holder kept by native objects may be
// destroyed on a thread that does not hold it.
#pragma once

#include <nanobind/nanobind.h>

#include <cstdint>
#include <vector>

#include "graph/graph_set.h"

namespace kiln {

class BufferViews {
 public:
  explicit BufferViews(const std::vector<nanobind::object>& objects) {
    for (const nanobind::object& o : objects) {
      views_.emplace_back();
      if (PyObject_GetBuffer(o.ptr(), &views_.back(), PyBUF_SIMPLE) != 0) {
        views_.pop_back();
        release();
        throw nanobind::python_error();
      }
    }
  }
  ~BufferViews() { release(); }
  BufferViews(const BufferViews&) = delete;
  BufferViews& operator=(const BufferViews&) = delete;

  size_t size() const { return views_.size(); }
  const uint8_t* data(size_t i) const { return static_cast<const uint8_t*>(views_[i].buf); }
  size_t length(size_t i) const { return static_cast<size_t>(views_[i].len); }
  std::vector<BlobView> blobs() const {
    std::vector<BlobView> out;
    for (size_t i = 0; i < views_.size(); ++i) out.push_back({data(i), length(i)});
    return out;
  }

 private:
  void release() {
    if (views_.empty()) return;
    nanobind::gil_scoped_acquire gil;
    for (Py_buffer& v : views_) PyBuffer_Release(&v);
    views_.clear();
  }
  std::vector<Py_buffer> views_;
};

}  // namespace kiln
