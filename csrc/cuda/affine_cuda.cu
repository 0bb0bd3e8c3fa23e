// Smooth-local-affine CUDA kernels registered for the CUDA dispatch key (schemas: csrc/dpst.cpp). The
// kernels and launchers are csrc/cuda/affine_kernels.cuh; the entry points csrc/cuda/affine_ops.h,
// shared with the host-emulation build; the Backend csrc/cuda/cuda_backend.cuh.
#include <torch/library.h>

#include "affine_ops.h"
#include "cuda_backend.cuh"

TORCH_LIBRARY_IMPL(dpst, CUDA, m) { dpst::cuda::register_affine_ops<dpst::cuda::CudaBackend<dpst::cuda::AffineLaunchShape>>(m); }
