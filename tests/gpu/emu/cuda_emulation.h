// Host emulation of the slice of the CUDA execution model that grainseg's scan kernels use, so their
// source (csrc/cuda/*.cuh) runs on a CPU in tests (tests/gpu/test_cuda_emulation.py).
//
// Force-included (-include) with -DGRAINSEG_CUDA_EMULATION.  A block's threads are cooperative fibers
// (ucontext) on one OS thread: each runs until __syncthreads, then the next runs; when every thread
// waits at the barrier they all resume, in a fresh pseudo-random order each phase, so a missing barrier
// shows up as a wrong result.  Shared memory starts as NaN bytes, so reading uninitialised shared memory
// shows up as NaN.  Warp shuffles exchange through a block barrier (the kernels call them with the
// whole block converged); a barrier reached by only part of the block raises an error.  Blocks run one
// after another.  This checks the kernels' logic and indexing, not performance or the memory model.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>
#include <ucontext.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#undef __global__
#undef __device__
#undef __host__
#undef __forceinline__
#undef __shared__
#undef __launch_bounds__
#undef __align__
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)
#define __align__(n) alignas(n)

namespace emu {

struct Index3 {
  unsigned x = 0, y = 0, z = 0;
};

enum class State { kReady, kAtBarrier, kDone };

struct BlockRun {
  int n_threads = 0;
  int current = 0;
  std::vector<ucontext_t> ctx;
  std::vector<std::unique_ptr<char[]>> stacks;
  std::vector<State> state;
  ucontext_t scheduler;
  std::function<void()> body;
  std::vector<unsigned char> dynamic_smem;
  std::vector<uint64_t> exchange;  // one shuffle slot per thread
};

inline BlockRun* g_run = nullptr;
inline uint64_t g_seed = 12345;

}  // namespace emu

inline emu::Index3 threadIdx, blockIdx, blockDim, gridDim;

inline void __syncthreads() {
  emu::BlockRun& r = *emu::g_run;
  r.state[r.current] = emu::State::kAtBarrier;
  swapcontext(&r.ctx[r.current], &r.scheduler);
}

namespace emu {

constexpr int kStackBytes = 256 * 1024;

inline void fiber_entry() {
  g_run->body();
  g_run->state[g_run->current] = State::kDone;
  // returning resumes uc_link (the scheduler)
}

template <typename T>
T shuffle(T v, int src_lane_offset_sign, int delta, bool xor_mode = false) {
  static_assert(sizeof(T) <= sizeof(uint64_t), "shuffle of a type wider than 8 bytes");
  BlockRun& r = *g_run;
  const int tid = static_cast<int>(threadIdx.x);
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  r.exchange[tid] = bits;
  __syncthreads();
  const int lane = tid % 32, warp_base = tid - lane;
  const int src = xor_mode ? (lane ^ delta) : lane + src_lane_offset_sign * delta;
  T out = v;
  if (src >= 0 && src < 32) std::memcpy(&out, &r.exchange[warp_base + src], sizeof(T));
  __syncthreads();
  return out;
}

inline void check_mask(unsigned mask) {
  if (mask != 0xffffffffu) throw std::runtime_error("emulation supports full-warp shuffles only");
}

// Runs body() (a kernel call) for grid x threads with `smem_bytes` of dynamic shared memory.
inline void launch(unsigned grid, int threads, size_t smem_bytes, const std::function<void()>& body) {
  if (threads % 32 != 0) throw std::runtime_error("block size must be a multiple of 32");
  std::mt19937_64 rng(g_seed);
  for (unsigned b = 0; b < grid; ++b) {
    BlockRun r;
    r.n_threads = threads;
    r.ctx.resize(threads);
    r.state.assign(threads, State::kReady);
    r.exchange.assign(threads, 0);
    r.dynamic_smem.assign(smem_bytes + 16, 0xff);  // NaN bytes: uninitialised reads become NaN
    r.body = body;
    for (int t = 0; t < threads; ++t) {
      r.stacks.emplace_back(new char[kStackBytes]);
      getcontext(&r.ctx[t]);
      r.ctx[t].uc_stack.ss_sp = r.stacks.back().get();
      r.ctx[t].uc_stack.ss_size = kStackBytes;
      r.ctx[t].uc_link = &r.scheduler;
      makecontext(&r.ctx[t], fiber_entry, 0);
    }
    g_run = &r;
    blockIdx.x = b;
    blockDim.x = static_cast<unsigned>(threads);
    gridDim.x = grid;
    std::vector<int> order(threads);
    for (int t = 0; t < threads; ++t) order[t] = t;
    while (true) {
      std::shuffle(order.begin(), order.end(), rng);
      for (int t : order) {
        if (r.state[t] != State::kReady) continue;
        r.current = t;
        threadIdx.x = static_cast<unsigned>(t);
        swapcontext(&r.scheduler, &r.ctx[t]);
      }
      int waiting = 0, done = 0;
      for (State s : r.state) {
        waiting += s == State::kAtBarrier;
        done += s == State::kDone;
      }
      if (done == threads) break;
      if (done > 0) throw std::runtime_error("__syncthreads reached by part of the block only");
      for (State& s : r.state) s = State::kReady;
    }
    g_run = nullptr;
  }
}

inline void* dynamic_smem() {
  uintptr_t p = reinterpret_cast<uintptr_t>(g_run->dynamic_smem.data());
  return reinterpret_cast<void*>((p + 15) & ~uintptr_t(15));
}

}  // namespace emu

template <typename T>
T __shfl_up_sync(unsigned mask, T v, int delta) {
  emu::check_mask(mask);
  return emu::shuffle(v, -1, delta);
}
template <typename T>
T __shfl_down_sync(unsigned mask, T v, int delta) {
  emu::check_mask(mask);
  return emu::shuffle(v, +1, delta);
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask) {
  emu::check_mask(mask);
  return emu::shuffle(v, 0, lane_mask, /*xor_mode=*/true);
}
