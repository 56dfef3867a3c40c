// Device building blocks shared by grainseg's CUDA scan kernels (forward and backward, SS2D and the
// mamba-compatible 1-D selective scan).  No torch headers: this file compiles with plain nvcc.
//
// The scan runs over tiles of kNThreads * kNItems sequence steps; thread `tid` owns the kNItems
// consecutive steps [tid * kNItems, (tid + 1) * kNItems) of a tile ("blocked" arrangement).  Global
// memory is read and written "striped" (consecutive threads touch consecutive steps, which is coalesced
// for the row-major orders) and transposed through a shared-memory stage buffer.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/scan_cuda.cuh"

namespace grainseg {
namespace cuda {

constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kWarpSize = 32;

// ---------------------------------------------------------------------------------------------
// Types: state and accumulation run in float (double for double inputs).
// ---------------------------------------------------------------------------------------------
template <typename T>
struct AccType {
  using type = float;
};
template <>
struct AccType<double> {
  using type = double;
};

__device__ __forceinline__ float to_acc(float x) { return x; }
__device__ __forceinline__ double to_acc(double x) { return x; }
__device__ __forceinline__ float to_acc(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 x) { return __bfloat162float(x); }

__device__ __forceinline__ void store_as(float* p, float v) { *p = v; }
__device__ __forceinline__ void store_as(double* p, double v) { *p = v; }
__device__ __forceinline__ void store_as(__half* p, float v) { *p = __float2half_rn(v); }
__device__ __forceinline__ void store_as(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }

__device__ __forceinline__ float exp_acc(float x) { return expf(x); }
__device__ __forceinline__ double exp_acc(double x) { return exp(x); }

// softplus with torch's threshold (F.softplus(x) == x for x > 20).
__device__ __forceinline__ float softplus(float x) { return x <= 20.f ? log1pf(expf(x)) : x; }
__device__ __forceinline__ double softplus(double x) { return x <= 20.0 ? log1p(exp(x)) : x; }
// d softplus(x) / dx; also exactly 1 in float above the threshold, like torch.
__device__ __forceinline__ float sigmoid(float x) { return x <= 20.f ? 1.f / (1.f + expf(-x)) : 1.f; }
__device__ __forceinline__ double sigmoid(double x) { return x <= 20.0 ? 1.0 / (1.0 + exp(-x)) : 1.0; }

// ---------------------------------------------------------------------------------------------
// Sequence order of the SS2D directions (grainseg.ops.reference.direction_order).
// Maps step t of direction k (0 row-major, 1 column-major, 2 reverse row-major, 3 reverse
// column-major) to the flat spatial position i * w + j of an (h, w) image with L = h * w.
// The 1-D selective scan is direction 0 of an image with h = 1: the identity.
// ---------------------------------------------------------------------------------------------
__device__ __forceinline__ int seq_to_pos(int k, int t, int h, int w, int L) {
  if (k >= 2) t = L - 1 - t;
  if (k & 1) {
    const int i = t % h;  // column-major: t = j * h + i
    const int j = t / h;
    return i * w + j;
  }
  return t;
}

// Merges direction k's value v at spatial position pos into the output (y in the forward, du in the
// backward) in the fixed order 0, 1, ..., kNDirs - 1: acc = v_0, acc += v_k, out = acc + v_last, so
// the sum is formed once, in the compute dtype, and is bitwise reproducible.
template <int kNDirs, typename out_t, typename acc_t>
__device__ __forceinline__ void merge_direction(int k, out_t* out, acc_t* acc, int pos, acc_t v) {
  if (kNDirs == 1) {
    store_as(out + pos, v);
  } else if (k == 0) {
    acc[pos] = v;
  } else if (k < kNDirs - 1) {
    acc[pos] += v;
  } else {
    store_as(out + pos, acc[pos] + v);
  }
}

// ---------------------------------------------------------------------------------------------
// Shared-memory stage buffer (tile of kNThreads * kNItems values, padded against bank conflicts).
// Every helper starts and ends with a barrier, so callers may chain them without extra syncs.
// ---------------------------------------------------------------------------------------------
template <int kNThreads, int kNItems>
struct Tile {
  static constexpr int kSize = kNThreads * kNItems;
  static constexpr int kPaddedSize = kSize + kSize / kWarpSize;
  __device__ __forceinline__ static int padded(int i) { return i + i / kWarpSize; }

