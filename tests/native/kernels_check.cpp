// Standalone check of the emulated CUDA kernels: no torch, no Python, so it can be built with
// -fsanitize=thread and -fsanitize=address (`make sanitize`). Runs every launcher of
// csrc/cuda/laplacian_kernels.cuh on a few image sizes and block shapes, in float and double, and
// compares with a plain C++ reference loop over windows built from csrc/window_math.h:
// a dense M = sum_k M^k (so only small images), then M v, diag M, M in CSR, v^T M v, and M's
// stencil and the product from it; the fused CG passes of csrc/cuda/pcg_kernels.cuh against their
// formulas in double.
//
//   kernels_check             run the checks; exit status 1 on any mismatch
//   kernels_check --shared    print the dynamic shared memory per kernel at the GPU block shapes
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "cuda/affine_kernels.cuh"
#include "cuda/laplacian_kernels.cuh"
#include "cuda/pcg_kernels.cuh"

using dpst::cuda::AffineLaunchShape;
using dpst::cuda::LaunchShape;

namespace {

int failures = 0;

void expect(bool ok, const char* what, int H, int W, const char* type, double err) {
  if (!ok) {
    ++failures;
    std::printf("FAIL %s %dx%d %s: error %.3e\n", what, H, W, type, err);
  }
}

// Dense reference M (n x n, row-major) of a planar image, in double, straight from window_math.h.
std::vector<double> reference_matrix(const std::vector<double>& img, int H, int W, double eps) {
  const int n = H * W;
  std::vector<double> M(size_t(n) * n, 0.0);
  for (int ky = 0; ky + 2 < H; ++ky)
    for (int kx = 0; kx + 2 < W; ++kx) {
      double c[9][3], mu[3], w[6], x[9][3];
      int idx[9];
      for (int j = 0; j < 9; ++j) {
        idx[j] = (ky + j / 3) * W + kx + j % 3;
        for (int ch = 0; ch < 3; ++ch) c[j][ch] = img[size_t(ch) * n + idx[j]];
      }
      dpst::window_stats(c, eps, mu, w);
      for (int j = 0; j < 9; ++j)
        for (int ch = 0; ch < 3; ++ch) x[j][ch] = c[j][ch] - mu[ch];
      for (int i = 0; i < 9; ++i)
        for (int j = 0; j < 9; ++j)
          M[size_t(idx[i]) * n + idx[j]] += dpst::window_entry(w, x[i], x[j], i == j);
    }
  return M;
}

// CSR: fixed width, sorted columns, and every entry of M present exactly once.
template <typename T, typename I>
void check_csr(const std::vector<T>& img, const std::vector<T>& stats, const std::vector<double>& M,
               int H, int W, const LaunchShape& shape, const char* type, double tol) {
  const int n = H * W, width = (H < 5 ? H : 5) * (W < 5 ? W : 5);
  std::vector<I> crow(n + 1), col(size_t(n) * width);
  std::vector<T> val(col.size());
  dpst::cuda::launch_laplacian_csr(img.data(), stats.data(), crow.data(), col.data(), val.data(), H,
                                   W, nullptr, shape);
  std::vector<double> dense(size_t(n) * n, 0.0);
  bool layout_ok = true;
  for (int i = 0; i < n; ++i) {
    layout_ok &= crow[i] == I(i) * width && crow[i + 1] == I(i + 1) * width;
    for (int e = i * width; e < (i + 1) * width; ++e) {
      layout_ok &= col[e] >= 0 && col[e] < n && (e == i * width || col[e] > col[e - 1]);
      if (col[e] >= 0 && col[e] < n) dense[size_t(i) * n + col[e]] += double(val[e]);
    }
  }
  expect(layout_ok, sizeof(I) == 4 ? "laplacian_csr layout (int32)" : "laplacian_csr layout (int64)", H, W, type, 0);
  double err = 0;
  for (size_t k = 0; k < dense.size(); ++k) err = std::fmax(err, std::fabs(dense[k] - M[k]));
  expect(err <= tol, sizeof(I) == 4 ? "laplacian_csr values (int32)" : "laplacian_csr values (int64)", H, W, type, err);
}

template <typename T>
void check_size(int H, int W, int C, const LaunchShape& shape, const char* type, double tol,
                std::mt19937& rng) {
  const int n = H * W, hw = H - 2, ww = W - 2;
  const double eps = 1e-3;
  std::uniform_real_distribution<double> uni(0.0, 1.0);
  std::vector<T> img(3 * size_t(n)), v(size_t(C) * n);
  std::vector<double> imgd(img.size());
  for (size_t i = 0; i < img.size(); ++i) imgd[i] = double(img[i] = T(uni(rng)));
  for (auto& x : v) x = T(uni(rng) - 0.5);
  const std::vector<double> M = reference_matrix(imgd, H, W, eps);
  double mmax = 1.0;
  for (double m : M) mmax = std::fmax(mmax, std::fabs(m));

  // window_stats: against window_math.h's window_stats on the same colours.
  std::vector<T> stats(9 * size_t(hw) * ww);
  dpst::cuda::launch_window_stats(img.data(), stats.data(), H, W, eps, nullptr, shape);
  double err = 0;
  for (int ky = 0; ky < hw; ++ky)
    for (int kx = 0; kx < ww; ++kx) {
      double c[9][3], mu[3], w[6];
      for (int j = 0; j < 9; ++j)
        for (int ch = 0; ch < 3; ++ch) c[j][ch] = imgd[size_t(ch) * n + (ky + j / 3) * W + kx + j % 3];
      dpst::window_stats(c, eps, mu, w);
      for (int q = 0; q < 9; ++q) {
        const double want = q < 3 ? mu[q] : w[q - 3];
        const double got = stats[(size_t(q) * hw + ky) * ww + kx];
        err = std::fmax(err, std::fabs(got - want) / std::fmax(1.0, std::fabs(want)));
      }
    }
  expect(err <= tol, "window_stats", H, W, type, err);

  // matvec and loss: M v per channel, sum_c v_c^T M v_c; mv, mv_abs: M v and |M| |v| in double.
  std::vector<double> mv(v.size()), mv_abs(v.size());
  for (int c = 0; c < C; ++c)
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j) {
        mv[size_t(c) * n + i] += M[size_t(i) * n + j] * double(v[size_t(c) * n + j]);
        mv_abs[size_t(c) * n + i] += std::fabs(M[size_t(i) * n + j] * double(v[size_t(c) * n + j]));
      }
  auto product_error = [&](const std::vector<T>& out) {  // max over pixels of |out - M v| / (|M| |v|)
    double e = 0;
    for (size_t k = 0; k < out.size(); ++k)
      e = std::fmax(e, std::fabs(double(out[k]) - mv[k]) / std::fmax(mv_abs[k], 1e-300));
    return e;
  };
  std::vector<T> out(v.size());
  dpst::cuda::launch_laplacian_matvec(img.data(), stats.data(), v.data(), out.data(), C, H, W,
                                      nullptr, shape);
  err = product_error(out);
  double loss = 0, loss_scale = 0;
  for (size_t k = 0; k < v.size(); ++k) {
    loss += double(v[k]) * mv[k];
    loss_scale += std::fabs(double(v[k])) * mv_abs[k];
  }
  expect(err <= tol, "laplacian_matvec", H, W, type, err);

