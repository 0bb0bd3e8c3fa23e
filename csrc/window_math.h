// Per-window arithmetic of the Levin matting Laplacian with 3x3 windows, written once.
//
// Every function here is `__host__ __device__` under nvcc and plain inline C++ otherwise, so the
// C++ CPU loops (csrc/cpu/), the CUDA kernels (csrc/cuda/) and their host-emulation build all run
// exactly this arithmetic. Nothing here knows about torch.
//
// Conventions (the whole engine uses them):
//   * image I: planar (3, H, W), values nominally in 0..1.
//   * window k: the 3x3 patch with top-left pixel (wy, wx), 0 <= wy < H-2, 0 <= wx < W-2 (windows lie
//     fully inside the image, as in the reference release). Its centre is (wy+1, wx+1).
//   * window statistics ("stats"), planar (9, H-2, W-2), kStatsPerWindow values per window:
//       [0..2]  mu       mean colour of the window
//       [3..8]  w00 w10 w11 w20 w21 w22, the lower-triangular whitening matrix W with
//               W^T W = (1/9) (Sigma + eps/9 I)^-1,   i.e.  W = L^-1 / 3,  Sigma + eps/9 I = L L^T.
//     With z_i = W (I_i - mu) ("whitened colour" of pixel i in window k), the window's block is
//         M^k_ij = delta_ij - 1/9 - z_i . z_j,
//     and M = sum_k M^k. Storing W rather than the inverse covariance A keeps float32 accurate:
//     A has entries up to 9/eps ~ 1e8 whose rounding leaks into every direction, while W's large row
//     only multiplies the small component of (I_i - mu) along the near-null direction.
//   * Statistics are always computed in double (centred two-pass moments, Cholesky), once per image.
#pragma once

#include <cmath>

#if defined(__CUDACC__)
#define DPST_HD __host__ __device__
#else
#define DPST_HD  // plain C++: the CPU ops and the host-emulation build of the CUDA kernels
#endif