  // vals[i] = load(t) for this thread's blocked steps t = t0 + tid * kNItems + i (fill beyond L).
  // `load(t)` is called with striped t (coalesced for row-major orders) and only for t < L.
  template <typename acc_t, typename LoadFn>
  __device__ __forceinline__ static void load(acc_t* stage, int t0, int L, acc_t fill, LoadFn load,
                                              acc_t (&vals)[kNItems]) {
    __syncthreads();
#pragma unroll
    for (int j = 0; j < kNItems; ++j) {
      const int tl = j * kNThreads + threadIdx.x;
      stage[padded(tl)] = t0 + tl < L ? load(t0 + tl) : fill;
    }
    __syncthreads();
#pragma unroll
    for (int i = 0; i < kNItems; ++i) vals[i] = stage[padded(threadIdx.x * kNItems + i)];
  }

  // Two loads sharing the barriers (stage0 and stage1 are two distinct buffers).
  template <typename acc_t, typename LoadFn0, typename LoadFn1>
  __device__ __forceinline__ static void load2(acc_t* stage0, acc_t* stage1, int t0, int L, LoadFn0 load0,
                                               LoadFn1 load1, acc_t (&vals0)[kNItems],
                                               acc_t (&vals1)[kNItems]) {
    __syncthreads();
#pragma unroll
    for (int j = 0; j < kNItems; ++j) {
      const int tl = j * kNThreads + threadIdx.x;
      const bool in = t0 + tl < L;
      stage0[padded(tl)] = in ? load0(t0 + tl) : acc_t(0);
      stage1[padded(tl)] = in ? load1(t0 + tl) : acc_t(0);
    }
    __syncthreads();
#pragma unroll
    for (int i = 0; i < kNItems; ++i) {
      vals0[i] = stage0[padded(threadIdx.x * kNItems + i)];
      vals1[i] = stage1[padded(threadIdx.x * kNItems + i)];
    }
  }

  // store(t, value) for every step t < L of the tile, called striped, from this thread's blocked vals.
  template <typename acc_t, typename StoreFn>
  __device__ __forceinline__ static void store(acc_t* stage, int t0, int L, const acc_t (&vals)[kNItems],
                                               StoreFn store) {
    __syncthreads();
#pragma unroll
    for (int i = 0; i < kNItems; ++i) stage[padded(threadIdx.x * kNItems + i)] = vals[i];
    __syncthreads();
#pragma unroll
    for (int j = 0; j < kNItems; ++j) {
      const int tl = j * kNThreads + threadIdx.x;
      if (t0 + tl < L) store(t0 + tl, stage[padded(tl)]);
    }
  }

