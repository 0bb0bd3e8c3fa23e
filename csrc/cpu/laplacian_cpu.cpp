// CPU kernels of the matting-Laplacian engine. The maths per window is csrc/window_math.h; this file
// only lays out loops over windows and pixels, parallelised over rows with at::parallel_for.
//
// Where L.v is computed: laplacian_matvec_cpu below (two phases per band of rows: per-window
// coefficients (vbar, g) into a small band buffer, then a gather onto the band's pixels).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "../checks.h"
#include "../window_math.h"

namespace dpst {
namespace {

// Rows of pixels handled per task: large enough that the 2 halo window rows recomputed by each band
// cost little, small enough that a band's coefficient buffer stays in L2.
constexpr int64_t kBandRows = 16;

template <typename T>
struct Planes {  // planar (P, H, W) view
  const T* p;
  int64_t h, w;
  const T& operator()(int64_t c, int64_t y, int64_t x) const { return p[(c * h + y) * w + x]; }
};

template <typename T>
inline void load_window(const Planes<T>& S, int64_t ky, int64_t kx, T mu[3], T w[6]) {
  for (int c = 0; c < 3; ++c) mu[c] = S(c, ky, kx);
  for (int c = 0; c < 6; ++c) w[c] = S(3 + c, ky, kx);
}

template <typename T>
void window_stats_kernel(const T* image, T* stats, int64_t H, int64_t W, double eps) {
  const int64_t hw = H - 2, ww = W - 2, plane = hw * ww;
  const Planes<T> I{image, H, W};
  at::parallel_for(0, hw, 4, [&](int64_t r0, int64_t r1) {
    double c[9][3], mu[3], w[6];
    for (int64_t ky = r0; ky < r1; ++ky) {
      for (int64_t kx = 0; kx < ww; ++kx) {
        for (int j = 0; j < 9; ++j)
          for (int ch = 0; ch < 3; ++ch) c[j][ch] = double(I(ch, ky + j / 3, kx + j % 3));
        window_stats(c, eps, mu, w);
        T* out = stats + ky * ww + kx;
        for (int q = 0; q < 3; ++q) out[q * plane] = T(mu[q]);
        for (int q = 0; q < 6; ++q) out[(3 + q) * plane] = T(w[q]);
      }
    }
  });
}

template <typename T>
void matvec_kernel(const T* image, const T* stats, const T* v, T* out, int64_t C, int64_t H,
                   int64_t W) {
  const int64_t hw = H - 2, ww = W - 2;
  const Planes<T> I{image, H, W}, S{stats, hw, ww}, V{v, H, W};
  const int64_t nbands = (H + kBandRows - 1) / kBandRows;
  at::parallel_for(0, nbands, 1, [&](int64_t b0, int64_t b1) {
    // coef[(wy - wy0)][c][q][kx], q = 0: vbar, q = 1..3: g
    std::vector<T> coef;
    std::vector<T> acc(W);
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t y0 = b * kBandRows, y1 = std::min(H, y0 + kBandRows);
      const int64_t wy0 = std::max<int64_t>(y0 - 2, 0), wy1 = std::min(y1, hw);
      coef.resize(std::max<int64_t>(wy1 - wy0, 0) * C * 4 * ww);
      // Phase 1: per-window coefficients for every window touching the band.
      for (int64_t ky = wy0; ky < wy1; ++ky) {
        T* crow = coef.data() + (ky - wy0) * C * 4 * ww;
        for (int64_t kx = 0; kx < ww; ++kx) {
          T mu[3], w[6], x[9][3], vj[9], vbar, g[3];
          load_window(S, ky, kx, mu, w);
          for (int j = 0; j < 9; ++j)
            for (int ch = 0; ch < 3; ++ch) x[j][ch] = I(ch, ky + j / 3, kx + j % 3) - mu[ch];
          for (int64_t c = 0; c < C; ++c) {
            for (int j = 0; j < 9; ++j) vj[j] = V(c, ky + j / 3, kx + j % 3);
            window_coeffs(w, x, vj, vbar, g);
            T* cc = crow + c * 4 * ww + kx;
            cc[0] = vbar; cc[ww] = g[0]; cc[2 * ww] = g[1]; cc[3 * ww] = g[2];
          }
        }
      }
      // Phase 2: (M v)_i = n_i v_i - sum_{k containing i} (vbar_k + (I_i - mu_k) . g_k).
      for (int64_t y = y0; y < y1; ++y) {
        const int64_t klo = std::max<int64_t>(y - 2, 0), khi = std::min(y, hw - 1);
        const T* I0 = &I(0, y, 0);
        const T* I1 = &I(1, y, 0);
        const T* I2 = &I(2, y, 0);
        for (int64_t c = 0; c < C; ++c) {
          std::fill(acc.begin(), acc.end(), T(0));
          for (int64_t ky = klo; ky <= khi; ++ky) {
            const T* cc = coef.data() + ((ky - wy0) * C + c) * 4 * ww;
            const T *vb = cc, *g0 = cc + ww, *g1 = cc + 2 * ww, *g2 = cc + 3 * ww;
            const T *m0 = &S(0, ky, 0), *m1 = &S(1, ky, 0), *m2 = &S(2, ky, 0);
            for (int dx = 0; dx < 3; ++dx) {  // window kx covers pixel x = kx + dx
              T* a = acc.data() + dx;
              const T *i0 = I0 + dx, *i1 = I1 + dx, *i2 = I2 + dx;
              for (int64_t kx = 0; kx < ww; ++kx)
                a[kx] += vb[kx] + (i0[kx] - m0[kx]) * g0[kx] + (i1[kx] - m1[kx]) * g1[kx] +
                         (i2[kx] - m2[kx]) * g2[kx];
            }
          }
          const T ny = T(khi >= klo ? khi - klo + 1 : 0);
          const T* vr = &V(c, y, 0);
          T* o = out + (c * H + y) * W;
          for (int64_t x = 0; x < W; ++x) o[x] = ny * T(windows_covering(x, W)) * vr[x] - acc[x];
        }
      }
    }
  });
}

template <typename T>
void diagonal_kernel(const T* image, const T* stats, T* out, int64_t H, int64_t W) {
  const int64_t hw = H - 2, ww = W - 2;
  const Planes<T> I{image, H, W}, S{stats, hw, ww};
  at::parallel_for(0, H, 8, [&](int64_t r0, int64_t r1) {
    for (int64_t y = r0; y < r1; ++y) {
      for (int64_t x = 0; x < W; ++x) {
        T d = 0;
        for (int64_t ky = std::max<int64_t>(y - 2, 0); ky <= std::min(y, hw - 1); ++ky)
          for (int64_t kx = std::max<int64_t>(x - 2, 0); kx <= std::min(x, ww - 1); ++kx) {
            T mu[3], w[6], xi[3];
            load_window(S, ky, kx, mu, w);
            for (int ch = 0; ch < 3; ++ch) xi[ch] = I(ch, y, x) - mu[ch];
            d += window_entry(w, xi, xi, true);
          }
        out[y * W + x] = d;
      }
    }
  });
}

// Fixed-width CSR: row i = (y, x) holds the clamped 5x5 neighbourhood rows ry0..ry0+nh-1,
// columns rx0..rx0+nw-1 (row-major, hence sorted); pixels sharing no window get explicit zeros.
inline int64_t clamp_origin(int64_t p, int64_t n) {
  return n <= 5 ? 0 : std::min(std::max<int64_t>(p - 2, 0), n - 5);
}

template <typename T, typename index_t>
void csr_kernel(const T* image, const T* stats, index_t* crow, index_t* col, T* val, int64_t H,
                int64_t W) {
  const int64_t hw = H - 2, ww = W - 2;
  const int64_t nh = std::min<int64_t>(H, 5), nw = std::min<int64_t>(W, 5), width = nh * nw;
  const Planes<T> I{image, H, W}, S{stats, hw, ww};
  const int64_t N = H * W;
  for (int64_t i = 0; i <= N; ++i) crow[i] = index_t(i * width);
  at::parallel_for(0, H, 4, [&](int64_t r0, int64_t r1) {
    for (int64_t y = r0; y < r1; ++y) {
      const int64_t ry0 = clamp_origin(y, H);
      for (int64_t x = 0; x < W; ++x) {
        const int64_t rx0 = clamp_origin(x, W);
        const int64_t i = y * W + x;
        index_t* ci = col + i * width;
        T* vi = val + i * width;
        for (int64_t q = 0; q < width; ++q) {
          ci[q] = index_t((ry0 + q / nw) * W + rx0 + q % nw);
          vi[q] = T(0);
        }
        for (int64_t ky = std::max<int64_t>(y - 2, 0); ky <= std::min(y, hw - 1); ++ky)
          for (int64_t kx = std::max<int64_t>(x - 2, 0); kx <= std::min(x, ww - 1); ++kx) {
            T mu[3], w[6], xi[3], zi[3];
            load_window(S, ky, kx, mu, w);
            for (int ch = 0; ch < 3; ++ch) xi[ch] = I(ch, y, x) - mu[ch];
            whiten(w, xi, zi);
            for (int j = 0; j < 9; ++j) {
              const int64_t jy = ky + j / 3, jx = kx + j % 3;
              T xj[3], zj[3];
              for (int ch = 0; ch < 3; ++ch) xj[ch] = I(ch, jy, jx) - mu[ch];
              whiten(w, xj, zj);
              const T e = ((jy == y && jx == x) ? T(1) : T(0)) - T(1) / T(9) -
                          (zi[0] * zj[0] + zi[1] * zj[1] + zi[2] * zj[2]);
              vi[(jy - ry0) * nw + (jx - rx0)] += e;
            }
          }
      }
    }
  });
}

template <typename T>
double quad_kernel(const T* image, const T* stats, const T* v, int64_t C, int64_t H, int64_t W) {
  const int64_t hw = H - 2, ww = W - 2;
  const Planes<T> I{image, H, W}, S{stats, hw, ww}, V{v, H, W};
  // Sum in double per window row, then over rows: the total is a sum of many small non-negative terms.
  return at::parallel_reduce(
      int64_t(0), hw, int64_t(4), 0.0,
      [&](int64_t r0, int64_t r1, double ident) {
        double total = ident;
        for (int64_t ky = r0; ky < r1; ++ky)
          for (int64_t kx = 0; kx < ww; ++kx) {
            T mu[3], w[6], x[9][3], vj[9];
            load_window(S, ky, kx, mu, w);
            for (int j = 0; j < 9; ++j)
              for (int ch = 0; ch < 3; ++ch) x[j][ch] = I(ch, ky + j / 3, kx + j % 3) - mu[ch];
            for (int64_t c = 0; c < C; ++c) {
              for (int j = 0; j < 9; ++j) vj[j] = V(c, ky + j / 3, kx + j % 3);
              total += double(window_quad(w, x, vj));
            }
          }
        return total;
      },
      std::plus<double>());
}

// ---- entry points ---------------------------------------------------------------------------

at::Tensor window_stats_cpu(const at::Tensor& image_, double eps) {
  check_image(image_);
  check_eps(eps);
  check_finite(image_, "image");
  const auto image = image_.contiguous();
  const int64_t H = image.size(1), W = image.size(2);
  auto stats = at::empty({9, windows_along(H), windows_along(W)}, image.options());
  if (stats.numel() == 0) return stats;
  AT_DISPATCH_FLOATING_TYPES(image.scalar_type(), "window_stats_cpu", [&] {
    window_stats_kernel(image.data_ptr<scalar_t>(), stats.data_ptr<scalar_t>(), H, W, eps);
  });
  return stats;
}

at::Tensor laplacian_matvec_cpu(const at::Tensor& image_, const at::Tensor& stats_,
                                const at::Tensor& v_) {
  check_stats(image_, stats_);
  check_values(image_, v_, "v");
  const auto image = image_.contiguous(), stats = stats_.contiguous(), v = v_.contiguous();
  const int64_t C = v.size(0), H = v.size(1), W = v.size(2);
  if (stats.numel() == 0) return at::zeros_like(v);  // no 3x3 window fits: M = 0
  auto out = at::empty_like(v);
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(image.scalar_type(), "laplacian_matvec_cpu", [&] {
    matvec_kernel(image.data_ptr<scalar_t>(), stats.data_ptr<scalar_t>(), v.data_ptr<scalar_t>(),
                  out.data_ptr<scalar_t>(), C, H, W);
  });
  return out;
}

at::Tensor laplacian_diagonal_cpu(const at::Tensor& image_, const at::Tensor& stats_) {
  check_stats(image_, stats_);
  const auto image = image_.contiguous(), stats = stats_.contiguous();
  const int64_t H = image.size(1), W = image.size(2);
  if (stats.numel() == 0) return at::zeros({H, W}, image.options());
  auto out = at::empty({H, W}, image.options());
  AT_DISPATCH_FLOATING_TYPES(image.scalar_type(), "laplacian_diagonal_cpu", [&] {
    diagonal_kernel(image.data_ptr<scalar_t>(), stats.data_ptr<scalar_t>(),
                    out.data_ptr<scalar_t>(), H, W);
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> laplacian_csr_cpu(const at::Tensor& image_,
                                                                 const at::Tensor& stats_) {
  check_stats(image_, stats_);
  const auto image = image_.contiguous(), stats = stats_.contiguous();
  const int64_t H = image.size(1), W = image.size(2), N = H * W;
  const int64_t nnz = N * csr_row_width(H, W);
  const auto index_type = nnz >= (int64_t(1) << 31) ? at::kLong : at::kInt;
  auto crow = at::empty({N + 1}, image.options().dtype(index_type));
  auto col = at::empty({nnz}, image.options().dtype(index_type));
  auto val = at::empty({nnz}, image.options());
  if (N == 0) {
    crow.zero_();
    return {crow, col, val};
  }
  AT_DISPATCH_FLOATING_TYPES(image.scalar_type(), "laplacian_csr_cpu", [&] {
    AT_DISPATCH_INDEX_TYPES(index_type, "laplacian_csr_cpu", [&] {
      csr_kernel(image.data_ptr<scalar_t>(), stats.data_ptr<scalar_t>(), crow.data_ptr<index_t>(),
                 col.data_ptr<index_t>(), val.data_ptr<scalar_t>(), H, W);
    });
  });
  return {crow, col, val};
}

at::Tensor photoreal_loss_cpu(const at::Tensor& image_, const at::Tensor& stats_,
                              const at::Tensor& v_) {
  check_stats(image_, stats_);
  check_values(image_, v_, "v");
  const auto image = image_.contiguous(), stats = stats_.contiguous(), v = v_.contiguous();
  double total = 0.0;
  if (stats.numel() > 0 && v.numel() > 0) {
    AT_DISPATCH_FLOATING_TYPES(image.scalar_type(), "photoreal_loss_cpu", [&] {
      total = quad_kernel(image.data_ptr<scalar_t>(), stats.data_ptr<scalar_t>(),
                          v.data_ptr<scalar_t>(), v.size(0), v.size(1), v.size(2));
    });
  }
  return at::scalar_tensor(total, image.options());
}

}  // namespace

TORCH_LIBRARY_IMPL(dpst, CPU, m) {
  m.impl("window_stats", &window_stats_cpu);
  m.impl("laplacian_matvec", &laplacian_matvec_cpu);
  m.impl("laplacian_diagonal", &laplacian_diagonal_cpu);
  m.impl("laplacian_csr", &laplacian_csr_cpu);
  m.impl("photoreal_loss", &photoreal_loss_cpu);
}

}  // namespace dpst
