// CUDA kernels of the smooth-local-affine ops (schemas: csrc/dpst.cpp) and their host-side launchers.
// Torch-free, like csrc/cuda/laplacian_kernels.cuh: nvcc
// builds them into dpst_ext._C (csrc/cuda/affine_cuda.cu), g++ under DPST_EMULATE_CUDA into
// dpst_ext._emu (csrc/emu/affine_emu.cpp) and the sanitizer driver (tests/native/). The per-pixel maths
// is csrc/affine_math.h, the same functions the CPU ops call.
//
// Layouts: content, output, out (3, H, W); coeffs (12, H, W); planar, contiguous.
//
// Memory traffic per pixel (unique DRAM bytes, s = sizeof(T); halo re-reads hit L2/smem) and the floor
// at 3 TB/s:
//   local_affine_fit_kernel    read content 3s + output 3s, write coeffs 12s   72 B/px f32 -> 24 us/MP
//   bilateral_affine_kernel    read coeffs 12s + content 3s, write out 3s      72 B/px f32 -> 24 us/MP
// The fit computes in double (a 4x4 Cholesky per pixel), compute-bound on GPUs with slow FP64 but
// cheap next to the filter. The filter is compute- and shared-memory-bound, not DRAM-bound: per pixel
// (2r+1)^2 taps (961 at r = 15), each one exp and 13 multiply-adds with 15 shared-memory reads, i.e.
// ~58 KB of shared-memory reads and ~30k flops per pixel at r = 15 (~0.5 ms per megapixel at 60 TFLOP/s
// float32 if the exp and the shared loads overlap perfectly).
#pragma once

#include <cmath>

#include "../affine_math.h"
#include "cuda_compat.cuh"
#include "tiles.cuh"

