// CPU kernels of the smooth-local-affine ops (schemas: csrc/dpst.cpp; per-pixel maths:
// csrc/affine_math.h, the same functions the CUDA kernels call). Rows in parallel with at::parallel_for.
//
// The bilateral filter is the cost: (2r+1)^2 taps x 12 coefficients per pixel (961 taps at the default
// radius 15). It is exact (the range term makes it non-separable): for each output row and each tap
// offset (dy, dx), the loops run along x over contiguous memory, so the weights (with the vectorisable
// exp_nonpositive) and the 12 multiply-adds vectorise; a chunk of kChunk pixels keeps the 13
// accumulator rows in L1.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../affine_checks.h"
#include "../affine_math.h"

namespace dpst {
namespace {

constexpr int64_t kChunk = 128;

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

template <typename T>
void bilateral_affine_kernel(const T* coeffs, const T* content, T* out, int64_t H, int64_t W,
                             int64_t radius, double edge) {
  const int64_t plane = H * W, r = radius;
  const BilateralScales sc = bilateral_scales(int(radius), edge);
  const T spatial = T(sc.spatial), range = T(sc.range);
  const T *G0 = content, *G1 = content + plane, *G2 = content + 2 * plane;
  // Work per row ~ (2r+1)^2 W taps: a few rows per task at small radii, one at large ones.
  const int64_t grain = std::max<int64_t>(1, 65536 / ((2 * r + 1) * (2 * r + 1) * std::max<int64_t>(W, 1)));
  at::parallel_for(0, H, grain, [&](int64_t r0, int64_t r1) {
    std::vector<T> num(kAffineCoeffs * kChunk), den(kChunk), wgt(kChunk);
    for (int64_t y = r0; y < r1; ++y) {
      for (int64_t x0 = 0; x0 < W; x0 += kChunk) {
        const int64_t x1 = std::min(W, x0 + kChunk);
        std::fill(num.begin(), num.end(), T(0));
        std::fill(den.begin(), den.end(), T(0));
        const T *p0 = G0 + y * W, *p1 = G1 + y * W, *p2 = G2 + y * W;
        for (int64_t dy = std::max(-r, -y); dy <= std::min(r, H - 1 - y); ++dy) {
          const int64_t qy = y + dy;
          for (int64_t dx = -r; dx <= r; ++dx) {
            // x such that the tap x + dx lies inside the image
            const int64_t xa = std::max(x0, -dx), xb = std::min(x1, W - dx);
            if (xa >= xb) continue;
            const T s = T(dy * dy + dx * dx) * spatial;
            const T *q0 = G0 + qy * W + dx, *q1 = G1 + qy * W + dx, *q2 = G2 + qy * W + dx;
            T* w = wgt.data() - x0;
            for (int64_t x = xa; x < xb; ++x) {
              const T d0 = p0[x] - q0[x], d1 = p1[x] - q1[x], d2 = p2[x] - q2[x];
              w[x] = exp_nonpositive(s + (d0 * d0 + d1 * d1 + d2 * d2) * range);
            }
            T* dn = den.data() - x0;
            for (int64_t x = xa; x < xb; ++x) dn[x] += w[x];
            for (int k = 0; k < kAffineCoeffs; ++k) {
              const T* aq = coeffs + k * plane + qy * W + dx;
              T* nk = num.data() + k * kChunk - x0;
              for (int64_t x = xa; x < xb; ++x) nk[x] += w[x] * aq[x];
            }
          }
        }
        // out_c = (A'_c [I; 1]) with A' = num / den (den >= 1: the centre tap has weight 1).
        for (int c = 0; c < 3; ++c) {
          const T *n0 = num.data() + (c * 4) * kChunk - x0, *n1 = n0 + kChunk, *n2 = n1 + kChunk,
                  *n3 = n2 + kChunk;
          const T* dn = den.data() - x0;
          T* o = out + c * plane + y * W;
          for (int64_t x = x0; x < x1; ++x)
            o[x] = (n0[x] * p0[x] + n1[x] * p1[x] + n2[x] * p2[x] + n3[x]) / dn[x];
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
