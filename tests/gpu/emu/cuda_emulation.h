// Host emulation of the slice of the CUDA execution model that grainseg's scan kernels use, so their
// source (csrc/cuda/*.cuh) runs on a CPU in tests (tests/gpu/test_cuda_emulation.py).
//
// Force-included (-include) with -DGRAINSEG_CUDA_EMULATION, in one translation unit.  A block's threads
// are cooperative fibers on one OS thread (a 14-instruction stack switch on x86-64, ucontext elsewhere): each runs until __syncthreads, then the next runs; when every thread
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
#include <cstdio>
#include <cstdlib>
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

#if defined(__x86_64__) && !defined(GRAINSEG_EMU_UCONTEXT)
#define GRAINSEG_EMU_FAST_SWITCH 1
// Saves the callee-saved registers on the current stack, stores its pointer in *save_sp, switches to
// new_sp and restores the registers saved there (System V x86-64).  swapcontext would also save the
// signal mask with a system call on every switch, which made the emulation ~100x slower.
extern "C" void grainseg_emu_switch(void** save_sp, void* new_sp);
asm(R"(
  .text
  .p2align 4
  .globl grainseg_emu_switch
  .type grainseg_emu_switch,@function
grainseg_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size grainseg_emu_switch, .-grainseg_emu_switch
)");
#endif

namespace emu {

struct Index3 {
  unsigned x = 0, y = 0, z = 0;
};

enum class State { kReady, kAtBarrier, kDone };

struct BlockRun {
  int n_threads = 0;
  int current = 0;
#ifdef GRAINSEG_EMU_FAST_SWITCH
  std::vector<void*> ctx;  // saved stack pointers
  void* scheduler = nullptr;
#else
  std::vector<ucontext_t> ctx;
  ucontext_t scheduler;
#endif
  std::vector<std::unique_ptr<char[]>> stacks;
  std::vector<State> state;
  std::function<void()> body;
  std::vector<unsigned char> dynamic_smem;
  std::vector<uint64_t> exchange;  // one shuffle slot per thread
};

inline BlockRun* g_run = nullptr;
inline uint64_t g_seed = 12345;

}  // namespace emu

inline emu::Index3 threadIdx, blockIdx, blockDim, gridDim;

namespace emu {
// Fiber `current` -> scheduler, and back.
inline void to_scheduler() {
#ifdef GRAINSEG_EMU_FAST_SWITCH
  grainseg_emu_switch(&g_run->ctx[g_run->current], g_run->scheduler);
#else
  swapcontext(&g_run->ctx[g_run->current], &g_run->scheduler);
#endif
}
inline void to_fiber(int t) {
#ifdef GRAINSEG_EMU_FAST_SWITCH
  grainseg_emu_switch(&g_run->scheduler, g_run->ctx[t]);
#else
  swapcontext(&g_run->scheduler, &g_run->ctx[t]);
#endif
}
}  // namespace emu

inline void __syncthreads() {
  emu::g_run->state[emu::g_run->current] = emu::State::kAtBarrier;
  emu::to_scheduler();
}

namespace emu {

constexpr int kStackBytes = 256 * 1024;

inline void fiber_entry() {
  g_run->body();
  g_run->state[g_run->current] = State::kDone;
#ifdef GRAINSEG_EMU_FAST_SWITCH
  to_scheduler();  // never resumed
  std::abort();
#endif
  // ucontext: returning resumes uc_link (the scheduler)
}

// A fresh fiber for thread t that starts in fiber_entry.
inline void make_fiber(BlockRun& r, int t) {
  r.stacks.emplace_back(new char[kStackBytes]);
  char* base = r.stacks.back().get();
#ifdef GRAINSEG_EMU_FAST_SWITCH
  auto top = reinterpret_cast<uintptr_t>(base + kStackBytes) & ~uintptr_t(15);
  void** sp = reinterpret_cast<void**>(top);
  *--sp = nullptr;                                      // fake return address: keeps the ABI alignment
  *--sp = reinterpret_cast<void*>(&fiber_entry);        // where grainseg_emu_switch returns to
  for (int i = 0; i < 6; ++i) *--sp = nullptr;          // rbp, rbx, r12-r15
  r.ctx[t] = sp;
#else
  getcontext(&r.ctx[t]);
  r.ctx[t].uc_stack.ss_sp = base;
  r.ctx[t].uc_stack.ss_size = kStackBytes;
  r.ctx[t].uc_link = &r.scheduler;
  makecontext(&r.ctx[t], fiber_entry, 0);
#endif
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
  if (mask != 0xffffffffu) {  // no exceptions inside a fiber: its stack has no caller to unwind to
    std::fprintf(stderr, "cuda emulation: only full-warp shuffles are supported\n");
    std::abort();
  }
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
    for (int t = 0; t < threads; ++t) make_fiber(r, t);
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
        to_fiber(t);
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
