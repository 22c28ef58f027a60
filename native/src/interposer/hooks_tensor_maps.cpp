// Tensor-map wrappers: note the device address each CUtensorMap encodes (see
// graph/tensor_maps.h). The driver's result is returned unchanged.
#include "graph/tensor_maps.h"
#include "interposer/hook_table.h"
#include "interposer/state.h"

namespace kiln {
namespace {

void encoded(CUresult r, const CUtensorMap* map, const void* address) {
  if (r == CUDA_SUCCESS && interposer_enabled()) TensorMapRegistry::instance().on_encode(map, address);
}

}  // namespace

CUresult hook_cuTensorMapEncodeTiled_v12000_(CUtensorMap* map, CUtensorMapDataType type, cuuint32_t rank,
                                              void* address, const cuuint64_t* dims, const cuuint64_t* strides,
                                              const cuuint32_t* box, const cuuint32_t* element_strides,
                                              CUtensorMapInterleave interleave, CUtensorMapSwizzle swizzle,
                                              CUtensorMapL2promotion l2, CUtensorMapFloatOOBfill oob) {
  CUresult r = KILN_REAL(cuTensorMapEncodeTiled_v12000_)(map, type, rank, address, dims, strides, box,
                                                          element_strides, interleave, swizzle, l2, oob);
  encoded(r, map, address);
  return r;
}

CUresult hook_cuTensorMapEncodeIm2col_v12000_(CUtensorMap* map, CUtensorMapDataType type, cuuint32_t rank,
                                               void* address, const cuuint64_t* dims, const cuuint64_t* strides,
                                               const int* lower, const int* upper, cuuint32_t channels,
                                               cuuint32_t pixels, const cuuint32_t* element_strides,
                                               CUtensorMapInterleave interleave, CUtensorMapSwizzle swizzle,
                                               CUtensorMapL2promotion l2, CUtensorMapFloatOOBfill oob) {
  CUresult r = KILN_REAL(cuTensorMapEncodeIm2col_v12000_)(map, type, rank, address, dims, strides, lower, upper,
                                                           channels, pixels, element_strides, interleave, swizzle,
                                                           l2, oob);
  encoded(r, map, address);
  return r;
}

CUresult hook_cuTensorMapEncodeIm2colWide_v12080_(CUtensorMap* map, CUtensorMapDataType type, cuuint32_t rank,
                                                   void* address, const cuuint64_t* dims, const cuuint64_t* strides,
                                                   int lower, int upper, cuuint32_t channels, cuuint32_t pixels,
                                                   const cuuint32_t* element_strides, CUtensorMapInterleave interleave,
                                                   CUtensorMapIm2ColWideMode mode, CUtensorMapSwizzle swizzle,
                                                   CUtensorMapL2promotion l2, CUtensorMapFloatOOBfill oob) {
  CUresult r = KILN_REAL(cuTensorMapEncodeIm2colWide_v12080_)(map, type, rank, address, dims, strides, lower, upper,
                                                               channels, pixels, element_strides, interleave, mode,
                                                               swizzle, l2, oob);
  encoded(r, map, address);
  return r;
}

CUresult hook_cuTensorMapReplaceAddress_v12000_(CUtensorMap* map, void* address) {
  CUresult r = KILN_REAL(cuTensorMapReplaceAddress_v12000_)(map, address);
  encoded(r, map, address);
  return r;
}

}  // namespace kiln
