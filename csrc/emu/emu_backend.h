// The host-emulation Backend of the ops' entry points (csrc/cuda/laplacian_ops.h, affine_ops.h), for a
// launch-shape type Shape (LaunchShape, AffineLaunchShape): CPU tensors, no stream, the launch shape the
// tests set (emu_launch_shape<Shape>, defined by the file that registers those ops), no launch check
// (emulated launches run synchronously and throw). Its CUDA counterpart is csrc/cuda/cuda_backend.cuh.
#pragma once

#include <torch/types.h>

#include <mutex>

namespace dpst {
namespace cuda {

inline std::mutex emu_shape_mutex;   // guards every emu_launch_shape (the tests' hooks set them)

template <typename Shape>
Shape& emu_launch_shape();

template <typename Shape>
struct EmuBackend {
  struct Scope {
    cudaStream_t stream = nullptr;
    explicit Scope(const at::Tensor& t) {
      TORCH_CHECK(t.device().is_cpu(), "dpst_emu ops take CPU tensors, got ", t.device());
    }
  };
  static Shape shape() {
    std::lock_guard<std::mutex> lock(emu_shape_mutex);
    return emu_launch_shape<Shape>();
  }
  static void check_launch() {}
};

}  // namespace cuda
}  // namespace dpst
