// Instantiates every kernel of csrc/cuda/laplacian_kernels.cuh, pcg_kernels.cuh and affine_kernels.cuh for
// every type the ops dispatch to, without torch, so tools/cuda_check.sh can compile it with `nvcc -Xptxas -v` for each GPU
// architecture and read register, shared-memory and spill figures per kernel.
#include "cuda/affine_kernels.cuh"
#include "cuda/laplacian_kernels.cuh"
#include "cuda/pcg_kernels.cuh"

namespace dpst {
namespace cuda {
#define DPST_INSTANTIATE(T)                                                                        \
  template void launch_window_stats<T>(const T*, T*, int64_t, int64_t, double, cudaStream_t,       \
                                       const LaunchShape&);                                        \
  template void launch_laplacian_matvec<T>(const T*, const T*, const T*, T*, int64_t, int64_t,     \
                                           int64_t, cudaStream_t, const LaunchShape&);             \
  template void launch_laplacian_diagonal<T>(const T*, const T*, T*, int64_t, int64_t,             \
                                             cudaStream_t, const LaunchShape&);                    \
  template void launch_laplacian_csr<T, int32_t>(const T*, const T*, int32_t*, int32_t*, T*,       \
                                                 int64_t, int64_t, cudaStream_t, const LaunchShape&); \
  template void launch_laplacian_csr<T, int64_t>(const T*, const T*, int64_t*, int64_t*, T*,       \
                                                 int64_t, int64_t, cudaStream_t, const LaunchShape&); \
  template void launch_photoreal_loss<T>(const T*, const T*, const T*, int64_t, int64_t, int64_t,  \
                                         double*, double*, cudaStream_t, const LaunchShape&);      \
  template void launch_laplacian_stencil<T>(const T*, T*, int64_t, int64_t, double, cudaStream_t,  \
                                            const LaunchShape&);                                   \
  template void launch_stencil_matvec<T>(const T*, const T*, T*, int64_t, int64_t, int64_t, bool,  \
                                         cudaStream_t, const LaunchShape&);                        \
  template void launch_stencil_matvec_dots<T>(const T*, const T*, T*, int64_t, int64_t, int64_t,   \
                                              bool, double*, double*, cudaStream_t, const LaunchShape&);
DPST_INSTANTIATE(float)
DPST_INSTANTIATE(double)

// The fused CG passes (csrc/cuda/pcg_kernels.cuh): V the CG vectors' type, M the Laplacian's.
#define DPST_INSTANTIATE_PCG(V, M)                                                                 \
  template void launch_pcg_direction<V, M>(const V*, const double*, V*, const double*, M*, int64_t, int64_t, \
                                           cudaStream_t, const LaunchShape&);                      \
  template void launch_pcg_curvature<V, M>(const V*, const M*, double, int64_t, int64_t, double*, double*, \
                                           cudaStream_t, const LaunchShape&);                      \
  template void launch_pcg_update<V, M>(V*, V*, const V*, const M*, double, const double*, const double*, \
                                        int64_t, int64_t, double*, double*, cudaStream_t, const LaunchShape&); \
  template void launch_pcg_step<V, M>(V*, V*, V*, const M*, double, const double*, const double*, int64_t, \
                                      int64_t, double*, double*, cudaStream_t, const LaunchShape&);
DPST_INSTANTIATE_PCG(float, float)
DPST_INSTANTIATE_PCG(float, double)
DPST_INSTANTIATE_PCG(double, float)
DPST_INSTANTIATE_PCG(double, double)

// Smooth local affine (csrc/cuda/affine_kernels.cuh).
#define DPST_INSTANTIATE_AFFINE(T)                                                                 \
  template void launch_local_affine_fit<T>(const T*, const T*, T*, int64_t, int64_t, double,       \
                                           cudaStream_t, const AffineLaunchShape&);               \
  template void launch_bilateral_affine<T>(const T*, const T*, T*, int64_t, int64_t, int, double,  \
                                           cudaStream_t, const AffineLaunchShape&);
DPST_INSTANTIATE_AFFINE(float)
DPST_INSTANTIATE_AFFINE(double)
}  // namespace cuda
}  // namespace dpst
