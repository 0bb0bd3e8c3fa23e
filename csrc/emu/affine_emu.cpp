// The smooth-local-affine CUDA kernels (csrc/cuda/affine_kernels.cuh) compiled as plain C++
// (-DDPST_EMULATE_CUDA) and run by the emulator, registered as torch.ops.dpst_emu.local_affine_fit and
// .bilateral_affine_apply (schemas of csrc/dpst.cpp, CPU tensors). Part of dpst_ext._emu, whose module
// init lives in csrc/emu/laplacian_emu.cpp (one PyInit per extension). Tests only: small images.
#include <torch/library.h>

#include "../cuda/affine_ops.h"
#include "emu_backend.h"
#include "../schemas.h"

namespace dpst {
namespace cuda {

// Small blocks and a small shared-memory budget by default, so that test images of a few pixels leave
// partial and multiple blocks and the filter's taps span several shared-memory chunks.
template <>
AffineLaunchShape& emu_launch_shape<AffineLaunchShape>() {
  static AffineLaunchShape shape{/*fit_x=*/8, /*fit_y=*/4, /*bilateral_x=*/8, /*bilateral_y=*/4,
                                 /*shared_budget=*/8 * 1024};
  return shape;
}

namespace {

void set_affine_launch_shape(int64_t fit_x, int64_t fit_y, int64_t bilateral_x, int64_t bilateral_y,
                             int64_t shared_budget) {
  for (int64_t n : {fit_x, fit_y, bilateral_x, bilateral_y})
    TORCH_CHECK(n >= 1 && n <= 1024, "block sizes must lie in 1..1024, got ", n);
  TORCH_CHECK(fit_x * fit_y <= 1024 && bilateral_x * bilateral_y <= 1024,
              "a block holds at most 1024 threads, got ", fit_x, "x", fit_y, " and ", bilateral_x, "x",
              bilateral_y);
  TORCH_CHECK(shared_budget >= 1 && shared_budget <= 228 * 1024,
              "shared_budget must lie in 1..233472 bytes, got ", shared_budget);
  std::lock_guard<std::mutex> lock(emu_shape_mutex);
  emu_launch_shape<AffineLaunchShape>() = AffineLaunchShape{unsigned(fit_x), unsigned(fit_y),
                                                            unsigned(bilateral_x), unsigned(bilateral_y),
                                                            unsigned(shared_budget)};
}

}  // namespace
}  // namespace cuda
}  // namespace dpst

TORCH_LIBRARY_FRAGMENT(dpst_emu, m) {
  dpst::define_affine_ops(m);      // the smooth-local-affine contract, run by the emulated CUDA kernels
  // Test hook: block shapes and the filter's shared-memory budget of later launches
  // (AffineLaunchShape in csrc/cuda/affine_kernels.cuh).
  m.def("set_affine_launch_shape(int fit_x, int fit_y, int bilateral_x, int bilateral_y, "
        "int shared_budget) -> ()",
        &dpst::cuda::set_affine_launch_shape);
}

TORCH_LIBRARY_IMPL(dpst_emu, CPU, m) { dpst::cuda::register_affine_ops<dpst::cuda::EmuBackend<dpst::cuda::AffineLaunchShape>>(m); }
