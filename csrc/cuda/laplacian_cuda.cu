// CUDA kernels of the engine registered for the CUDA dispatch key (schemas: csrc/dpst.cpp): the
// Laplacian's (csrc/cuda/laplacian_kernels.cuh, entry points csrc/cuda/laplacian_ops.h) and the fused CG
// passes' (csrc/cuda/pcg_kernels.cuh, entry points csrc/cuda/pcg_ops.h), in one translation unit, as
// they share the non-template sum_partials_kernel. The entry points (checks, guard, stream, empty inputs)
// are shared with the host-emulation build; the Backend (device guard, stream, launch check) is
// csrc/cuda/cuda_backend.cuh.
#include <torch/library.h>

#include "cuda_backend.cuh"
#include "laplacian_ops.h"
#include "pcg_ops.h"

TORCH_LIBRARY_IMPL(dpst, CUDA, m) {
  using Backend = dpst::cuda::CudaBackend<dpst::cuda::LaunchShape>;
  dpst::cuda::register_ops<Backend>(m);
  dpst::cuda::register_pcg_ops<Backend>(m);
}
