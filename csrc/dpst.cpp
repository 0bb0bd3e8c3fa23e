// The one contract: every op's schema, in one TORCH_LIBRARY block (the engine's, the fused CG passes' and
// the smooth-local-affine ops' schemas are in csrc/schemas.h, shared with the emulated CUDA build in
// csrc/emu/). Backends only register kernels: csrc/cpu/laplacian_cpu.cpp (CPU), csrc/cuda/laplacian_cuda.cu
// (CUDA, the fused CG passes included); the fused CG passes: csrc/cpu/pcg_cpu.cpp (CPU; ATen ops on other
// devices);
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
  dpst::define_pcg_ops(m);
  dpst::define_affine_ops(m);
}
