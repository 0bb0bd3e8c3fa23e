// Per-pixel arithmetic of the smooth local affine post-processing, written once.
//
// `__host__ __device__` under nvcc and plain inline C++ otherwise (DPST_HD of csrc/window_math.h), so
// the CPU ops (csrc/cpu/affine_cpu.cpp), the CUDA kernels (csrc/cuda/affine_kernels.cuh) and their
// host-emulation build run exactly this arithmetic. Nothing here knows about torch. The readable torch
// definition the ops match is dpst_ext/engine/postprocess.py.
//
// Conventions:
//   * content I and output O: planar (3, H, W); coefficients: planar (12, H, W), A_p row-major 3x4,
//     plane c*4 + k = output colour c, input k = (R, G, B, 1).
//   * fit: A_p = argmin_A sum_{j in w_p} |A [I_j; 1] - O_j|^2 + ridge |A[:, :3]|_F^2 over p's 3x3
//     window clipped at the border, i.e. (X^T X + ridge diag(1,1,1,0)) A^T = X^T Y (sums, not means).
//   * bilateral: A'_p = sum_q w_pq A_q / sum_q w_pq over q in p's (2r+1)^2 neighbourhood inside the
//     image, w_pq = exp(-|p-q|^2 / (2 (r/3)^2) - |I_p - I_q|^2 / (2 edge^2)); out_p = A'_p [I_p; 1].
#pragma once

#include <cmath>
#include <bit>
#include <cstdint>

#include "window_math.h"  // DPST_HD

namespace dpst {

constexpr int kAffineCoeffs = 12;  // 3 output colours x (R, G, B, 1)

// Normal equations of one pixel's fit, accumulated in double. Unknowns ordered (1, R, G, B): with the
// constant first, Cholesky's first pivot is the pixel count and the colour block's Schur complement is
// the centred scatter + ridge I, whose pivots are >= ridge, so the factorisation is as well conditioned
// as an explicitly centred solve (raw colour sums first would put a near-cancelling pivot last).
struct AffineNormal {
  double s[10] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0};  // lower triangle of X^T X, row-major (1,R,G,B)
  double b[4][3] = {{0, 0, 0}, {0, 0, 0}, {0, 0, 0}, {0, 0, 0}};  // X^T Y: row = unknown, col = colour

  DPST_HD void add(double r, double g, double bl, double o0, double o1, double o2) {
    const double x[4] = {1.0, r, g, bl};
    int k = 0;
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j <= i; ++j) s[k++] += x[i] * x[j];
    for (int i = 0; i < 4; ++i) {
      b[i][0] += x[i] * o0;
      b[i][1] += x[i] * o1;
      b[i][2] += x[i] * o2;
    }
  }
};

// Solves (X^T X + ridge diag(0,1,1,1)) Z = X^T Y (ordering (1,R,G,B)) by Cholesky, ridge > 0 and at
// least one pixel added, and writes A in the 3x4 layout above: a[c*4 + k], k = R, G, B, then 1.
template <typename T>
DPST_HD inline void affine_solve(const AffineNormal& n, double ridge, T a[kAffineCoeffs]) {
  double m[4][4];
  int k = 0;
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j <= i; ++j) m[i][j] = n.s[k++];
  for (int i = 1; i < 4; ++i) m[i][i] += ridge;
  // L L^T = m, in place in the lower triangle. The floor only guards against rounding: the first pivot
  // is the pixel count (>= 1), the others are >= ridge in exact arithmetic.
  double l[4][4];
  for (int j = 0; j < 4; ++j) {
    double d = m[j][j];
    for (int p = 0; p < j; ++p) d -= l[j][p] * l[j][p];
    l[j][j] = sqrt(fmax(d, 0.5 * ridge));
    for (int i = j + 1; i < 4; ++i) {
      double v = m[i][j];
      for (int p = 0; p < j; ++p) v -= l[i][p] * l[j][p];
      l[i][j] = v / l[j][j];
    }
  }
  for (int c = 0; c < 3; ++c) {
    double z[4];
    for (int i = 0; i < 4; ++i) {  // L y = b
      double v = n.b[i][c];
      for (int p = 0; p < i; ++p) v -= l[i][p] * z[p];
      z[i] = v / l[i][i];
    }
    for (int i = 3; i >= 0; --i) {  // L^T z = y
      double v = z[i];
      for (int p = i + 1; p < 4; ++p) v -= l[p][i] * z[p];
      z[i] = v / l[i][i];
    }
    a[c * 4 + 0] = T(z[1]);
    a[c * 4 + 1] = T(z[2]);
    a[c * 4 + 2] = T(z[3]);
    a[c * 4 + 3] = T(z[0]);
  }
}

