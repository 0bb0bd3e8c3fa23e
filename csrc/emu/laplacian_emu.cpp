// dpst_ext._emu: the CUDA kernels of csrc/cuda/ compiled as plain C++ (setup.py passes
// -DDPST_EMULATE_CUDA) and run on the CPU by the emulator of csrc/cuda/cuda_compat.cuh, exposed as
// torch.ops.dpst_emu.* with the schemas of csrc/dpst.cpp, taking CPU tensors. Tests only: one
// std::thread per emulated GPU thread, blocks one after another, so use small images.
#include <Python.h>
#include <torch/library.h>

#include "../cuda/laplacian_ops.h"
#include "../cuda/pcg_ops.h"
#include "emu_backend.h"
#include "../schemas.h"

extern "C" {
// Importing dpst_ext._emu runs the static registrations below; the module itself has no functions.
PyObject* PyInit__emu(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_emu", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

namespace dpst {
namespace cuda {

// Small blocks by default, so that test images of a few pixels leave partial and multiple blocks.
template <>
LaunchShape& emu_launch_shape<LaunchShape>() {
  static LaunchShape shape{/*tile_x=*/8, /*tile_y=*/4, /*matvec_x=*/8, /*matvec_y=*/4, /*threads=*/32};
  return shape;
}

namespace {

void set_launch_shape(int64_t tile_x, int64_t tile_y, int64_t matvec_x, int64_t matvec_y,
                      int64_t threads) {
  for (int64_t n : {tile_x, tile_y, matvec_x, matvec_y, threads})
    TORCH_CHECK(n >= 1 && n <= 1024, "block sizes must lie in 1..1024, got ", n);
  TORCH_CHECK(tile_x * tile_y <= 1024 && matvec_x * matvec_y <= 1024,
              "a block holds at most 1024 threads, got ", tile_x, "x", tile_y, " and ", matvec_x, "x",
              matvec_y);
  std::lock_guard<std::mutex> lock(emu_shape_mutex);
  emu_launch_shape<LaunchShape>() = LaunchShape{unsigned(tile_x), unsigned(tile_y), unsigned(matvec_x),
                                                unsigned(matvec_y), unsigned(threads)};
}

}  // namespace
}  // namespace cuda
}  // namespace dpst

TORCH_LIBRARY(dpst_emu, m) {
  dpst::define_laplacian_ops(m);   // the contract of csrc/dpst.cpp, run by the emulated CUDA kernels
  dpst::define_pcg_ops(m);
  // Test hook: block shapes of later launches (LaunchShape in csrc/cuda/laplacian_kernels.cuh).
  m.def("set_launch_shape(int tile_x, int tile_y, int matvec_x, int matvec_y, int threads) -> ()",
        &dpst::cuda::set_launch_shape);
}

TORCH_LIBRARY_IMPL(dpst_emu, CPU, m) {
  using Backend = dpst::cuda::EmuBackend<dpst::cuda::LaunchShape>;
  dpst::cuda::register_ops<Backend>(m);
  dpst::cuda::register_pcg_ops<Backend>(m);
}
