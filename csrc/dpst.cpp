// The one contract: every op's schema, in one TORCH_LIBRARY block (the engine's and the smooth-local-affine
// ops' schemas are in csrc/schemas.h, shared with the emulated CUDA build in csrc/emu/).
// Backends only register kernels: csrc/cpu/laplacian_cpu.cpp (CPU), csrc/cuda/laplacian_cuda.cu (CUDA);
// the fused CG passes: csrc/cpu/pcg_cpu.cpp (fused on the CPU; ATen ops on CUDA and other devices);
// the smooth-local-affine ops: csrc/cpu/affine_cpu.cpp, csrc/cuda/affine_cuda.cu.
// Shapes (see csrc/window_math.h for the maths and the stats layout):
//   image  (3, H, W) float32 or float64, values nominally 0..1
//   stats  (9, H-2, W-2) same dtype: per 3x3 window its mean colour and whitening matrix
//   v      (C, H, W) same dtype: C channels multiplied at once
#include <Python.h>
#include <torch/library.h>

#include "schemas.h"

extern "C" {
// Importing dpst_ext._C runs the static registrations below; the module itself has no functions.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(dpst, m) {
  dpst::define_laplacian_ops(m);

  // Fused vector passes of batched PCG on A v = v + weight s.M(s.v) (dpst_ext/engine/smoothing.py;
  // csrc/cpu/pcg_cpu.cpp). x, r, p: (C, H, W), all float64 or all float32 (computed in double either way);
  // m = M u in the Laplacian's dtype; scale s and inv_diag d (Jacobi, 1/diag(A)): (H, W) float64 or None
  // (= 1). p = d.r + beta p in place; u = s.p in u's dtype (the matvec's input), in place; u may be None
  // when scale is (the matvec then reads p).
  m.def("pcg_direction(Tensor r, Tensor? inv_diag, Tensor(a!) p, float[] beta, Tensor? scale, "
        "Tensor(b!)? u) -> ()");
  // (C,) float64: p.Ap per channel, Ap = p + weight s.m.
  m.def("pcg_curvature(Tensor p, Tensor m, Tensor? scale, float weight) -> Tensor");
  // x += alpha p, r -= alpha Ap in place; returns (2, C) float64: r.r and r.(d.r) per channel.
  m.def("pcg_update(Tensor(a!) x, Tensor(b!) r, Tensor p, Tensor m, Tensor? scale, float weight, "
        "float[] alpha, Tensor? inv_diag) -> Tensor");

  dpst::define_affine_ops(m);
}
