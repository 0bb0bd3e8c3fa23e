// One pixel of each fused CG pass on the smoothing operator A v = v + w S v (S from the stencil's product)
// (dpst_ext/engine/smoothing.py), written once for the CPU loops (csrc/cpu/pcg_cpu.cpp) and the CUDA
// kernels (csrc/cuda/pcg_kernels.cuh). Every value is computed in double from the stored inputs and
// rounded once, to the type it is stored in (V: the CG vectors' float or double).
#pragma once

#include "window_math.h"  // DPST_HD

namespace dpst {

// p = z + beta p (z = d . r, or r).
template <typename V>
DPST_HD inline V pcg_direction_value(double z, double beta, V p) {
  return V(z + beta * double(p));
}

// (A p)_i = p_i + w m_i, m = S p.
DPST_HD inline double pcg_applied(double p, double w, double m) { return p + w * m; }

// x += alpha p.
template <typename V>
DPST_HD inline V pcg_iterate_value(V x, double alpha, double p) {
  return V(double(x) + alpha * p);
}

// r -= alpha (A p).
template <typename V>
DPST_HD inline V pcg_residual_value(V r, double alpha, double ap) {
  return V(double(r) - alpha * ap);
}

}  // namespace dpst
