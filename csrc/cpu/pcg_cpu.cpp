// Fused vector passes of batched preconditioned CG on the smoothing operator of
// dpst_ext/engine/smoothing.py,
//     A v = v + w S v      (S: the matting Laplacian M, or D^-1/2 M D^-1/2, both from the stencil's product),
// with Jacobi preconditioning z = d . r (d = 1 / diag(A), or none). One CG iteration is
//     u = p in the Laplacian's dtype  [pcg_direction, which also forms p = z + beta p]  ->  m = S u  [the
//     stencil's product]  ->  p.Ap  [pcg_curvature]  ->  x += alpha p, r -= alpha Ap, r.r, r.z  [pcg_update],
// i.e. three passes over the vectors besides the matvec, where the eager torch loop ran about twelve.
// When the matvec reads p itself, stencil_matvec_dots sums p.p, p.Sp and Sp.Sp with the product
// (csrc/cpu/laplacian_cpu.cpp): p.Ap = p.p + w p.Sp, and pcg_curvature's pass is skipped; with no
// preconditioner either, |Ap|^2 gives beta before r is updated, and pcg_step does pcg_update and the next
// pcg_direction in one pass (dpst_ext/engine/smoothing.py).
// Vectors x, r, p are (C, H, W), all float64 or all float32; u and m have the Laplacian's dtype; d is
// float64 (H, W). Whatever the vectors' dtype, every pass computes in double and rounds only what it
// stores, and the dot products are those of the stored (rounded) vectors. They are summed in double over
// fixed chunks of pixels, then over the chunks in order, so they do not depend on the number of threads.
// float32 vectors halve the bytes the passes move, and the solve's memory (docs/engine.md measures both).
// With p in the Laplacian's dtype, the matvec reads p itself: u is then absent.
// The per-pixel formulas are csrc/pcg_math.h, shared with the CUDA kernels of the same passes
// (csrc/cuda/pcg_kernels.cuh); other devices run the passes as ATen ops (end of this file).
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <optional>
#include <vector>

#include "../pcg_checks.h"
#include "../pcg_math.h"

namespace dpst {
namespace {

constexpr int64_t kChunk = 1 << 14;  // pixels per partial sum

// Runs body(c, i0, i1, partial) over chunks of pixels [i0, i1) of every channel in parallel; returns
// per channel (and per of the K sums body adds to partial[k]) the total, summed chunk by chunk.
template <int K, typename Body>
std::vector<double> chunked_sums(int64_t C, int64_t N, Body body) {
  const int64_t nchunks = (N + kChunk - 1) / kChunk;
  std::vector<double> partial(size_t(C * nchunks * K), 0.0);
  at::parallel_for(0, C * nchunks, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t c = t / nchunks, i0 = (t % nchunks) * kChunk;
      body(c, i0, std::min(N, i0 + kChunk), &partial[size_t(t * K)]);
    }
  });
  std::vector<double> total(size_t(K * C), 0.0);
  for (int64_t c = 0; c < C; ++c)
    for (int64_t t = 0; t < nchunks; ++t)
      for (int k = 0; k < K; ++k) total[size_t(k * C + c)] += partial[size_t((c * nchunks + t) * K + k)];
  return total;
}

// The loops of one chunk.
template <typename V, typename M>
double curvature_chunk(const V* __restrict__ P, const M* __restrict__ Mc, double weight, int64_t i0,
                       int64_t i1) {
  double sum = 0.0;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = i0; i < i1; ++i) {
    const double pi = P[i];
    sum += pi * pcg_applied(pi, weight, double(Mc[i]));
  }
  return sum;
}