  const dim3 grid = dpst::cuda::loss_grid(H, W, shape);
  std::vector<double> partials(size_t(grid.x) * grid.y), total(1);
  dpst::cuda::launch_photoreal_loss(img.data(), stats.data(), v.data(), C, H, W, partials.data(),
                                    total.data(), nullptr, shape);
  err = std::fabs(total[0] - loss) / std::fmax(loss_scale, 1e-300);
  expect(err <= tol, "photoreal_loss", H, W, type, err);

  // diagonal
  std::vector<T> diag(n);
  dpst::cuda::launch_laplacian_diagonal(img.data(), stats.data(), diag.data(), H, W, nullptr, shape);
  err = 0;
  for (int i = 0; i < n; ++i) err = std::fmax(err, std::fabs(double(diag[i]) - M[size_t(i) * n + i]));
  expect(err <= tol * mmax, "laplacian_diagonal", H, W, type, err);

  check_csr<T, int32_t>(img, stats, M, H, W, shape, type, tol * mmax);
  check_csr<T, int64_t>(img, stats, M, H, W, shape, type, tol * mmax);  // the >= 2^31 entries path

  // stencil: K_q(i) = M_{i, i + d_q} (0 outside the image), and M v from it.
  std::vector<T> K(size_t(dpst::kStencilOffsets) * n);
  dpst::cuda::launch_laplacian_stencil(img.data(), K.data(), H, W, eps, nullptr, shape);
  err = 0;
  for (int q = 0; q < dpst::kStencilOffsets; ++q)
    for (int y = 0; y < H; ++y)
      for (int x = 0; x < W; ++x) {
        const int jy = y + dpst::stencil_dy(q), jx = x + dpst::stencil_dx(q);
        const bool inside = jy < H && jx >= 0 && jx < W;
        const double want = inside ? M[size_t(y * W + x) * n + jy * W + jx] : 0.0;
        const double got = K[(size_t(q) * H + y) * W + x];
        err = std::fmax(err, inside ? std::fabs(got - want) : (got == 0.0 ? 0.0 : INFINITY));
      }
  expect(err <= tol * mmax, "laplacian_stencil", H, W, type, err);
  dpst::cuda::launch_stencil_matvec(K.data(), v.data(), out.data(), C, H, W, false, nullptr, shape);
  err = product_error(out);
  expect(err <= tol, "stencil_matvec", H, W, type, err);
  // the normalised product D^-1/2 M D^-1/2 v, D = diag(n), n_i the number of windows containing pixel i
  std::vector<double> nv(n);
  for (int i = 0; i < n; ++i) {
    int ny = 0, nx = 0;
    for (int k = 0; k + 2 < H; ++k) ny += (i / W >= k && i / W <= k + 2);
    for (int k = 0; k + 2 < W; ++k) nx += (i % W >= k && i % W <= k + 2);
    nv[i] = ny * nx > 0 ? ny * nx : 1;
  }
  std::vector<T> outn(v.size());
  dpst::cuda::launch_stencil_matvec(K.data(), v.data(), outn.data(), C, H, W, true, nullptr, shape);
  err = 0;
  for (int c = 0; c < C; ++c)
    for (int i = 0; i < n; ++i) {
      double want = 0, scale = 0;
      for (int j = 0; j < n; ++j) {
        const double t = M[size_t(i) * n + j] * double(v[size_t(c) * n + j]) / std::sqrt(nv[i] * nv[j]);
        want += t;
        scale += std::fabs(t);
      }
      err = std::fmax(err, std::fabs(double(outn[size_t(c) * n + i]) - want) / std::fmax(scale, 1e-300));
    }
  expect(err <= tol, "stencil_matvec (normalised)", H, W, type, err);
  // the same products with their sums v.v and v.(M v) per channel (partials per block, then their sums)
  const dim3 sg = dpst::cuda::stencil_grid(H, W, shape);
  std::vector<double> dot_partials(size_t(3 * C) * sg.x * sg.y), totals(size_t(3 * C));
  std::vector<T> out2(out.size());
  dpst::cuda::launch_stencil_matvec_dots(K.data(), v.data(), out2.data(), C, H, W, true, dot_partials.data(),
                                         totals.data(), nullptr, shape);
  err = out2 == outn ? 0.0 : INFINITY;
  dpst::cuda::launch_stencil_matvec_dots(K.data(), v.data(), out2.data(), C, H, W, false, dot_partials.data(),
                                         totals.data(), nullptr, shape);
  err = out2 == out ? err : INFINITY;
  for (int c = 0; c < C; ++c) {
    double vv = 0, vm = 0, mm = 0, scale = 0;
    for (int i = 0; i < n; ++i) {
      const double vi = v[size_t(c) * n + i], mi = out[size_t(c) * n + i];
      vv += vi * vi;
      vm += vi * mi;
      mm += mi * mi;
      scale += std::fabs(vi * mi);
    }
    err = std::fmax(err, std::fabs(totals[c] - vv) / vv);
    err = std::fmax(err, std::fabs(totals[C + c] - vm) / (scale + 1e-300));
    err = std::fmax(err, std::fabs(totals[2 * C + c] - mm) / (mm + 1e-300));
  }
  expect(err <= 1e-13, "stencil_matvec_dots", H, W, type, err);
}