namespace dpst {
namespace cuda {

// Block shapes and the bilateral tile's shared-memory budget. Defaults are for a real GPU; the
// emulation tests pass small shapes and budgets so that tiny images leave partial blocks and the
// filter runs over several tap chunks.
struct AffineLaunchShape {
  unsigned fit_x = 32, fit_y = 8;             // fit: one thread per pixel
  unsigned bilateral_x = 32, bilateral_y = 4;  // filter: one thread per output pixel
  unsigned shared_budget = 48 * 1024;          // bytes of dynamic smem per filter block (no opt-in)
};

inline int64_t affine_max_image_rows(const AffineLaunchShape& s) {
  return int64_t(65535) * (s.fit_y < s.bilateral_y ? s.fit_y : s.bilateral_y);
}

// ---- local_affine_fit: one thread per pixel; content and output tiles with a 1-pixel halo in smem ---

template <typename T, typename Carver>
__host__ __device__ void fit_layout(Carver& a, unsigned tx, unsigned ty, T*& img, T*& outp) {
  img = a.template take<T>(3 * (ty + 2) * (tx + 2));
  outp = a.template take<T>(3 * (ty + 2) * (tx + 2));
}

template <typename T>
__global__ void local_affine_fit_kernel(const T* __restrict__ content, const T* __restrict__ output,
                                        T* __restrict__ coeffs, int64_t H, int64_t W, double ridge) {
  const int TX = int(blockDim.x), TY = int(blockDim.y), tx = int(threadIdx.x), ty = int(threadIdx.y);
  const int64_t x0 = int64_t(blockIdx.x) * TX, y0 = int64_t(blockIdx.y) * TY;
  const int PR = TY + 2, PC = TX + 2;
  DPST_DYNAMIC_SHARED(smem);
  SharedCarver carver{smem};
  T *img, *outp;
  fit_layout<T>(carver, TX, TY, img, outp);
  load_tile(img, content, 3, H, W, y0 - 1, x0 - 1, PR, PC);
  load_tile(outp, output, 3, H, W, y0 - 1, x0 - 1, PR, PC);
  __syncthreads();
  const int64_t y = y0 + ty, x = x0 + tx;
  if (y >= H || x >= W) return;  // after the block's only __syncthreads
  AffineNormal n;
  for (int j = 0; j < 9; ++j) {
    const int dy = j / 3 - 1, dx = j % 3 - 1;
    if (y + dy < 0 || y + dy >= H || x + dx < 0 || x + dx >= W) continue;  // window clipped at the border
    const int pix = (ty + 1 + dy) * PC + tx + 1 + dx, pp = PR * PC;
    n.add(double(img[pix]), double(img[pp + pix]), double(img[2 * pp + pix]), double(outp[pix]),
          double(outp[pp + pix]), double(outp[2 * pp + pix]));
  }
  T a[kAffineCoeffs];
  affine_solve(n, ridge, a);
  const int64_t plane = H * W;
  for (int k = 0; k < kAffineCoeffs; ++k) coeffs[k * plane + y * W + x] = a[k];
}

template <typename T>
size_t fit_shared_bytes(const AffineLaunchShape& s) {
  SharedSizer size;
  T *a, *b;
  fit_layout<T>(size, s.fit_x, s.fit_y, a, b);
  return size.offset;
}

template <typename T>
void launch_local_affine_fit(const T* content, const T* output, T* coeffs, int64_t H, int64_t W,
                             double ridge, cudaStream_t stream, const AffineLaunchShape& s = {}) {
  const dim3 block(s.fit_x, s.fit_y), grid(ceil_div(W, s.fit_x), ceil_div(H, s.fit_y));
  DPST_LAUNCH(local_affine_fit_kernel<T>, grid, block, fit_shared_bytes<T>(s), stream, content, output,
              coeffs, H, W, ridge);
}

// ---- bilateral_affine_apply: joint-bilateral filter of the 12 coefficients + reconstruction ---------
// One thread per output pixel of a TY x TX block, 13 accumulators in registers. The taps (dy, dx) in
// [-r, r]^2 are visited in chunks of cy x cx offsets; for each chunk the block stages, in smem, the
// guide (3 planes) and coefficients (12 planes) of the (TY + cy - 1) x (TX + cx - 1) pixels those taps
// reach, so each value is read from L2 once per chunk instead of once per tap per pixel. The chunk
// sizes are the largest that fit the shared-memory budget (widest along x first: rows are coalesced).

struct BilateralChunks {
  int y, x;  // tap offsets per chunk along y and x
};

inline BilateralChunks bilateral_chunks(int radius, unsigned tx, unsigned ty, size_t value_bytes,
                                        size_t budget) {
  const int64_t taps = 2 * int64_t(radius) + 1, per_pixel = 15 * int64_t(value_bytes);
  const int64_t cols = int64_t(budget) / (per_pixel * ty);  // tile columns that fit with one tap row
  int64_t cx = cols - int64_t(tx) + 1;
  cx = cx < 1 ? 1 : (cx > taps ? taps : cx);
  const int64_t rows = int64_t(budget) / (per_pixel * (int64_t(tx) + cx - 1));
  int64_t cy = rows - int64_t(ty) + 1;
  cy = cy < 1 ? 1 : (cy > taps ? taps : cy);
  return BilateralChunks{int(cy), int(cx)};
}

template <typename T, typename Carver>
__host__ __device__ void bilateral_layout(Carver& a, unsigned tx, unsigned ty, int cy, int cx,
                                          T*& guide, T*& coef) {
  const unsigned pixels = (ty + unsigned(cy) - 1) * (tx + unsigned(cx) - 1);
  guide = a.template take<T>(3 * pixels);
  coef = a.template take<T>(kAffineCoeffs * pixels);
}

__device__ __forceinline__ float weight_exp(float x) { return expf(x); }
__device__ __forceinline__ double weight_exp(double x) { return exp(x); }

template <typename T>
__global__ void bilateral_affine_kernel(const T* __restrict__ coeffs, const T* __restrict__ content,
                                        T* __restrict__ out, int64_t H, int64_t W, int radius,
                                        int chunk_y, int chunk_x, T spatial, T range) {
  const int TX = int(blockDim.x), TY = int(blockDim.y), tx = int(threadIdx.x), ty = int(threadIdx.y);
  const int64_t x0 = int64_t(blockIdx.x) * TX, y0 = int64_t(blockIdx.y) * TY;
  const int TR = TY + chunk_y - 1, TC = TX + chunk_x - 1, tp = TR * TC;
  DPST_DYNAMIC_SHARED(smem);
  SharedCarver carver{smem};
  T *guide, *coef;
  bilateral_layout<T>(carver, TX, TY, chunk_y, chunk_x, guide, coef);
  const int64_t y = y0 + ty, x = x0 + tx, plane = H * W;
  const bool inside = y < H && x < W;
  T p0 = 0, p1 = 0, p2 = 0;
  if (inside) {
    p0 = __ldg(content + y * W + x);
    p1 = __ldg(content + plane + y * W + x);
    p2 = __ldg(content + 2 * plane + y * W + x);
  }
  T acc[kAffineCoeffs], den = 0;
  for (int k = 0; k < kAffineCoeffs; ++k) acc[k] = 0;
  for (int cy = -radius; cy <= radius; cy += chunk_y) {
    // Tile rows y0+cy .. y0+cy+TR-1; the test is uniform over the block, so skipping keeps every
    // thread on the same __syncthreads.
    if (y0 + cy + TR <= 0 || y0 + cy >= H) continue;
    for (int cx = -radius; cx <= radius; cx += chunk_x) {
      if (x0 + cx + TC <= 0 || x0 + cx >= W) continue;
      __syncthreads();  // every thread is done with the previous tile
      load_tile(guide, content, 3, H, W, y0 + cy, x0 + cx, TR, TC);
      load_tile(coef, coeffs, kAffineCoeffs, H, W, y0 + cy, x0 + cx, TR, TC);
      __syncthreads();
      if (!inside) continue;
      const int ny = chunk_y < radius - cy + 1 ? chunk_y : radius - cy + 1;
      const int nx = chunk_x < radius - cx + 1 ? chunk_x : radius - cx + 1;
      for (int i = 0; i < ny; ++i) {
        if (y + cy + i < 0 || y + cy + i >= H) continue;  // taps outside the image do not count
        for (int j = 0; j < nx; ++j) {
          if (x + cx + j < 0 || x + cx + j >= W) continue;
          const int t = (ty + i) * TC + tx + j;
          const T w = weight_exp(bilateral_exponent(cy + i, cx + j, p0 - guide[t], p1 - guide[tp + t],
                                                    p2 - guide[2 * tp + t], spatial, range));
          den += w;
          for (int k = 0; k < kAffineCoeffs; ++k) acc[k] += w * coef[k * tp + t];
        }
      }
    }
  }
  if (!inside) return;
  // out_c = A'_c [I; 1] with A' = acc / den (den >= 1: the centre tap has weight 1).
  for (int c = 0; c < 3; ++c)
    out[c * plane + y * W + x] =
        (acc[4 * c] * p0 + acc[4 * c + 1] * p1 + acc[4 * c + 2] * p2 + acc[4 * c + 3]) / den;
}

template <typename T>
size_t bilateral_shared_bytes(const AffineLaunchShape& s, const BilateralChunks& ch) {
  SharedSizer size;
  T *a, *b;
  bilateral_layout<T>(size, s.bilateral_x, s.bilateral_y, ch.y, ch.x, a, b);
  return size.offset;
}

template <typename T>
void launch_bilateral_affine(const T* coeffs, const T* content, T* out, int64_t H, int64_t W,
                             int radius, double edge, cudaStream_t stream,
                             const AffineLaunchShape& s = {}) {
  const dim3 block(s.bilateral_x, s.bilateral_y), grid(ceil_div(W, s.bilateral_x), ceil_div(H, s.bilateral_y));
  const BilateralChunks ch = bilateral_chunks(radius, s.bilateral_x, s.bilateral_y, sizeof(T), s.shared_budget);
  const BilateralScales sc = bilateral_scales(radius, edge);
  DPST_LAUNCH(bilateral_affine_kernel<T>, grid, block, bilateral_shared_bytes<T>(s, ch), stream, coeffs,
              content, out, H, W, radius, ch.y, ch.x, T(sc.spatial), T(sc.range));
}

}  // namespace cuda
}  // namespace dpst
