// Argument checks shared by the CPU and CUDA entry points of every op (one wording everywhere).
// Each message names the argument and the rule it broke.
#pragma once

#include <ATen/MemoryOverlap.h>
#include <torch/types.h>

#include <string>

namespace dpst {

inline std::string shape_str(const at::Tensor& t) { return c10::str(t.sizes()); }

// Number of 3x3 windows along an axis of length n (windows lie fully inside the image).
inline int64_t windows_along(int64_t n) { return n >= 3 ? n - 2 : 0; }

inline void check_image(const at::Tensor& image) {
  TORCH_CHECK(image.dim() == 3 && image.size(0) == 3,
              "image must have shape (3, H, W) (RGB, channels first), got ", shape_str(image));
  TORCH_CHECK(image.scalar_type() == at::kFloat || image.scalar_type() == at::kDouble,
              "image must be float32 or float64, got ", image.scalar_type());
}

inline void check_stats(const at::Tensor& image, const at::Tensor& stats) {
  check_image(image);
  const int64_t hw = windows_along(image.size(1)), ww = windows_along(image.size(2));
  TORCH_CHECK(stats.dim() == 3 && stats.size(0) == 9 && stats.size(1) == hw && stats.size(2) == ww,
              "stats must have shape (9, H-2, W-2) = (9, ", hw, ", ", ww, ") for an image of shape ",
              shape_str(image), ", got ", shape_str(stats), " (compute it with window_stats(image))");
  TORCH_CHECK(stats.scalar_type() == image.scalar_type(), "stats must have the image's dtype ",
              image.scalar_type(), ", got ", stats.scalar_type());
  TORCH_CHECK(stats.device() == image.device(), "stats must be on the image's device ",
              image.device(), ", got ", stats.device());
}

inline void check_values(const at::Tensor& image, const at::Tensor& v, const char* name) {
  TORCH_CHECK(v.dim() == 3 && v.size(1) == image.size(1) && v.size(2) == image.size(2),
              name, " must have shape (C, H, W) with the image's H and W (", image.size(1), ", ",
              image.size(2), "), got ", shape_str(v));
  TORCH_CHECK(v.scalar_type() == image.scalar_type(), name, " must have the image's dtype ",
              image.scalar_type(), ", got ", v.scalar_type());
  TORCH_CHECK(v.device() == image.device(), name, " must be on the image's device ",
              image.device(), ", got ", v.device());
}

inline void check_eps(double eps) {
  TORCH_CHECK(std::isfinite(eps) && eps > 0.0, "eps must be a positive finite number, got ", eps);
}

// Every value is finite iff the smallest and the largest are (both propagate NaN). Unlike isfinite(t).all(),
// which allocates |t| and three boolean masks (at 12 MP in float32: 240 MiB, kept in the heap afterwards),
// aminmax holds no image-sized temporary.
inline void check_finite(const at::Tensor& t, const char* name) {
  bool ok = true;
  if (t.numel() > 0) {
    const auto [lo, hi] = at::aminmax(t);
    ok = (at::isfinite(lo) & at::isfinite(hi)).item<bool>();
  }
  TORCH_CHECK(ok, name, " must contain only finite values (found NaN or Inf)");
}

// The stencil form of M (csrc/window_math.h): (12, H, W), applied to v (C, H, W).
inline void check_stencil(const at::Tensor& stencil, const at::Tensor& v) {
  TORCH_CHECK(stencil.dim() == 3 && stencil.size(0) == 12, "stencil must have shape (12, H, W) ",
              "(from laplacian_stencil), got ", shape_str(stencil));
  TORCH_CHECK(stencil.scalar_type() == at::kFloat || stencil.scalar_type() == at::kDouble,
              "stencil must be float32 or float64, got ", stencil.scalar_type());
  TORCH_CHECK(v.dim() == 3 && v.size(1) == stencil.size(1) && v.size(2) == stencil.size(2), "v must have ",
              "shape (C, H, W) with the stencil's H and W (", stencil.size(1), ", ", stencil.size(2),
              "), got ", shape_str(v));
  TORCH_CHECK(v.scalar_type() == stencil.scalar_type(), "v must have the stencil's dtype ",
              stencil.scalar_type(), ", got ", v.scalar_type());
  TORCH_CHECK(v.device() == stencil.device(), "v must be on the stencil's device ", stencil.device(),
              ", got ", v.device());
}

// stencil_matvec_out's output: v's shape, dtype and device, contiguous, sharing no memory with v or the stencil
// (the product reads both while it writes out). Called with the contiguous tensors the kernel reads, so the
// overlap test is decidable.
inline void check_stencil_out(const at::Tensor& stencil, const at::Tensor& v, const at::Tensor& out) {
  TORCH_CHECK(out.sizes() == v.sizes(), "out must have v's shape ", shape_str(v), ", got ", shape_str(out));
  TORCH_CHECK(out.scalar_type() == v.scalar_type(), "out must have v's dtype ", v.scalar_type(), ", got ",
              out.scalar_type());
  TORCH_CHECK(out.device() == v.device(), "out must be on v's device ", v.device(), ", got ", out.device());
  TORCH_CHECK(out.is_contiguous(), "out must be contiguous");
  TORCH_CHECK(at::get_overlap_status(out, v) == at::MemOverlapStatus::No &&
                  at::get_overlap_status(out, stencil) == at::MemOverlapStatus::No,
              "out must not share memory with v or the stencil (the product reads them while it writes out)");
}

// Laplacian row/column count; CSR non-zeros per row (a 5x5 neighbourhood, clamped into the image).
inline int64_t csr_row_width(int64_t h, int64_t w) {
  return std::min<int64_t>(h, 5) * std::min<int64_t>(w, 5);
}

}  // namespace dpst
