// Smooth-local-affine CUDA kernels registered for the CUDA dispatch key (schemas: csrc/dpst.cpp). The
// kernels and launchers are csrc/cuda/affine_kernels.cuh; the entry points csrc/cuda/affine_ops.h,
// shared with the host-emulation build. c10/cuda headers only (see csrc/cuda/laplacian_cuda.cu).
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "affine_ops.h"

namespace dpst {
namespace cuda {
namespace {

struct AffineCudaBackend {
  struct Scope {
    c10::cuda::CUDAGuard guard;
    cudaStream_t stream;
    explicit Scope(const at::Tensor& t)
        : guard(t.device()), stream(c10::cuda::getCurrentCUDAStream(t.device().index()).stream()) {}
  };
  static AffineLaunchShape affine_shape() { return AffineLaunchShape{}; }
  static void check_launch() { C10_CUDA_KERNEL_LAUNCH_CHECK(); }
};

}  // namespace
}  // namespace cuda
}  // namespace dpst

TORCH_LIBRARY_IMPL(dpst, CUDA, m) { dpst::cuda::register_affine_ops<dpst::cuda::AffineCudaBackend>(m); }