// The fused CG passes (csrc/cuda/pcg_kernels.cuh) on random vectors: each stored value against its
// formula in double on the same stored inputs (one rounding of V or M), each sum against the sum of the
// stored vectors. V: the CG vectors' type, M: the Laplacian's (u and m).
template <typename V, typename M>
void check_pcg(int C, int N, bool maps, const LaunchShape& shape, const char* type, std::mt19937& rng) {
  std::uniform_real_distribution<double> uni(-1.0, 1.0);
  const size_t n = size_t(C) * N;
  std::vector<V> x(n), r(n), p(n);
  std::vector<M> m(n), u(n);
  std::vector<double> d(N), beta(C), alpha(C);
  for (auto* vec : {&x, &r, &p})
    for (auto& e : *vec) e = V(uni(rng));
  for (auto& e : m) e = M(uni(rng));
  for (int i = 0; i < N; ++i) d[i] = 1.0 + 0.5 * uni(rng);
  for (int c = 0; c < C; ++c) beta[c] = uni(rng), alpha[c] = uni(rng);
  const double* dp = maps ? d.data() : nullptr;
  const double w = 37.0, ev = std::numeric_limits<V>::epsilon(), em = std::numeric_limits<M>::epsilon();
  auto at = [&](const std::vector<double>& map, int i) { return maps ? map[i] : 1.0; };
  // One rounding of the stored type, plus double roundings of terms that may cancel (FMA contraction).
  auto close = [](double got, double want, double eps, double terms) {
    return std::fabs(got - want) <= eps * std::fabs(want) + 1e-15 * terms;
  };

  std::vector<V> p0 = p;
  dpst::cuda::launch_pcg_direction(r.data(), dp, p.data(), beta.data(), u.data(), C, N, nullptr, shape);
  double err = 0;
  for (int c = 0; c < C; ++c)
    for (int i = 0; i < N; ++i) {
      const size_t k = size_t(c) * N + i;
      const double z = double(r[k]) * at(d, i), want = z + beta[c] * double(p0[k]);
      if (!close(p[k], want, ev, std::fabs(z) + std::fabs(beta[c] * double(p0[k]))))
        err = std::fmax(err, std::fabs(p[k] - want));
      const double uw = double(p[k]);
      if (!close(u[k], uw, em, std::fabs(uw))) err = std::fmax(err, std::fabs(u[k] - uw));
    }
  expect(err == 0, "pcg_direction", C, N, type, err);

  const dim3 grid = dpst::cuda::pcg_grid(C, N, shape);
  std::vector<double> partials(2 * size_t(C) * grid.x), totals(2 * size_t(C));
  dpst::cuda::launch_pcg_curvature(p.data(), m.data(), w, C, N, partials.data(), totals.data(), nullptr, shape);
  err = 0;
  for (int c = 0; c < C; ++c) {
    double want = 0, scale = 0;
    for (int i = 0; i < N; ++i) {
      const size_t k = size_t(c) * N + i;
      const double term = double(p[k]) * (double(p[k]) + w * double(m[k]));
      want += term, scale += std::fabs(term);
    }
    err = std::fmax(err, std::fabs(totals[c] - want) / std::fmax(scale, 1e-300));
  }
  expect(err <= 1e-13, "pcg_curvature", C, N, type, err);

  std::vector<V> x0 = x, r0 = r;
  dpst::cuda::launch_pcg_update(x.data(), r.data(), p.data(), m.data(), w, alpha.data(), dp, C, N, partials.data(),
                                totals.data(), nullptr, shape);
  err = 0;
  double sum_err = 0;
  for (int c = 0; c < C; ++c) {
    double rr = 0, rz = 0;
    for (int i = 0; i < N; ++i) {
      const size_t k = size_t(c) * N + i;
      const double pk = p[k];
      const double xw = double(x0[k]) + alpha[c] * pk;
      const double rw = double(r0[k]) - alpha[c] * (pk + w * double(m[k]));
      if (!close(x[k], xw, ev, std::fabs(double(x0[k])) + std::fabs(alpha[c] * pk)))
        err = std::fmax(err, std::fabs(x[k] - xw));
      const double rterms =
          std::fabs(double(r0[k])) + std::fabs(alpha[c]) * (std::fabs(pk) + w * std::fabs(double(m[k])));
      if (!close(r[k], rw, ev, rterms)) err = std::fmax(err, std::fabs(r[k] - rw));
      rr += double(r[k]) * double(r[k]);
      rz += double(r[k]) * double(r[k]) * at(d, i);
    }
    sum_err = std::fmax(sum_err, std::fabs(totals[c] - rr) / std::fmax(rr, 1e-300));
    sum_err = std::fmax(sum_err, std::fabs(totals[C + c] - rz) / std::fmax(rz, 1e-300));
  }
  expect(err == 0, "pcg_update (x, r)", C, N, type, err);
  expect(sum_err <= 1e-13, "pcg_update (sums)", C, N, type, sum_err);

  // pcg_step (no d): x += alpha p, r -= alpha (p + w m), then p = r + beta p from r as stored.
  x0 = x, r0 = r, p0 = p;
  dpst::cuda::launch_pcg_step(x.data(), r.data(), p.data(), m.data(), w, alpha.data(), beta.data(), C, N,
                              partials.data(), totals.data(), nullptr, shape);
  err = 0, sum_err = 0;
  for (int c = 0; c < C; ++c) {
    double rr = 0;
    for (int i = 0; i < N; ++i) {
      const size_t k = size_t(c) * N + i;
      const double pk = p0[k];
      const double xw = double(x0[k]) + alpha[c] * pk;
      const double rw = double(r0[k]) - alpha[c] * (pk + w * double(m[k]));
      const double pw = double(r[k]) + beta[c] * pk;
      if (!close(x[k], xw, ev, std::fabs(double(x0[k])) + std::fabs(alpha[c] * pk)))
        err = std::fmax(err, std::fabs(x[k] - xw));
      const double rterms =
          std::fabs(double(r0[k])) + std::fabs(alpha[c]) * (std::fabs(pk) + w * std::fabs(double(m[k])));
      if (!close(r[k], rw, ev, rterms)) err = std::fmax(err, std::fabs(r[k] - rw));
      if (!close(p[k], pw, ev, std::fabs(double(r[k])) + std::fabs(beta[c] * pk)))
        err = std::fmax(err, std::fabs(p[k] - pw));
      rr += double(r[k]) * double(r[k]);
    }
    sum_err = std::fmax(sum_err, std::fabs(totals[c] - rr) / std::fmax(rr, 1e-300));
  }
  expect(err == 0, "pcg_step (x, r, p)", C, N, type, err);
  expect(sum_err <= 1e-13, "pcg_step (r.r)", C, N, type, sum_err);
}

