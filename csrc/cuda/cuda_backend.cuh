// The CUDA Backend of the ops' entry points (laplacian_ops.h, affine_ops.h), for a launch-shape type
// Shape (LaunchShape, AffineLaunchShape): a device guard and the current stream of the tensor's device,
// the kernels' default launch shape, the launch-error check. Its host-emulation counterpart is
// csrc/emu/emu_backend.h.
//
// c10/cuda headers only: ATen/cuda/CUDAContext.h would pull in cusparse.h, which a CUDA toolkit
// without the math libraries (as on our CI machines) does not have.
#pragma once

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

namespace dpst {
namespace cuda {

template <typename Shape>
struct CudaBackend {
  struct Scope {
    c10::cuda::CUDAGuard guard;
    cudaStream_t stream;
    explicit Scope(const at::Tensor& t)
        : guard(t.device()), stream(c10::cuda::getCurrentCUDAStream(t.device().index()).stream()) {}
  };
  static Shape shape() { return Shape{}; }
  static void check_launch() { C10_CUDA_KERNEL_LAUNCH_CHECK(); }
};

}  // namespace cuda
}  // namespace dpst
