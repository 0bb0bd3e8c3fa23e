// The few CUDA constructs the kernels use, so that the same kernel bodies compile
//   * under nvcc as real CUDA, and
//   * under a plain C++20 compiler with -DDPST_EMULATE_CUDA as a host emulation that runs them on the
//     CPU, for tests and sanitizers on machines without a GPU.
//
// The emulation runs blocks one after another; the threads of a block run as std::threads, and
// __syncthreads() is a std::barrier that a thread leaves (arrive_and_drop) when its kernel returns.
// Dynamic shared memory (DPST_DYNAMIC_SHARED) is a fresh heap buffer per block, poisoned with 0xFF
// bytes (NaN for float and double), so a read before write shows up as NaN and a read past the end as
// an AddressSanitizer report.
//
// Not emulated (kernels must not use them): atomics, warp shuffles/votes, textures, cp.async, tensor
// cores, and static __shared__ arrays: a static would survive between blocks and hide read-before-write
// bugs, so `__shared__` is deliberately left undefined and fails to compile under the emulation.
// A __syncthreads() that some threads of a block never reach hangs the emulation, as it would a GPU:
// tests run kernels under a timeout.
#pragma once

#include <cstddef>
#include <cstdint>

#if defined(DPST_EMULATE_CUDA)

#include <barrier>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
using cudaStream_t = void*;

// Built-in coordinates: one copy per emulated thread.
inline thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace dpst_emu {
inline thread_local std::barrier<>* block_barrier = nullptr;
inline thread_local unsigned char* block_shared = nullptr;

// Runs `body` (a kernel call) for every thread of every block of the grid.
template <typename Body>
void launch(dim3 grid, dim3 block, std::size_t shared_bytes, Body body) {
  const unsigned nthreads = block.x * block.y * block.z;
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        // Exactly shared_bytes long, so AddressSanitizer sees any read past the tile.
        std::unique_ptr<unsigned char[]> shared(new unsigned char[shared_bytes ? shared_bytes : 1]);
        std::memset(shared.get(), 0xFF, shared_bytes ? shared_bytes : 1);
        std::barrier<> barrier(nthreads);
        std::vector<std::thread> threads;
        threads.reserve(nthreads);
        for (unsigned tz = 0; tz < block.z; ++tz)
          for (unsigned ty = 0; ty < block.y; ++ty)
            for (unsigned tx = 0; tx < block.x; ++tx)
              threads.emplace_back([&, tx, ty, tz] {
                threadIdx = dim3(tx, ty, tz);
                blockIdx = dim3(bx, by, bz);
                blockDim = block;
                gridDim = grid;
                block_barrier = &barrier;
                block_shared = shared.get();
                body();
                barrier.arrive_and_drop();  // a finished thread no longer holds the others back
              });
        for (auto& t : threads) t.join();
      }
}
}  // namespace dpst_emu

inline void __syncthreads() { dpst_emu::block_barrier->arrive_and_wait(); }

template <typename T>
inline T __ldg(const T* p) { return *p; }

#define DPST_DYNAMIC_SHARED(name) unsigned char* name = ::dpst_emu::block_shared
#define DPST_LAUNCH(kernel, grid, block, shared_bytes, stream, ...) \
  ((void)(stream), ::dpst_emu::launch((grid), (block), (shared_bytes), [&] { kernel(__VA_ARGS__); }))

#else  // nvcc

#define DPST_DYNAMIC_SHARED(name) \
  extern __shared__ __align__(16) unsigned char dpst_dynamic_shared_[]; \
  unsigned char* name = dpst_dynamic_shared_
#define DPST_LAUNCH(kernel, grid, block, shared_bytes, stream, ...) \
  kernel<<<(grid), (block), (shared_bytes), (stream)>>>(__VA_ARGS__)

#endif

namespace dpst {
// Dynamic shared memory is carved into consecutive typed arrays, each on a 16-byte boundary. A kernel
// declares its layout once as a function of a carver; the device runs it with SharedCarver on the
// buffer, the host with SharedSizer to get the byte count, so kernel and launch always agree.
__host__ __device__ constexpr std::size_t align16(std::size_t n) { return (n + 15) & ~std::size_t(15); }

struct SharedCarver {
  unsigned char* base;
  std::size_t offset = 0;
  template <typename T>
  __host__ __device__ T* take(std::size_t count) {
    offset = align16(offset);
    T* p = reinterpret_cast<T*>(base + offset);
    offset += count * sizeof(T);
    return p;
  }
};

struct SharedSizer {
  std::size_t offset = 0;
  template <typename T>
  __host__ __device__ T* take(std::size_t count) {
    offset = align16(offset) + count * sizeof(T);
    return nullptr;
  }
};
}  // namespace dpst
