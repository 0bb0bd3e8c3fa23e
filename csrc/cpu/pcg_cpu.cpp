// Fused vector passes of batched preconditioned CG on the smoothing operator of
// dpst_ext/engine/smoothing.py,
//     A v = v + w s . M (s . v)      (s: per-pixel scale D^-1/2, or none; M: the matting Laplacian),
// with Jacobi preconditioning z = d . r (d = 1 / diag(A), or none). One CG iteration is
//     u = f(s . p)   [pcg_direction, which also forms p = z + beta p]  ->  m = M u  [laplacian_matvec]
//     -> p.Ap        [pcg_curvature]  ->  x += alpha p, r -= alpha Ap, r.r, r.z  [pcg_update],
// i.e. three passes over the vectors besides the matvec, where the eager torch loop ran about twelve.
// Vectors x, r, p are float64 (C, H, W); u and m have the Laplacian's dtype; s, d are float64 (H, W).
// Dot products are summed in double over fixed chunks of pixels, then over the chunks in order, so
// they do not depend on the number of threads. Other devices (CUDA included) run the same passes as ATen
// ops (end of this file).
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <optional>
#include <vector>

#include "../checks.h"

namespace dpst {
namespace {

constexpr int64_t kChunk = 1 << 14;  // pixels per partial sum

void check_vector(const at::Tensor& t, const at::Tensor& like, const char* name) {
  TORCH_CHECK(t.dim() == 3 && t.sizes() == like.sizes(), name, " must have shape ",
              shape_str(like), ", got ", shape_str(t));
  TORCH_CHECK(t.scalar_type() == at::kDouble, name, " must be float64, got ", t.scalar_type());
  TORCH_CHECK(t.is_contiguous() && t.device().is_cpu(), name, " must be a contiguous CPU tensor");
}

// s or d: (H, W) float64, or absent.
const double* pixel_map(const std::optional<at::Tensor>& t, const at::Tensor& like, const char* name) {
  if (!t.has_value()) return nullptr;
  TORCH_CHECK(t->dim() == 2 && t->size(0) == like.size(1) && t->size(1) == like.size(2), name,
              " must have shape (H, W) = (", like.size(1), ", ", like.size(2), "), got ",
              shape_str(*t));
  TORCH_CHECK(t->scalar_type() == at::kDouble && t->is_contiguous() && t->device().is_cpu(), name,
              " must be a contiguous float64 CPU tensor");
  return t->data_ptr<double>();
}

void check_coeffs(at::ArrayRef<double> a, int64_t C, const char* name) {
  TORCH_CHECK(int64_t(a.size()) == C, name, " must hold one value per channel (", C, "), got ",
              a.size());
}

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

// The loops of one chunk (outside the dispatch macro, which cannot hold a pragma).
template <typename M>
double curvature_chunk(const double* __restrict__ P, const M* __restrict__ Mc,
                       const double* __restrict__ s, double weight, int64_t i0, int64_t i1) {
  double sum = 0.0;
  if (s) {
#pragma omp simd reduction(+ : sum)
    for (int64_t i = i0; i < i1; ++i) sum += P[i] * (P[i] + weight * s[i] * double(Mc[i]));
  } else {
#pragma omp simd reduction(+ : sum)
    for (int64_t i = i0; i < i1; ++i) sum += P[i] * (P[i] + weight * double(Mc[i]));
  }
  return sum;
}

template <typename M>
void update_chunk(double* __restrict__ X, double* __restrict__ R, const double* __restrict__ P,
                  const M* __restrict__ Mc, const double* __restrict__ s,
                  const double* __restrict__ d, double weight, double a, int64_t i0, int64_t i1,
                  double* acc) {
  double rr = 0.0, rz = 0.0;
#pragma omp simd reduction(+ : rr, rz)
  for (int64_t i = i0; i < i1; ++i) {
    X[i] += a * P[i];
    const double rn = R[i] - a * (P[i] + weight * (s ? s[i] : 1.0) * double(Mc[i]));
    R[i] = rn;
    rr += rn * rn;
    rz += rn * rn * (d ? d[i] : 1.0);
  }
  acc[0] = rr;
  acc[1] = rz;
}

// p_c = z_c + beta_c p_c (z = d . r, or r), in place; u = s . p (or p) in u's dtype (a buffer the
// caller reuses: a fresh image-sized tensor per iteration costs a page fault per 4 KB).
void pcg_direction_cpu(const at::Tensor& r, const std::optional<at::Tensor>& inv_diag, at::Tensor p,
                       at::ArrayRef<double> beta, const std::optional<at::Tensor>& scale,
                       at::Tensor u) {
  check_vector(r, r, "r");
  check_vector(p, r, "p");
  check_coeffs(beta, r.size(0), "beta");
  TORCH_CHECK(u.sizes() == r.sizes() && u.is_contiguous() && u.device().is_cpu() &&
                  (u.scalar_type() == at::kFloat || u.scalar_type() == at::kDouble),
              "u must be a contiguous float32 or float64 CPU tensor of shape ", shape_str(r),
              ", got ", shape_str(u));
  const double* d = pixel_map(inv_diag, r, "inv_diag");
  const double* s = pixel_map(scale, r, "scale");
  const int64_t C = r.size(0), N = r.size(1) * r.size(2);
  const double* R = r.data_ptr<double>();
  double* P = p.data_ptr<double>();
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "pcg_direction_cpu", [&] {
    scalar_t* U = u.data_ptr<scalar_t>();
    at::parallel_for(0, C * ((N + kChunk - 1) / kChunk), 1, [&](int64_t t0, int64_t t1) {
      const int64_t nchunks = (N + kChunk - 1) / kChunk;
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t c = t / nchunks, i0 = (t % nchunks) * kChunk, i1 = std::min(N, i0 + kChunk);
        const double b = beta[c];
        const double* Rc = R + c * N;
        double* Pc = P + c * N;
        scalar_t* Uc = U + c * N;
        for (int64_t i = i0; i < i1; ++i) {
          const double pn = (d ? d[i] : 1.0) * Rc[i] + b * Pc[i];
          Pc[i] = pn;
          Uc[i] = scalar_t(s ? s[i] * pn : pn);
        }
      }
    });
  });
}