// With HasD false, d is absent (= 1): a separate loop, so that each vectorises without a select per
// element.
template <bool HasD, typename V, typename M>
void update_loop(V* __restrict__ X, V* __restrict__ R, const V* __restrict__ P,
                 const M* __restrict__ Mc, const double* __restrict__ d, double weight, double a,
                 int64_t i0, int64_t i1, double* acc) {
  double rr = 0.0, rz = 0.0;
#pragma omp simd reduction(+ : rr, rz)
  for (int64_t i = i0; i < i1; ++i) {
    const double pi = P[i];
    X[i] = pcg_iterate_value(X[i], a, pi);
    const V rv = pcg_residual_value(R[i], a, pcg_applied(pi, weight, double(Mc[i])));
    R[i] = rv;
    const double rn = rv;  // the sums are those of r as stored
    rr += rn * rn;
    if constexpr (HasD) rz += rn * rn * d[i];
  }
  acc[0] = rr;
  acc[1] = HasD ? rz : rr;
}

template <typename V, typename M>
void update_chunk(V* X, V* R, const V* P, const M* Mc, const double* d, double weight, double a, int64_t i0,
                  int64_t i1, double* acc) {
  if (d) update_loop<true>(X, R, P, Mc, d, weight, a, i0, i1, acc);
  else update_loop<false>(X, R, P, Mc, d, weight, a, i0, i1, acc);
}

// pcg_step: x += a p, r -= a (p + w m), p = r + b p, in place; returns r.r of r as stored.
template <typename V, typename M>
double step_chunk(V* __restrict__ X, V* __restrict__ R, V* __restrict__ P, const M* __restrict__ Mc,
                  double weight, double a, double b, int64_t i0, int64_t i1) {
  double rr = 0.0;
#pragma omp simd reduction(+ : rr)
  for (int64_t i = i0; i < i1; ++i) {
    const double pi = P[i];
    X[i] = pcg_iterate_value(X[i], a, pi);
    const V rv = pcg_residual_value(R[i], a, pcg_applied(pi, weight, double(Mc[i])));
    R[i] = rv;
    P[i] = pcg_direction_value(double(rv), b, P[i]);
    const double rn = rv;
    rr += rn * rn;
  }
  return rr;
}

// p_c = z_c + beta_c p_c (z = d . r, or r), in place; u = p in u's dtype (a buffer the caller reuses: a
// fresh image-sized tensor per iteration costs a page fault per 4 KB). u may be absent: the matvec then
// reads p.
template <bool HasD, bool HasU, typename V, typename U>
void direction_loop(const V* __restrict__ R, V* __restrict__ P, U* __restrict__ Uc,
                    const double* __restrict__ d, double b, int64_t i0, int64_t i1) {
#pragma omp simd
  for (int64_t i = i0; i < i1; ++i) {
    double z = R[i];
    if constexpr (HasD) z *= d[i];
    const V pn = pcg_direction_value(z, b, P[i]);
    P[i] = pn;
    if constexpr (HasU) Uc[i] = U(double(pn));
  }
}

template <typename V, typename U>
void direction_chunk(const V* R, V* P, U* Uc, const double* d, double b, int64_t i0, int64_t i1) {
  if (Uc) {
    if (d) direction_loop<true, true>(R, P, Uc, d, b, i0, i1);
    else direction_loop<false, true>(R, P, Uc, d, b, i0, i1);
  } else {
    if (d) direction_loop<true, false>(R, P, Uc, d, b, i0, i1);
    else direction_loop<false, false>(R, P, Uc, d, b, i0, i1);
  }
}

void pcg_direction_cpu(const at::Tensor& r, const std::optional<at::Tensor>& inv_diag, at::Tensor p,
                       at::ArrayRef<double> beta, std::optional<at::Tensor> u) {
  const double* d = check_direction_args(r, inv_diag, p, beta, u);
  const int64_t C = r.size(0), N = r.size(1) * r.size(2);
  const int64_t nchunks = (N + kChunk - 1) / kChunk;
  const at::ScalarType ut = u.has_value() ? u->scalar_type() : r.scalar_type();
  dispatch_vector_types(r.scalar_type(), ut, [&](auto v_, auto u_) {
    using V = decltype(v_);
    using U = decltype(u_);
    const V* R = r.data_ptr<V>();
    V* P = p.data_ptr<V>();
    U* Uv = u.has_value() ? u->data_ptr<U>() : nullptr;
    at::parallel_for(0, C * nchunks, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t c = t / nchunks, i0 = (t % nchunks) * kChunk, i1 = std::min(N, i0 + kChunk);
        direction_chunk(R + c * N, P + c * N, Uv ? Uv + c * N : nullptr, d, beta[c], i0, i1);
      }
    });
  });
}

