// Torch entry points of the smooth-local-affine CUDA kernels, written once for two backends like
// csrc/cuda/laplacian_ops.h:
//   * csrc/cuda/affine_cuda.cu  (nvcc)  CUDA tensors, real launches     -> dpst::*     CUDA key
//   * csrc/emu/affine_emu.cpp   (g++)   CPU tensors, emulated launches  -> dpst_emu::*
// A Backend provides Scope(const at::Tensor&) (device guard + `stream`), shape() (the
// AffineLaunchShape) and check_launch(). Order in every entry point: argument checks, device guard and
// stream, early return on empty input, launch, launch check.
#pragma once

#include <ATen/Dispatch.h>
#include <torch/types.h>

#include "../affine_checks.h"
#include "affine_kernels.cuh"

namespace dpst {
namespace cuda {

inline void check_affine_rows(const at::Tensor& content, const AffineLaunchShape& shape) {
  TORCH_CHECK(content.size(1) <= affine_max_image_rows(shape), "content must have at most ",
              affine_max_image_rows(shape), " rows for the CUDA kernels (grid limit), got ",
              content.size(1));
}

template <typename Backend>
struct AffineOps {
  static at::Tensor local_affine_fit(const at::Tensor& content_, const at::Tensor& output_, double ridge) {
    check_local_affine_fit(content_, output_, ridge);
    const auto shape = Backend::shape();
    check_affine_rows(content_, shape);
    typename Backend::Scope scope(content_);
    const auto content = content_.contiguous(), output = output_.contiguous();
    const int64_t H = content.size(1), W = content.size(2);
    auto coeffs = at::empty({kAffineCoeffs, H, W}, content.options());
    if (coeffs.numel() == 0) return coeffs;
    AT_DISPATCH_FLOATING_TYPES(content.scalar_type(), "local_affine_fit", [&] {
      launch_local_affine_fit(content.data_ptr<scalar_t>(), output.data_ptr<scalar_t>(),
                              coeffs.data_ptr<scalar_t>(), H, W, ridge, scope.stream, shape);
    });
    Backend::check_launch();
    return coeffs;
  }

  static at::Tensor bilateral_affine_apply(const at::Tensor& coeffs_, const at::Tensor& content_,
                                           int64_t radius, double edge) {
    check_bilateral_affine(coeffs_, content_, radius, edge);
    const auto shape = Backend::shape();
    check_affine_rows(content_, shape);
    typename Backend::Scope scope(content_);
    const auto coeffs = coeffs_.contiguous(), content = content_.contiguous();
    const int64_t H = content.size(1), W = content.size(2);
    auto out = at::empty({3, H, W}, content.options());
    if (out.numel() == 0) return out;
    AT_DISPATCH_FLOATING_TYPES(content.scalar_type(), "bilateral_affine_apply", [&] {
      launch_bilateral_affine(coeffs.data_ptr<scalar_t>(), content.data_ptr<scalar_t>(),
                              out.data_ptr<scalar_t>(), H, W, int(radius), edge, scope.stream, shape);
    });
    Backend::check_launch();
    return out;
  }
};

// Registers the smooth-local-affine ops of csrc/dpst.cpp's contract on a library.
template <typename Backend, typename Library>
void register_affine_ops(Library& m) {
  m.impl("local_affine_fit", &AffineOps<Backend>::local_affine_fit);
  m.impl("bilateral_affine_apply", &AffineOps<Backend>::bilateral_affine_apply);
}

}  // namespace cuda
}  // namespace dpst