// Per channel p.Ap = sum_i p_i (p_i + w s_i m_i), as (C,) float64.
at::Tensor pcg_curvature_cpu(const at::Tensor& p, const at::Tensor& m,
                             const std::optional<at::Tensor>& scale, double weight) {
  check_vector(p, p, "p");
  TORCH_CHECK(m.sizes() == p.sizes() && m.is_contiguous() && m.device().is_cpu() &&
                  (m.scalar_type() == at::kFloat || m.scalar_type() == at::kDouble),
              "m must be a contiguous float32 or float64 CPU tensor of shape ", shape_str(p),
              ", got ", shape_str(m));
  const double* s = pixel_map(scale, p, "scale");
  const int64_t C = p.size(0), N = p.size(1) * p.size(2);
  const double* P = p.data_ptr<double>();
  std::vector<double> total;
  AT_DISPATCH_FLOATING_TYPES(m.scalar_type(), "pcg_curvature_cpu", [&] {
    const scalar_t* Mv = m.data_ptr<scalar_t>();
    total = chunked_sums<1>(C, N, [&](int64_t c, int64_t i0, int64_t i1, double* acc) {
      acc[0] = curvature_chunk(P + c * N, Mv + c * N, s, weight, i0, i1);
    });
  });
  return at::tensor(total, p.options());
}

