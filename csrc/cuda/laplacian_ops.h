// Torch entry points of the CUDA kernels, written once for two backends:
//   * csrc/cuda/laplacian_cuda.cu  (nvcc)  CUDA tensors, real launches       -> dpst::*   CUDA key
//   * csrc/emu/laplacian_emu.cpp   (g++)   CPU tensors, emulated launches    -> dpst_emu::*
// so the tests of the emulated ops also exercise the checks, allocation, empty-input handling and
// launch configuration the GPU build runs. A Backend provides
//   Scope(const at::Tensor&)  device guard + `stream` member (current stream of the tensor's device)
//   shape()                   the LaunchShape (block sizes)
//   check_launch()            launch-error check after each op's launches
// Every entry point follows the same order: argument checks, device guard and stream, early return on
// empty input, launch, launch check.
#pragma once

#include <ATen/Dispatch.h>
#include <torch/types.h>

#include <tuple>

#include "../checks.h"
#include "laplacian_kernels.cuh"

namespace dpst {
namespace cuda {

inline void check_rows(const at::Tensor& image, const LaunchShape& shape) {
  TORCH_CHECK(image.size(1) <= max_image_rows(shape), "image must have at most ",
              max_image_rows(shape), " rows for the CUDA kernels (grid limit), got ", image.size(1));
}

template <typename Backend>
struct Ops {
  static at::Tensor window_stats(const at::Tensor& image_, double eps) {
    check_image(image_);
    check_eps(eps);
    check_finite(image_, "image");
    check_rows(image_, Backend::shape());
    typename Backend::Scope scope(image_);
    const auto image = image_.contiguous();
    const int64_t H = image.size(1), W = image.size(2);
    auto stats = at::empty({9, windows_along(H), windows_along(W)}, image.options());
    if (stats.numel() == 0) return stats;
    AT_DISPATCH_FLOATING_TYPES(image.scalar_type(), "window_stats", [&] {
      launch_window_stats(image.data_ptr<scalar_t>(), stats.data_ptr<scalar_t>(), H, W, eps,
                          scope.stream, Backend::shape());
    });
    Backend::check_launch();
    return stats;
  }

  static at::Tensor laplacian_matvec(const at::Tensor& image_, const at::Tensor& stats_,
                                     const at::Tensor& v_) {
    check_stats(image_, stats_);
    check_values(image_, v_, "v");
    check_rows(image_, Backend::shape());
    typename Backend::Scope scope(image_);
    const auto image = image_.contiguous(), stats = stats_.contiguous(), v = v_.contiguous();
    const int64_t C = v.size(0), H = v.size(1), W = v.size(2);
    if (stats.numel() == 0) return at::zeros_like(v);  // no 3x3 window fits: M = 0
    auto out = at::empty_like(v);
    if (out.numel() == 0) return out;
    AT_DISPATCH_FLOATING_TYPES(image.scalar_type(), "laplacian_matvec", [&] {
      launch_laplacian_matvec(image.data_ptr<scalar_t>(), stats.data_ptr<scalar_t>(),
                              v.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), C, H, W,
                              scope.stream, Backend::shape());
    });
    Backend::check_launch();
    return out;
  }

  static at::Tensor laplacian_diagonal(const at::Tensor& image_, const at::Tensor& stats_) {
    check_stats(image_, stats_);
    check_rows(image_, Backend::shape());
    typename Backend::Scope scope(image_);
    const auto image = image_.contiguous(), stats = stats_.contiguous();
    const int64_t H = image.size(1), W = image.size(2);
    if (stats.numel() == 0) return at::zeros({H, W}, image.options());
    auto out = at::empty({H, W}, image.options());
    AT_DISPATCH_FLOATING_TYPES(image.scalar_type(), "laplacian_diagonal", [&] {
      launch_laplacian_diagonal(image.data_ptr<scalar_t>(), stats.data_ptr<scalar_t>(),
                                out.data_ptr<scalar_t>(), H, W, scope.stream, Backend::shape());
    });
    Backend::check_launch();
    return out;
  }

  static std::tuple<at::Tensor, at::Tensor, at::Tensor> laplacian_csr(const at::Tensor& image_,
                                                                      const at::Tensor& stats_) {
    check_stats(image_, stats_);
    typename Backend::Scope scope(image_);
    const auto image = image_.contiguous(), stats = stats_.contiguous();
    const int64_t H = image.size(1), W = image.size(2), N = H * W, width = csr_row_width(H, W);
    const int64_t nnz = N * width;
    // The kernel indexes the entries of one image row with int.
    TORCH_CHECK(W * width < (int64_t(1) << 31), "image width must be below ",
                ((int64_t(1) << 31) / 25), " pixels for laplacian_csr, got ", W);
    const auto index_type = nnz >= (int64_t(1) << 31) ? at::kLong : at::kInt;
    auto crow = at::empty({N + 1}, image.options().dtype(index_type));
    auto col = at::empty({nnz}, image.options().dtype(index_type));
    auto val = at::empty({nnz}, image.options());
    if (N == 0) {
      crow.zero_();
      return {crow, col, val};
    }
    AT_DISPATCH_FLOATING_TYPES(image.scalar_type(), "laplacian_csr", [&] {
      AT_DISPATCH_INDEX_TYPES(index_type, "laplacian_csr", [&] {
        launch_laplacian_csr(image.data_ptr<scalar_t>(), stats.data_ptr<scalar_t>(),
                             crow.data_ptr<index_t>(), col.data_ptr<index_t>(),
                             val.data_ptr<scalar_t>(), H, W, scope.stream, Backend::shape());
      });
    });
    Backend::check_launch();
    return {crow, col, val};
  }

