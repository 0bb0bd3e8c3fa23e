// Torch entry points of the fused CG passes' CUDA kernels (csrc/cuda/pcg_kernels.cuh), written once for
// the two backends of csrc/cuda/laplacian_ops.h: csrc/cuda/laplacian_cuda.cu (nvcc, CUDA tensors, dpst::*
// on the CUDA key) and csrc/emu/laplacian_emu.cpp (g++, CPU tensors, emulated launches, dpst_emu::*). Same
// argument checks as the CPU kernels (csrc/pcg_checks.h); the per-channel coefficients go to the device as
// a small float64 tensor; the sums come back as float64 tensors on the device.
#pragma once

#include <torch/types.h>

#include <optional>
#include <vector>

#include "../pcg_checks.h"
#include "pcg_kernels.cuh"

namespace dpst {
namespace cuda {

// The channels go on gridDim.y, which CUDA caps at 65535.
inline void check_channels(const at::Tensor& v) {
  TORCH_CHECK(v.size(0) <= 65535, "the CG vectors must have at most 65535 channels for the CUDA kernels (grid ",
              "limit), got ", v.size(0));
}

template <typename Backend>
struct PcgOps {
  static at::Tensor coeffs(at::ArrayRef<double> a, const at::Tensor& like) {
    return at::tensor(std::vector<double>(a.begin(), a.end()), at::TensorOptions().dtype(at::kDouble))
        .to(like.device());
  }

  static void pcg_direction(const at::Tensor& r, const std::optional<at::Tensor>& inv_diag, at::Tensor p,
                            at::ArrayRef<double> beta, std::optional<at::Tensor> u) {
    const double* d = check_direction_args(r, inv_diag, p, beta, u);
    check_channels(r);
    typename Backend::Scope scope(r);
    const int64_t C = r.size(0), N = r.size(1) * r.size(2);
    if (C * N == 0) return;
    const auto b = coeffs(beta, r);
    const at::ScalarType ut = u.has_value() ? u->scalar_type() : r.scalar_type();
    dispatch_vector_types(r.scalar_type(), ut, [&](auto v_, auto u_) {
      using V = decltype(v_);
      using U = decltype(u_);
      launch_pcg_direction(r.data_ptr<V>(), d, p.data_ptr<V>(), b.data_ptr<double>(),
                           u.has_value() ? u->data_ptr<U>() : static_cast<U*>(nullptr), C, N, scope.stream,
                           Backend::shape());
    });
    Backend::check_launch();
  }

  static at::Tensor pcg_curvature(const at::Tensor& p, const at::Tensor& m, double weight) {
    check_curvature_args(p, m);
    check_channels(p);
    typename Backend::Scope scope(p);
    const int64_t C = p.size(0), N = p.size(1) * p.size(2);
    const auto f64 = p.options().dtype(at::kDouble);
    if (C * N == 0) return at::zeros({C}, f64);
    const auto shape = Backend::shape();
    auto partials = at::empty({C * int64_t(pcg_grid(C, N, shape).x)}, f64);
    auto totals = at::empty({C}, f64);
    dispatch_vector_types(p.scalar_type(), m.scalar_type(), [&](auto v_, auto m_) {
      using V = decltype(v_);
      using M = decltype(m_);
      launch_pcg_curvature(p.data_ptr<V>(), m.data_ptr<M>(), weight, C, N, partials.data_ptr<double>(),
                           totals.data_ptr<double>(), scope.stream, shape);
    });
    Backend::check_launch();
    return totals;
  }

  static at::Tensor pcg_update(at::Tensor x, at::Tensor r, const at::Tensor& p, const at::Tensor& m, double weight,
                               at::ArrayRef<double> alpha, const std::optional<at::Tensor>& inv_diag) {
    const double* d = check_update_args(x, r, p, m, alpha, inv_diag);
    check_channels(p);
    typename Backend::Scope scope(p);
    const int64_t C = p.size(0), N = p.size(1) * p.size(2);
    const auto f64 = p.options().dtype(at::kDouble);
    if (C * N == 0) return at::zeros({2, C}, f64);
    const auto shape = Backend::shape();
    const auto a = coeffs(alpha, p);
    auto partials = at::empty({2 * C * int64_t(pcg_grid(C, N, shape).x)}, f64);
    auto totals = at::empty({2, C}, f64);
    dispatch_vector_types(p.scalar_type(), m.scalar_type(), [&](auto v_, auto m_) {
      using V = decltype(v_);
      using M = decltype(m_);
      launch_pcg_update(x.data_ptr<V>(), r.data_ptr<V>(), p.data_ptr<V>(), m.data_ptr<M>(), weight,
                        a.data_ptr<double>(), d, C, N, partials.data_ptr<double>(), totals.data_ptr<double>(),
                        scope.stream, shape);
    });
    Backend::check_launch();
    return totals;
  }

  static at::Tensor pcg_step(at::Tensor x, at::Tensor r, at::Tensor p, const at::Tensor& m, double weight,
                             at::ArrayRef<double> alpha, at::ArrayRef<double> beta) {
    check_step_args(x, r, p, m, alpha, beta);
    check_channels(p);
    typename Backend::Scope scope(p);
    const int64_t C = p.size(0), N = p.size(1) * p.size(2);
    const auto f64 = p.options().dtype(at::kDouble);
    if (C * N == 0) return at::zeros({C}, f64);
    const auto shape = Backend::shape();
    const auto a = coeffs(alpha, p), b = coeffs(beta, p);
    auto partials = at::empty({C * int64_t(pcg_grid(C, N, shape).x)}, f64);
    auto totals = at::empty({C}, f64);
    dispatch_vector_types(p.scalar_type(), m.scalar_type(), [&](auto v_, auto m_) {
      using V = decltype(v_);
      using M = decltype(m_);
      launch_pcg_step(x.data_ptr<V>(), r.data_ptr<V>(), p.data_ptr<V>(), m.data_ptr<M>(), weight,
                      a.data_ptr<double>(), b.data_ptr<double>(), C, N, partials.data_ptr<double>(),
                      totals.data_ptr<double>(), scope.stream, shape);
    });
    Backend::check_launch();
    return totals;
  }
};

// Registers the four fused CG passes of csrc/dpst.cpp's contract on a library.
template <typename Backend, typename Library>
void register_pcg_ops(Library& m) {
  m.impl("pcg_direction", &PcgOps<Backend>::pcg_direction);
  m.impl("pcg_curvature", &PcgOps<Backend>::pcg_curvature);
  m.impl("pcg_update", &PcgOps<Backend>::pcg_update);
  m.impl("pcg_step", &PcgOps<Backend>::pcg_step);
}

}  // namespace cuda
}  // namespace dpst
