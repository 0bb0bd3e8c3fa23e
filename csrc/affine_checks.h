// Argument checks of the smooth-local-affine ops (csrc/dpst.cpp), shared by the CPU and CUDA entry
// points so both backends reject bad input with the same message naming the argument.
#pragma once

#include "checks.h"

namespace dpst {

inline void check_affine_guide(const at::Tensor& content) {
  TORCH_CHECK(content.dim() == 3 && content.size(0) == 3,
              "content must have shape (3, H, W) (RGB, channels first), got ", shape_str(content));
  TORCH_CHECK(content.scalar_type() == at::kFloat || content.scalar_type() == at::kDouble,
              "content must be float32 or float64, got ", content.scalar_type());
}

// t must have shape (planes, H, W) with content's H, W, dtype and device.
inline void check_like_content(const at::Tensor& content, const at::Tensor& t, int64_t planes,
                               const char* name) {
  TORCH_CHECK(t.dim() == 3 && t.size(0) == planes && t.size(1) == content.size(1) &&
                  t.size(2) == content.size(2),
              name, " must have shape (", planes, ", H, W) = (", planes, ", ", content.size(1), ", ",
              content.size(2), ") like content, got ", shape_str(t));
  TORCH_CHECK(t.scalar_type() == content.scalar_type(), name, " must have content's dtype ",
              content.scalar_type(), ", got ", t.scalar_type());
  TORCH_CHECK(t.device() == content.device(), name, " must be on content's device ", content.device(),
              ", got ", t.device());
}

inline void check_local_affine_fit(const at::Tensor& content, const at::Tensor& output, double ridge) {
  check_affine_guide(content);
  check_like_content(content, output, 3, "output");
  TORCH_CHECK(std::isfinite(ridge) && ridge > 0.0, "ridge must be a positive finite number, got ", ridge);
  check_finite(content, "content");
  check_finite(output, "output");
}

// Largest radius: a (2r+1)^2 neighbourhood must stay a sane amount of work and fit int arithmetic.
constexpr int64_t kMaxBilateralRadius = 1000;

inline void check_bilateral_affine(const at::Tensor& coeffs, const at::Tensor& content, int64_t radius,
                                   double edge) {
  check_affine_guide(content);
  check_like_content(content, coeffs, 12, "coeffs");
  TORCH_CHECK(radius >= 0 && radius <= kMaxBilateralRadius, "radius must lie in 0..",
              kMaxBilateralRadius, ", got ", radius);
  TORCH_CHECK(std::isfinite(edge) && edge > 0.0, "edge must be a positive finite number, got ", edge);
  check_finite(content, "content");
  check_finite(coeffs, "coeffs");
}

}  // namespace dpst
