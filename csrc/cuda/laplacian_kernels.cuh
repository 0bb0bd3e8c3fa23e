// CUDA kernels of the matting-Laplacian engine and their host-side launchers. Torch-free: compiled by
// nvcc into dpst_ext._C (csrc/cuda/laplacian_cuda.cu), and as plain C++ under DPST_EMULATE_CUDA into
// dpst_ext._emu (csrc/emu/) and the sanitizer driver (tests/native/). The maths per window is
// csrc/window_math.h, the same functions the CPU ops call.
//
// Layouts (csrc/dpst.cpp): image (3, H, W), stats (9, H-2, W-2), v and out (C, H, W), all planar and
// contiguous; hw = H-2, ww = W-2 windows per column/row. Offsets are 64-bit; in-tile indices are int.
//
// Memory traffic, per pixel, of the unique bytes each kernel must move to or from DRAM (s = sizeof(T),
// 4 for float32; halo re-reads hit L2), and the time floor that gives at 3 TB/s (H100 HBM3):
//   window_stats          read image 3s, write stats 9s          48 B/px f32 -> 16 us per megapixel
//   laplacian_matvec      image 3s + stats 9s + v Cs + out Cs    72 B/px f32 (C=3) -> 24 us/MP
//   laplacian_diagonal    image 3s + stats 9s + out s            52 B/px f32 -> 17 us/MP
//   laplacian_csr         col 25*4 + val 25s + image + stats     248 B/px f32/int32 -> 83 us/MP
//                         (int64 indices: 348 B/px -> 116 us/MP; crow adds 4 or 8 B/px)
//   photoreal_loss        image 3s + stats 9s + v Cs             60 B/px f32 (C=3) -> 20 us/MP
//   laplacian_stencil     image 3s + K 12s                       60 B/px f32 -> 20 us/MP (double maths)
//   stencil_matvec        K 12s + v Cs + out Cs                  72 B/px f32 (C=3) -> 24 us/MP
//                         (stencil_matvec_dots: the same bytes; its sums replace a pass of 24 B/px)
// window_stats computes in double (as the CPU op does), which on GPUs with slow FP64 (consumer parts,
// 1/64 rate) makes it compute-bound; it runs once per image.
#pragma once

#include "../window_math.h"
#include "cuda_compat.cuh"
#include "tiles.cuh"

