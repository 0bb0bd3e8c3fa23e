// CUDA kernels of the engine registered for the CUDA dispatch key (schemas: csrc/dpst.cpp). The kernels
// and their launch configuration are csrc/cuda/laplacian_kernels.cuh; the entry points (checks, guard,
// stream, empty inputs) are csrc/cuda/laplacian_ops.h, shared with the host-emulation build.
//
// c10/cuda headers only: ATen/cuda/CUDAContext.h would pull in cusparse.h, which a CUDA toolkit
// without the math libraries (as on our CI machines) does not have.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "laplacian_ops.h"

namespace dpst {
namespace cuda {
namespace {

struct CudaBackend {
  struct Scope {
    c10::cuda::CUDAGuard guard;
    cudaStream_t stream;
    explicit Scope(const at::Tensor& t)
        : guard(t.device()), stream(c10::cuda::getCurrentCUDAStream(t.device().index()).stream()) {}
  };
  static LaunchShape shape() { return LaunchShape{}; }
  static void check_launch() { C10_CUDA_KERNEL_LAUNCH_CHECK(); }
};

}  // namespace
}  // namespace cuda
}  // namespace dpst

TORCH_LIBRARY_IMPL(dpst, CUDA, m) { dpst::cuda::register_ops<dpst::cuda::CudaBackend>(m); }