// Per channel p.Ap = sum_i p_i (p_i + w m_i), as (C,) float64.
at::Tensor pcg_curvature_cpu(const at::Tensor& p, const at::Tensor& m, double weight) {
  check_curvature_args(p, m);
  const int64_t C = p.size(0), N = p.size(1) * p.size(2);
  std::vector<double> total;
  dispatch_vector_types(p.scalar_type(), m.scalar_type(), [&](auto v_, auto m_) {
    using V = decltype(v_);
    using M = decltype(m_);
    const V* P = p.data_ptr<V>();
    const M* Mv = m.data_ptr<M>();
    total = chunked_sums<1>(C, N, [&](int64_t c, int64_t i0, int64_t i1, double* acc) {
      acc[0] = curvature_chunk(P + c * N, Mv + c * N, weight, i0, i1);
    });
  });
  return at::tensor(total, p.options().dtype(at::kDouble));
}

// x_c += alpha_c p_c, r_c -= alpha_c (p_c + w m_c), in place; returns (2, C) float64: r.r and
// r.z (z = d . r, or r) per channel.
at::Tensor pcg_update_cpu(at::Tensor x, at::Tensor r, const at::Tensor& p, const at::Tensor& m, double weight,
                          at::ArrayRef<double> alpha, const std::optional<at::Tensor>& inv_diag) {
  const double* d = check_update_args(x, r, p, m, alpha, inv_diag);
  const int64_t C = p.size(0), N = p.size(1) * p.size(2);
  std::vector<double> total;
  dispatch_vector_types(p.scalar_type(), m.scalar_type(), [&](auto v_, auto m_) {
    using V = decltype(v_);
    using M = decltype(m_);
    V* X = x.data_ptr<V>();
    V* R = r.data_ptr<V>();
    const V* P = p.data_ptr<V>();
    const M* Mv = m.data_ptr<M>();
    total = chunked_sums<2>(C, N, [&](int64_t c, int64_t i0, int64_t i1, double* acc) {
      update_chunk(X + c * N, R + c * N, P + c * N, Mv + c * N, d, weight, alpha[c], i0, i1, acc);
    });
  });
  return at::tensor(total, p.options().dtype(at::kDouble)).reshape({2, C});
}

// x_c += alpha_c p_c, r_c -= alpha_c (p_c + w m_c), p_c = r_c + beta_c p_c, in place; returns (C,) float64 r.r.
at::Tensor pcg_step_cpu(at::Tensor x, at::Tensor r, at::Tensor p, const at::Tensor& m, double weight,
                        at::ArrayRef<double> alpha, at::ArrayRef<double> beta) {
  check_step_args(x, r, p, m, alpha, beta);
  const int64_t C = p.size(0), N = p.size(1) * p.size(2);
  std::vector<double> total;
  dispatch_vector_types(p.scalar_type(), m.scalar_type(), [&](auto v_, auto m_) {
    using V = decltype(v_);
    using M = decltype(m_);
    V* X = x.data_ptr<V>();
    V* R = r.data_ptr<V>();
    V* P = p.data_ptr<V>();
    const M* Mv = m.data_ptr<M>();
    total = chunked_sums<1>(C, N, [&](int64_t c, int64_t i0, int64_t i1, double* acc) {
      acc[0] = step_chunk(X + c * N, R + c * N, P + c * N, Mv + c * N, weight, alpha[c], beta[c], i0, i1);
    });
  });
  return at::tensor(total, p.options().dtype(at::kDouble));
}

