// The one contract: every op's schema, in one TORCH_LIBRARY block.
// Backends only register kernels: csrc/cpu/laplacian_cpu.cpp (CPU), csrc/cuda/laplacian_cuda.cu (CUDA);
// the fused CG passes: csrc/cpu/pcg_cpu.cpp (fused on the CPU; ATen ops on CUDA and other devices);
// the smooth-local-affine ops: csrc/cpu/affine_cpu.cpp, csrc/cuda/affine_cuda.cu.
// Shapes (see csrc/window_math.h for the maths and the stats layout):
//   image  (3, H, W) float32 or float64, values nominally 0..1
//   stats  (9, H-2, W-2) same dtype: per 3x3 window its mean colour and whitening matrix
//   v      (C, H, W) same dtype: C channels multiplied at once
#include <Python.h>
#include <torch/library.h>

extern "C" {
// Importing dpst_ext._C runs the static registrations below; the module itself has no functions.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(dpst, m) {
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

  // Fused vector passes of batched PCG on A v = v + weight s.M(s.v) (dpst_ext/engine/smoothing.py;
  // csrc/cpu/pcg_cpu.cpp). x, r, p: (C, H, W) float64; m = M u in the Laplacian's dtype;
  // scale s and inv_diag d (Jacobi, 1/diag(A)): (H, W) float64 or None (= 1).
  // p = d.r + beta p in place; u = s.p in u's dtype (the matvec's input), in place.
  m.def("pcg_direction(Tensor r, Tensor? inv_diag, Tensor(a!) p, float[] beta, Tensor? scale, "
        "Tensor(b!) u) -> ()");
  // (C,) float64: p.Ap per channel, Ap = p + weight s.m.
  m.def("pcg_curvature(Tensor p, Tensor m, Tensor? scale, float weight) -> Tensor");
  // x += alpha p, r -= alpha Ap in place; returns (2, C) float64: r.r and r.(d.r) per channel.
  m.def("pcg_update(Tensor(a!) x, Tensor(b!) r, Tensor p, Tensor m, Tensor? scale, float weight, "
        "float[] alpha, Tensor? inv_diag) -> Tensor");

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