namespace dpst {
namespace cuda {

// Block shapes. The defaults are for a real GPU; the emulation tests pass small shapes so that images
// of a few pixels leave partial and multiple blocks.
struct LaunchShape {
  unsigned tile_x = 32, tile_y = 8;      // window_stats, diagonal, loss: one thread per window/pixel
  unsigned matvec_x = 16, matvec_y = 16;  // matvec: one thread per output pixel (smem grows with it)
  unsigned threads = 256;                 // 1-D kernels (CSR, reductions)
};

// The 2-D kernels put tile rows on gridDim.y, which CUDA caps at 65535: the tallest image they take.
inline int64_t max_image_rows(const LaunchShape& s) {
  return int64_t(65535) * (s.tile_y < s.matvec_y ? s.tile_y : s.matvec_y);
}

// ---- window_stats: one thread per window; the block's image tile (with a 2-pixel halo) in smem ----

template <typename T, typename Carver>
__host__ __device__ void window_stats_layout(Carver& a, unsigned tx, unsigned ty, T*& img) {
  img = a.template take<T>(3 * (ty + 2) * (tx + 2));
}

template <typename T>
__global__ void window_stats_kernel(const T* __restrict__ image, T* __restrict__ stats, int64_t H,
                                    int64_t W, double eps) {
  const int TX = int(blockDim.x), TY = int(blockDim.y), tx = int(threadIdx.x), ty = int(threadIdx.y);
  const int64_t hw = H - 2, ww = W - 2;
  const int64_t wx0 = int64_t(blockIdx.x) * TX, wy0 = int64_t(blockIdx.y) * TY;
  DPST_DYNAMIC_SHARED(smem);
  SharedCarver carver{smem};
  T* img;
  window_stats_layout<T>(carver, TX, TY, img);
  const int PR = TY + 2, PC = TX + 2;
  load_tile(img, image, 3, H, W, wy0, wx0, PR, PC);
  __syncthreads();
  const int64_t ky = wy0 + ty, kx = wx0 + tx;
  if (ky < hw && kx < ww) {
    double c[9][3], mu[3], w[6];
    for (int j = 0; j < 9; ++j)
      for (int ch = 0; ch < 3; ++ch) c[j][ch] = double(img[(ch * PR + ty + j / 3) * PC + tx + j % 3]);
    window_stats(c, eps, mu, w);
    const int64_t plane = hw * ww;
    T* o = stats + ky * ww + kx;
    for (int q = 0; q < 3; ++q) o[q * plane] = T(mu[q]);
    for (int q = 0; q < 6; ++q) o[(3 + q) * plane] = T(w[q]);
  }
}

template <typename T>
void launch_window_stats(const T* image, T* stats, int64_t H, int64_t W, double eps,
                         cudaStream_t stream, const LaunchShape& s = {}) {
  const dim3 block(s.tile_x, s.tile_y), grid(ceil_div(W - 2, s.tile_x), ceil_div(H - 2, s.tile_y));
  SharedSizer size;
  T* unused;
  window_stats_layout<T>(size, block.x, block.y, unused);
  DPST_LAUNCH(window_stats_kernel<T>, grid, block, size.offset, stream, image, stats, H, W, eps);
}

// ---- laplacian_matvec: fused, matrix-free M v ---------------------------------------------------
// One thread per output pixel of a TY x TX tile. The windows touching the tile are the
// (TY+2) x (TX+2) windows with top-left corner in rows y0-2..y0+TY-1 (columns likewise); their pixels
// are the (TY+4) x (TX+4) tile with the same origin (y0-2, x0-2). Per channel:
//   phase 1: every window's (vbar, g) of window_coeffs into smem (threads loop over the windows);
//   phase 2: (M v)_i = n_i v_i - sum_{k containing i} (vbar_k + (I_i - mu_k) . g_k).
// Image, stats and v are read from DRAM once per block (plus halos) instead of 9 times per pixel.

template <typename T, typename Carver>
__host__ __device__ void matvec_layout(Carver& a, unsigned tx, unsigned ty, T*& img, T*& vt, T*& st,
                                       T*& coef) {
  const unsigned pixels = (ty + 4) * (tx + 4), windows = (ty + 2) * (tx + 2);
  img = a.template take<T>(3 * pixels);
  vt = a.template take<T>(pixels);
  st = a.template take<T>(kStatsPerWindow * windows);
  coef = a.template take<T>(4 * windows);
}

template <typename T>
__global__ void laplacian_matvec_kernel(const T* __restrict__ image, const T* __restrict__ stats,
                                        const T* __restrict__ v, T* __restrict__ out, int64_t C,
                                        int64_t H, int64_t W) {
  const int TX = int(blockDim.x), TY = int(blockDim.y), tx = int(threadIdx.x), ty = int(threadIdx.y);
  const int tid = ty * TX + tx, nt = TX * TY;
  const int64_t hw = H - 2, ww = W - 2;
  const int64_t x0 = int64_t(blockIdx.x) * TX, y0 = int64_t(blockIdx.y) * TY;
  const int64_t oy = y0 - 2, ox = x0 - 2;  // origin of both the pixel tile and the window tile
  const int PR = TY + 4, PC = TX + 4, KR = TY + 2, KC = TX + 2, nwin = KR * KC;
  DPST_DYNAMIC_SHARED(smem);
  SharedCarver carver{smem};
  T *img, *vt, *st, *coef;
  matvec_layout<T>(carver, TX, TY, img, vt, st, coef);
  load_tile(img, image, 3, H, W, oy, ox, PR, PC);
  load_tile(st, stats, kStatsPerWindow, hw, ww, oy, ox, KR, KC);

  const int64_t y = y0 + ty, x = x0 + tx;
  const bool inside = y < H && x < W;
  const int64_t klo_y = y - 2 > 0 ? y - 2 : 0, khi_y = y < hw - 1 ? y : hw - 1;
  const int64_t klo_x = x - 2 > 0 ? x - 2 : 0, khi_x = x < ww - 1 ? x : ww - 1;
  const T count = T(windows_covering(y, H) * windows_covering(x, W));
  for (int64_t c = 0; c < C; ++c) {
    load_tile(vt, v + c * H * W, 1, H, W, oy, ox, PR, PC);
    __syncthreads();  // img, st (first channel) and vt are in place
    for (int k = tid; k < nwin; k += nt) {
      const int r = k / KC, q = k % KC;
      const int64_t ky = oy + r, kx = ox + q;
      if (ky < 0 || kx < 0 || ky >= hw || kx >= ww) continue;  // no such window; never read
      T mu[3], w[6], xs[9][3], vj[9], vbar, g[3];
      for (int p = 0; p < 3; ++p) mu[p] = st[p * nwin + k];
      for (int p = 0; p < 6; ++p) w[p] = st[(3 + p) * nwin + k];
      for (int j = 0; j < 9; ++j) {
        const int pix = (r + j / 3) * PC + q + j % 3;
        for (int ch = 0; ch < 3; ++ch) xs[j][ch] = img[ch * PR * PC + pix] - mu[ch];
        vj[j] = vt[pix];
      }
      window_coeffs(w, xs, vj, vbar, g);
      coef[k] = vbar;
      coef[nwin + k] = g[0];
      coef[2 * nwin + k] = g[1];
      coef[3 * nwin + k] = g[2];
    }
    __syncthreads();  // coefficients of every window of the tile are in place
    if (inside) {
      const int pix = (ty + 2) * PC + tx + 2;
      const T i0 = img[pix], i1 = img[PR * PC + pix], i2 = img[2 * PR * PC + pix];
      T acc = 0;
      for (int64_t ky = klo_y; ky <= khi_y; ++ky)
        for (int64_t kx = klo_x; kx <= khi_x; ++kx) {
          const int k = int(ky - oy) * KC + int(kx - ox);
          acc += coef[k] + (i0 - st[k]) * coef[nwin + k] + (i1 - st[nwin + k]) * coef[2 * nwin + k] +
                 (i2 - st[2 * nwin + k]) * coef[3 * nwin + k];
        }
      out[(c * H + y) * W + x] = count * vt[pix] - acc;
    }
    __syncthreads();  // the next channel overwrites vt and coef
  }
}

template <typename T>
size_t matvec_shared_bytes(const LaunchShape& s) {
  SharedSizer size;
  T *a, *b, *c, *d;
  matvec_layout<T>(size, s.matvec_x, s.matvec_y, a, b, c, d);
  return size.offset;
}

template <typename T>
void launch_laplacian_matvec(const T* image, const T* stats, const T* v, T* out, int64_t C,
                             int64_t H, int64_t W, cudaStream_t stream, const LaunchShape& s = {}) {
  const dim3 block(s.matvec_x, s.matvec_y), grid(ceil_div(W, s.matvec_x), ceil_div(H, s.matvec_y));
  DPST_LAUNCH(laplacian_matvec_kernel<T>, grid, block, matvec_shared_bytes<T>(s), stream, image,
              stats, v, out, C, H, W);
}

// ---- laplacian_diagonal: one thread per pixel; the stats of the windows touching the tile in smem --

template <typename T, typename Carver>
__host__ __device__ void diagonal_layout(Carver& a, unsigned tx, unsigned ty, T*& st) {
  st = a.template take<T>(kStatsPerWindow * (ty + 2) * (tx + 2));
}

template <typename T>
__global__ void laplacian_diagonal_kernel(const T* __restrict__ image, const T* __restrict__ stats,
                                          T* __restrict__ out, int64_t H, int64_t W) {
  const int TX = int(blockDim.x), TY = int(blockDim.y), tx = int(threadIdx.x), ty = int(threadIdx.y);
  const int64_t hw = H - 2, ww = W - 2;
  const int64_t x0 = int64_t(blockIdx.x) * TX, y0 = int64_t(blockIdx.y) * TY;
  const int64_t oy = y0 - 2, ox = x0 - 2;
  const int KR = TY + 2, KC = TX + 2, nwin = KR * KC;
  DPST_DYNAMIC_SHARED(smem);
  SharedCarver carver{smem};
  T* st;
  diagonal_layout<T>(carver, TX, TY, st);
  load_tile(st, stats, kStatsPerWindow, hw, ww, oy, ox, KR, KC);
  __syncthreads();
  const int64_t y = y0 + ty, x = x0 + tx;
  if (y >= H || x >= W) return;  // after the block's only __syncthreads
  T ii[3];
  for (int ch = 0; ch < 3; ++ch) ii[ch] = __ldg(image + (ch * H + y) * W + x);
  T d = 0;
  for (int64_t ky = (y - 2 > 0 ? y - 2 : 0); ky <= (y < hw - 1 ? y : hw - 1); ++ky)
    for (int64_t kx = (x - 2 > 0 ? x - 2 : 0); kx <= (x < ww - 1 ? x : ww - 1); ++kx) {
      const int k = int(ky - oy) * KC + int(kx - ox);
      T w[6], xi[3];
      for (int p = 0; p < 6; ++p) w[p] = st[(3 + p) * nwin + k];
      for (int ch = 0; ch < 3; ++ch) xi[ch] = ii[ch] - st[ch * nwin + k];
      d += window_entry(w, xi, xi, true);
    }
  out[y * W + x] = d;
}

template <typename T>
void launch_laplacian_diagonal(const T* image, const T* stats, T* out, int64_t H, int64_t W,
                               cudaStream_t stream, const LaunchShape& s = {}) {
  const dim3 block(s.tile_x, s.tile_y), grid(ceil_div(W, s.tile_x), ceil_div(H, s.tile_y));
  SharedSizer size;
  T* unused;
  diagonal_layout<T>(size, block.x, block.y, unused);
  DPST_LAUNCH(laplacian_diagonal_kernel<T>, grid, block, size.offset, stream, image, stats, out, H, W);
}

// ---- laplacian_csr: fixed-width rows, same layout and values as the CPU op -----------------------
// Row i = (y, x) holds the clamped 5x5 neighbourhood: rows ry0..ry0+nh-1, columns rx0..rx0+nw-1,
// row-major (hence sorted), with origin clamp(p-2, 0, n-5) when n > 5 else 0; pixels sharing no
// window get explicit zeros. The op is write-bound (25 indices + 25 values per pixel), so one thread
// per entry: consecutive threads write consecutive entries (coalesced), each summing M^k_ij over the
// windows k containing both pixels, read through the read-only cache.

DPST_HD inline int64_t csr_origin(int64_t p, int64_t n) {
  return n <= 5 ? 0 : (p - 2 < 0 ? 0 : (p - 2 > n - 5 ? n - 5 : p - 2));
}

template <typename I>
__global__ void csr_row_offsets_kernel(I* __restrict__ crow, int64_t rows, int64_t width) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i <= rows;
       i += int64_t(gridDim.x) * blockDim.x)
    crow[i] = I(i * width);
}

