// Argument checks of the fused CG passes (schemas: csrc/dpst.cpp), shared by the CPU kernels
// (csrc/cpu/pcg_cpu.cpp) and the CUDA entry points (csrc/cuda/pcg_ops.h): every tensor must be contiguous
// and on the device of the CG vectors.
#pragma once

#include <torch/types.h>

#include <optional>

#include "checks.h"

namespace dpst {

// x, r, p: the shape and dtype of `like` (p, or r), float32 or float64.
inline void check_cg_vector(const at::Tensor& t, const at::Tensor& like, const char* name) {
  TORCH_CHECK(t.dim() == 3 && t.sizes() == like.sizes(), name, " must have shape ", shape_str(like), ", got ",
              shape_str(t));
  TORCH_CHECK(like.scalar_type() == at::kDouble || like.scalar_type() == at::kFloat, name,
              " must be float32 or float64, got ", like.scalar_type());
  TORCH_CHECK(t.scalar_type() == like.scalar_type(), name, " must have the dtype of the other CG vectors (",
              like.scalar_type(), "), got ", t.scalar_type());
  TORCH_CHECK(t.is_contiguous() && t.device() == like.device(), name, " must be a contiguous tensor on ",
              like.device(), ", got ", t.device());
}

// m (the matvec's output) or u (its input): the shape of `like`, float32 or float64.
inline void check_lap_vector(const at::Tensor& t, const at::Tensor& like, const char* name) {
  TORCH_CHECK(t.sizes() == like.sizes() && t.is_contiguous() && t.device() == like.device() &&
                  (t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble),
              name, " must be a contiguous float32 or float64 tensor of shape ", shape_str(like), " on ",
              like.device(), ", got ", shape_str(t), " ", t.scalar_type(), " on ", t.device());
}

// d: (H, W) float64 on the vectors' device, or absent (null).
inline const double* pixel_map(const std::optional<at::Tensor>& t, const at::Tensor& like, const char* name) {
  if (!t.has_value()) return nullptr;
  TORCH_CHECK(t->dim() == 2 && t->size(0) == like.size(1) && t->size(1) == like.size(2), name,
              " must have shape (H, W) = (", like.size(1), ", ", like.size(2), "), got ", shape_str(*t));
  TORCH_CHECK(t->scalar_type() == at::kDouble && t->is_contiguous() && t->device() == like.device(), name,
              " must be a contiguous float64 tensor on ", like.device());
  return t->data_ptr<double>();
}

inline void check_coeffs(at::ArrayRef<double> a, int64_t C, const char* name) {
  TORCH_CHECK(int64_t(a.size()) == C, name, " must hold one value per channel (", C, "), got ", a.size());
}

// Each pass's argument rules, for the CPU kernels and the CUDA entry points alike; pcg_direction's and
// pcg_update's return inv_diag's data (null where absent).
inline const double* check_direction_args(const at::Tensor& r, const std::optional<at::Tensor>& inv_diag,
                                          const at::Tensor& p, at::ArrayRef<double> beta,
                                          const std::optional<at::Tensor>& u) {
  check_cg_vector(r, r, "r");
  check_cg_vector(p, r, "p");
  check_coeffs(beta, r.size(0), "beta");
  if (u.has_value()) check_lap_vector(*u, r, "u");
  return pixel_map(inv_diag, r, "inv_diag");
}

inline void check_curvature_args(const at::Tensor& p, const at::Tensor& m) {
  check_cg_vector(p, p, "p");
  check_lap_vector(m, p, "m");
}

inline const double* check_update_args(const at::Tensor& x, const at::Tensor& r, const at::Tensor& p,
                                       const at::Tensor& m, at::ArrayRef<double> alpha,
                                       const std::optional<at::Tensor>& inv_diag) {
  check_cg_vector(p, p, "p");
  check_cg_vector(x, p, "x");
  check_cg_vector(r, p, "r");
  check_lap_vector(m, p, "m");
  check_coeffs(alpha, p.size(0), "alpha");
  return pixel_map(inv_diag, p, "inv_diag");
}

inline void check_step_args(const at::Tensor& x, const at::Tensor& r, const at::Tensor& p, const at::Tensor& m,
                            at::ArrayRef<double> alpha, at::ArrayRef<double> beta) {
  check_update_args(x, r, p, m, alpha, std::nullopt);
  check_coeffs(beta, p.size(0), "beta");
}

// Calls f(V{}, M{}) with V, M the C++ types (float or double) of the vectors' and of m's (or u's) dtypes.
template <typename F>
void dispatch_vector_types(at::ScalarType vectors, at::ScalarType m, F&& f) {
  auto with_m = [&](auto v) {
    if (m == at::kFloat) f(v, float{}); else f(v, double{});
  };
  if (vectors == at::kFloat) with_m(float{}); else with_m(double{});
}

}  // namespace dpst