  static at::Tensor laplacian_stencil(const at::Tensor& image_, double eps) {
    check_image(image_);
    check_eps(eps);
    check_finite(image_, "image");
    check_rows(image_, Backend::shape());
    typename Backend::Scope scope(image_);
    const auto image = image_.contiguous();
    const int64_t H = image.size(1), W = image.size(2);
    if (H < 3 || W < 3) return at::zeros({kStencilOffsets, H, W}, image.options());  // no window: M = 0
    auto K = at::empty({kStencilOffsets, H, W}, image.options());
    AT_DISPATCH_FLOATING_TYPES(image.scalar_type(), "laplacian_stencil", [&] {
      launch_laplacian_stencil(image.data_ptr<scalar_t>(), K.data_ptr<scalar_t>(), H, W, eps,
                               scope.stream, Backend::shape());
    });
    Backend::check_launch();
    return K;
  }

  static void stencil_matvec_out(const at::Tensor& stencil_, const at::Tensor& v_, const at::Tensor& out,
                                 bool normalized) {
    check_stencil(stencil_, v_);
    check_rows(stencil_, Backend::shape());
    typename Backend::Scope scope(v_);
    const auto K = stencil_.contiguous(), v = v_.contiguous();
    check_stencil_out(K, v, out);  // (the overlap with what the kernels read: copies of strided inputs do not)
    const int64_t C = v.size(0), H = v.size(1), W = v.size(2);
    if (out.numel() == 0) return;
    AT_DISPATCH_FLOATING_TYPES(v.scalar_type(), "stencil_matvec", [&] {
      launch_stencil_matvec(K.data_ptr<scalar_t>(), v.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
                            C, H, W, normalized, scope.stream, Backend::shape());
    });
    Backend::check_launch();
  }

  static at::Tensor stencil_matvec_dots(const at::Tensor& stencil_, const at::Tensor& v_, const at::Tensor& out,
                                        bool normalized) {
    check_stencil(stencil_, v_);
    check_rows(stencil_, Backend::shape());
    typename Backend::Scope scope(v_);
    const auto K = stencil_.contiguous(), v = v_.contiguous();
    check_stencil_out(K, v, out);
    const int64_t C = v.size(0), H = v.size(1), W = v.size(2);
    const auto f64 = v.options().dtype(at::kDouble);
    if (out.numel() == 0) return at::zeros({3, C}, f64);
    const auto shape = Backend::shape();
    const dim3 grid = stencil_grid(H, W, shape);
    auto partials = at::empty({3 * C * int64_t(grid.x) * grid.y}, f64);
    auto totals = at::empty({3, C}, f64);
    AT_DISPATCH_FLOATING_TYPES(v.scalar_type(), "stencil_matvec_dots", [&] {
      launch_stencil_matvec_dots(K.data_ptr<scalar_t>(), v.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
                                 C, H, W, normalized, partials.data_ptr<double>(), totals.data_ptr<double>(),
                                 scope.stream, shape);
    });
    Backend::check_launch();
    return totals;
  }

  static at::Tensor stencil_matvec(const at::Tensor& stencil_, const at::Tensor& v_, bool normalized) {
    check_stencil(stencil_, v_);
    auto out = at::empty(v_.sizes(), v_.options());
    stencil_matvec_out(stencil_, v_, out, normalized);
    return out;
  }

  static at::Tensor photoreal_loss(const at::Tensor& image_, const at::Tensor& stats_,
                                   const at::Tensor& v_) {
    check_stats(image_, stats_);
    check_values(image_, v_, "v");
    check_rows(image_, Backend::shape());
    typename Backend::Scope scope(image_);
    const auto image = image_.contiguous(), stats = stats_.contiguous(), v = v_.contiguous();
    const int64_t C = v.size(0), H = v.size(1), W = v.size(2);
    if (stats.numel() == 0 || v.numel() == 0) return at::zeros({}, image.options());
    const auto shape = Backend::shape();
    const dim3 grid = loss_grid(H, W, shape);
    const auto f64 = image.options().dtype(at::kDouble);
    auto partials = at::empty({int64_t(grid.x) * grid.y}, f64);
    auto total = at::empty({}, f64);
    AT_DISPATCH_FLOATING_TYPES(image.scalar_type(), "photoreal_loss", [&] {
      launch_photoreal_loss(image.data_ptr<scalar_t>(), stats.data_ptr<scalar_t>(),
                            v.data_ptr<scalar_t>(), C, H, W, partials.data_ptr<double>(),
                            total.data_ptr<double>(), scope.stream, shape);
    });
    Backend::check_launch();
    return total.to(image.scalar_type());
  }
};

// Registers the nine ops of csrc/dpst.cpp's contract on a library (TORCH_LIBRARY_IMPL or TORCH_LIBRARY).
template <typename Backend, typename Library>
void register_ops(Library& m) {
  m.impl("window_stats", &Ops<Backend>::window_stats);
  m.impl("laplacian_matvec", &Ops<Backend>::laplacian_matvec);
  m.impl("laplacian_diagonal", &Ops<Backend>::laplacian_diagonal);
  m.impl("laplacian_csr", &Ops<Backend>::laplacian_csr);
  m.impl("photoreal_loss", &Ops<Backend>::photoreal_loss);
  m.impl("laplacian_stencil", &Ops<Backend>::laplacian_stencil);
  m.impl("stencil_matvec", &Ops<Backend>::stencil_matvec);
  m.impl("stencil_matvec_out", &Ops<Backend>::stencil_matvec_out);
  m.impl("stencil_matvec_dots", &Ops<Backend>::stencil_matvec_dots);
}

}  // namespace cuda
}  // namespace dpst
