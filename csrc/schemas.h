// The schemas of the engine's ops, of the fused CG passes and of the smooth-local-affine ops, written once:
// csrc/dpst.cpp defines them in torch.ops.dpst (every backend registers kernels there), csrc/emu/ in
// torch.ops.dpst_emu (the CUDA kernels compiled as C++ and run on the CPU, for the tests). Shapes:
// csrc/dpst.cpp.
#pragma once
#include <torch/library.h>

namespace dpst {

inline void define_laplacian_ops(torch::Library& m) {
  // Mean colour and whitening matrix of every 3x3 window, computed in double, stored in image dtype.
  m.def("window_stats(Tensor image, float eps) -> Tensor");
  // M v for the matting Laplacian M of image, applied to each of v's C channels. O(HW), matrix-free.
  m.def("laplacian_matvec(Tensor image, Tensor stats, Tensor v) -> Tensor");
  // diag(M), shape (H, W).
  m.def("laplacian_diagonal(Tensor image, Tensor stats) -> Tensor");
  // M as fixed-width CSR: min(H,5)*min(W,5) sorted entries per row (explicit zeros included).
  // Returns (crow (HW+1,), col (HW*width,), values (HW*width,)); indices int32, or int64 when
  // HW*width >= 2^31.
  m.def("laplacian_csr(Tensor image, Tensor stats) -> (Tensor, Tensor, Tensor)");
  // sum_c v_c^T M v_c (0-dim). Its backward (dpst_ext/engine/ops.py) is 2 M v through laplacian_matvec.
  m.def("photoreal_loss(Tensor image, Tensor stats, Tensor v) -> Tensor");
  // M as a 5x5 stencil (csrc/window_math.h): (12, H, W), K_q(i) = M_{i, i + d_q} for the 12 neighbours
  // after i in row-major order, computed in double from the image (window statistics included: no
  // stats argument, so no float32 rounding of them enters), stored in image dtype; 0 outside the image.
  m.def("laplacian_stencil(Tensor image, float eps) -> Tensor");
  // M v from the stencil, for each of v's C channels (v: the stencil's dtype). normalized: the normalised
  // Laplacian's product D^-1/2 M D^-1/2 v instead, D = diag(n), n_i the number of 3x3 windows containing
  // pixel i (FastPhotoStyle's degree; csrc/window_math.h).
  m.def("stencil_matvec(Tensor stencil, Tensor v, bool normalized=False) -> Tensor");
  // The same product written into out (v's shape and dtype, contiguous, not overlapping v): a solver's
  // buffer reused every iteration instead of a fresh image-sized allocation.
  m.def("stencil_matvec_out(Tensor stencil, Tensor v, Tensor(a!) out, bool normalized=False) -> ()");
  // stencil_matvec_out that also returns (3, C) float64: v.v, v.(M v) and (M v).(M v) per channel (M v as
  // stored in out), summed in double in a fixed order: a CG iteration's p.Ap and |Ap|^2 without a pass.
  m.def("stencil_matvec_dots(Tensor stencil, Tensor v, Tensor(a!) out, bool normalized=False) -> Tensor");
}

inline void define_pcg_ops(torch::Library& m) {
  // Fused vector passes of batched PCG on A v = v + weight S v (dpst_ext/engine/smoothing.py;
  // csrc/cpu/pcg_cpu.cpp, csrc/cuda/pcg_kernels.cuh). x, r, p: (C, H, W), all float64 or all float32
  // (computed in double either way); m = S u in the Laplacian's dtype (the stencil's product, M or the
  // normalised D^-1/2 M D^-1/2); inv_diag d (Jacobi, 1/diag(A)): (H, W) float64 or None (= 1).
  // p = d.r + beta p in place; u = p in u's dtype (the matvec's input), in place, or None (the matvec
  // then reads p).
  m.def("pcg_direction(Tensor r, Tensor? inv_diag, Tensor(a!) p, float[] beta, Tensor(b!)? u) -> ()");
  // (C,) float64: p.Ap per channel, Ap = p + weight m.
  m.def("pcg_curvature(Tensor p, Tensor m, float weight) -> Tensor");
  // x += alpha p, r -= alpha Ap in place; returns (2, C) float64: r.r and r.(d.r) per channel.
  m.def("pcg_update(Tensor(a!) x, Tensor(b!) r, Tensor p, Tensor m, float weight, float[] alpha, "
        "Tensor? inv_diag) -> Tensor");
  // Without a preconditioner, pcg_update and the next pcg_direction in one pass: x += alpha p,
  // r -= alpha Ap (Ap = p + weight m), then p = r + beta p, in place; returns (C,) float64: r.r.
  m.def("pcg_step(Tensor(a!) x, Tensor(b!) r, Tensor(c!) p, Tensor m, float weight, float[] alpha, "
        "float[] beta) -> Tensor");
}

inline void define_affine_ops(torch::Library& m) {
  // Smooth local affine (post-processing; maths in csrc/affine_math.h, definition
  // dpst_ext/engine/postprocess.py).
  // content, output (3, H, W) same dtype (float32/float64) -> coeffs (12, H, W): per pixel the 3x4
  // least-squares affine map content -> output over its 3x3 window clipped at the border, ridge on the
  // colour part (> 0); plane c*4 + k = output colour c, input k = (R, G, B, 1). Solved in double.
  m.def("local_affine_fit(Tensor content, Tensor output, float ridge) -> Tensor");
  // coeffs (12, H, W), content (3, H, W) -> (3, H, W): joint-bilateral filter of the coefficients over
  // (2 radius + 1)^2 neighbours inside the image (spatial sigma radius/3, range sigma edge on content's
  // colours), then out = A' [content; 1]. radius 0 reconstructs with the unfiltered coefficients.
  m.def("bilateral_affine_apply(Tensor coeffs, Tensor content, int radius, float edge) -> Tensor");
}

}  // namespace dpst
