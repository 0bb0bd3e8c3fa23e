// CPU kernels of the smooth-local-affine ops (schemas: csrc/dpst.cpp; per-pixel maths:
// csrc/affine_math.h, the same functions the CUDA kernels call). Rows in parallel with at::parallel_for.
//
// The bilateral filter is the cost: (2r+1)^2 taps x 12 coefficients per pixel (961 taps at the default
// radius 15). It is exact (the range term makes it non-separable). Pixels go in blocks of one SIMD
// register along x; for each tap the block's weights (with the vectorisable exp_nonpositive) and 13
// multiply-adds run lane-wise, with the accumulators held in registers across all taps.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../affine_checks.h"
#include "../affine_math.h"

namespace dpst {
namespace {

template <typename T>
void local_affine_fit_kernel(const T* content, const T* output, T* coeffs, int64_t H, int64_t W,
                             double ridge) {
  const int64_t plane = H * W;
  at::parallel_for(0, H, 8, [&](int64_t r0, int64_t r1) {
    T a[kAffineCoeffs];
    for (int64_t y = r0; y < r1; ++y) {
      const int64_t y0 = std::max<int64_t>(y - 1, 0), y1 = std::min(y + 1, H - 1);
      for (int64_t x = 0; x < W; ++x) {
        const int64_t x0 = std::max<int64_t>(x - 1, 0), x1 = std::min(x + 1, W - 1);
        AffineNormal n;
        for (int64_t qy = y0; qy <= y1; ++qy)
          for (int64_t qx = x0; qx <= x1; ++qx) {
            const int64_t q = qy * W + qx;
            n.add(double(content[q]), double(content[plane + q]), double(content[2 * plane + q]),
                  double(output[q]), double(output[plane + q]), double(output[2 * plane + q]));
          }
        affine_solve(n, ridge, a);
        for (int k = 0; k < kAffineCoeffs; ++k) coeffs[k * plane + y * W + x] = a[k];
      }
    }
  });
}

// Lanes of one pixel block: one AVX2 register (8 floats, 4 doubles). The 13 accumulators of a block
// stay in registers across all (2r+1)^2 taps; more lanes would spill them.
template <typename T>
constexpr int kLanes = 32 / int(sizeof(T));

// Output rows per parallel task of the filter (its padded copy holds kBandRows + 2r rows).
constexpr int64_t kBandRows = 32;

template <typename T>
void bilateral_affine_kernel(const T* coeffs, const T* content, T* out, int64_t H, int64_t W,
                             int64_t radius, double edge) {
  constexpr int V = kLanes<T>;
  const int64_t plane = H * W, r = radius;
  const BilateralScales sc = bilateral_scales(int(radius), edge);
  const T spatial = T(sc.spatial), range = T(sc.range);
  // Bands of output rows in parallel. Each band copies the rows its taps reach (r above and below)
  // into padded planes, r zero columns left and r + V right, so that every block of V pixels reads all
  // its taps' columns in bounds without branches; `valid` (1 inside the image, 0 in the margins)
  // zeroes the weight of taps outside the image. Rows need no padding: the dy loop is clipped instead.
  // Per band the copy is 16 planes x (kBandRows + 2r) rows, so memory stays bounded at any image size.
  const int64_t P = W + 2 * r + V, nbands = (H + kBandRows - 1) / kBandRows;
  at::parallel_for(0, nbands, 1, [&](int64_t b0, int64_t b1) {
    std::vector<T> pad;
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t y0 = b * kBandRows, y1 = std::min(H, y0 + kBandRows);
      const int64_t top = std::max<int64_t>(y0 - r, 0), bottom = std::min(H, y1 + r);
      const int64_t pplane = (bottom - top) * P;
      pad.assign(size_t(16) * pplane, T(0));  // planes: guide 0..2, coefficients 3..14, valid 15
      for (int64_t y = top; y < bottom; ++y) {
        T* row = pad.data() + (y - top) * P + r;
        for (int p = 0; p < 3; ++p) std::copy_n(content + p * plane + y * W, W, row + p * pplane);
        for (int k = 0; k < kAffineCoeffs; ++k) std::copy_n(coeffs + k * plane + y * W, W, row + (3 + k) * pplane);
        std::fill_n(row + 15 * pplane, W, T(1));
      }
      const T* G = pad.data();
      const T* A = pad.data() + 3 * pplane;
      const T* M = pad.data() + 15 * pplane;
      for (int64_t y = y0; y < y1; ++y) {
        for (int64_t xb = 0; xb < W; xb += V) {
          const int64_t at_p = (y - top) * P + xb + r;  // the block's first pixel in the padded planes
          T p0[V], p1[V], p2[V], acc[kAffineCoeffs][V], den[V];
          for (int v = 0; v < V; ++v) {
            p0[v] = G[at_p + v];
            p1[v] = G[pplane + at_p + v];
            p2[v] = G[2 * pplane + at_p + v];
            den[v] = T(0);
            for (int k = 0; k < kAffineCoeffs; ++k) acc[k][v] = T(0);
          }
          for (int64_t dy = std::max(-r, -y); dy <= std::min(r, H - 1 - y); ++dy) {
            for (int64_t dx = -r; dx <= r; ++dx) {
              const int64_t q = at_p + dy * P + dx;
              const T s = T(dy * dy + dx * dx) * spatial;
              const T *q0 = G + q, *q1 = G + pplane + q, *q2 = G + 2 * pplane + q, *m = M + q, *a = A + q;
              T w[V];
              for (int v = 0; v < V; ++v) {
                const T d0 = p0[v] - q0[v], d1 = p1[v] - q1[v], d2 = p2[v] - q2[v];
                w[v] = exp_nonpositive(s + (d0 * d0 + d1 * d1 + d2 * d2) * range) * m[v];
                den[v] += w[v];
              }
              for (int k = 0; k < kAffineCoeffs; ++k)
                for (int v = 0; v < V; ++v) acc[k][v] += w[v] * a[k * pplane + v];
            }
          }
          // out_c = A'_c [I; 1] with A' = acc / den (den >= 1: the centre tap has weight 1).
          const int lanes = int(std::min<int64_t>(V, W - xb));
          for (int c = 0; c < 3; ++c)
            for (int v = 0; v < lanes; ++v)
              out[c * plane + y * W + xb + v] =
                  (acc[4 * c][v] * p0[v] + acc[4 * c + 1][v] * p1[v] + acc[4 * c + 2][v] * p2[v] +
                   acc[4 * c + 3][v]) / den[v];
        }
      }
    }
  });
}

at::Tensor local_affine_fit_cpu(const at::Tensor& content_, const at::Tensor& output_, double ridge) {
  check_local_affine_fit(content_, output_, ridge);
  const auto content = content_.contiguous(), output = output_.contiguous();
  const int64_t H = content.size(1), W = content.size(2);
  auto coeffs = at::empty({kAffineCoeffs, H, W}, content.options());
  if (coeffs.numel() == 0) return coeffs;
  AT_DISPATCH_FLOATING_TYPES(content.scalar_type(), "local_affine_fit", [&] {
    local_affine_fit_kernel(content.data_ptr<scalar_t>(), output.data_ptr<scalar_t>(),
                            coeffs.data_ptr<scalar_t>(), H, W, ridge);
  });
  return coeffs;
}

at::Tensor bilateral_affine_apply_cpu(const at::Tensor& coeffs_, const at::Tensor& content_,
                                      int64_t radius, double edge) {
  check_bilateral_affine(coeffs_, content_, radius, edge);
  const auto coeffs = coeffs_.contiguous(), content = content_.contiguous();
  const int64_t H = content.size(1), W = content.size(2);
  auto out = at::empty({3, H, W}, content.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(content.scalar_type(), "bilateral_affine_apply", [&] {
    bilateral_affine_kernel(coeffs.data_ptr<scalar_t>(), content.data_ptr<scalar_t>(),
                            out.data_ptr<scalar_t>(), H, W, radius, edge);
  });
  return out;
}

}  // namespace
}  // namespace dpst

TORCH_LIBRARY_IMPL(dpst, CPU, m) {
  m.impl("local_affine_fit", &dpst::local_affine_fit_cpu);
  m.impl("bilateral_affine_apply", &dpst::bilateral_affine_apply_cpu);
}