// Smooth local affine (csrc/cuda/affine_kernels.cuh): the fit against a plain loop over each pixel's
// clipped 3x3 window (csrc/affine_math.h), the filter + reconstruction against a direct double loop
// over the (2r+1)^2 taps with std::exp.
template <typename T>
void check_affine(int H, int W, int radius, const AffineLaunchShape& shape, const char* type, double tol,
                  std::mt19937& rng) {
  const int n = H * W;
  const double ridge = 1e-3, edge = 0.05;
  std::uniform_real_distribution<double> uni(0.0, 1.0);
  std::vector<T> content(3 * size_t(n)), output(3 * size_t(n)), coeffs(12 * size_t(n)), out(3 * size_t(n));
  for (auto& x : content) x = T(uni(rng));
  for (auto& x : output) x = T(uni(rng));
  dpst::cuda::launch_local_affine_fit(content.data(), output.data(), coeffs.data(), H, W, ridge, nullptr, shape);
  double err = 0, scale = 1e-300;
  std::vector<double> want(12 * size_t(n));
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x) {
      dpst::AffineNormal nrm;
      for (int qy = y - 1; qy <= y + 1; ++qy)
        for (int qx = x - 1; qx <= x + 1; ++qx) {
          if (qy < 0 || qy >= H || qx < 0 || qx >= W) continue;
          const size_t q = size_t(qy) * W + qx;
          nrm.add(content[q], content[n + q], content[2 * n + q], output[q], output[n + q], output[2 * n + q]);
        }
      double a[12];
      dpst::affine_solve(nrm, ridge, a);
      for (int k = 0; k < 12; ++k) {
        want[size_t(k) * n + y * W + x] = a[k];
        scale = std::fmax(scale, std::fabs(a[k]));
      }
    }
  for (size_t i = 0; i < want.size(); ++i) err = std::fmax(err, std::fabs(double(coeffs[i]) - want[i]));
  expect(err <= tol * scale, "local_affine_fit", H, W, type, err / scale);

  dpst::cuda::launch_bilateral_affine(coeffs.data(), content.data(), out.data(), H, W, radius, edge, nullptr, shape);
  const double s = radius / 3.0;
  err = 0;
  scale = 1e-300;
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x) {
      const size_t p = size_t(y) * W + x;
      double acc[12] = {0}, den = 0;
      for (int qy = y - radius; qy <= y + radius; ++qy)
        for (int qx = x - radius; qx <= x + radius; ++qx) {
          if (qy < 0 || qy >= H || qx < 0 || qx >= W) continue;
          const size_t q = size_t(qy) * W + qx;
          double d2 = 0;
          for (int c = 0; c < 3; ++c) d2 += std::pow(double(content[c * n + p]) - double(content[c * n + q]), 2);
          const double sp = radius > 0 ? double((qy - y) * (qy - y) + (qx - x) * (qx - x)) / (2 * s * s) : 0.0;
          const double w = std::exp(-sp - d2 / (2 * edge * edge));
          den += w;
          for (int k = 0; k < 12; ++k) acc[k] += w * double(coeffs[size_t(k) * n + q]);
        }
      for (int c = 0; c < 3; ++c) {
        double o = acc[4 * c + 3] / den, terms = std::fabs(o);
        for (int k = 0; k < 3; ++k) {
          o += acc[4 * c + k] / den * double(content[k * n + p]);
          terms += std::fabs(acc[4 * c + k] / den * double(content[k * n + p]));
        }
        err = std::fmax(err, std::fabs(double(out[c * n + p]) - o));
        scale = std::fmax(scale, terms);
      }
    }
  expect(err <= tol * scale, "bilateral_affine_apply", H, W, type, err / scale);
}