// x_c += alpha_c p_c, r_c -= alpha_c (p_c + w s m_c), in place; returns (2, C) float64: r.r and
// r.z (z = d . r, or r) per channel.
at::Tensor pcg_update_cpu(at::Tensor x, at::Tensor r, const at::Tensor& p, const at::Tensor& m,
                          const std::optional<at::Tensor>& scale, double weight,
                          at::ArrayRef<double> alpha, const std::optional<at::Tensor>& inv_diag) {
  check_vector(x, p, "x");
  check_vector(r, p, "r");
  check_vector(p, p, "p");
  TORCH_CHECK(m.sizes() == p.sizes() && m.is_contiguous() && m.device().is_cpu() &&
                  (m.scalar_type() == at::kFloat || m.scalar_type() == at::kDouble),
              "m must be a contiguous float32 or float64 CPU tensor of shape ", shape_str(p),
              ", got ", shape_str(m));
  check_coeffs(alpha, p.size(0), "alpha");
  const double* s = pixel_map(scale, p, "scale");
  const double* d = pixel_map(inv_diag, p, "inv_diag");
  const int64_t C = p.size(0), N = p.size(1) * p.size(2);
  double* X = x.data_ptr<double>();
  double* R = r.data_ptr<double>();
  const double* P = p.data_ptr<double>();
  std::vector<double> total;
  AT_DISPATCH_FLOATING_TYPES(m.scalar_type(), "pcg_update_cpu", [&] {
    const scalar_t* Mv = m.data_ptr<scalar_t>();
    total = chunked_sums<2>(C, N, [&](int64_t c, int64_t i0, int64_t i1, double* acc) {
      update_chunk(X + c * N, R + c * N, P + c * N, Mv + c * N, s, d, weight, alpha[c], i0, i1, acc);
    });
  });
  return at::tensor(total, p.options()).reshape({2, C});
}

// ---- the same passes in ATen ops, for every other device ---------------------------------------
// Registered for CompositeExplicitAutograd (and explicitly for CUDA in a CUDA build, where they are what
// the CUDA key runs): each pass is a few element-wise kernels instead of one fused loop.
// smoothing.batched_pcg only takes the fused path on the CPU; these keep the contract whole elsewhere.

at::Tensor per_channel(at::ArrayRef<double> a, const at::Tensor& like) {
  return at::tensor(a, like.options().dtype(at::kDouble)).view({-1, 1, 1});
}

at::Tensor times_map(const at::Tensor& t, const std::optional<at::Tensor>& map) {
  return map.has_value() ? t * *map : t;
}

void pcg_direction_aten(const at::Tensor& r, const std::optional<at::Tensor>& inv_diag, at::Tensor p,
                        at::ArrayRef<double> beta, const std::optional<at::Tensor>& scale,
                        at::Tensor u) {
  check_coeffs(beta, r.size(0), "beta");
  p.mul_(per_channel(beta, p)).add_(times_map(r, inv_diag));
  u.copy_(times_map(p, scale));
}

at::Tensor pcg_curvature_aten(const at::Tensor& p, const at::Tensor& m,
                              const std::optional<at::Tensor>& scale, double weight) {
  return (p * (p + weight * times_map(m.to(at::kDouble), scale))).sum({1, 2});
}

at::Tensor pcg_update_aten(at::Tensor x, at::Tensor r, const at::Tensor& p, const at::Tensor& m,
                           const std::optional<at::Tensor>& scale, double weight,
                           at::ArrayRef<double> alpha, const std::optional<at::Tensor>& inv_diag) {
  check_coeffs(alpha, p.size(0), "alpha");
  const auto a = per_channel(alpha, p);
  x.add_(a * p);
  r.sub_(a * (p + weight * times_map(m.to(at::kDouble), scale)));
  const auto rr = (r * r).sum({1, 2});
  return at::stack({rr, inv_diag.has_value() ? (r * r * *inv_diag).sum({1, 2}) : rr.clone()});
}

}  // namespace

TORCH_LIBRARY_IMPL(dpst, CPU, m) {
  m.impl("pcg_direction", &pcg_direction_cpu);
  m.impl("pcg_curvature", &pcg_curvature_cpu);
  m.impl("pcg_update", &pcg_update_cpu);
}

TORCH_LIBRARY_IMPL(dpst, CompositeExplicitAutograd, m) {
  m.impl("pcg_direction", &pcg_direction_aten);
  m.impl("pcg_curvature", &pcg_curvature_aten);
  m.impl("pcg_update", &pcg_update_aten);
}

#if defined(DPST_WITH_CUDA)
TORCH_LIBRARY_IMPL(dpst, CUDA, m) {
  m.impl("pcg_direction", &pcg_direction_aten);
  m.impl("pcg_curvature", &pcg_curvature_aten);
  m.impl("pcg_update", &pcg_update_aten);
}
#endif

}  // namespace dpst
