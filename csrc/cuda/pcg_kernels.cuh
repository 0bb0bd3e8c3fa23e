// CUDA kernels of the fused CG passes of csrc/cpu/pcg_cpu.cpp (pcg_direction, pcg_curvature, pcg_update),
// with the same per-pixel formulas (csrc/pcg_math.h) and their host-side launchers. Torch-free: compiled
// by nvcc into dpst_ext._C (csrc/cuda/laplacian_cuda.cu) and as plain C++ under DPST_EMULATE_CUDA into
// dpst_ext._emu (csrc/emu/), whose tests run them against the CPU kernels.
//
// One thread per pixel of one channel: blockIdx.x walks the pixels in blocks of `threads`, blockIdx.y is
// the channel. V is the CG vectors' type, M (U) that of the Laplacian's product (input); d is a double
// (H, W) map or null. The sums are deterministic: each block sums its pixels in double in shared
// memory (block_sum) into partials[sum][channel][block], then one block per (sum, channel) adds that row
// of partials in a fixed order (sum_partials_kernel, one launch), as photoreal_loss does; no atomics.
//
// Bytes per pixel and channel (V = M = float32, no d): direction 12 (r, p -> p), curvature 8,
// update 24 (x, r, p, m -> x, r): 44 per channel, 132 for 3 channels, the CPU passes' traffic; pcg_step
// alone (x, r, p, m -> x, r, p) 28 per channel, 84 for 3, where the product sums p.Ap and |Ap|^2.
#pragma once

#include "../pcg_math.h"
#include "cuda_compat.cuh"
#include "laplacian_kernels.cuh"  // LaunchShape, ceil_div, block_sum, sum_partials_kernel

