// CPU kernels of the matting-Laplacian engine. The maths per window is csrc/window_math.h; this file
// only lays out loops over windows and pixels, parallelised over rows with at::parallel_for.
//
// Where L.v is computed: laplacian_matvec_cpu -> matvec_channels below (per tile of rows x columns,
// a ring of three window rows of coefficients (vbar, g) and a gather onto each pixel row).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstdlib>
#include <utility>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "../checks.h"
#include "../window_math.h"

namespace dpst {
namespace {

// A large output in memory that asks for transparent huge pages. Fresh 4 KB pages cost a page fault
// each on first touch: measured on the 2-core VM, ~0.7 ms per MB, i.e. ~35 ms for the 48 MB of a
// 3-channel 4 MP L.v (more than the product itself) and ~0.4 s for the 800 MB CSR. With 2 MB pages
// the faults all but vanish. (torch's CPU allocator does this only when THP_MEM_ALLOC_ENABLE=1 is
// set before torch starts; numpy does it by default.) Small outputs use the torch allocator.
at::Tensor empty_output(at::IntArrayRef sizes, const at::TensorOptions& options) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr size_t kHuge = size_t(2) << 20;
  const size_t nbytes = size_t(c10::multiply_integers(sizes)) * options.dtype().itemsize();
  if (nbytes >= 8 * kHuge) {
    const size_t len = (nbytes + kHuge - 1) / kHuge * kHuge;
    if (void* p = std::aligned_alloc(kHuge, len)) {
      madvise(p, len, MADV_HUGEPAGE);  // advice only: without THP this is plain memory
      return at::from_blob(p, sizes, [](void* q) { std::free(q); }, options);
    }
  }
#endif
  return at::empty(sizes, options);
}

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

constexpr int64_t kStatsChunk = 256;
template <typename T>
__attribute__((noinline)) void window_stats_chunk(const T* __restrict__ img,
                                                  T (*__restrict__ buf)[kStatsChunk], int64_t H,
                                                  int64_t W, int64_t ky, int64_t kx0, int64_t n,
                                                  double eps) {
  const int64_t plane = H * W;
  for (int64_t k = 0; k < n; ++k) {
    double c[9][3], mu[3], w[6];
    window_colours(img, plane, W, ky, kx0 + k, c);
    window_stats(c, eps, mu, w);
#pragma GCC unroll 3
    for (int q = 0; q < 3; ++q) buf[q][k] = T(mu[q]);
#pragma GCC unroll 6
    for (int q = 0; q < 6; ++q) buf[3 + q][k] = T(w[q]);
  }
}
template <typename T>
void window_stats_kernel(const T* image, T* stats, int64_t H, int64_t W, double eps) {
  const int64_t hw = H - 2, ww = W - 2, splane = hw * ww;
  at::parallel_for(0, hw, 4, [&](int64_t r0, int64_t r1) {
    std::vector<T> buf(9 * kStatsChunk);
    auto* rows = reinterpret_cast<T(*)[kStatsChunk]>(buf.data());
    for (int64_t ky = r0; ky < r1; ++ky)
      for (int64_t kx0 = 0; kx0 < ww; kx0 += kStatsChunk) {
        const int64_t n = std::min(kStatsChunk, ww - kx0);
        window_stats_chunk(image, rows, H, W, ky, kx0, n, eps);
        for (int q = 0; q < 9; ++q)
          std::copy(rows[q], rows[q] + n, stats + q * splane + ky * ww + kx0);
      }
  });
}

// ---- L.v: rolling window rows over (row chunk x column strip) tiles ---------------------------
//
// Each task owns a tile of pixel rows [ya, yb) and columns [x0, x1). It walks its rows top to bottom
// keeping the coefficients of the last three window rows in a ring of three slots (about 80 KB for
// 3 channels: L2-resident), so every window is computed once per tile (plus 2 halo rows and
// columns) and every input byte is read from memory once. A slot holds, per window column p
// (kx = x0 - 2 + p), the fields mu0 mu1 mu2, then per channel vbar g0 g1 g2, as separate arrays
// (structure of arrays) so that the loops over kx and x vectorise. Windows outside the image are
// stored as zeros (vbar = g = 0), which contribute exactly nothing: the gather needs no bounds tests.

constexpr int64_t kStripCols = 512;  // tile width; ring = 3 slots x (3 + 4C) fields x kFieldStride
// Fields of a slot lie a compile-time stride apart (>= the widest tile + 2 halo windows), so the
// compiler can prove that the stores to different fields never overlap and vectorises the loop.
constexpr int64_t kFieldStride = kStripCols + 8;

struct Tiles {
  int64_t rows_per_chunk, nchunks, cols_per_strip, nstrips;
  Tiles(int64_t H, int64_t W) {
    nstrips = (W + kStripCols - 1) / kStripCols;
    cols_per_strip = (W + nstrips - 1) / nstrips;
    // About 16 tiles per thread balance the load (parallel_for hands each thread a contiguous run
    // of tiles); chunks of >= 32 rows keep the 2 recomputed halo window rows per chunk cheap.
    const int64_t want = std::max<int64_t>(1, 16 * at::get_num_threads() / nstrips);
    rows_per_chunk = std::max<int64_t>(32, (H + want - 1) / want);
    nchunks = (H + rows_per_chunk - 1) / rows_per_chunk;
  }
};

// Coefficients of window row ky, windows kx in [kxa, kxb), into one ring slot (field f of column p
// at slot[f * kFieldStride + p], p = kx - base). NC channels of v (planes v + c * H * W).
template <typename T, int NC>
void matvec_window_row(const T* __restrict__ img, const T* __restrict__ st, const T* __restrict__ v,
                       T* __restrict__ slot, int64_t H, int64_t W, int64_t ky, int64_t kxa,
                       int64_t kxb, int64_t base) {
  constexpr int64_t L = kFieldStride;
  const int64_t plane = H * W, ww = W - 2, splane = (H - 2) * ww;
  const T* I = img + ky * W;
  const T* V = v + ky * W;
  const T* S = st + ky * ww;
  for (int64_t kx = kxa; kx < kxb; ++kx) {
    T mu[3], w[6], x[9][3], vj[9], vbar, g[3];
#pragma GCC unroll 3
    for (int q = 0; q < 3; ++q) mu[q] = S[q * splane + kx];
#pragma GCC unroll 6
    for (int q = 0; q < 6; ++q) w[q] = S[(3 + q) * splane + kx];
#pragma GCC unroll 9
    for (int j = 0; j < 9; ++j)
#pragma GCC unroll 3
      for (int ch = 0; ch < 3; ++ch) x[j][ch] = I[ch * plane + (j / 3) * W + kx + j % 3] - mu[ch];
    const int64_t p = kx - base;
#pragma GCC unroll 3
    for (int q = 0; q < 3; ++q) slot[q * L + p] = mu[q];
#pragma GCC unroll 3
    for (int c = 0; c < NC; ++c) {
#pragma GCC unroll 9
      for (int j = 0; j < 9; ++j) vj[j] = V[c * plane + (j / 3) * W + kx + j % 3];
      window_coeffs(w, x, vj, vbar, g);
      T* f = slot + (3 + 4 * c) * L + p;
      f[0] = vbar; f[L] = g[0]; f[2 * L] = g[1]; f[3 * L] = g[2];
    }
  }
}

// Pixel row y, columns [x0, x1): (M v)_i = n_i v_i - sum_{k containing i} (vbar_k + (I_i - mu_k).g_k)
// over the 3x3 windows whose coefficients sit in the ring (slots of window rows y-2, y-1, y).
template <typename T, int NC>
void matvec_pixel_row(const T* __restrict__ img, const T* __restrict__ v,
                      const T* __restrict__ ring, const T* __restrict__ ncols, T* __restrict__ out,
                      int64_t H, int64_t W, int64_t y, int64_t x0, int64_t x1,
                      const int64_t slot_of[3], T nrows) {
  constexpr int64_t L = kFieldStride;
  const int64_t plane = H * W, F = 3 + 4 * NC;
  const T* I = img + y * W;
  const T* V = v + y * W;
  T* O = out + y * W;
  const T* s0 = ring + slot_of[0] * F * L;
  const T* s1 = ring + slot_of[1] * F * L;
  const T* s2 = ring + slot_of[2] * F * L;
  for (int64_t x = x0; x < x1; ++x) {
    const T i0 = I[x], i1 = I[plane + x], i2 = I[2 * plane + x];
    T acc[NC];
#pragma GCC unroll 3
    for (int c = 0; c < NC; ++c) acc[c] = 0;
#pragma GCC unroll 3
    for (int dy = 0; dy < 3; ++dy) {
      const T* s = dy == 0 ? s0 : dy == 1 ? s1 : s2;
#pragma GCC unroll 3
      for (int dx = 0; dx < 3; ++dx) {
        const int64_t p = x - x0 + 2 - dx;  // window kx = x - dx
        const T xi0 = i0 - s[p], xi1 = i1 - s[L + p], xi2 = i2 - s[2 * L + p];
#pragma GCC unroll 3
        for (int c = 0; c < NC; ++c) {
          const T* f = s + (3 + 4 * c) * L + p;
          acc[c] += f[0] + xi0 * f[L] + xi1 * f[2 * L] + xi2 * f[3 * L];
        }
      }
    }
    const T n = nrows * ncols[x];
#pragma GCC unroll 3
    for (int c = 0; c < NC; ++c) O[c * plane + x] = n * V[c * plane + x] - acc[c];
  }
}

template <typename T, int NC>
void matvec_channels(const T* image, const T* stats, const T* v, T* out, int64_t H, int64_t W) {
  const int64_t hw = H - 2, ww = W - 2, F = 3 + 4 * NC;
  const Tiles t(H, W);
  std::vector<T> ncols(W);
  for (int64_t x = 0; x < W; ++x) ncols[x] = T(windows_covering(x, W));
  at::parallel_for(0, t.nchunks * t.nstrips, 1, [&](int64_t t0, int64_t t1) {
    std::vector<T> ring;
    for (int64_t task = t0; task < t1; ++task) {
      const int64_t ya = (task / t.nstrips) * t.rows_per_chunk, yb = std::min(H, ya + t.rows_per_chunk);
      const int64_t x0 = (task % t.nstrips) * t.cols_per_strip, x1 = std::min(W, x0 + t.cols_per_strip);
      const int64_t base = x0 - 2, n = x1 - x0 + 2, L = kFieldStride;
      const int64_t kxa = std::max<int64_t>(base, 0), kxb = std::min(ww, x1);
      ring.resize(3 * F * L);
      auto fill_slot = [&](int64_t ky) {  // window row ky into slot ky mod 3
        T* slot = ring.data() + ((ky + 3) % 3) * F * L;
        if (ky < 0 || ky >= hw) {
          std::fill(slot, slot + F * L, T(0));
          return;
        }
        for (int64_t f = 0; f < F; ++f) {  // zero the columns of windows outside the image
          std::fill(slot + f * L, slot + f * L + (kxa - base), T(0));
          std::fill(slot + f * L + (kxb - base), slot + f * L + n, T(0));
        }
        matvec_window_row<T, NC>(image, stats, v, slot, H, W, ky, kxa, kxb, base);
      };
      fill_slot(ya - 2);
      fill_slot(ya - 1);
      for (int64_t y = ya; y < yb; ++y) {
        fill_slot(y);
        const int64_t slot_of[3] = {(y + 1) % 3, (y + 2) % 3, y % 3};  // window rows y-2, y-1, y
        matvec_pixel_row<T, NC>(image, v, ring.data(), ncols.data(), out, H, W, y, x0, x1, slot_of, T(windows_covering(y, H)));
      }
    }
  });
}

template <typename T>
void matvec_kernel(const T* image, const T* stats, const T* v, T* out, int64_t C, int64_t H,
                   int64_t W) {
  // Channels in groups of 3 (DPST's case: one pass), then 2 or 1: the group size is a template
  // parameter so the per-channel loops unroll and the loops over pixels vectorise.
  const int64_t plane = H * W;
  int64_t c = 0;
  for (; C - c >= 3; c += 3) matvec_channels<T, 3>(image, stats, v + c * plane, out + c * plane, H, W);
  if (C - c == 2) matvec_channels<T, 2>(image, stats, v + c * plane, out + c * plane, H, W);
  if (C - c == 1) matvec_channels<T, 1>(image, stats, v + c * plane, out + c * plane, H, W);
}

// Fixed-width CSR: row i = (y, x) holds the clamped 5x5 neighbourhood rows ry0..ry0+nh-1,
// columns rx0..rx0+nw-1 (row-major, hence sorted); pixels sharing no window get explicit zeros.
inline int64_t clamp_origin(int64_t p, int64_t n) {
  return n <= 5 ? 0 : std::min(std::max<int64_t>(p - 2, 0), n - 5);
}

// Row i = (y, x) of the CSR by the definition, reading the stats directly: used for the two border
// rows and columns (clamped neighbourhoods, missing windows) and for images narrower than 5.
template <typename T, typename index_t>
void csr_row_generic(const Planes<T>& I, const Planes<T>& S, index_t* ci, T* vi, int64_t H,
                     int64_t W, int64_t y, int64_t x) {
  const int64_t hw = H - 2, ww = W - 2;
  const int64_t nh = std::min<int64_t>(H, 5), nw = std::min<int64_t>(W, 5), width = nh * nw;
  const int64_t ry0 = clamp_origin(y, H), rx0 = clamp_origin(x, W);
  for (int64_t q = 0; q < width; ++q) {
    ci[q] = index_t((ry0 + q / nw) * W + rx0 + q % nw);
    vi[q] = T(0);
  }
  for (int64_t ky = std::max<int64_t>(y - 2, 0); ky <= std::min(y, hw - 1); ++ky)
    for (int64_t kx = std::max<int64_t>(x - 2, 0); kx <= std::min(x, ww - 1); ++kx) {
      T mu[3], w[6], xi[3];
      load_window(S, ky, kx, mu, w);
      for (int ch = 0; ch < 3; ++ch) xi[ch] = I(ch, y, x) - mu[ch];
      for (int j = 0; j < 9; ++j) {
        const int64_t jy = ky + j / 3, jx = kx + j % 3;
        T xj[3];
        for (int ch = 0; ch < 3; ++ch) xj[ch] = I(ch, jy, jx) - mu[ch];
        vi[(jy - ry0) * nw + (jx - rx0)] += window_entry(w, xi, xj, jy == y && jx == x);
      }
    }
}

// Whitened colours z_p = W (I_p - mu) of the 9 pixels p (row-major in the window) of every window
// kx in [kxa, kxb) of window row ky, into a ring slot: component c of z_p at field 3 p + c.
template <typename T>
void csr_window_row(const T* __restrict__ img, const T* __restrict__ st, T* __restrict__ slot,
                    int64_t H, int64_t W, int64_t ky, int64_t kxa, int64_t kxb, int64_t base) {
  constexpr int64_t L = kFieldStride;
  const int64_t plane = H * W, ww = W - 2, splane = (H - 2) * ww;
  const T* I = img + ky * W;
  const T* S = st + ky * ww;
  for (int64_t kx = kxa; kx < kxb; ++kx) {
    T mu[3], w[6];
#pragma GCC unroll 3
    for (int q = 0; q < 3; ++q) mu[q] = S[q * splane + kx];
#pragma GCC unroll 6
    for (int q = 0; q < 6; ++q) w[q] = S[(3 + q) * splane + kx];
    const int64_t p = kx - base;
#pragma GCC unroll 9
    for (int j = 0; j < 9; ++j) {
      T x[3], z[3];
#pragma GCC unroll 3
      for (int ch = 0; ch < 3; ++ch) x[ch] = I[ch * plane + (j / 3) * W + kx + j % 3] - mu[ch];
      whiten(w, x, z);
#pragma GCC unroll 3
      for (int ch = 0; ch < 3; ++ch) slot[(3 * j + ch) * L + p] = z[ch];
    }
  }
}

// Entries (OY, OX) (neighbour j = i + (OY, OX)) of the interior pixels x in [xa, xb) of pixel row y,
// into row[x - xa]: the sum over the windows containing both i and j of M^k_ij. slots[d] holds
// window row y - d. Interior pixels have all 9 windows, so the window set is fixed by (OY, OX).
template <typename T, int OY, int OX>
void csr_offset_row(const T* const slots[3], T* __restrict__ row, int64_t xa, int64_t xb,
                    int64_t base) {
  constexpr int64_t L = kFieldStride;
  constexpr int ya = OY < 0 ? -OY : 0, yb = OY > 0 ? 2 - OY : 2;  // i's row in the window
  constexpr int xa_ = OX < 0 ? -OX : 0, xb_ = OX > 0 ? 2 - OX : 2;
  const T* __restrict__ s0 = slots[0];
  const T* __restrict__ s1 = slots[1];
  const T* __restrict__ s2 = slots[2];
  for (int64_t x = xa; x < xb; ++x) {
    T acc = 0;
#pragma GCC unroll 3
    for (int dy = ya; dy <= yb; ++dy) {  // window row y - dy, i at row dy of it
      const T* s = dy == 0 ? s0 : dy == 1 ? s1 : s2;
#pragma GCC unroll 3
      for (int dx = xa_; dx <= xb_; ++dx) {  // window column x - dx
        const int pi = dy * 3 + dx, pj = (dy + OY) * 3 + dx + OX;
        const int64_t p = x - dx - base;
        const T zi[3] = {s[(3 * pi) * L + p], s[(3 * pi + 1) * L + p], s[(3 * pi + 2) * L + p]};
        const T zj[3] = {s[(3 * pj) * L + p], s[(3 * pj + 1) * L + p], s[(3 * pj + 2) * L + p]};
        acc += window_entry_whitened(zi, zj, OY == 0 && OX == 0);
      }
    }
    row[x - xa] = acc;
  }
}

template <typename T, int... Q>
void csr_interior_row(const T* const slots[3], T* rows, int64_t xa, int64_t xb, int64_t base,
                      std::integer_sequence<int, Q...>) {
  // Offset q = 5 (OY + 2) + (OX + 2): column order of the fixed-width row.
  (csr_offset_row<T, Q / 5 - 2, Q % 5 - 2>(slots, rows + Q * kFieldStride, xa, xb, base), ...);
}

// The tile walk shared by the CSR build, the diagonal and the stencil. Tiles (row chunk x column
// strip) run in parallel; each walks its pixel rows top to bottom. For a row with interior pixels
// (2 <= y < H-2, columns [xa, xb) with 2 <= x < W-2: all 9 windows exist), the whitened colours of
// window rows y-2, y-1, y sit in a 3-row ring (fill(slot, ky, kxa, kxb, base) writes window row ky:
// csr_window_row or stencil_window_row; the two rows shared with the previous pixel row are kept)
// and interior(slots, y, xa, xb, base) is called with slots[d] = window row y - d. Every other pixel
// of the tile goes to border(y, x). R: the ring's type (the arithmetic of the entries).
template <typename R, typename Fill, typename Interior, typename Border>
void for_each_ring_row(int64_t H, int64_t W, Fill fill, Interior interior, Border border) {
  const int64_t ww = W - 2;
  const bool has_interior = H >= 5 && W >= 5;
  const Tiles t(H, W);
  constexpr int64_t L = kFieldStride;
  at::parallel_for(0, t.nchunks * t.nstrips, 1, [&](int64_t t0, int64_t t1) {
    std::vector<R> ring(3 * 27 * L);
    for (int64_t task = t0; task < t1; ++task) {
      const int64_t ya = (task / t.nstrips) * t.rows_per_chunk, yb = std::min(H, ya + t.rows_per_chunk);
      const int64_t x0 = (task % t.nstrips) * t.cols_per_strip, x1 = std::min(W, x0 + t.cols_per_strip);
      const int64_t base = x0 - 2, kxa = std::max<int64_t>(base, 0), kxb = std::min(ww, x1);
      const int64_t xa = std::max<int64_t>(x0, 2), xb = std::min(x1, W - 2);  // interior columns
      int64_t filled = -1;  // last window row in the ring
      for (int64_t y = ya; y < yb; ++y) {
        const bool interior_row = has_interior && y >= 2 && y < H - 2 && xa < xb;
        if (interior_row) {
          for (int64_t ky = filled == y - 1 ? y : y - 2; ky <= y; ++ky)
            fill(ring.data() + (ky % 3) * 27 * L, ky, kxa, kxb, base);
          filled = y;
          const R* slots[3] = {ring.data() + (y % 3) * 27 * L, ring.data() + ((y + 2) % 3) * 27 * L,
                               ring.data() + ((y + 1) % 3) * 27 * L};  // window rows y, y-1, y-2
          interior(slots, y, xa, xb, base);
        }
        for (int64_t x = x0; x < x1; ++x)
          if (!(interior_row && x >= xa && x < xb)) border(y, x);
      }
    }
  });
}

// The ring rows of the CSR and the diagonal: whitened colours from the stored window statistics.
template <typename T>
auto stats_fill(const T* image, const T* stats, int64_t H, int64_t W) {
  return [=](T* slot, int64_t ky, int64_t kxa, int64_t kxb, int64_t base) {
    csr_window_row(image, stats, slot, H, W, ky, kxa, kxb, base);
  };
}

// Fixed-width CSR: row i = (y, x) holds the clamped 5x5 neighbourhood rows ry0..ry0+nh-1,
// columns rx0..rx0+nw-1 (row-major, hence sorted); pixels sharing no window get explicit zeros.
//
// Interior pixels: each of the 25 entries of a row of pixels is gathered from the ring of whitened
// colours in its own vectorised loop (structure of arrays), then transposed into the 25-wide CSR
// rows. Border pixels: csr_row_generic, by the definition.
template <typename T, typename index_t>
void csr_kernel(const T* image, const T* stats, index_t* crow, index_t* col, T* val, int64_t H,
                int64_t W) {
  const int64_t N = H * W, width = csr_row_width(H, W);
  const Planes<T> I{image, H, W}, S{stats, H - 2, W - 2};
  at::parallel_for(0, N + 1, 1 << 16, [&](int64_t a, int64_t b) {
    for (int64_t i = a; i < b; ++i) crow[i] = index_t(i * width);
  });
  constexpr int64_t L = kFieldStride;
  for_each_ring_row<T>(
      H, W, stats_fill(image, stats, H, W),
      [&](const T* const slots[3], int64_t y, int64_t xa, int64_t xb, int64_t base) {
        thread_local std::vector<T> rows;  // 25 entry rows of the tile (one buffer per thread)
        rows.resize(25 * L);
        csr_interior_row(slots, rows.data(), xa, xb, base, std::make_integer_sequence<int, 25>());
        for (int64_t x = xa; x < xb; ++x) {  // transpose into the 25-wide rows
          const int64_t i = y * W + x;
          index_t* ci = col + i * 25;
          T* vi = val + i * 25;
          for (int q = 0; q < 25; ++q) {
            ci[q] = index_t(i + (q / 5 - 2) * W + q % 5 - 2);
            vi[q] = rows[q * L + x - xa];
          }
        }
      },
      [&](int64_t y, int64_t x) {
        const int64_t i = y * W + x;
        csr_row_generic(I, S, col + i * width, val + i * width, H, W, y, x);
      });
}

// diag(M)_i = sum over the windows k containing i of M^k_ii. Interior pixels reuse the CSR's ring
// of whitened colours (entry (0, 0) of csr_offset_row); border pixels are summed by definition.
template <typename T>
void diagonal_kernel(const T* image, const T* stats, T* out, int64_t H, int64_t W) {
  const int64_t hw = H - 2, ww = W - 2;
  const Planes<T> I{image, H, W}, S{stats, hw, ww};
  for_each_ring_row<T>(
      H, W, stats_fill(image, stats, H, W),
      [&](const T* const slots[3], int64_t y, int64_t xa, int64_t xb, int64_t base) {
        csr_offset_row<T, 0, 0>(slots, out + y * W + xa, xa, xb, base);
      },
      [&](int64_t y, int64_t x) {
        T d = 0;
        for (int64_t ky = std::max<int64_t>(y - 2, 0); ky <= std::min(y, hw - 1); ++ky)
          for (int64_t kx = std::max<int64_t>(x - 2, 0); kx <= std::min(x, ww - 1); ++kx) {
            T mu[3], w[6], xi[3];
            load_window(S, ky, kx, mu, w);
            for (int ch = 0; ch < 3; ++ch) xi[ch] = I(ch, y, x) - mu[ch];
            d += window_entry(w, xi, xi, true);
          }
        out[y * W + x] = d;
      });
}

// ---- the stencil form (csrc/window_math.h): K_q(i) = M_{i, i + d_q} for the 12 forward offsets --------
//
// Built like the CSR, all in double from the image (window statistics included): interior pixels
// gather their 12 entries from the ring of whitened colours (csr_offset_row, one vectorised loop per
// offset), border pixels by the definition (stencil_entry). The product streams K (12 values per
// pixel), v and the output once per row.

template <int... Q>
void stencil_interior_row(const double* const slots[3], double* rows, int64_t xa, int64_t xb,
                          int64_t base, std::integer_sequence<int, Q...>) {
  (csr_offset_row<double, stencil_dy(Q), stencil_dx(Q)>(slots, rows + Q * kFieldStride, xa, xb, base),
   ...);
}

// Whitened colours of the windows kx in [kxa, kxb) of window row ky, like csr_window_row but from
// window statistics computed here in double (window_stats), not from the stored, rounded ones.
template <typename T>
void stencil_window_row(const T* __restrict__ img, double* __restrict__ slot, int64_t H, int64_t W,
                        int64_t ky, int64_t kxa, int64_t kxb, int64_t base, double eps) {
  constexpr int64_t L = kFieldStride;
  const int64_t plane = H * W;
  for (int64_t kx = kxa; kx < kxb; ++kx) {
    double c[9][3], mu[3], w[6];
    window_colours(img, plane, W, ky, kx, c);
    window_stats(c, eps, mu, w);
    const int64_t p = kx - base;
#pragma GCC unroll 9
    for (int j = 0; j < 9; ++j) {
      double x[3], z[3];
#pragma GCC unroll 3
      for (int ch = 0; ch < 3; ++ch) x[ch] = c[j][ch] - mu[ch];
      whiten(w, x, z);
#pragma GCC unroll 3
      for (int ch = 0; ch < 3; ++ch) slot[(3 * j + ch) * L + p] = z[ch];
    }
  }
}

template <typename T>
void stencil_kernel(const T* image, T* K, int64_t H, int64_t W, double eps) {
  const int64_t plane = H * W;
  constexpr int64_t L = kFieldStride;
  auto fill = [&](double* slot, int64_t ky, int64_t kxa, int64_t kxb, int64_t base) {
    stencil_window_row(image, slot, H, W, ky, kxa, kxb, base, eps);
  };
  for_each_ring_row<double>(
      H, W, fill,
      [&](const double* const slots[3], int64_t y, int64_t xa, int64_t xb, int64_t base) {
        thread_local std::vector<double> rows;
        rows.resize(kStencilOffsets * L);
        stencil_interior_row(slots, rows.data(), xa, xb, base,
                             std::make_integer_sequence<int, kStencilOffsets>());
        for (int q = 0; q < kStencilOffsets; ++q) {
          T* out = K + q * plane + y * W;
          const double* row = rows.data() + q * L;
          for (int64_t x = xa; x < xb; ++x) out[x] = T(row[x - xa]);
        }
      },
      [&](int64_t y, int64_t x) {
        for (int q = 0; q < kStencilOffsets; ++q)
          K[q * plane + y * W + x] = T(stencil_entry(image, H, W, y, x, eps, q));
      });
}

// Interior pixels x in [xa, xb) of row y (2 <= y < H-2, 2 <= x < W-2: all 24 neighbours inside), NC
// channels: stencil_pixel's terms in its order, without the bounds tests, vectorised over x, times
// factor (1, or the normalised product's 1/9 where every neighbour's degree is 9).
template <typename T, int NC>
void stencil_product_row(const T* __restrict__ K, const T* __restrict__ v, T* __restrict__ out,
                         int64_t H, int64_t W, int64_t y, int64_t xa, int64_t xb, T factor) {
  const int64_t plane = H * W;
  const T* Kr = K + y * W;
  const T* V = v + y * W;
  T* O = out + y * W;
  for (int64_t x = xa; x < xb; ++x) {
    T acc[NC], vi[NC];
#pragma GCC unroll 3
    for (int c = 0; c < NC; ++c) {
      acc[c] = 0;
      vi[c] = V[c * plane + x];
    }
#pragma GCC unroll 12
    for (int q = 0; q < kStencilOffsets; ++q) {
      const int64_t d = stencil_dy(q) * W + stencil_dx(q);
      const T kf = Kr[q * plane + x], kb = Kr[q * plane + x - d];
#pragma GCC unroll 3
      for (int c = 0; c < NC; ++c) {
        acc[c] += kf * (V[c * plane + x + d] - vi[c]);
        acc[c] += kb * (V[c * plane + x - d] - vi[c]);
      }
    }
#pragma GCC unroll 3
    for (int c = 0; c < NC; ++c) O[c * plane + x] = acc[c] * factor;
  }
}

// normalized: D^-1/2 M D^-1/2 v (stencil_pixel's normalised form) in place of M v. With dots (3 x C x H doubles,
// this group's channels at c0 of C), each row y also leaves its sums of v.v, v.(M v) and (M v).(M v) (M v
// as stored in out) per channel in double, while the row is in cache.
template <typename T, int NC>
void stencil_channels(const T* K, const T* v, T* out, int64_t H, int64_t W, bool normalized,
                      double* dots = nullptr, int64_t c0 = 0, int64_t C = 0) {
  const int64_t plane = H * W;
  // The interior loop takes the pixels whose 24 neighbours lie inside (2 from the border) and, for the
  // normalised product, whose neighbours' degrees are all 9 (4 from the border).
  const int64_t b = normalized ? 4 : 2;
  const T factor = normalized ? T(1.0 / 9.0) : T(1);
  // Whole rows, in runs of rows per thread: long unit-stride streams (28 of them per row for 3
  // channels) suit the hardware prefetchers; measured faster than tiles of <= 512 columns.
  at::parallel_for(0, H, 8, [&](int64_t ya, int64_t yb) {
    for (int64_t y = ya; y < yb; ++y) {
      const bool interior = y >= b && y < H - b && W > 2 * b;
      if (interior) stencil_product_row<T, NC>(K, v, out, H, W, y, b, W - b, factor);
      for (int64_t x = 0; x < W; ++x) {
        if (interior && x == b) x = W - b;  // (the interior columns are done)
        T m[NC];
        if (normalized) stencil_pixel<T, NC, true>(K, v, H, W, y, x, m);
        else stencil_pixel<T, NC, false>(K, v, H, W, y, x, m);
        for (int c = 0; c < NC; ++c) out[c * plane + y * W + x] = m[c];
      }
      if (dots)
        for (int c = 0; c < NC; ++c) {
          const T* V = v + c * plane + y * W;
          const T* O = out + c * plane + y * W;
          double vv = 0.0, vm = 0.0, mm = 0.0;
#pragma omp simd reduction(+ : vv, vm, mm)
          for (int64_t x = 0; x < W; ++x) {
            const double vx = V[x], mx = O[x];
            vv += vx * vx;
            vm += vx * mx;
            mm += mx * mx;
          }
          dots[(c0 + c) * H + y] = vv;
          dots[(C + c0 + c) * H + y] = vm;
          dots[(2 * C + c0 + c) * H + y] = mm;
        }
    }
  });
}

template <typename T>
void stencil_matvec_kernel(const T* K, const T* v, T* out, int64_t C, int64_t H, int64_t W, bool normalized,
                           double* dots = nullptr) {
  const int64_t plane = H * W;
  int64_t c = 0;
  for (; C - c >= 3; c += 3)
    stencil_channels<T, 3>(K, v + c * plane, out + c * plane, H, W, normalized, dots, c, C);
  if (C - c == 2) stencil_channels<T, 2>(K, v + c * plane, out + c * plane, H, W, normalized, dots, c, C);
  if (C - c == 1) stencil_channels<T, 1>(K, v + c * plane, out + c * plane, H, W, normalized, dots, c, C);
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
  auto stats = empty_output({9, windows_along(H), windows_along(W)}, image.options());
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
  auto out = empty_output(v.sizes(), v.options());
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
  auto out = empty_output({H, W}, image.options());
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
  auto crow = empty_output({N + 1}, image.options().dtype(index_type));
  auto col = empty_output({nnz}, image.options().dtype(index_type));
  auto val = empty_output({nnz}, image.options());
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

at::Tensor laplacian_stencil_cpu(const at::Tensor& image_, double eps) {
  check_image(image_);
  check_eps(eps);
  check_finite(image_, "image");
  const auto image = image_.contiguous();
  const int64_t H = image.size(1), W = image.size(2);
  if (H < 3 || W < 3) return at::zeros({kStencilOffsets, H, W}, image.options());  // no window: M = 0
  auto K = empty_output({kStencilOffsets, H, W}, image.options());
  AT_DISPATCH_FLOATING_TYPES(image.scalar_type(), "laplacian_stencil_cpu", [&] {
    stencil_kernel(image.data_ptr<scalar_t>(), K.data_ptr<scalar_t>(), H, W, eps);
  });
  return K;
}

void stencil_matvec_out_cpu(const at::Tensor& stencil_, const at::Tensor& v_, const at::Tensor& out,
                            bool normalized) {
  check_stencil(stencil_, v_);
  const auto K = stencil_.contiguous(), v = v_.contiguous();
  check_stencil_out(K, v, out);  // (the overlap with what the kernel reads: copies of strided inputs do not)
  const int64_t C = v.size(0), H = v.size(1), W = v.size(2);
  if (out.numel() == 0) return;
  AT_DISPATCH_FLOATING_TYPES(v.scalar_type(), "stencil_matvec_cpu", [&] {
    stencil_matvec_kernel(K.data_ptr<scalar_t>(), v.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), C, H, W,
                          normalized);
  });
}

// stencil_matvec_out, and (3, C) float64: v.v, v.(M v) and (M v).(M v) per channel, summed row by row in
// order.
at::Tensor stencil_matvec_dots_cpu(const at::Tensor& stencil_, const at::Tensor& v_, const at::Tensor& out,
                                   bool normalized) {
  check_stencil(stencil_, v_);
  const auto K = stencil_.contiguous(), v = v_.contiguous();
  check_stencil_out(K, v, out);
  const int64_t C = v.size(0), H = v.size(1), W = v.size(2);
  std::vector<double> rows(size_t(3 * C * H), 0.0);
  if (out.numel() > 0) {
    AT_DISPATCH_FLOATING_TYPES(v.scalar_type(), "stencil_matvec_dots_cpu", [&] {
      stencil_matvec_kernel(K.data_ptr<scalar_t>(), v.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), C, H, W,
                            normalized, rows.data());
    });
  }
  std::vector<double> total(size_t(3 * C), 0.0);
  for (int64_t k = 0; k < 3 * C; ++k)
    for (int64_t y = 0; y < H; ++y) total[size_t(k)] += rows[size_t(k * H + y)];
  return at::tensor(total, v.options().dtype(at::kDouble)).reshape({3, C});
}

at::Tensor stencil_matvec_cpu(const at::Tensor& stencil_, const at::Tensor& v_, bool normalized) {
  check_stencil(stencil_, v_);
  auto out = empty_output(v_.sizes(), v_.options());
  stencil_matvec_out_cpu(stencil_, v_, out, normalized);
  return out;
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
  m.impl("laplacian_stencil", &laplacian_stencil_cpu);
  m.impl("stencil_matvec", &stencil_matvec_cpu);
  m.impl("stencil_matvec_out", &stencil_matvec_out_cpu);
  m.impl("stencil_matvec_dots", &stencil_matvec_dots_cpu);
}

}  // namespace dpst