// One block per image row (grid-stride over rows); entries of a row are indexed by int: the entry
// points require W * width < 2^31.
template <typename T, typename I>
__global__ void csr_entries_kernel(const T* __restrict__ image, const T* __restrict__ stats,
                                   I* __restrict__ col, T* __restrict__ val, int64_t H, int64_t W) {
  const int64_t hw = H - 2, ww = W - 2, plane = hw * ww;
  const int nh = H < 5 ? int(H) : 5, nw = W < 5 ? int(W) : 5, width = nh * nw;
  const int row_entries = int(W) * width;
  for (int64_t y = blockIdx.x; y < H; y += gridDim.x) {
    const int64_t ry0 = csr_origin(y, H);
    for (int e = int(threadIdx.x); e < row_entries; e += int(blockDim.x)) {
      const int64_t x = e / width;
      const int q = e % width;
      const int64_t jy = ry0 + q / nw, jx = csr_origin(x, W) + q % nw;
      T xi[3], xj[3], sum = 0;
      for (int ch = 0; ch < 3; ++ch) {
        xi[ch] = __ldg(image + (ch * H + y) * W + x);
        xj[ch] = __ldg(image + (ch * H + jy) * W + jx);
      }
      // Windows containing both pixels: top-left corner within 2 of each, inside the image.
      const int64_t ky0 = (y > jy ? y : jy) - 2, ky1 = y < jy ? y : jy;
      const int64_t kx0 = (x > jx ? x : jx) - 2, kx1 = x < jx ? x : jx;
      for (int64_t ky = (ky0 > 0 ? ky0 : 0); ky <= (ky1 < hw - 1 ? ky1 : hw - 1); ++ky)
        for (int64_t kx = (kx0 > 0 ? kx0 : 0); kx <= (kx1 < ww - 1 ? kx1 : ww - 1); ++kx) {
          const T* s = stats + ky * ww + kx;
          T w[6], ci[3], cj[3];
          for (int p = 0; p < 6; ++p) w[p] = __ldg(s + (3 + p) * plane);
          for (int ch = 0; ch < 3; ++ch) {
            const T mu = __ldg(s + ch * plane);
            ci[ch] = xi[ch] - mu;
            cj[ch] = xj[ch] - mu;
          }
          sum += window_entry(w, ci, cj, jy == y && jx == x);
        }
      const int64_t at = y * int64_t(row_entries) + e;
      col[at] = I(jy * W + jx);
      val[at] = sum;
    }
  }
}