  // Two stores sharing the barriers: store(t, value0, value1).
  template <typename acc_t, typename StoreFn>
  __device__ __forceinline__ static void store2(acc_t* stage0, acc_t* stage1, int t0, int L,
                                                const acc_t (&vals0)[kNItems], const acc_t (&vals1)[kNItems],
                                                StoreFn store) {
    __syncthreads();
#pragma unroll
    for (int i = 0; i < kNItems; ++i) {
      stage0[padded(threadIdx.x * kNItems + i)] = vals0[i];
      stage1[padded(threadIdx.x * kNItems + i)] = vals1[i];
    }
    __syncthreads();
#pragma unroll
    for (int j = 0; j < kNItems; ++j) {
      const int tl = j * kNThreads + threadIdx.x;
      if (t0 + tl < L) store(t0 + tl, stage0[padded(tl)], stage1[padded(tl)]);
    }
  }
};

// ---------------------------------------------------------------------------------------------
// Block-wide scan of the linear recurrence x <- a * x + b.
//
// An element (a, b) maps x to a * x + b; "e1 then e2" composes to (a1 * a2, a2 * b1 + b2), which is
// associative, so the block scans it with warp shuffles and one shared-memory hop per warp.  Scan order
// is thread 0 .. N-1 (kReverse = false) or N-1 .. 0 (kReverse = true, used by the backward adjoint).
// All combinations happen in a fixed order: results are bitwise reproducible.
// ---------------------------------------------------------------------------------------------
// Shared memory of BlockRecurrenceScan (the same for both scan directions): one element per warp.
template <int kNThreads, typename acc_t>
struct RecurrenceScanStorage {
  acc_t a[kNThreads / kWarpSize];
  acc_t b[kNThreads / kWarpSize];
};

template <int kNThreads, bool kReverse, typename acc_t>
struct BlockRecurrenceScan {
  static_assert(kNThreads % kWarpSize == 0, "block size must be a multiple of the warp size");
  static constexpr int kNWarps = kNThreads / kWarpSize;
  using Storage = RecurrenceScanStorage<kNThreads, acc_t>;