namespace dpst {
namespace cuda {

// p = z + beta_c p (z = d . r, or r) in place; u = p in u's type when u is given.
template <typename V, typename U>
__global__ void pcg_direction_kernel(const V* __restrict__ R, const double* __restrict__ d, V* __restrict__ P,
                                     const double* __restrict__ beta, U* __restrict__ u, int64_t N) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x, c = blockIdx.y;
  if (i >= N) return;
  const int64_t k = c * N + i;
  double z = R[k];
  if (d) z *= d[i];
  const V pn = pcg_direction_value(z, beta[c], P[k]);
  P[k] = pn;
  if (u) u[k] = U(double(pn));
}

// partials[c][block] = sum over the block's pixels of p (p + w m).
template <typename V, typename M>
__global__ void pcg_curvature_kernel(const V* __restrict__ P, const M* __restrict__ m, double weight, int64_t N,
                                     double* __restrict__ partials) {
  DPST_DYNAMIC_SHARED(smem);
  double* red = reinterpret_cast<double*>(smem);
  const int tid = int(threadIdx.x);
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + tid, c = blockIdx.y;
  double t = 0;
  if (i < N) {
    const double p = P[c * N + i];
    t = p * pcg_applied(p, weight, double(m[c * N + i]));
  }
  red[tid] = t;
  block_sum(red, tid, int(blockDim.x));
  if (tid == 0) partials[c * gridDim.x + blockIdx.x] = red[0];
}

// x += alpha_c p, r -= alpha_c (p + w m) in place; partials[0][c][block] = sum of r.r over the block,
// partials[1][c][block] = sum of r.(d . r) (r.r without d), of r as stored.
template <typename V, typename M>
__global__ void pcg_update_kernel(V* __restrict__ X, V* __restrict__ R, const V* __restrict__ P,
                                  const M* __restrict__ m, double weight, const double* __restrict__ alpha,
                                  const double* __restrict__ d, int64_t N, double* __restrict__ partials) {
  DPST_DYNAMIC_SHARED(smem);
  double* red = reinterpret_cast<double*>(smem);
  const int tid = int(threadIdx.x);
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + tid, c = blockIdx.y;
  const int64_t nb = gridDim.x, C = gridDim.y;
  double rr = 0, rz = 0;
  if (i < N) {
    const int64_t k = c * N + i;
    const double p = P[k];
    X[k] = pcg_iterate_value(X[k], alpha[c], p);
    const V rv = pcg_residual_value(R[k], alpha[c], pcg_applied(p, weight, double(m[k])));
    R[k] = rv;
    const double rn = rv;
    rr = rn * rn;
    rz = d ? rr * d[i] : rr;
  }
  red[tid] = rr;
  block_sum(red, tid, int(blockDim.x));
  if (tid == 0) partials[c * nb + blockIdx.x] = red[0];
  red[tid] = rz;  // (block_sum starts with a barrier: thread 0 has read red[0] before anyone rewrites it)
  block_sum(red, tid, int(blockDim.x));
  if (tid == 0) partials[(C + c) * nb + blockIdx.x] = red[0];
}

// pcg_update and the next pcg_direction without d: x += alpha_c p, r -= alpha_c (p + w m),
// p = r + beta_c p in place; partials[c][block] = sum of r.r over the block, of r as stored.
template <typename V, typename M>
__global__ void pcg_step_kernel(V* __restrict__ X, V* __restrict__ R, V* __restrict__ P, const M* __restrict__ m,
                                double weight, const double* __restrict__ alpha, const double* __restrict__ beta,
                                int64_t N, double* __restrict__ partials) {
  DPST_DYNAMIC_SHARED(smem);
  double* red = reinterpret_cast<double*>(smem);
  const int tid = int(threadIdx.x);
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + tid, c = blockIdx.y;
  double rr = 0;
  if (i < N) {
    const int64_t k = c * N + i;
    const double p = P[k];
    X[k] = pcg_iterate_value(X[k], alpha[c], p);
    const V rv = pcg_residual_value(R[k], alpha[c], pcg_applied(p, weight, double(m[k])));
    R[k] = rv;
    P[k] = pcg_direction_value(double(rv), beta[c], P[k]);
    const double rn = rv;
    rr = rn * rn;
  }
  red[tid] = rr;
  block_sum(red, tid, int(blockDim.x));
  if (tid == 0) partials[c * gridDim.x + blockIdx.x] = red[0];
}

inline dim3 pcg_grid(int64_t C, int64_t N, const LaunchShape& s) { return dim3(ceil_div(N, s.threads), unsigned(C)); }

// totals[row] = sum of partials[row][0..nb), rows = the sums times the channels: one launch.
inline void launch_row_sums(const double* partials, int64_t rows, int64_t nb, double* totals,
                            cudaStream_t stream, const LaunchShape& s) {
  DPST_LAUNCH(sum_partials_kernel, dim3(unsigned(rows)), dim3(s.threads), s.threads * sizeof(double), stream,
              partials, nb, totals);
}

// R, P: (C, N) vectors; beta: C doubles on the device; u: (C, N) or null.
template <typename V, typename U>
void launch_pcg_direction(const V* R, const double* d, V* P, const double* beta, U* u, int64_t C, int64_t N,
                          cudaStream_t stream, const LaunchShape& sh = {}) {
  auto* kernel = pcg_direction_kernel<V, U>;  // (a two-argument template does not fit the macro)
  DPST_LAUNCH(kernel, pcg_grid(C, N, sh), dim3(sh.threads), 0, stream, R, d, P, beta, u, N);
}

// partials: C * ceil(N / threads) doubles of scratch; totals: C doubles.
template <typename V, typename M>
void launch_pcg_curvature(const V* P, const M* m, double weight, int64_t C, int64_t N, double* partials,
                          double* totals, cudaStream_t stream, const LaunchShape& sh = {}) {
  const dim3 grid = pcg_grid(C, N, sh);
  auto* kernel = pcg_curvature_kernel<V, M>;
  DPST_LAUNCH(kernel, grid, dim3(sh.threads), sh.threads * sizeof(double), stream, P, m, weight, N, partials);
  launch_row_sums(partials, C, grid.x, totals, stream, sh);
}

// alpha: C doubles on the device; partials: 2 C ceil(N / threads) doubles; totals: 2 C doubles
// (r.r per channel, then r.(d . r) per channel).
template <typename V, typename M>
void launch_pcg_update(V* X, V* R, const V* P, const M* m, double weight, const double* alpha, const double* d,
                       int64_t C, int64_t N, double* partials, double* totals, cudaStream_t stream,
                       const LaunchShape& sh = {}) {
  const dim3 grid = pcg_grid(C, N, sh);
  auto* kernel = pcg_update_kernel<V, M>;
  DPST_LAUNCH(kernel, grid, dim3(sh.threads), sh.threads * sizeof(double), stream, X, R, P, m, weight, alpha, d, N,
              partials);
  launch_row_sums(partials, 2 * C, grid.x, totals, stream, sh);
}

// alpha, beta: C doubles each on the device; partials: C ceil(N / threads) doubles; totals: C doubles (r.r).
template <typename V, typename M>
void launch_pcg_step(V* X, V* R, V* P, const M* m, double weight, const double* alpha, const double* beta,
                     int64_t C, int64_t N, double* partials, double* totals, cudaStream_t stream,
                     const LaunchShape& sh = {}) {
  const dim3 grid = pcg_grid(C, N, sh);
  auto* kernel = pcg_step_kernel<V, M>;
  DPST_LAUNCH(kernel, grid, dim3(sh.threads), sh.threads * sizeof(double), stream, X, R, P, m, weight, alpha, beta,
              N, partials);
  launch_row_sums(partials, C, grid.x, totals, stream, sh);
}

}  // namespace cuda
}  // namespace dpst