template <typename T, typename I>
void launch_laplacian_csr(const T* image, const T* stats, I* crow, I* col, T* val, int64_t H,
                          int64_t W, cudaStream_t stream, const LaunchShape& s = {}) {
  const int64_t N = H * W, width = (H < 5 ? H : 5) * (W < 5 ? W : 5);
  const unsigned offset_blocks = ceil_div(N + 1, s.threads);
  const dim3 grid_offsets(offset_blocks < 65535u ? offset_blocks : 65535u);
  DPST_LAUNCH(csr_row_offsets_kernel<I>, grid_offsets, dim3(s.threads), 0, stream, crow, N, width);
  const dim3 grid_rows(unsigned(H < 65535 ? H : 65535));
  auto* entries = csr_entries_kernel<T, I>;  // (a two-argument template does not fit the macro)
  DPST_LAUNCH(entries, grid_rows, dim3(s.threads), 0, stream, image, stats, col, val, H, W);
}

// ---- photoreal_loss: sum_c v_c^T M v_c --------------------------------------------------------
// One thread per window; image and v tiles with a 2-pixel halo in smem; each block sums its windows
// in double (tree in smem) into partials[block]; one block then sums the partials in a fixed order,
// so the loss is bitwise reproducible run to run (no atomics).

template <typename T, typename Carver>
__host__ __device__ void loss_layout(Carver& a, unsigned tx, unsigned ty, double*& red, T*& img,
                                     T*& vt) {
  red = a.template take<double>(tx * ty);
  img = a.template take<T>(3 * (ty + 2) * (tx + 2));
  vt = a.template take<T>((ty + 2) * (tx + 2));
}