// ---- the same passes in ATen ops, for every other device ---------------------------------------
// Registered for CompositeExplicitAutograd: each pass is a few element-wise kernels instead of one fused
// loop. The CPU and CUDA have their own kernels; these keep the contract whole on other devices (and
// serve as the tests' second implementation).

at::Tensor per_channel(at::ArrayRef<double> a, const at::Tensor& like) {
  return at::tensor(a, like.options().dtype(at::kDouble)).view({-1, 1, 1});
}

at::Tensor times_map(const at::Tensor& t, const std::optional<at::Tensor>& map) {
  return map.has_value() ? t * *map : t;
}

void pcg_direction_aten(const at::Tensor& r, const std::optional<at::Tensor>& inv_diag, at::Tensor p,
                        at::ArrayRef<double> beta, std::optional<at::Tensor> u) {
  check_coeffs(beta, r.size(0), "beta");
  p.copy_(p.to(at::kDouble).mul_(per_channel(beta, p)).add_(times_map(r.to(at::kDouble), inv_diag)));
  if (u.has_value()) u->copy_(p);
}

at::Tensor pcg_curvature_aten(const at::Tensor& p, const at::Tensor& m, double weight) {
  const auto p64 = p.to(at::kDouble);
  return (p64 * (p64 + weight * m.to(at::kDouble))).sum({1, 2});
}

at::Tensor pcg_update_aten(at::Tensor x, at::Tensor r, const at::Tensor& p, const at::Tensor& m, double weight,
                           at::ArrayRef<double> alpha, const std::optional<at::Tensor>& inv_diag) {
  check_coeffs(alpha, p.size(0), "alpha");
  const auto a = per_channel(alpha, p);
  const auto p64 = p.to(at::kDouble);
  x.copy_(x.to(at::kDouble) + a * p64);
  r.copy_(r.to(at::kDouble) - a * (p64 + weight * m.to(at::kDouble)));
  const auto r64 = r.to(at::kDouble);  // the sums are those of r as stored
  const auto rr = (r64 * r64).sum({1, 2});
  return at::stack({rr, inv_diag.has_value() ? (r64 * r64 * *inv_diag).sum({1, 2}) : rr.clone()});
}

at::Tensor pcg_step_aten(at::Tensor x, at::Tensor r, at::Tensor p, const at::Tensor& m, double weight,
                         at::ArrayRef<double> alpha, at::ArrayRef<double> beta) {
  check_coeffs(alpha, p.size(0), "alpha");
  check_coeffs(beta, p.size(0), "beta");
  const auto a = per_channel(alpha, p);
  const auto p64 = p.to(at::kDouble);
  x.copy_(x.to(at::kDouble) + a * p64);
  r.copy_(r.to(at::kDouble) - a * (p64 + weight * m.to(at::kDouble)));
  const auto r64 = r.to(at::kDouble);  // p and the sums from r as stored
  p.copy_(r64 + per_channel(beta, p) * p64);
  return (r64 * r64).sum({1, 2});
}

}  // namespace

TORCH_LIBRARY_IMPL(dpst, CPU, m) {
  m.impl("pcg_direction", &pcg_direction_cpu);
  m.impl("pcg_curvature", &pcg_curvature_cpu);
  m.impl("pcg_update", &pcg_update_cpu);
  m.impl("pcg_step", &pcg_step_cpu);
}

TORCH_LIBRARY_IMPL(dpst, CompositeExplicitAutograd, m) {
  m.impl("pcg_direction", &pcg_direction_aten);
  m.impl("pcg_curvature", &pcg_curvature_aten);
  m.impl("pcg_update", &pcg_update_aten);
  m.impl("pcg_step", &pcg_step_aten);
}

}  // namespace dpst