// Exponent of the bilateral weight factors: w_pq = exp(spatial(dy, dx) + range(|I_p - I_q|^2)).
struct BilateralScales {
  double spatial;  // -1 / (2 (r/3)^2), multiplies dy^2 + dx^2 (0 when r = 0: only the centre tap)
  double range;    // -1 / (2 edge^2), multiplies the squared colour distance
};

DPST_HD inline BilateralScales bilateral_scales(int radius, double edge) {
  const double s = radius / 3.0;
  return BilateralScales{radius > 0 ? -1.0 / (2.0 * s * s) : 0.0, -1.0 / (2.0 * edge * edge)};
}

// The weight's exponent for a tap at offset (dy, dx) whose guide colour differs by (d0, d1, d2).
template <typename T>
DPST_HD inline T bilateral_exponent(int dy, int dx, T d0, T d1, T d2, T spatial, T range) {
  return T(dy * dy + dx * dx) * spatial + (d0 * d0 + d1 * d1 + d2 * d2) * range;
}

// exp(x) for x <= 0 in plain arithmetic that compilers vectorise (the CPU op evaluates 961 weights per
// pixel at radius 15; libm's exp does not vectorise without -ffast-math). Cody-Waite reduction
// x = n ln2 + r, |r| <= ln2/2, Taylor polynomial of degree 13 (double) / 7 (float): truncation below
// 4e-18 / 5e-9 relative, so within ~2 ulp of exp. x is clamped at -708 (double) / -87 (float), so
// weights that would underflow come out as ~1e-308 (1e-38) instead of 0: next to the centre tap's
// weight 1 that changes nothing. The clamp compares the magnitude's bit pattern (ordered like the
// magnitude) as an integer and selects with a mask: branch-free integer code vectorises, while a
// floating-point compare (which may trap) or a select gcc turns into a branch does not.
// Host only: the CUDA kernels use the hardware exp.
inline double exp_nonpositive(double x) {
  const int64_t xb = std::bit_cast<int64_t>(x);
  const int64_t clamp = -int64_t((xb & INT64_MAX) > std::bit_cast<int64_t>(708.0));  // all ones: |x| > 708
  x = std::bit_cast<double>((xb & ~clamp) | (std::bit_cast<int64_t>(-708.0) & clamp));
  const double shifter = 6755399441055744.0;  // 1.5 * 2^52: t's low mantissa bits hold round(x/ln2)
  const double t = x * 1.4426950408889634 + shifter;
  const double n = t - shifter;
  const double r = (x - n * 0.6931471803691238) - n * 1.9082149292705877e-10;
  double p = 1.0 / 6227020800.0;
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  // 2^n: (n + 1023) in the exponent field, n in [-1022, 0]; the shift drops t's own exponent bits.
  const uint64_t scale = (std::bit_cast<uint64_t>(t) + 1023) << 52;
  return p * std::bit_cast<double>(scale);
}

inline float exp_nonpositive(float x) {
  const int32_t xb = std::bit_cast<int32_t>(x);
  const int32_t clamp = -int32_t((xb & INT32_MAX) > std::bit_cast<int32_t>(87.0f));
  x = std::bit_cast<float>((xb & ~clamp) | (std::bit_cast<int32_t>(-87.0f) & clamp));
  const float shifter = 12582912.0f;  // 1.5 * 2^23
  const float t = x * 1.44269504f + shifter;
  const float n = t - shifter;
  const float r = (x - n * 0.693145752f) - n * 1.42860677e-6f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const uint32_t scale = (std::bit_cast<uint32_t>(t) + 127) << 23;
  return p * std::bit_cast<float>(scale);
}

}  // namespace dpst