// Sums red[0..n) into red[0]; n = threads of the block, each having written its own red[tid].
__device__ __forceinline__ void block_sum(double* red, int tid, int n) {
  int s = 1;
  while (s < n) s <<= 1;
  for (s >>= 1; s > 0; s >>= 1) {
    __syncthreads();
    if (tid < s && tid + s < n) red[tid] += red[tid + s];
  }
  __syncthreads();
}

template <typename T>
__global__ void loss_partials_kernel(const T* __restrict__ image, const T* __restrict__ stats,
                                     const T* __restrict__ v, int64_t C, int64_t H, int64_t W,
                                     double* __restrict__ partials) {
  const int TX = int(blockDim.x), TY = int(blockDim.y), tx = int(threadIdx.x), ty = int(threadIdx.y);
  const int tid = ty * TX + tx;
  const int64_t hw = H - 2, ww = W - 2, plane = hw * ww;
  const int64_t wx0 = int64_t(blockIdx.x) * TX, wy0 = int64_t(blockIdx.y) * TY;
  const int PR = TY + 2, PC = TX + 2;
  DPST_DYNAMIC_SHARED(smem);
  SharedCarver carver{smem};
  double* red;
  T *img, *vt;
  loss_layout<T>(carver, TX, TY, red, img, vt);
  load_tile(img, image, 3, H, W, wy0, wx0, PR, PC);
  const int64_t ky = wy0 + ty, kx = wx0 + tx;
  const bool valid = ky < hw && kx < ww;
  T w[6], xs[9][3];
  if (valid) {
    const T* s = stats + ky * ww + kx;
    for (int p = 0; p < 6; ++p) w[p] = __ldg(s + (3 + p) * plane);
  }
  double total = 0;
  for (int64_t c = 0; c < C; ++c) {
    load_tile(vt, v + c * H * W, 1, H, W, wy0, wx0, PR, PC);
    __syncthreads();  // img (first channel) and vt are in place
    if (valid) {
      if (c == 0) {
        const T* s = stats + ky * ww + kx;
        for (int j = 0; j < 9; ++j)
          for (int ch = 0; ch < 3; ++ch)
            xs[j][ch] = img[(ch * PR + ty + j / 3) * PC + tx + j % 3] - __ldg(s + ch * plane);
      }
      T vj[9];
      for (int j = 0; j < 9; ++j) vj[j] = vt[(ty + j / 3) * PC + tx + j % 3];
      total += double(window_quad(w, xs, vj));
    }
    __syncthreads();  // the next channel overwrites vt
  }
  red[tid] = total;
  block_sum(red, tid, TX * TY);
  if (tid == 0) partials[int64_t(blockIdx.y) * gridDim.x + blockIdx.x] = red[0];
}