void print_shared_memory() {
  const LaunchShape s{};
  auto bytes = [](auto layout) {
    dpst::SharedSizer size;
    layout(size);
    return size.offset;
  };
  std::printf("dynamic shared memory per block at the GPU block shapes (LaunchShape{}):\n");
  for (int f64 = 0; f64 < 2; ++f64) {
    const char* t = f64 ? "double" : "float";
    auto run = [&](auto zero) {
      using T = decltype(zero);
      T *a, *b, *c;
      double* r;
      std::printf("  %-6s window_stats_kernel      %2ux%-2u  %6zu B\n", t, s.tile_x, s.tile_y,
                  bytes([&](auto& z) { dpst::cuda::window_stats_layout<T>(z, s.tile_x, s.tile_y, a); }));
      std::printf("  %-6s laplacian_matvec_kernel  %2ux%-2u  %6zu B\n", t, s.matvec_x, s.matvec_y,
                  dpst::cuda::matvec_shared_bytes<T>(s));
      std::printf("  %-6s laplacian_diagonal_kernel %2ux%-2u %6zu B\n", t, s.tile_x, s.tile_y,
                  bytes([&](auto& z) { dpst::cuda::diagonal_layout<T>(z, s.tile_x, s.tile_y, a); }));
      std::printf("  %-6s loss_partials_kernel     %2ux%-2u  %6zu B\n", t, s.tile_x, s.tile_y,
                  bytes([&](auto& z) { dpst::cuda::loss_layout<T>(z, s.tile_x, s.tile_y, r, b, c); }));
    };
    if (f64) run(0.0); else run(0.0f);
  }
  std::printf("  sum_partials_kernel %u threads: %zu B; csr and stencil kernels: 0 B\n", s.threads,
              s.threads * sizeof(double));
  const AffineLaunchShape a{};
  for (int r : {1, 3, 15}) {
    const auto cf = dpst::cuda::bilateral_chunks(r, a.bilateral_x, a.bilateral_y, 4, a.shared_budget);
    const auto cd = dpst::cuda::bilateral_chunks(r, a.bilateral_x, a.bilateral_y, 8, a.shared_budget);
    std::printf("  bilateral_affine_kernel %ux%u radius %2d: float %6zu B (tap chunks %dx%d), "
                "double %6zu B (%dx%d)\n", a.bilateral_x, a.bilateral_y, r,
                dpst::cuda::bilateral_shared_bytes<float>(a, cf), cf.y, cf.x,
                dpst::cuda::bilateral_shared_bytes<double>(a, cd), cd.y, cd.x);
  }
  std::printf("  local_affine_fit_kernel %ux%u: float %zu B, double %zu B\n", a.fit_x, a.fit_y,
              dpst::cuda::fit_shared_bytes<float>(a), dpst::cuda::fit_shared_bytes<double>(a));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "--shared") == 0) {
    print_shared_memory();
    return 0;
  }
  std::mt19937 rng(1234);
  const LaunchShape shapes[] = {
      {8, 4, 8, 4, 32},   // several and partial blocks on small images
      {5, 3, 3, 7, 17},   // non-power-of-two blocks
  };
  const int sizes[][2] = {{3, 3}, {4, 9}, {7, 5}, {11, 13}, {3, 17}};
  int runs = 0;
  for (const auto& shape : shapes)
    for (const auto& hw : sizes)
      for (int C : {1, 3}) {
        check_size<double>(hw[0], hw[1], C, shape, "double", 1e-10, rng);
        check_size<float>(hw[0], hw[1], C, shape, "float", 2e-4, rng);
        runs += 2;
      }
  for (const auto& shape : shapes)
    for (int N : {1, 31, 100, 517})
      for (int C : {1, 3})
        for (bool maps : {false, true}) {
          check_pcg<double, double>(C, N, maps, shape, "double/double", rng);
          check_pcg<double, float>(C, N, maps, shape, "double/float", rng);
          check_pcg<float, float>(C, N, maps, shape, "float/float", rng);
          check_pcg<float, double>(C, N, maps, shape, "float/double", rng);
          runs += 4;
        }
  const AffineLaunchShape affine_shapes[] = {
      {8, 4, 8, 4, 8192},  // several blocks; radius 3 spans several tap chunks
      {5, 3, 3, 5, 1200},  // odd blocks; a budget of about one tap per chunk
  };
  const int affine_sizes[][2] = {{1, 1}, {2, 7}, {9, 6}, {13, 11}};
  for (const auto& shape : affine_shapes)
    for (const auto& hw : affine_sizes)
      for (int radius : {0, 1, 3, 7}) {
        check_affine<double>(hw[0], hw[1], radius, shape, "double", 1e-11, rng);
        check_affine<float>(hw[0], hw[1], radius, shape, "float", 3e-5, rng);
        runs += 2;
      }
  std::printf("%d kernel-set runs, %d failures\n", runs, failures);
  return failures ? 1 : 0;
}