namespace dpst {

constexpr int kStatsPerWindow = 9;  // mu (3) + W (6)

// Mean and whitening matrix of one window from its 9 colours (row-major 3x3 patch, RGB each).
// Writes mu[3] and w[6] = (w00, w10, w11, w20, w21, w22).
DPST_HD inline void window_stats(const double c[9][3], double eps, double mu[3], double w[6]) {
  for (int ch = 0; ch < 3; ++ch) {
    double s = 0.0;
    for (int j = 0; j < 9; ++j) s += c[j][ch];
    mu[ch] = s / 9.0;
  }
  // Centred second moments (two-pass): raw moments lose everything in dark or flat windows.
  double s00 = 0, s10 = 0, s11 = 0, s20 = 0, s21 = 0, s22 = 0;
  for (int j = 0; j < 9; ++j) {
    const double x0 = c[j][0] - mu[0], x1 = c[j][1] - mu[1], x2 = c[j][2] - mu[2];
    s00 += x0 * x0; s10 += x1 * x0; s11 += x1 * x1;
    s20 += x2 * x0; s21 += x2 * x1; s22 += x2 * x2;
  }
  const double reg = eps / 9.0;
  s00 = s00 / 9.0 + reg; s11 = s11 / 9.0 + reg; s22 = s22 / 9.0 + reg;
  s10 /= 9.0; s20 /= 9.0; s21 /= 9.0;
  // Cholesky Sigma_reg = L L^T. Every pivot is >= reg in exact arithmetic; the floor only guards
  // against rounding when eps is far below the colour scale.
  const double floor_ = 0.5 * reg;
  // (A compare, not fmax: fmax is a libm call that keeps the CPU loop from vectorising.)
  auto at_least = [floor_](double p) { return p > floor_ ? p : floor_; };
  const double l00 = sqrt(at_least(s00));
  const double l10 = s10 / l00;
  const double l20 = s20 / l00;
  const double l11 = sqrt(at_least(s11 - l10 * l10));
  const double l21 = (s21 - l20 * l10) / l11;
  const double l22 = sqrt(at_least(s22 - l20 * l20 - l21 * l21));
  // W = L^-1 / 3 (lower triangular).
  const double w00 = 1.0 / l00, w11 = 1.0 / l11, w22 = 1.0 / l22;
  const double w10 = -l10 * w00 / l11;
  const double w21 = -l21 * w11 / l22;
  const double w20 = -(l20 * w00 + l21 * w10) / l22;
  w[0] = w00 / 3.0; w[1] = w10 / 3.0; w[2] = w11 / 3.0;
  w[3] = w20 / 3.0; w[4] = w21 / 3.0; w[5] = w22 / 3.0;
}

// The 9 colours of the 3x3 window whose top-left pixel is (ky, kx), in double, row-major (c[j] is pixel
// (ky + j / 3, kx + j % 3)), from a planar (3, H, W) image with plane = H * W.
template <typename T>
DPST_HD inline void window_colours(const T* image, long long plane, long long W, long long ky, long long kx,
                                   double c[9][3]) {
  for (int j = 0; j < 9; ++j)
    for (int ch = 0; ch < 3; ++ch) c[j][ch] = double(image[ch * plane + (ky + j / 3) * W + kx + j % 3]);
}

// z = W x for the lower-triangular W packed as (w00, w10, w11, w20, w21, w22).
template <typename T>
DPST_HD inline void whiten(const T w[6], const T x[3], T z[3]) {
  z[0] = w[0] * x[0];
  z[1] = w[1] * x[0] + w[2] * x[1];
  z[2] = w[3] * x[0] + w[4] * x[1] + w[5] * x[2];
}

// g = W^T a.
template <typename T>
DPST_HD inline void whiten_transpose(const T w[6], const T a[3], T g[3]) {
  g[0] = w[0] * a[0] + w[1] * a[1] + w[3] * a[2];
  g[1] = w[2] * a[1] + w[4] * a[2];
  g[2] = w[5] * a[2];
}

// The window's part of M v for one channel, from the centred colours x_j = I_j - mu (j = 0..8) and
// the values v_j. Returns vbar = mean(v) and g = W^T W sum_j x_j (v_j - vbar), so that
//     (M^k v)_i = v_i - vbar - x_i . g      for every pixel i of the window.
template <typename T>
DPST_HD inline void window_coeffs(const T w[6], const T x[9][3], const T v[9], T& vbar, T g[3]) {
  T s = 0;
  for (int j = 0; j < 9; ++j) s += v[j];
  vbar = s / T(9);
  T cov[3] = {0, 0, 0};
  for (int j = 0; j < 9; ++j) {
    const T d = v[j] - vbar;  // centring v as well keeps smooth v (the usual case) exact
    cov[0] += x[j][0] * d; cov[1] += x[j][1] * d; cov[2] += x[j][2] * d;
  }
  T a[3];
  whiten(w, cov, a);
  whiten_transpose(w, a, g);
}

// The window's part of v^T M v for one channel: sum_j (v_j - vbar)^2 - |W sum_j x_j (v_j - vbar)|^2.
template <typename T>
DPST_HD inline T window_quad(const T w[6], const T x[9][3], const T v[9]) {
  T s = 0;
  for (int j = 0; j < 9; ++j) s += v[j];
  const T vbar = s / T(9);
  T ss = 0, cov[3] = {0, 0, 0};
  for (int j = 0; j < 9; ++j) {
    const T d = v[j] - vbar;
    ss += d * d;
    cov[0] += x[j][0] * d; cov[1] += x[j][1] * d; cov[2] += x[j][2] * d;
  }
  T a[3];
  whiten(w, cov, a);
  return ss - (a[0] * a[0] + a[1] * a[1] + a[2] * a[2]);
}

// The window's entry M^k_ij from the whitened colours z_i = W (I_i - mu), z_j = W (I_j - mu) of
// pixels i and j (same = (i == j)): delta_ij - 1/9 - z_i . z_j. Kernels that whiten each pixel of a
// window once reuse z for all its 9 partners.
template <typename T>
DPST_HD inline T window_entry_whitened(const T zi[3], const T zj[3], bool same) {
  return (same ? T(1) : T(0)) - T(1) / T(9) - (zi[0] * zj[0] + zi[1] * zj[1] + zi[2] * zj[2]);
}

// The same entry from the centred colours of pixels i and j.
template <typename T>
DPST_HD inline T window_entry(const T w[6], const T xi[3], const T xj[3], bool same) {
  T zi[3], zj[3];
  whiten(w, xi, zi);
  whiten(w, xj, zj);
  return window_entry_whitened(zi, zj, same);
}

// ---- M as a 5x5 stencil -------------------------------------------------------------------------
// M couples pixel i only with the 24 pixels within 2 rows and 2 columns of it. M is symmetric and its
// rows sum to 0 (M 1 = 0), so row i is fixed by the entries M_ij for the 12 neighbours j = i + d_q that
// come after i in row-major order (d_q below), the 12 before it (their own forward entries), and
// M_ii = -sum_{j != i} M_ij. The stencil form stores K_q(i) = M_{i, i + d_q} (0 where i + d_q lies
// outside the image), planar (12, H, W), and computes
//     (M v)_i = sum_q K_q(i) (v_{i + d_q} - v_i) + K_q(i - d_q) (v_{i - d_q} - v_i):
// differences of v, so constants stay exactly in M's null space whatever K's rounding. The entries are
// bounded (|z|^2 <= 1 for the whitened colours of a window, so |M_ij| <= 9 (1/9 + 1)), which is what
// lets a float32 K carry them to ~1e-7 of their size where the centred matrix-free product loses ~1e-6.
constexpr int kStencilOffsets = 12;
DPST_HD constexpr int stencil_dy(int q) { return q < 2 ? 0 : q < 7 ? 1 : 2; }
DPST_HD constexpr int stencil_dx(int q) { return q < 2 ? q + 1 : q < 7 ? q - 4 : q - 9; }

// K_q(i) for pixel i = (y, x) by the definition, all in double: the sum over the windows k containing
// both i and j = i + d_q of M^k_ij = -1/9 - z_i.z_j, each window's statistics computed here from its 9
// colours (not read from stored, rounded ones). image (3, H, W) planar. Every array index is a
// compile-time constant once the loops unroll, so the CUDA kernel keeps everything in registers.
template <typename T>
DPST_HD inline double stencil_entry(const T* image, long long H, long long W, long long y, long long x,
                                    double eps, int q) {
  const long long jy = y + stencil_dy(q), jx = x + stencil_dx(q);
  if (jy >= H || jx < 0 || jx >= W) return 0.0;
  const long long hw = H - 2, ww = W - 2, plane = H * W;
  const long long ky0 = (y > jy ? y : jy) - 2, ky1 = y < jy ? y : jy;
  const long long kx0 = (x > jx ? x : jx) - 2, kx1 = x < jx ? x : jx;
  double sum = 0.0;
  for (long long ky = (ky0 > 0 ? ky0 : 0); ky <= (ky1 < hw - 1 ? ky1 : hw - 1); ++ky)
    for (long long kx = (kx0 > 0 ? kx0 : 0); kx <= (kx1 < ww - 1 ? kx1 : ww - 1); ++kx) {
      double c[9][3], mu[3], w[6], xi[3], xj[3], zi[3], zj[3];
      window_colours(image, plane, W, ky, kx, c);
      window_stats(c, eps, mu, w);
      for (int ch = 0; ch < 3; ++ch) {
        xi[ch] = double(image[ch * plane + y * W + x]) - mu[ch];
        xj[ch] = double(image[ch * plane + jy * W + jx]) - mu[ch];
      }
      whiten(w, xi, zi);
      whiten(w, xj, zj);
      sum += window_entry_whitened(zi, zj, false);
    }
  return sum;
}

// Number of 3x3 windows (lying fully inside an axis of length n) that contain coordinate p.
DPST_HD inline int windows_covering(long long p, long long n) {
  const long long lo = p - 2 > 0 ? p - 2 : 0;
  const long long hi = p < n - 3 ? p : n - 3;
  return hi >= lo ? int(hi - lo + 1) : 0;
}

// n_i: the number of 3x3 windows inside the image that contain pixel i = (y, x), the degree of
// FastPhotoStyle's matting affinity (dpst_ext/engine/smoothing.py), is the product of the counts along the
// two axes, each 1..3 (0 where the axis is under 3 pixels: no window, M's row is 0, and any finite scale
// serves; 1 is taken). sqrt(c) and 1/sqrt(c) of an axis count, as constants.
DPST_HD inline double sqrt_count(int c) { return c == 3 ? 1.7320508075688772 : c == 2 ? 1.4142135623730951 : 1.0; }
DPST_HD inline double rsqrt_count(int c) { return c == 3 ? 0.57735026918962573 : c == 2 ? 0.70710678118654757 : 1.0; }

// (S v)_i for pixel i = (y, x) of NC channel planes v (H x W apart) from the stencil K (12, H, W), into
// out[0..NC), with the bounds tests (border pixels; every pixel in the CUDA kernel). S = M:
//     (M v)_i = sum_q K_q(i) (v_{i + d_q} - v_i) + K_q(i - d_q) (v_{i - d_q} - v_i),
// the CPU's interior loop adding the same terms in the same order. Normalized: S = D^-1/2 M D^-1/2, D = diag(n)
// (the normalised Laplacian), as the same differences since the rows of M sum to 0:
//     (1/n_i) sum_j M_ij (t_ij v_j - v_i),   t_ij = sqrt(n_i / n_j).
// t_ij = 1 unless pixel i or j lies within 2 pixels of the border, so inside the image the terms are M's
// times 1/n_i = 1/9 (the CPU's interior loop computes them so). Each neighbour's ratio is found once for the
// NC channels.
template <typename T, int NC, bool Normalized>
DPST_HD inline void stencil_pixel(const T* K, const T* v, long long H, long long W, long long y, long long x,
                                  T out[NC]) {
  const long long plane = H * W, i = y * W + x;
  const int cy = windows_covering(y, H), cx = windows_covering(x, W);
  const double root_ni = sqrt_count(cy) * sqrt_count(cx);
  T vi[NC], acc[NC];
  for (int c = 0; c < NC; ++c) {
    vi[c] = v[c * plane + i];
    acc[c] = 0;
  }
  for (int q = 0; q < kStencilOffsets; ++q) {
    const int dy = stencil_dy(q), dx = stencil_dx(q);
    for (int side = 0; side < 2; ++side) {   // j = i + d_q (K_q(i)), then j = i - d_q (K_q(j))
      const long long yj = side ? y - dy : y + dy, xj = side ? x - dx : x + dx;
      if (yj < 0 || yj >= H || xj < 0 || xj >= W) continue;
      const long long j = yj * W + xj;
      const T k = K[q * plane + (side ? j : i)];
      if constexpr (Normalized) {
        const int cyj = windows_covering(yj, H), cxj = windows_covering(xj, W);
        const T t = cyj * cxj == cy * cx ? T(1) : T(root_ni * rsqrt_count(cyj) * rsqrt_count(cxj));
        for (int c = 0; c < NC; ++c) acc[c] += k * (t * v[c * plane + j] - vi[c]);
      } else {
        for (int c = 0; c < NC; ++c) acc[c] += k * (v[c * plane + j] - vi[c]);
      }
    }
  }
  const T inv_n = Normalized ? T(1.0 / double((cy > 0 ? cy : 1) * (cx > 0 ? cx : 1))) : T(1);
  for (int c = 0; c < NC; ++c) out[c] = Normalized ? acc[c] * inv_n : acc[c];
}

}  // namespace dpst