// One block per row: total[row] = sum of partials[row][0..n), in an order fixed by n and the block size.
__global__ void sum_partials_kernel(const double* __restrict__ partials, int64_t n,
                                    double* __restrict__ total) {
  DPST_DYNAMIC_SHARED(smem);
  double* red = reinterpret_cast<double*>(smem);
  const int tid = int(threadIdx.x), nt = int(blockDim.x);
  const int64_t row = blockIdx.x;
  double s = 0;
  for (int64_t i = tid; i < n; i += nt) s += partials[row * n + i];
  red[tid] = s;
  block_sum(red, tid, nt);
  if (tid == 0) total[row] = red[0];
}

inline dim3 loss_grid(int64_t H, int64_t W, const LaunchShape& s) {
  return dim3(ceil_div(W - 2, s.tile_x), ceil_div(H - 2, s.tile_y));
}

// partials: loss_grid(...).x * .y doubles of scratch; total: one double.
template <typename T>
void launch_photoreal_loss(const T* image, const T* stats, const T* v, int64_t C, int64_t H,
                           int64_t W, double* partials, double* total, cudaStream_t stream,
                           const LaunchShape& s = {}) {
  const dim3 block(s.tile_x, s.tile_y), grid = loss_grid(H, W, s);
  SharedSizer size;
  double* red;
  T *img, *vt;
  loss_layout<T>(size, block.x, block.y, red, img, vt);
  DPST_LAUNCH(loss_partials_kernel<T>, grid, block, size.offset, stream, image, stats, v, C, H, W,
              partials);
  DPST_LAUNCH(sum_partials_kernel, dim3(1), dim3(s.threads), s.threads * sizeof(double), stream,
              partials, int64_t(grid.x) * grid.y, total);
}

// ---- the stencil form (csrc/window_math.h): one thread per pixel, no shared memory -----------------
// The build is compute-bound (36 window statistics and pair terms per pixel, in double: each entry
// recomputes the statistics of its windows, which keeps every array in registers) and runs once per
// image; the product reads K and v through the read-only cache, neighbours' rows being shared by the
// block.

template <typename T>
__global__ void laplacian_stencil_kernel(const T* __restrict__ image, T* __restrict__ K, int64_t H,
                                         int64_t W, double eps) {
  const int64_t x = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t y = int64_t(blockIdx.y) * blockDim.y + threadIdx.y;
  if (y >= H || x >= W) return;
  for (int q = 0; q < kStencilOffsets; ++q)
    K[(q * H + y) * W + x] = T(stencil_entry(image, H, W, y, x, eps, q));
}

template <typename T>
void launch_laplacian_stencil(const T* image, T* K, int64_t H, int64_t W, double eps,
                              cudaStream_t stream, const LaunchShape& s = {}) {
  const dim3 block(s.tile_x, s.tile_y), grid(ceil_div(W, s.tile_x), ceil_div(H, s.tile_y));
  DPST_LAUNCH(laplacian_stencil_kernel<T>, grid, block, 0, stream, image, K, H, W, eps);
}

