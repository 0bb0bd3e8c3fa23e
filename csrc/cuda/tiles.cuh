// Helpers shared by the CUDA kernel files (laplacian_kernels.cuh, affine_kernels.cuh). Only inline
// functions and templates here: the kernel headers each define non-template __global__ functions and
// so cannot include one another.
#pragma once

#include <cstdint>

#include "cuda_compat.cuh"

namespace dpst {
namespace cuda {

inline unsigned ceil_div(int64_t n, unsigned d) { return unsigned((n + d - 1) / d); }

// Copies rows r0..r0+rows-1, columns c0..c0+cols-1 of planes 0..planes-1 of a planar (planes, h, w)
// array into tile[planes][rows][cols], zero outside the array. Consecutive threads read consecutive
// columns (coalesced). All threads of the block must call it.
template <typename T>
__device__ __forceinline__ void load_tile(T* tile, const T* __restrict__ src, int planes, int64_t h,
                                          int64_t w, int64_t r0, int64_t c0, int rows, int cols) {
  const int tid = int(threadIdx.y * blockDim.x + threadIdx.x), nt = int(blockDim.x * blockDim.y);
  const int per_plane = rows * cols, n = planes * per_plane;
  for (int t = tid; t < n; t += nt) {
    const int p = t / per_plane, r = (t % per_plane) / cols, c = t % cols;
    const int64_t y = r0 + r, x = c0 + c;
    tile[t] = (y >= 0 && y < h && x >= 0 && x < w) ? __ldg(src + (p * h + y) * w + x) : T(0);
  }
}

}  // namespace cuda
}  // namespace dpst