  // (agg_a, agg_b): this thread's items composed in scan order.  carry: the state entering the
  // block's first element in scan order.  Returns the state entering this thread's first element and
  // sets `carry_out` (same value in every thread) to the state after the block's last element.
  __device__ __forceinline__ static acc_t run(Storage& st, acc_t agg_a, acc_t agg_b, acc_t carry,
                                              acc_t& carry_out) {
    const int lane = threadIdx.x % kWarpSize;
    const int warp = threadIdx.x / kWarpSize;
    acc_t a = agg_a, b = agg_b;  // becomes the inclusive scan of this lane within its warp
#pragma unroll
    for (int d = 1; d < kWarpSize; d *= 2) {
      const acc_t pa = kReverse ? __shfl_down_sync(kFullMask, a, d) : __shfl_up_sync(kFullMask, a, d);
      const acc_t pb = kReverse ? __shfl_down_sync(kFullMask, b, d) : __shfl_up_sync(kFullMask, b, d);
      const bool has_prev = kReverse ? lane + d < kWarpSize : lane >= d;
      if (has_prev) {  // (pa, pb) comes first in scan order
        b = a * pb + b;
        a = pa * a;
      }
    }
    // Exclusive scan = the previous lane's inclusive one (identity for the first lane in scan order).
    acc_t ea = kReverse ? __shfl_down_sync(kFullMask, a, 1) : __shfl_up_sync(kFullMask, a, 1);
    acc_t eb = kReverse ? __shfl_down_sync(kFullMask, b, 1) : __shfl_up_sync(kFullMask, b, 1);
    const int first_lane = kReverse ? kWarpSize - 1 : 0;
    const int last_lane = kReverse ? 0 : kWarpSize - 1;
    if (lane == first_lane) {
      ea = acc_t(1);
      eb = acc_t(0);
    }
    if (lane == last_lane) {
      st.a[warp] = a;
      st.b[warp] = b;
    }
    __syncthreads();
    acc_t x_in = carry;  // state entering this thread's warp
    acc_t x_end = carry;
#pragma unroll
    for (int i = 0; i < kNWarps; ++i) {
      const int w = kReverse ? kNWarps - 1 - i : i;
      const bool before_mine = kReverse ? w > warp : w < warp;
      if (before_mine) x_in = st.a[w] * x_in + st.b[w];
      x_end = st.a[w] * x_end + st.b[w];
    }
    __syncthreads();  // Storage may be reused after this point
    carry_out = x_end;
    return ea * x_in + eb;
  }
};

// Sum over a warp (tree order, fixed); the result is valid in lane 0.
template <typename acc_t>
__device__ __forceinline__ acc_t warp_sum(acc_t v) {
#pragma unroll
  for (int d = kWarpSize / 2; d > 0; d /= 2) v += __shfl_down_sync(kFullMask, v, d);
  return v;
}

// Sum over the block in a fixed order (warp tree, then warps in index order); the result is valid in
// thread 0 only.  `red` needs kNThreads / 32 slots.
template <int kNThreads, typename acc_t>
__device__ __forceinline__ acc_t block_sum(acc_t v, acc_t* red) {
  constexpr int kNWarps = kNThreads / kWarpSize;
  v = warp_sum(v);
  __syncthreads();
  if (threadIdx.x % kWarpSize == 0) red[threadIdx.x / kWarpSize] = v;
  __syncthreads();
  acc_t total = 0;
  if (threadIdx.x == 0) {
#pragma unroll
    for (int w = 0; w < kNWarps; ++w) total += red[w];
  }
  return total;
}

// Calls fn(T{}) with T the element type named by `dtype` (host side; launchers use it to instantiate).
template <typename Fn>
cudaError_t dispatch_dtype(ScanDtype dtype, Fn&& fn) {
  switch (dtype) {
    case ScanDtype::kFloat32: return fn(float{});
    case ScanDtype::kFloat16: return fn(__half{});
    case ScanDtype::kBFloat16: return fn(__nv_bfloat16{});
    case ScanDtype::kFloat64: return fn(double{});
  }
  return cudaErrorInvalidValue;
}

// Tile configurations by sequence length: short sequences get small blocks; anything longer than 1024
// steps runs in tiles of kMaxTile = 2048 steps = the checkpoint chunk (one checkpoint per tile).
// The backward keeps more values per step in registers, so its largest tile uses more threads with
// fewer items each.  Calls fn(TileConfig<threads, items>{}).
template <int kThreads, int kItems>
struct TileConfig {
  static constexpr int kNThreads = kThreads;
  static constexpr int kNItems = kItems;
};

template <bool kBackward, typename Fn>
cudaError_t dispatch_tile_config(index_t seqlen, Fn&& fn) {
  static_assert(128 * 16 == kMaxTile && 256 * 8 == kMaxTile, "the largest tiles must be the checkpoint chunk");
  if (seqlen <= 128) return fn(TileConfig<32, 4>{});
  if (seqlen <= 512) return fn(TileConfig<64, 8>{});
  if (seqlen <= 1024) return fn(TileConfig<128, 8>{});
  if (kBackward) return fn(TileConfig<256, 8>{});
  return fn(TileConfig<128, 16>{});
}

// Launches kernel<<<grid, threads, smem, stream>>>(args...), opting in to more than 48 KiB of dynamic
// shared memory when needed; returns the launch status.  (GRAINSEG_CUDA_EMULATION: the host emulation
// of tests/gpu/emu runs the kernel on the CPU instead.)
template <typename Kernel, typename... Args>
cudaError_t launch_kernel(Kernel kernel, unsigned grid, int threads, size_t smem, cudaStream_t stream,
                          Args... args) {
#ifdef GRAINSEG_CUDA_EMULATION
  (void)stream;
  emu::launch(grid, threads, smem, [&]() { kernel(args...); });
  return cudaSuccess;
#else
  if (smem > 48 * 1024) {
    const cudaError_t err =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    if (err != cudaSuccess) return err;
  }
  kernel<<<grid, threads, smem, stream>>>(args...);
  return cudaGetLastError();
#endif
}

// The kernel's dynamic shared memory, as T*.
template <typename T>
__device__ __forceinline__ T* dynamic_smem() {
#ifdef GRAINSEG_CUDA_EMULATION
  return static_cast<T*>(emu::dynamic_smem());
#else
  extern __shared__ __align__(16) unsigned char smem_raw[];
  return reinterpret_cast<T*>(smem_raw);
#endif
}

}  // namespace cuda
}  // namespace grainseg