// normalized: D^-1/2 M D^-1/2 v (stencil_pixel's normalised form) in place of M v. With Dots, also
// partials[k][c][block] (k = 0: v.v, 1: v.(M v), 2: (M v).(M v), M v as stored in out), each block's sum in
// double (block_sum): every thread of the block takes part, those outside the image with zeros.
template <typename T>
DPST_HD inline T stencil_product(bool normalized, const T* K, const T* v, int64_t H, int64_t W, int64_t y,
                                 int64_t x) {
  T m[1];
  if (normalized) stencil_pixel<T, 1, true>(K, v, H, W, y, x, m);
  else stencil_pixel<T, 1, false>(K, v, H, W, y, x, m);
  return m[0];
}

template <typename T, bool Dots>
__global__ void stencil_matvec_kernel(const T* __restrict__ K, const T* __restrict__ v,
                                      T* __restrict__ out, int64_t C, int64_t H, int64_t W, bool normalized,
                                      double* __restrict__ partials) {
  const int64_t x = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t y = int64_t(blockIdx.y) * blockDim.y + threadIdx.y;
  const bool inside = y < H && x < W;
  if constexpr (!Dots) {
    if (!inside) return;
    for (int64_t c = 0; c < C; ++c)
      out[(c * H + y) * W + x] = stencil_product(normalized, K, v + c * H * W, H, W, y, x);
  } else {
    DPST_DYNAMIC_SHARED(smem);
    double* red = reinterpret_cast<double*>(smem);
    const int tid = int(threadIdx.y * blockDim.x + threadIdx.x), n = int(blockDim.x * blockDim.y);
    const int64_t nb = int64_t(gridDim.x) * gridDim.y, b = int64_t(blockIdx.y) * gridDim.x + blockIdx.x;
    for (int64_t c = 0; c < C; ++c) {
      double sums[3] = {0, 0, 0};
      if (inside) {
        const int64_t k = (c * H + y) * W + x;
        const T m = stencil_product(normalized, K, v + c * H * W, H, W, y, x);
        out[k] = m;
        const double vk = v[k], mk = m;
        sums[0] = vk * vk;
        sums[1] = vk * mk;
        sums[2] = mk * mk;
      }
      for (int s = 0; s < 3; ++s) {
        red[tid] = sums[s];  // (block_sum starts with a barrier: thread 0 has read red[0] before it is rewritten)
        block_sum(red, tid, n);
        if (tid == 0) partials[(s * C + c) * nb + b] = red[0];
      }
    }
  }
}

inline dim3 stencil_grid(int64_t H, int64_t W, const LaunchShape& s) {
  return dim3(ceil_div(W, s.tile_x), ceil_div(H, s.tile_y));
}

template <typename T>
void launch_stencil_matvec(const T* K, const T* v, T* out, int64_t C, int64_t H, int64_t W, bool normalized,
                           cudaStream_t stream, const LaunchShape& s = {}) {
  auto* kernel = stencil_matvec_kernel<T, false>;  // (a two-argument template does not fit the macro)
  DPST_LAUNCH(kernel, stencil_grid(H, W, s), dim3(s.tile_x, s.tile_y), 0, stream, K, v, out, C, H, W,
              normalized, nullptr);
}

// The product, and totals (3 C doubles): v.v per channel, then v.(M v), then (M v).(M v). partials: 3 C
// times stencil_grid(H, W, s).x * .y doubles of scratch. One launch for the partials, one for their sums.
template <typename T>
void launch_stencil_matvec_dots(const T* K, const T* v, T* out, int64_t C, int64_t H, int64_t W, bool normalized,
                                double* partials, double* totals, cudaStream_t stream,
                                const LaunchShape& s = {}) {
  const dim3 grid = stencil_grid(H, W, s), block(s.tile_x, s.tile_y);
  auto* kernel = stencil_matvec_kernel<T, true>;
  DPST_LAUNCH(kernel, grid, block, block.x * block.y * sizeof(double), stream, K, v, out, C, H, W, normalized,
              partials);
  DPST_LAUNCH(sum_partials_kernel, dim3(unsigned(3 * C)), dim3(s.threads), s.threads * sizeof(double), stream,
              partials, int64_t(grid.x) * grid.y, totals);
}

}  // namespace cuda
}  // namespace dpst
