// CUDA kernels of the engine registered for the CUDA dispatch key (schemas: csrc/dpst.cpp). The kernels
// and their launch configuration are csrc/cuda/laplacian_kernels.cuh; the entry points (checks, guard,
// stream, empty inputs) are csrc/cuda/laplacian_ops.h, shared with the host-emulation build.
// The Backend (device guard, stream, launch check) is csrc/cuda/cuda_backend.cuh.
#include <torch/library.h>

#include "cuda_backend.cuh"
#include "laplacian_ops.h"

TORCH_LIBRARY_IMPL(dpst, CUDA, m) { dpst::cuda::register_ops<dpst::cuda::CudaBackend<dpst::cuda::LaunchShape>>(m); }
